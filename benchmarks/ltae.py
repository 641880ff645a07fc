"""Baseline AE vs LTAE-S vs LTAE-M on Fashion-MNIST at the same CPU budget, latent 2 and 16.

All six runs share configs/fashion_mnist/ltae_s.yaml (500-500 softplus MLP, tanh output) and
one schedule; the baseline switches the latent transform and its term off, LTAE-M swaps the
normalisation, ltae_m_batch takes the min-max statistics over the whole batch (as the
reference code does) instead of per example. Measured like ``nonvae eval``: directed Hausdorff
distances between test images and decoded N(0, I) codes (both ways), reconstruction MSE,
linear-probe accuracy; plus the spread of the codes (mean per-dimension std), which is what
N(0, I) sampling relies on.

    python benchmarks/ltae.py --budget-steps 5000 --out results/ltae.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, benchmark_parser, parse_args, schedule, train_and_evaluate, write_outputs  # noqa: E402

CONFIG = REPO / "src" / "nonvae" / "configs" / "fashion_mnist" / "ltae_s.yaml"
VARIANTS = {
    "ae": ["method=ae", "model.transform=none", "regularizers.ltae=null"],
    "ltae_s": ["method=ltae_s", "model.transform=standardize"],
    "ltae_m": ["method=ltae_m", "model.transform=minmax"],
    "ltae_m_batch": ["method=ltae_m", "model.transform=minmax", "regularizers.ltae.scope=batch"],
}


def shared(budget: int, args: argparse.Namespace) -> list[str]:
    """The schedule and evaluation settings every variant gets."""
    return [
        *schedule(budget), f"train.lr={args.lr}", f"seed={args.seed}", "eval.kmeans=false",
        f"eval.probe_train_limit={args.probe_train}", f"eval.hausdorff_samples={args.hausdorff_samples}",
        f"eval.hausdorff_repeats={args.hausdorff_repeats}",
    ]


def run_one(variant: str, latent: int, budget: int, run_dir: Path, args: argparse.Namespace) -> dict:
    """Train one variant from scratch, evaluate it, add the code spread (and the 2-D code plot)."""

    def code_spread(method, trainer) -> dict:
        from nonvae.evaluate.run import encode_all

        z, _ = encode_all(method, trainer.data.test, trainer.device, trainer.cfg.eval.batch_size)
        if latent == 2:
            plot_codes(z, trainer.data.test.labels.numpy(), run_dir.parent / f"codes_{variant}_2d.png", variant)
        return {"code/std": float(z.std(0).mean())}

    overrides = [*shared(budget, args), f"model.latent_dim={latent}", *VARIANTS[variant], *args.set]
    _, metrics = train_and_evaluate(CONFIG, run_dir, overrides, fresh=True, extra=code_spread)
    return {**metrics, "overrides": overrides}


def plot_codes(z, labels, path: Path, title: str) -> None:
    """2-D test codes coloured by class (the paper's latent plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.scatter(z[:, 0], z[:, 1], c=labels, s=1, cmap="tab10")
    ax.set_title(f"{title}: test codes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(results: dict[str, dict]) -> str:
    rows = [
        "| method | latent | Hausdorff data→samples | Hausdorff samples→data | recon MSE | probe acc. "
        "| code std | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        variant, latent = key.rsplit("/", 1)
        rows.append(
            f"| {variant} | {latent} | {r['hausdorff/data_to_samples']:.2f} "
            f"| {r['hausdorff/samples_to_data']:.2f} "
            f"| {r['recon/mse']:.4f} | {r.get('probe/accuracy', float('nan')):.3f} | {r['code/std']:.3f} "
            f"| {r['train_seconds']:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "results/ltae.json", "JSON file; run dirs and the .md go beside it")
    p.add_argument("--budget-steps", type=int, default=5000, help="training steps per run (batch 64)")
    p.add_argument("--latents", type=int, nargs="+", default=[2, 16])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--probe-train", type=int, default=10000, help="training images the linear probe fits on")
    p.add_argument("--hausdorff-samples", type=int, default=5000)
    p.add_argument("--hausdorff-repeats", type=int, default=5)
    args = parse_args(p, argv)
    out = Path(args.out)
    runs = out.with_suffix("")
    runs.mkdir(parents=True, exist_ok=True)
    results = {}
    for latent in args.latents:
        for variant in args.variants:
            print(f"== {variant}, latent {latent}", file=sys.stderr, flush=True)
            results[f"{variant}/{latent}"] = run_one(variant, latent, args.budget_steps,
                                                     runs / f"{variant}_{latent}", args)
    header = (f"LTAE benchmark (Fashion-MNIST, 500-500 softplus MLP): {args.budget_steps} steps × batch 64 "
              f"per run, Adam lr {args.lr}, seed {args.seed}; Hausdorff over {args.hausdorff_samples} test "
              f"images vs as many decoded N(0, I) codes, mean of {args.hausdorff_repeats} draws; probe "
              f"fitted on {args.probe_train} training codes, scored on the 10,000 test codes.")
    write_outputs(out.parent, out.stem, header, table(results),
                  {"budget_steps": args.budget_steps, "args": vars(args), "results": results})
    print(f"\nresults in {out.resolve()} (run dirs in {runs.resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
