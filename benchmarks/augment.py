"""Baseline vs baseline + augmentation vs ACAI + augmentation on Fashion-MNIST, same CPU budget.

Trains configs/fashion_mnist/{ae,ae_augment,acai_augment}.yaml with one schedule (learning
rate, batch, steps, seed; only ACAI's lambda warm-up over the first quarter of the budget is
ACAI-specific) and measures:

- latent distance ||f(x) - f(t(x))|| for every op of the augment configs' P_T, raw and
  relative to the mean distance between the codes of two different test images (a code can
  "become invariant" just by shrinking; the relative number cannot be gamed that way);
- reconstruction MSE on clean test images;
- linear-probe accuracy (fitted on clean training codes) on clean test images and on the same
  test images each under one op drawn from P_T (one fixed draw shared by every method).

Recon MSE comes from ``nonvae.evaluate.run.evaluate`` (its probe is switched off: the probes here
fit on codes computed once, encoder only, which keeps the evaluation cheap next to a short CPU
budget; the clean probe is the same fit ``evaluate`` would make).

``--finetune-steps N`` adds a fourth row: the trained baseline fine-tuned for N more steps with
configs/fashion_mnist/augment_finetune.yaml (``init.from``), at the same learning rate.

    python benchmarks/augment.py --budget-steps 1000 --out results/augment.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nonvae.regularizers.augment import latent_distance

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, benchmark_parser, parse_args, schedule, train_and_evaluate, write_outputs  # noqa: E402

CONFIGS = REPO / "src" / "nonvae" / "configs" / "fashion_mnist"
VARIANTS = ("ae", "ae_augment", "acai_augment")


def acai_only(budget: int) -> list[str]:
    """ACAI's own schedule: its lambda ramps up over the first quarter of the budget."""
    return [f"regularizers.acai.warmup_steps={max(1, budget // 4)}"]


def shared(budget: int, args: argparse.Namespace) -> list[str]:
    """The schedule every variant gets (the paper's lr 1e-4 needs ~2^24 samples)."""
    return [
        *schedule(budget, log_every=50), f"train.lr={args.lr}", f"seed={args.seed}", "eval.kmeans=false",
        "eval.probe=false", f"eval.probe_train_limit={args.probe_train}", f"data.test_limit={args.test_images}",
    ]


