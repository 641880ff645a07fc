#!/usr/bin/env bash
# Set up (if needed), then the main job on built-in data: train a baseline autoencoder and
# ACAI on the synthetic lines benchmark for a short CPU budget, evaluate both, and write a
# comparison (metrics table + interpolation grids + HTML report) to results/demo.
# DEMO_STEPS=N changes the budget (default 1500 steps per method: about 5 minutes on 2 idle cores, 6 with
# another process keeping one core busy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# idle OpenMP threads spin only briefly before they sleep (libgomp's GOMP_SPINCOUNT, as the nonvae command sets it;
# must be set before Python loads torch); the trainer's thread policy then keeps to the cores other processes
# leave free, so a busy machine slows the demo down in proportion instead of 10-50x (docs/distributed.md)
if [ -z "${OMP_WAIT_POLICY:-}" ]; then export GOMP_SPINCOUNT="${GOMP_SPINCOUNT:-3000}"; fi
# The README lines table's settings live in benchmarks/lines.py and apply here unchanged (Adam 1e-3 for
# every player, gradient clipping 1.0, fp32 for both methods, ACAI's lambda warm-up over 1,000 steps;
# tests/test_benchmarks.py checks that this command adds none of its own). It ends by printing the
# ACAI / baseline ratios and whether ACAI won on both metrics (and whether both ratios are <= 0.5).
python benchmarks/lines.py --budget-steps "${DEMO_STEPS:-1500}" --out "${DEMO_OUT:-results/demo}"
