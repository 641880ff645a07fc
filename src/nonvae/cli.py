"""The ``nonvae`` command: train, eval, interpolate, export, preprocess, report.

User errors (NonvaeError) print one line on stderr and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nonvae.errors import NonvaeError


def default_run_dir(config: str) -> Path:
    path = Path(config)
    return Path("runs") / f"{path.parent.name}_{path.stem}" if path.parent.name else Path("runs") / path.stem


def format_table(rows: dict[str, dict[str, float]] | dict[str, float], title: str = "") -> str:
    """A plain-text table: metric per row, one column per run."""
    if rows and not isinstance(next(iter(rows.values())), dict):
        rows = {"value": rows}  # type: ignore[assignment]
    runs = list(rows)
    keys: list[str] = []
    for r in runs:
        keys += [k for k in rows[r] if k not in keys]
    width = max([len(k) for k in keys] + [6])
    colw = max([len(r) for r in runs] + [12])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  " + "  ".join(f"{r:>{colw}}" for r in runs))
    for k in keys:
        vals = []
        for r in runs:
            v = rows[r].get(k)
            vals.append(f"{v:>{colw}.6g}" if isinstance(v, int | float) else f"{'-':>{colw}}")
        lines.append(f"{k:<{width}}  " + "  ".join(vals))
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from nonvae.config import load_config
    from nonvae.train import train

    cfg = load_config(args.config, args.set)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.config)
    trainer = train(cfg, run_dir)
    if trainer.dist.is_main:
        print(f"trained {cfg.method} for {trainer.step} steps; run directory: {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from nonvae.config import Config as _Config
    from nonvae.config import apply_overrides, from_dict, to_dict
    from nonvae.data import build_data
    from nonvae.evaluate.run import evaluate, save_metrics
    from nonvae.pipeline import config_of, load
    from nonvae.resources import model_path

    run_dir = model_path(args.run_dir)
    cfg = config_of(run_dir)
    if args.set:
        cfg = from_dict(_Config, apply_overrides(to_dict(cfg), args.set))
    device = torch.device(args.device)
    method = load(run_dir, device)
    data = build_data(cfg.data, cfg.seed)
    metrics = evaluate(method, data, cfg, device)
    out = run_dir / "eval.json"
    save_metrics(metrics, out)
    print(format_table(metrics, title=f"{run_dir} ({cfg.method} on {cfg.data.name})"))
    print(f"wrote {out}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from nonvae.data import build_data
    from nonvae.errors import ConfigError
    from nonvae.pipeline import config_of, interpolate, load, test_set_or_samples

    if args.pairs <= 0 or args.steps < 2:
        raise ConfigError("--pairs must be > 0 and --steps >= 2")
    method = load(args.run_dir, args.device)
    cfg = config_of(args.run_dir)
    test, note = test_set_or_samples(args.run_dir, lambda: build_data(cfg.data, cfg.seed).test)
    if note:
        print(f"note: {note}", file=sys.stderr)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(test), generator=g)
    if len(idx) < 2 * args.pairs:
        idx = torch.randint(len(test), (2 * args.pairs,), generator=g)
    a = test.batch(idx[: args.pairs])
    b = test.batch(idx[args.pairs: 2 * args.pairs])
    dev = torch.device(args.device)
    da, db = a.get("domain"), b.get("domain")
    images = interpolate(method, a["x"].to(dev), b["x"].to(dev), args.steps,
                         None if da is None else da.to(dev), None if db is None else db.to(dev)).cpu()
    inputs = torch.stack([a["x"], b["x"]], 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images.numpy(), inputs=inputs.numpy())
    print(f"wrote {out}: images {tuple(images.shape)}, inputs {tuple(inputs.shape)}")
    if args.png:
        from nonvae.viz import save_grid

        save_grid(images, args.png)
        print(f"wrote {args.png}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nonvae.export import export

    out = export(args.run_dir, args.out, inference_only=args.inference_only, samples=args.samples, half=args.half)
    print(f"exported {args.run_dir} to {out}")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from nonvae.resources import config_names, config_summary, pretrained_names

    names = config_names()
    width = max(len(n) for n in names)
    print("built-in configs (nonvae train NAME):")
    for name in names:
        print(f"  {name:<{width}}  {config_summary(name)}")
    print("shipped models (nonvae.load(NAME), nonvae interpolate NAME ...): " + ", ".join(pretrained_names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nonvae", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a configured method")
    t.add_argument("config", help="YAML config file or built-in name, e.g. lines/acai (see `nonvae configs`)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--run-dir", help="run directory (default: runs/<dataset>_<config name>)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run; writes RUN_DIR/eval.json")
    e.add_argument("run_dir")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override eval.* keys")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("interpolate", help="decode latent interpolations between test pairs")
    i.add_argument("run_dir")
    i.add_argument("--pairs", type=int, default=8)
    i.add_argument("--steps", type=int, default=16)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", required=True, help="output .npz (images (N, K, C, H, W), inputs (N, 2, C, H, W))")
    i.add_argument("--png", help="also write a grid picture")
    i.add_argument("--device", default="cpu")
    i.set_defaults(func=cmd_interpolate)

    c = sub.add_parser("configs", help="list the built-in configs and the shipped pretrained models")
    c.set_defaults(func=cmd_configs)

    x = sub.add_parser("export", help="write a minimal model folder (config + weights + model card)")
    x.add_argument("run_dir")
    x.add_argument("--out", required=True)
    x.add_argument("--inference-only", action="store_true",
                   help="only the autoencoder's weights (no critic/discriminator): smaller, cannot resume training")
    x.add_argument("--samples", type=int, default=16, help="test images stored in samples.npz (0: none)")
    x.add_argument("--half", action="store_true", help="store float weights as float16 (half the size)")
    x.set_defaults(func=cmd_export)

    for _name, module in (("preprocess", "nonvae.preprocess"), ("report", "nonvae.report"),
                         ("transfer", "nonvae.transfer_cli")):
        try:
            mod = __import__(module, fromlist=["add_parser"])
        except ModuleNotFoundError as exc:  # optional command not installed; real import bugs still raise
            if exc.name != module:
                raise
            continue
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NonvaeError as exc:
        if args.debug:
            raise
        print("nonvae: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt as exc:
        msg = str(exc) or "interrupted"
        print(f"nonvae: {msg}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
