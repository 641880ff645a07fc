"""Port vs default, each trained continuously in a process of its own (a cross-check of throughput.py's headline).

``benchmarks/throughput.py`` alternates windows of a few steps between nonvae's default and the port, so a change of
load hits both; this script instead runs each side alone and continuously, as a user would, one process after the
other (port, default, port, default, ...), at the thread count given, and reports the median of a few timed rounds:
the default with the short OpenMP waits the ``nonvae`` command sets, the port with torch's defaults.
Run it on a quiet machine: the two sides do not share windows, so load changes between processes move the ratio.

    python benchmarks/standalone.py --out results/standalone.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# config, px, batch (per domain for two-domain data), timed steps per round
ROWS = [("lines/acai", 32, 64, 10), ("attributes/disentangle", 32, 32, 20), ("celeba/disentangle", 128, 8, 4)]


def child(which: str, config: str, size: int, batch: int, steps: int, rounds: int, threads: int,
          overrides: list[str] | None = None, seconds: float = 0.0) -> dict:
    """Time ``rounds`` rounds of one side after warm-up; the median round.

    A round is ``steps`` steps, or as many more as fill ``seconds`` (the count is fixed by timing the warm-up, so
    every round of a process runs the same steps). ``overrides`` (``key=value``) change the default's config only.

    The default runs as the ``nonvae`` command does (short OpenMP waits, set before torch starts); the port with
    torch's defaults, as a user's script does.
    """
    if which == "default":
        from nonvae.threads import prefer_passive_openmp

        prefer_passive_openmp()
    import torch

    torch.set_num_threads(threads)
    precision = "fp32"  # the port's
    if which == "port":
        from nonvae.config import load_config
        from port import build_port
        from throughput import CONFIGS, synthetic_bundle

        cfg = load_config(CONFIGS / f"{config}.yaml", [f"data.image_size={size}"])
        bundle, images = synthetic_bundle(cfg, batch)
        torch.manual_seed(0)
        port = build_port(config, size, "shipped")
        raw = bundle.train.batch(0, batch)

        def step() -> None:
            port.step(raw)
    else:
        from throughput import DefaultSteps, _setup_default

        sets = dict(kv.split("=", 1) for kv in overrides or [])
        trainer, data, images, _ = _setup_default({"config": config, "size": size, "batch": batch, "device": "cpu",
                                                   "overrides": sets})
        step = DefaultSteps(trainer, data)
        precision = trainer.precision
    for _ in range(3):
        step()
    if seconds > 0:  # the warm-up's last steps say how many steps fill a round
        t = time.perf_counter()
        for _ in range(3):
            step()
        steps = max(steps, round(seconds / ((time.perf_counter() - t) / 3)))
    walls, cpus = [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        walls.append(images * steps / (time.perf_counter() - t))
        cpus.append(images * steps / (time.process_time() - c))
    return {"images_per_s": statistics.median(walls), "images_per_cpu_s": statistics.median(cpus),
            "threads": torch.get_num_threads(), "steps_per_round": steps, "precision": str(precision)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="configs (dataset/method)")
    p.add_argument("--pairs", type=int, default=2, help="port/default process pairs per config")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=0.0,
                   help="make each timed round last about this long (default: the row's fixed step count)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the default's config (e.g. train.precision=bf16); the port is unchanged")
    p.add_argument("--out", default="results/standalone.json")
    p.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for kv in args.set:
        if "=" not in kv:
            p.error(f"--set takes KEY=VALUE, got {kv!r}")
    if args.child:
        which, config, size, batch, steps, rounds = args.child
        print(json.dumps(child(which, config, int(size), int(batch), int(steps), int(rounds), args.threads,
                               args.set, args.seconds)))
        return 0
    rows = []
    for config, size, batch, steps in ROWS:
        if args.only and config not in args.only:
            continue
        runs: dict[str, list[dict]] = {"port": [], "default": []}
        for _ in range(args.pairs):
            for which in ("port", "default"):
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--seconds", str(args.seconds),
                       *(f"--set={kv}" for kv in args.set), "--child", which, config, str(size), str(batch),
                       str(steps), str(args.rounds)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:  # e.g. an unknown --set key: show the child's own one-line error
                    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                    print(f"standalone.py: the {which} process of {config} failed: {last}", file=sys.stderr)
                    return 2
                runs[which].append(json.loads(done.stdout.strip().splitlines()[-1]))
        pairs = list(zip(runs["port"], runs["default"], strict=True))
        ratios = [d["images_per_s"] / q["images_per_s"] for q, d in pairs]
        cpu = [d["images_per_cpu_s"] / q["images_per_cpu_s"] for q, d in pairs]
        rows.append({"config": config, "px": size, "overrides": args.set, "runs": runs, "ratio_per_pair": ratios,
                     "ratio_cpu_per_pair": cpu})
        print(f"{config:24s} {size:4d} px  port {[round(r['images_per_s']) for r in runs['port']]} img/s, default "
              f"{[round(r['images_per_s']) for r in runs['default']]} img/s, x {[round(r, 2) for r in ratios]}",
              flush=True)
    lines = ["| config | px | port img/s (per process) | default img/s | × port, per pair | × port in CPU time |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        port, default = (", ".join(str(round(x["images_per_s"])) for x in r["runs"][k]) for k in ("port", "default"))
        lines.append(f"| {r['config']} | {r['px']} | {port} | {default} | "
                     f"{', '.join(f'{x:.2f}' for x in r['ratio_per_pair'])} | "
                     f"{', '.join(f'{x:.2f}' for x in r['ratio_cpu_per_pair'])} |")
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "seconds": args.seconds, "overrides": args.set, "rows": rows},
                              indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
