"""Baseline AE vs ACAI on Fashion-MNIST: linear-probe and k-means accuracy of the latents.

Both methods train at the same budget and schedule for each latent size (4x4x2 = 32-d and
4x4x16 = 256-d); the probe is a single linear softmax layer on frozen latents; clustering is
k-means (k = 10) on PCA-whitened latents with Hungarian matching.

    python benchmarks/probe.py --budget-steps 2000 --out results/probe
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    benchmark_parser,
    comparison_report,
    markdown_table,
    parse_args,
    train_and_evaluate,
    write_outputs,
)

SHARED = ["train.lr=1e-3", "train.log_every=100", "train.checkpoint_every=1000", "train.sample_every=1000000"]


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "results/probe")
    p.add_argument("--budget-steps", type=int, default=2000)
    p.add_argument("--latents", default="2,16", help="latent channels on the 4x4 grid, comma separated")
    p.add_argument("--probe-train-limit", type=int, default=None, help="fit the probe on the first N train images")
    p.add_argument("--methods", default="ae,acai", help="comma separated, e.g. 'acai' for one method only")
    args = parse_args(p, argv)
    out = Path(args.out)
    rows = []
    for channels in [int(c) for c in args.latents.split(",")]:
        for method in args.methods.split(","):
            overrides = [*SHARED, f"train.steps={args.budget_steps}", f"train.eval_every={args.budget_steps + 1}",
                         f"model.latent_channels={channels}", f"seed={args.seed}", *args.set]
            if args.probe_train_limit:
                overrides.append(f"eval.probe_train_limit={args.probe_train_limit}")
            _, metrics = train_and_evaluate(f"configs/fashion_mnist/{method}.yaml",
                                            out / f"{method}_{channels}", overrides)
            rows.append({"method": method, "latent": f"4x4x{channels} ({16 * channels}-d)", **metrics})
    table = markdown_table(rows, [
        ("method", "method", ""), ("latent", "latent", ""), ("probe accuracy", "probe/accuracy", ".3f"),
        ("k-means accuracy", "kmeans/accuracy", ".3f"), ("recon MSE", "recon/mse", ".4f"),
        ("train time (s)", "train_seconds", ".0f"),
    ])
    header = (f"Fashion-MNIST probe benchmark: {args.budget_steps} steps × batch 64 per run, seed {args.seed}, "
              f"overrides {SHARED + args.set}")
    write_outputs(out, "probe", header, table, {"budget_steps": args.budget_steps, "rows": rows})
    comparison_report(sorted(p for p in out.iterdir() if (p / "config.yaml").is_file()), out / "probe.html",
                      header + "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