@torch.no_grad()
def codes(method, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """Flattened codes of images ``x`` (encode only: the decoder is not needed here)."""
    out = [method.encode(x[i: i + batch_size].to(device)).flatten(1).float().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def measure(method, data, cfg, device: torch.device, augmentation, args: argparse.Namespace) -> dict:
    """Latent distance per op and probe accuracy on clean and augmented test images (one probe fit each)."""
    from nonvae.evaluate.probe import linear_probe

    test, bs = data.test, cfg.eval.batch_size
    train = data.train_set.subset(args.probe_train)
    z_train = codes(method, train.batch(torch.arange(len(train)))["x"], device, bs)
    x_test = test.batch(torch.arange(len(test)))["x"]
    torch.manual_seed(12345)  # the same augmented test set for every method
    x_aug, _ = augmentation(x_test)
    z_aug = codes(method, x_aug, device, bs)
    z_test = codes(method, x_test, device, bs)
    out = {
        "probe/accuracy": linear_probe(z_train, train.labels, z_test, test.labels)["probe/accuracy"],
        "probe/accuracy_augmented": linear_probe(z_train, train.labels, z_aug, test.labels)["probe/accuracy"],
    }
    # distances on the first n test images; the scale: distance between two different images' codes
    n = min(args.dist_images, len(test))
    z = z_test[:n]
    out["dist/pairs"] = float((z - z.roll(1, 0)).norm(dim=1).mean())
    for name in augmentation.names:
        torch.manual_seed(54321)
        z_t = codes(method, augmentation.apply_op(x_test[:n], name), device, bs)
        out[f"dist/{name}"] = float(latent_distance(z, z_t).mean())
        out[f"dist_rel/{name}"] = out[f"dist/{name}"] / out["dist/pairs"]
    return out


def run_one(config: str, overrides: list[str], run_dir: Path, augmentation, args) -> dict:
    """Train ``config`` from scratch, evaluate it, add ``measure``'s numbers."""
    _, metrics = train_and_evaluate(
        CONFIGS / f"{config}.yaml", run_dir, overrides, fresh=True,
        extra=lambda method, trainer: measure(method, trainer.data, trainer.cfg, trainer.device, augmentation, args))
    return {**metrics, "overrides": overrides}


def table(results: dict[str, dict], ops: list[str]) -> str:
    short = {"channel_reverse": "invert", "color_noise": "noise"}
    head = " | ".join(short.get(o, o) for o in ops)
    rows = [
        f"| method | recon MSE | probe clean | probe augmented | rel. latent dist: {head} | train s |",
        "|---|---|---|---|" + "---|" * len(ops) + "---|",
    ]
    for name, r in results.items():
        dists = " | ".join(f"{r[f'dist_rel/{o}']:.3f}" for o in ops)
        rows.append(
            f"| {name} | {r['recon/mse']:.4f} | {r['probe/accuracy']:.3f} "
            f"| {r['probe/accuracy_augmented']:.3f} | {dists} | {r['train_seconds']:.0f} |"
        )
    rows += ["", f"| method | code pair dist | raw latent dist: {head} |", "|---|---|" + "---|" * len(ops)]
    for name, r in results.items():
        dists = " | ".join(f"{r[f'dist/{o}']:.3f}" for o in ops)
        rows.append(f"| {name} | {r['dist/pairs']:.3f} | {dists} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from nonvae.augment import Augmentation
    from nonvae.config import load_config

    p = benchmark_parser(__doc__, "results/augment.json", "JSON file; run dirs and the .md go beside it")
    p.add_argument("--budget-steps", type=int, default=1000, help="training steps per method (batch 64)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--finetune-steps", type=int, default=0, help="also fine-tune the baseline with augment")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--probe-train", type=int, default=5000, help="training images the linear probe fits on")
    p.add_argument("--test-images", type=int, default=5000, help="test images every metric is scored on")
    p.add_argument("--dist-images", type=int, default=1000, help="test images for the latent distances")
    args = parse_args(p, argv)
    out = Path(args.out)
    runs = out.with_suffix("")
    runs.mkdir(parents=True, exist_ok=True)
    # the measured op set is the augment configs' P_T (every method is measured on the same ops)
    aug_cfg = load_config(CONFIGS / "ae_augment.yaml").regularizers.augment
    augmentation = Augmentation(aug_cfg.ops, (1, 32, 32))
    base = shared(args.budget_steps, args)
    results = {}
    for name in args.variants:
        print(f"== {name}", file=sys.stderr, flush=True)
        extra = acai_only(args.budget_steps) if "acai" in name else []
        results[name] = run_one(name, [*base, *extra, *args.set], runs / name, augmentation, args)
    if args.finetune_steps and "ae" in args.variants:
        print("== ae + augment fine-tuning", file=sys.stderr, flush=True)
        ft = [*shared(args.finetune_steps, args), f"init.from={runs / 'ae'}", *args.set]
        results[f"ae → augment fine-tune ({args.finetune_steps})"] = run_one(
            "augment_finetune", ft, runs / "ae_finetune", augmentation, args)
    header = (f"Augmentation benchmark (Fashion-MNIST 32×32, conv d = 16, latent 4×4×16): "
              f"{args.budget_steps} steps × batch 64 per method, Adam lr {args.lr}, seed {args.seed}; "
              f"ACAI only {acai_only(args.budget_steps)}. "
              f"P_T = {augmentation}. Relative distance = mean ||f(x) − f(t(x))|| / mean ||f(x) − f(x')|| "
              f"over {args.dist_images} test images (x' another test image); probe fitted on "
              f"{args.probe_train} clean training codes, scored on the first {args.test_images} test images, "
              f"clean and each under one op drawn from P_T.")
    write_outputs(out.parent, out.stem, header, table(results, augmentation.names),
                  {"budget_steps": args.budget_steps, "args": vars(args), "results": results})
    print(f"\nresults in {out.resolve()} (run dirs in {runs.resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
