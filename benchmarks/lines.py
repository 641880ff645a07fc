"""Baseline AE vs ACAI on the lines benchmark at the same CPU budget.

Trains both methods from configs/lines/{ae,acai}.yaml with the same CPU schedule
(learning rate, width, batch, steps, seed; only ACAI's own lambda warm-up differs),
evaluates Mean Distance and Smoothness exactly as ``nonvae eval`` does, and writes
a Markdown table, JSON, and the interpolation grids to --out.

    python benchmarks/lines.py --budget-steps 2000 --set train.grad_clip=1.0 --out results/lines
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import comparison_report, train_and_evaluate  # noqa: E402

# The CPU schedule, identical for both methods (the paper's 1e-4 needs ~2^24 samples).
SHARED = ["train.lr=1e-3", "train.log_every=100", "train.checkpoint_every=1000", "train.sample_every=1000000"]
ACAI_ONLY = ["regularizers.acai.warmup_steps=1000"]


def run_one(name: str, budget: int, out: Path, extra: list[str], seed: int) -> dict:
    from nonvae.data.lines import lines_test_pairs
    from nonvae.pipeline import interpolate
    from nonvae.viz import save_grid

    overrides = [*SHARED, f"train.steps={budget}", f"train.eval_every={budget + 1}", f"seed={seed}", *extra]
    if name == "acai":
        overrides += ACAI_ONLY
    method, metrics = train_and_evaluate(f"configs/lines/{name}.yaml", out / name, overrides)
    xa, xb, _, _ = lines_test_pairs(8)
    save_grid(interpolate(method, xa, xb, 16).cpu(), out / f"interpolations_{name}.png")
    return {**metrics, "overrides": overrides}


def _fmt(value: float, scale: float = 1.0, spec: str = ".3f") -> str:
    return "undefined" if value != value else format(value * scale, spec)


def table(results: dict[str, dict]) -> str:
    ae, acai = results["ae"], results["acai"]
    rows = [
        "| method | Mean Distance (×10⁻³) | Smoothness | recon MSE | train time (s) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rows.append(f"| {name} | {_fmt(r['lines/mean_distance'], 1e3)} | {_fmt(r['lines/smoothness'])} "
                    f"| {r['recon/mse']:.4f} | {r['train_seconds']:.0f} |")
    ratio = {k: acai[k] / ae[k] if ae[k] else float("nan")
             for k in ("lines/mean_distance", "lines/smoothness", "recon/mse")}
    rows.append(f"| ACAI / baseline | {_fmt(ratio['lines/mean_distance'], spec='.2f')} "
                f"| {_fmt(ratio['lines/smoothness'], spec='.2f')} | {_fmt(ratio['recon/mse'], spec='.2f')} | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-steps", type=int, default=4000, help="training steps per method (batch 64)")
    p.add_argument("--out", default="results/lines", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra overrides for both methods")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only", choices=["ae", "acai"], help="train just one method (e.g. two processes in "
                   "parallel); a later run without --only resumes both, evaluates and writes the table")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only:
        run_one(args.only, args.budget_steps, out, args.set, args.seed)
        return 0
    results = {name: run_one(name, args.budget_steps, out, args.set, args.seed) for name in ("ae", "acai")}
    md = table(results)
    header = (f"Lines benchmark: {args.budget_steps} steps × batch 64 per method, seed {args.seed}, "
              f"shared overrides {SHARED + args.set}, ACAI only {ACAI_ONLY}\n\n")
    (out / "lines.md").write_text(header + md + "\n")
    (out / "lines.json").write_text(json.dumps({"budget_steps": args.budget_steps, "results": results},
                                               indent=1, default=str).replace("NaN", "null") + "\n")
    print(header + md)
    comparison_report([out / "ae", out / "acai"], out / "lines.html", header + md)
    ok = all(results["acai"][k] < results["ae"][k] for k in ("lines/mean_distance", "lines/smoothness"))
    print(f"\nACAI beats the baseline on both metrics: {'yes' if ok else 'no'}")
    print(f"results in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
