#!/usr/bin/env bash
# Rebuild src/nonvae/pretrained/ (the shipped models) from the benchmarks at CPU budget (about 45 minutes on 2 idle cores).
#
# Each shipped model is the run a benchmark trained, exported with only the autoencoder's weights in
# float16 (`nonvae export --inference-only --half`), its sampler and 16 of its test images (samples.npz), so that
# the examples/ notebooks, `nonvae transfer` and `nonvae report` work without training or the data.
#   lines_ae, lines_acai        benchmarks/lines.py (the README's lines table)
#   fashion_mnist_ae,           benchmarks/probe.py, seed 0 with the 4x4x16 latent at PROBE_BUDGET steps:
#   fashion_mnist_acai          the baseline and ACAI at the same budget and schedule
#   attributes_disentangle      benchmarks/disentangle.py's rings/fashion_mnist row of configs/attributes/
#                               disentangle.yaml as shipped (its 12,000 steps: the README's variants table run)
# RESULTS=DIR keeps the benchmark runs elsewhere (default results/); THREADS=N per process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
. .venv/bin/activate
RESULTS=${RESULTS:-results}
THREADS=${THREADS:-2}
PROBE_BUDGET=${PROBE_BUDGET:-1000}
export OMP_NUM_THREADS=$THREADS

python benchmarks/lines.py --budget-steps 1500 --seeds 0 --threads "$THREADS" --set train.report=false \
  --out "$RESULTS/lines"
python benchmarks/probe.py --budgets "$PROBE_BUDGET" --seeds 0 --latents 16 --threads "$THREADS" --no-pca \
  --out "$RESULTS/probe"
python benchmarks/disentangle.py --variants rings/fashion_mnist --methods shipped --steps 12000 --threads "$THREADS" \
  --set eval.hausdorff=false --out "$RESULTS/disentangle_variants"

export_model() {  # run directory, model name
  rm -rf "src/nonvae/pretrained/$2"
  # fit the sampler (a Gaussian mixture on training codes) with the float32 weights; export copies it
  nonvae sample "$1" --n 64 --out "$RESULTS/samples_$2.png"
  nonvae export "$1" --out "src/nonvae/pretrained/$2" --inference-only --half --samples 16
}
export_model "$RESULTS/lines/seed0/ae" lines_ae
export_model "$RESULTS/lines/seed0/acai" lines_acai
export_model "$RESULTS/probe/ae_16/seed0" fashion_mnist_ae
export_model "$RESULTS/probe/acai_16/seed0" fashion_mnist_acai
export_model "$RESULTS/disentangle_variants/rings_fashion_mnist/shipped" attributes_disentangle
du -sh src/nonvae/pretrained/*
