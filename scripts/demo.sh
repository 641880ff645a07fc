#!/usr/bin/env bash
# Set up (if needed), then the main job on built-in data: train a baseline autoencoder and
# ACAI on the synthetic lines benchmark for a short CPU budget, evaluate both, and write a
# comparison (metrics table + interpolation grids + HTML report) to results/demo.
# DEMO_STEPS=N changes the budget (default 1500 steps per method, ~10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python benchmarks/lines.py --budget-steps "${DEMO_STEPS:-1500}" --out "${DEMO_OUT:-results/demo}"
