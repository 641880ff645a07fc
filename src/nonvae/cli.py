"""Non-variational autoencoders: train, eval, sample, interpolate, transfer, export, report, preprocess, configs.

User errors (NonvaeError) print one line on stderr and exit with status 2;
``--debug`` shows the traceback instead. Results (tables) go to stdout, messages through ``logging``
to stderr (``-q`` warnings only, ``-v`` more).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import typing
from pathlib import Path

from nonvae.errors import ConfigError, NonvaeError
from nonvae.limits import output_file
from nonvae.rundir import RunDir
from nonvae.threads import prefer_passive_openmp

log = logging.getLogger("nonvae")

MAX_MESSAGE = 2000

# before any command imports torch: idle OpenMP threads then sleep instead of spinning, which keeps a
# shared machine from collapsing in the seconds before the thread policy reacts (nonvae/threads.py)
prefer_passive_openmp()


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


def resolve_device(name: str):
    """'auto' -> cuda when available, else cpu; an unknown or unavailable device is a ConfigError (one line)."""
    import torch

    name = (name or "auto").strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r}: not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available in this torch build/machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise ConfigError(f"--device {name}: unsupported device type {device.type!r} (auto, cpu, cuda, cuda:N)")
    return device


# --------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from nonvae.config import load_config
    from nonvae.train import train

    overrides = list(args.set)
    if args.train_device is not None:  # --device wins over the config's train.device
        overrides.append(f"train.device={resolve_device(args.train_device)}")
    cfg = load_config(args.config, overrides)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.config)
    trainer = train(cfg, run_dir)
    if trainer.dist.is_main:  # the command's result: stdout, like eval's table
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
    # the samplers are compared for every method: runs saved before Hausdorff became the default say
    # eval.hausdorff: false only because it was; --set eval.hausdorff=false still turns it off
    overrides = ["eval.hausdorff=true", *args.set]
    cfg = from_dict(_Config, apply_overrides(to_dict(cfg), overrides))
    out = output_file(eval_output(run_dir, args.out))
    device = torch.device(args.device)
    method = load(run_dir, device)
    data = build_data(cfg.data, cfg.seed)
    sampler = None
    if cfg.eval.hausdorff:
        from nonvae.sampling import sampler_for

        sampler = sampler_for(method, run_dir, cfg, data=data)
    metrics = evaluate(method, data, cfg, device, sampler=sampler)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_metrics(metrics, out)
    print(format_table(metrics, title=f"{run_dir} ({cfg.method} on {cfg.data.name})"))
    log.info("wrote %s", out)
    return 0


def eval_output(run_dir: Path, out: str | None) -> Path:
    """Where ``nonvae eval`` writes: --out, else RUN_DIR/eval.json; a model folder's shipped eval.json
    (measured before export) is never overwritten: the new numbers go beside it, or to the working
    directory for a model inside the installed package."""
    from nonvae.resources import PRETRAINED

    if out:
        return Path(out)
    run = RunDir(run_dir)
    default = run.eval
    if run.checkpoints.is_dir() or not default.exists():
        return default
    if PRETRAINED in run_dir.resolve().parents:
        target = Path(f"eval_{run_dir.name}.json")
    else:
        target = default.with_suffix(".local.json")
    log.warning("%s holds the metrics shipped with this model; writing the new ones to %s instead", default, target)
    return target


def cmd_interpolate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from nonvae.data import build_data
    from nonvae.errors import ConfigError
    from nonvae.latent import interpolate, pick_pairs
    from nonvae.limits import check_memory
    from nonvae.pipeline import config_of, load, test_set_or_samples

    if args.pairs <= 0 or args.steps < 2:
        raise ConfigError("--pairs must be > 0 and --steps >= 2")
    out = output_file(args.out)
    png = output_file(args.png, "--png") if args.png is not None else None
    cfg = config_of(args.run_dir)
    c, size = cfg.data.channels, cfg.data.image_size
    # the decoded float32 images, their numpy copy and the compressed write's buffer
    check_memory(3 * 4 * args.pairs * (args.steps + 2) * c * size * size,
                 f"--pairs {args.pairs} x --steps {args.steps}")
    method = load(args.run_dir, args.device)
    test, note = test_set_or_samples(args.run_dir, lambda: build_data(cfg.data, cfg.seed).test)
    if note:
        log.warning("note: %s", note)
    ia, ib = pick_pairs(len(test), args.pairs, args.seed)
    a, b = test.batch(ia), test.batch(ib)
    dev = torch.device(args.device)
    da, db = a.get("domain"), b.get("domain")
    images = interpolate(method, a["x"].to(dev), b["x"].to(dev), args.steps,
                         None if da is None else da.to(dev), None if db is None else db.to(dev)).cpu()
    inputs = torch.stack([a["x"], b["x"]], 1)
    np.savez_compressed(out, images=images.numpy(), inputs=inputs.numpy())
    log.info("wrote %s: images %s, inputs %s", out, tuple(images.shape), tuple(inputs.shape))
    if png is not None:
        from nonvae.viz import save_grid

        save_grid(images, png)
        log.info("wrote %s", png)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from nonvae.model import Autoencoder
    from nonvae.viz import save_grid

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1 (got {args.n})")
    out = output_file(args.out)
    if out.suffix.lower() not in (".png", ".npz"):
        raise ConfigError(f"--out {out}: expected a .png or .npz file name")
    from nonvae.limits import check_memory
    from nonvae.pipeline import config_of

    cfg = config_of(args.run_dir)
    check_memory(3 * 4 * args.n * cfg.data.channels * cfg.data.image_size ** 2, f"--n {args.n}")
    model = Autoencoder.from_pretrained(args.run_dir, device=args.device)
    images = model.sample(args.n, seed=args.seed).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npz":
        np.savez_compressed(out, images=images.numpy())
    else:
        save_grid(images, out, nrow=max(1, int(round(args.n ** 0.5))))
    what = "N(0, I) codes (LTAE)" if model.sampler.kind == "normal" else \
        f"a {model.sampler.info.get('components')}-component Gaussian mixture fitted to training codes"
    log.info("wrote %s: %d samples from %s", out, args.n, what)
    return 0



def cmd_export(args: argparse.Namespace) -> int:
    from nonvae.export import export

    out = export(args.run_dir, args.out, inference_only=args.inference_only, samples=args.samples, half=args.half,
                 force=args.force)
    log.info("exported %s to %s", args.run_dir, out)
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (unless its help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        if isinstance(action.default, list) and not action.default:
            return text + " (default: none; repeatable)"
        return text + " (default: %(default)s)"


MAX_INT_OPTION = 2**63  # torch seeds and sizes are 64-bit: larger values fail deep inside with a traceback


def _int_option(text: str) -> int:
    """An integer option's value: a plain integer with |value| < 2**63 (its own range is checked later)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
    if not -MAX_INT_OPTION < value < MAX_INT_OPTION:
        raise argparse.ArgumentTypeError(f"{text[:40]}{'...' if len(text) > 40 else ''} is out of range")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other user error (``nonvae: error: ...``)."""

    def error(self, message: str) -> typing.NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"nonvae: error: {self.prog}: {text[:MAX_MESSAGE]}\n")


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    """--debug, -q, -v: on the top-level parser and again after each sub-command."""
    default = False if top else argparse.SUPPRESS  # a sub-command's flag never resets one given before it
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks for user errors (and debug messages)")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="more messages")


def _finish(sub: argparse.ArgumentParser) -> None:
    """What every sub-command shares: the common flags, --device auto, help text on every option."""
    sub.formatter_class = HelpFormatter
    _add_common(sub, top=False)
    for action in sub._actions:
        if action.type is int:
            action.type = _int_option
        if action.dest == "device":
            action.default = "auto"
            action.help = "torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N"
        elif action.dest == "seed" and not action.help:
            action.help = "random seed of what the command draws"
        elif action.dest == "run_dir" and not action.option_strings and not action.help:
            action.help = "a run directory, a model folder or a shipped model's name (see `nonvae configs`)"
        elif action.dest == "pairs" and not action.help:
            action.help = "test pairs to interpolate between"
        elif action.dest == "steps" and not action.help:
            action.help = "decoded steps per pair, ends included"
        elif action.dest == "out" and not action.help:
            action.help = "output folder"
        elif action.dest == "mode" and not action.help and action.choices:
            action.help = ("grid: remove/add/transfer grid; remove: attribute removed; interpolate: attribute "
                           "code from zero to the donors'" if "grid" in action.choices
                           else "one of: " + ", ".join(map(str, action.choices)))


def build_parser() -> argparse.ArgumentParser:
    from nonvae import __version__

    p = Parser(prog="nonvae", description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"nonvae {__version__}")
    _add_common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train (or resume) a configured method")
    t.add_argument("config", help="YAML config file or built-in name, e.g. lines/acai (see `nonvae configs`)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--run-dir", help="run directory (default: runs/<dataset>_<config name>)")
    t.add_argument("--device", dest="train_device", default=None, metavar="DEVICE",
                   help="auto, cpu, cuda, cuda:N (default: the config's train.device, auto unless set)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help=f"evaluate a run; writes RUN_DIR/{RunDir.eval.name} (or --out)")
    e.add_argument("run_dir")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override eval.* keys (eval.hausdorff is on unless set to false here)")
    e.add_argument("--out", help=f"JSON file to write (default: RUN_DIR/{RunDir.eval.name}; a model folder's "
                                 "shipped one is kept and the new metrics go beside it)")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("sample", help="decode new images from the model's sampler (GMM on codes; LTAE: N(0, I))")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0, help="the same seed gives the same samples")
    s.add_argument("--out", required=True, help="output .png grid (or .npz with the images)")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("interpolate", help="decode latent interpolations between test pairs")
    i.add_argument("run_dir")
    i.add_argument("--pairs", type=int, default=8)
    i.add_argument("--steps", type=int, default=16)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", required=True, help="output .npz (images (N, K, C, H, W), inputs (N, 2, C, H, W))")
    i.add_argument("--png", help="also write a grid picture")
    i.add_argument("--device", default="auto")
    i.set_defaults(func=cmd_interpolate)

    c = sub.add_parser("configs", help="list the built-in configs and the shipped pretrained models")
    c.set_defaults(func=cmd_configs)

    x = sub.add_parser("export", help="write a model folder in the Hugging Face Hub layout "
                                      f"({RunDir.config_json.name} + {RunDir.model_weights.name} + model card)")
    x.add_argument("run_dir")
    x.add_argument("--out", required=True)
    x.add_argument("--inference-only", action="store_true",
                   help="only the autoencoder's weights (no critic/discriminator): smaller, cannot resume training")
    x.add_argument("--samples", type=int, default=16,
                   help=f"test images stored in {RunDir.test_images.name} (0: none)")
    x.add_argument("--half", action="store_true", help="store float weights as float16 (half the size)")
    x.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
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
    for parser in sub.choices.values():
        _finish(parser)
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests and notebooks replace it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(args: argparse.Namespace) -> None:
    """Messages to stderr: INFO by default, WARNING with -q, DEBUG with -v/--debug."""
    level = logging.DEBUG if (args.verbose or args.debug) else logging.WARNING if args.quiet else logging.INFO
    logger = logging.getLogger("nonvae")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def _printable(text: str) -> str:
    """A message any stream can take: a non-UTF-8 file name's bytes shown as \\x escapes, not an error."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    try:
        if getattr(args, "device", None) is not None:
            args.device = str(resolve_device(args.device))
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `nonvae configs | head`: the reader left; stop quietly, as Unix tools do
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # the final flush goes here
        return 141
    except NonvaeError as exc:
        if args.debug:
            raise
        message = _printable(" ".join(str(exc).split()))  # always one line
        if len(message) > MAX_MESSAGE:  # a message quoting a huge value is cut, never printed whole
            message = message[: MAX_MESSAGE - 5] + " ..."
        print("nonvae: error: " + message, file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (full, read-only, permissions): the user's to fix
        if args.debug:
            raise
        where = exc.filename if exc.filename is not None else "nonvae"
        text = _printable(f"nonvae: error: {where}: {exc.strerror or ' '.join(str(exc).split())}")
        print(text[:MAX_MESSAGE], file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        msg = str(exc) or "interrupted"
        print(f"nonvae: {msg}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
