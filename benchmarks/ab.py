"""Interleaved A/B timing of one training-step change, in one process at one thread.

Two trainers of the same config on the same synthetic batch (``benchmarks/throughput.py``'s real trainer path),
A with ``--a`` overrides and B with ``--b``, step in alternating windows; the speed-up B over A is the ratio of
their median step times (wall and process CPU), overall and per round. Alternating windows in one process make the
ratio meaningful on a loaded machine, where absolute numbers are not.

    python benchmarks/ab.py lines/acai --a regularizers.acai.share_forward=false \
        --b regularizers.acai.share_forward=true
    python benchmarks/ab.py celeba/disentangle --size 128 --batch 8 --rounds 8 --steps 2 \
        --a-flag nonvae.nets:GROUP_FORM=0 --b-flag nonvae.nets:GROUP_FORM=1

``--a-flag`` / ``--b-flag`` set module-level switches (``module:NAME=0|1``) around each of that side's steps, for
code paths without a config key (e.g. ``nonvae.nets:GROUP_FORM``, the group-norm form of instance norm).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _parse(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


def _flags(items: list[str]) -> list[tuple[object, str, bool]]:
    import importlib

    out = []
    for item in items:
        target, _, value = item.partition("=")
        module, _, name = target.partition(":")
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            raise SystemExit(f"{module} has no {name}")
        out.append((mod, name, value.strip().lower() in ("1", "true", "on")))
    return out


def _set(flags: list[tuple[object, str, bool]]) -> None:
    for mod, name, value in flags:
        setattr(mod, name, value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="dataset/method, e.g. lines/acai")
    p.add_argument("--a", nargs="*", default=[], help="key=value overrides of variant A (the baseline)")
    p.add_argument("--b", nargs="*", default=[], help="key=value overrides of variant B")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64, help="per domain for two-domain data")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=3, help="steps per window")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--a-flag", nargs="*", default=[], help="module:NAME=0|1 switches set while A runs")
    p.add_argument("--b-flag", nargs="*", default=[], help="module:NAME=0|1 switches set while B runs")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)

    import torch

    from throughput import DefaultSteps, _median, _setup_default, _window

    torch.set_num_threads(args.threads)
    flags = {"A": _flags(args.a_flag), "B": _flags(args.b_flag)}
    steps = {}
    for name, pairs in (("A", args.a), ("B", args.b)):
        spec = {"config": args.config, "size": args.size, "batch": args.batch, "device": "cpu",
                "overrides": {"train.threads": args.threads, **_parse(pairs)}}
        _set(flags[name])
        torch.manual_seed(0)
        trainer, batch, images, _ = _setup_default(spec)
        step = DefaultSteps(trainer, batch)
        steps[name] = lambda step=step, f=flags[name]: (_set(f), step())
    device = torch.device("cpu")
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    rounds = []
    for r in range(args.rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        got = {name: _window(steps[name], args.steps, 1e9, device) for name in order}
        rounds.append(got)
    result = {"config": args.config, "size": args.size, "batch": args.batch, "threads": args.threads,
              "a": args.a + args.a_flag, "b": args.b + args.b_flag, "images_per_step": images, "rounds": rounds}
    for i, label in ((0, "wall"), (1, "cpu")):
        a, b = _median([r["A"] for r in rounds], i), _median([r["B"] for r in rounds], i)
        result[f"a_step_s_{label}"], result[f"b_step_s_{label}"] = a, b
        result[f"b_over_a_speed_{label}"] = a / b
        result[f"per_round_{label}"] = [_median([r["A"]], i) / _median([r["B"]], i) for r in rounds]
    a_label = " ".join(args.a + args.a_flag) or "(config)"
    b_label = " ".join(args.b + args.b_flag) or "(config)"
    print(f"{args.config} {args.size} px, {images} images/step, {args.threads} thread(s), {args.rounds} rounds "
          f"x {args.steps} steps; A {a_label} | B {b_label}")
    for label in ("wall", "cpu"):
        per = ", ".join(f"{x:.2f}" for x in result[f"per_round_{label}"])
        print(f"  {label}: A {1e3 * result[f'a_step_s_{label}']:.1f} ms/step, B "
              f"{1e3 * result[f'b_step_s_{label}']:.1f} ms/step, B speed-up x{result[f'b_over_a_speed_{label}']:.3f}"
              f" (per round {per}; median over rounds {statistics.median(result[f'per_round_{label}']):.3f})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
