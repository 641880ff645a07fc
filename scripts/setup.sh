#!/usr/bin/env bash
# One-time (idempotent) setup: a virtual environment in .venv with torch 2.13.0 (CPU wheel)
# installed first, then nonvae and its test tools. Installs Debian's Fashion-MNIST package
# when it is missing and we are root (optional: nothing needs it but the benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.nonvae-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  # torch first, pinned: a plain 'torch' requirement would pull a multi-GB CUDA build
  python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  python -m pip install -q -e ".[test,tensorboard]" 2>&1 | grep -v "^WARNING: Location" || true
  python -c "import torch, nonvae; print('nonvae', nonvae.__version__, 'torch', torch.__version__)"
  touch "$stamp"
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's dataset-fashion-mnist (used by the Fashion-MNIST configs and benchmarks)"
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST configs need --set data.root=DIR"
fi
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium (the report's headless-browser test uses it)"
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; the browser test of 'nonvae report' will be skipped"
fi
