"""Baseline AE vs ACAI on the lines benchmark at the same CPU budget, over several seeds.

Trains both methods from configs/lines/{ae,acai}.yaml with the same CPU schedule for each seed
(learning rate, width, batch, steps, gradient clipping; only ACAI's own lambda warm-up differs),
evaluates Mean Distance and Smoothness exactly as ``nonvae eval`` does, and writes a Markdown table
(mean and min-max over the seeds, and the ACAI / baseline ratio of the means), JSON, and the
interpolation grids of the first seed to --out. Run directories are --out/seed<S>/{ae,acai}; a
finished one (its benchmark.json, same overrides) is reused and an unfinished one resumed, so more
seeds can be added later and a second call with other --acai-set values can reuse the baselines
(pass --acai-out to keep those ACAI runs apart).

    python benchmarks/lines.py --budget-steps 1500 --seeds 0,1,2 --threads 1 --out results/lines
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import comparison_report, train_and_evaluate  # noqa: E402

# The CPU schedule, identical for both methods (the paper's 1e-4 needs ~2^24 samples). Without
# clipping an early 4,000-step ACAI run diverged (all losses 10^3-10^6 as lambda neared 0.4).
# fp32 for both: the lines/ae config's precision is auto (bf16 autocast on CPUs with native bf16), and
# ACAI under bf16 ended worse on every metric than in fp32 (docs/benchmarks/throughput.md, "bf16 quality on lines").
SHARED = ["train.lr=1e-3", "train.grad_clip=1.0", "train.precision=fp32", "train.log_every=100",
          "train.checkpoint_every=1000", "train.sample_every=1000000"]
# ACAI's own schedule: lambda ramps from 0 to its value (0.5) over the first steps.
ACAI_ONLY = ["regularizers.acai.warmup_steps=1000"]
METRICS = ("lines/mean_distance", "lines/smoothness", "recon/mse")


# overrides that only change what is shown while a run trains (not what it trains or measures)
DISPLAY_ONLY = ("train.report", "train.progress", "train.tensorboard")


def settings(overrides: list[str]) -> dict[str, str]:
    """What a list of ``key=value`` overrides sets: the last value of each key wins, display-only keys dropped.

    Two runs with the same settings are the same run, whatever the order the overrides came in.
    """
    out: dict[str, str] = {}
    for kv in overrides:
        key, _, value = kv.partition("=")
        if key.strip() not in DISPLAY_ONLY:
            out[key.strip()] = value.strip()
    return out


def run_one(name: str, budget: int, run_dir: Path, extra: list[str], seed: int, acai_extra: list[str]) -> dict:
    overrides = [*SHARED, f"train.steps={budget}", f"train.eval_every={budget + 1}", f"seed={seed}", *extra]
    if name == "acai":
        overrides += [*ACAI_ONLY, *acai_extra]
    done = run_dir / "benchmark.json"  # a finished run with the same settings is not trained again
    if done.is_file():
        cached = json.loads(done.read_text())
        if settings(cached.get("overrides") or []) == settings(overrides):
            return {k: (math.nan if v is None else v) for k, v in cached.items()}
    _, metrics = train_and_evaluate(f"configs/lines/{name}.yaml", run_dir, overrides)
    result = {**metrics, "overrides": overrides}
    done.write_text(json.dumps(result, indent=1).replace("NaN", "null") + "\n")
    return result


def save_grid_of(run_dir: Path, png: Path) -> None:
    """The interpolation grid of a finished run (8 fixed test pairs x 16 steps)."""
    from nonvae.data.lines import lines_test_pairs
    from nonvae.pipeline import interpolate, load
    from nonvae.viz import save_grid

    xa, xb, _, _ = lines_test_pairs(8)
    save_grid(interpolate(load(run_dir), xa, xb, 16).cpu(), png)


def _fmt(value: float, scale: float = 1.0, spec: str = ".3f") -> str:
    return "undefined" if value != value else format(value * scale, spec)


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, min and max of per-seed values (NaN if any is undefined)."""
    if any(v != v for v in values):
        return {"mean": math.nan, "min": math.nan, "max": math.nan}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def _cell(values: list[float], scale: float = 1.0, spec: str = ".3f") -> str:
    s = summarize(values)
    if len(values) == 1 or s["mean"] != s["mean"]:
        return _fmt(s["mean"], scale, spec)
    return f"{_fmt(s['mean'], scale, spec)} ({_fmt(s['min'], scale, spec)}–{_fmt(s['max'], scale, spec)})"


def table(results: dict[str, list[dict]]) -> tuple[str, dict[str, float]]:
    """Markdown (mean and min–max over seeds) and the ACAI / baseline ratios of the means."""
    rows = [
        "| method | Mean Distance (×10⁻³) | Smoothness | recon MSE | train time (s) |",
        "|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        col = {k: [r[k] for r in runs] for k in (*METRICS, "train_seconds")}
        rows.append(f"| {name} | {_cell(col['lines/mean_distance'], 1e3)} | {_cell(col['lines/smoothness'])} "
                    f"| {_cell(col['recon/mse'], spec='.4f')} | {_cell(col['train_seconds'], spec='.0f')} |")
    means = {name: {k: summarize([r[k] for r in runs])["mean"] for k in METRICS} for name, runs in results.items()}
    ratio = {k: means["acai"][k] / means["ae"][k] if means["ae"][k] else math.nan for k in METRICS}
    rows.append(f"| ACAI / baseline (ratio of means) | {_fmt(ratio['lines/mean_distance'], spec='.2f')} "
                f"| {_fmt(ratio['lines/smoothness'], spec='.2f')} | {_fmt(ratio['recon/mse'], spec='.2f')} | |")
    if len(results["ae"]) > 1:
        per_seed = {k: [a[k] / b[k] if b[k] else math.nan for a, b in zip(results["acai"], results["ae"], strict=True)]
                    for k in METRICS[:2]}
        rows.append(f"| per-seed ratios | {', '.join(_fmt(v, spec='.2f') for v in per_seed[METRICS[0]])} "
                    f"| {', '.join(_fmt(v, spec='.2f') for v in per_seed[METRICS[1]])} | | |")
    return "\n".join(rows), ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-steps", type=int, default=1500, help="training steps per method (batch 64)")
    p.add_argument("--out", default="results/lines", help="output folder")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (the table shows mean and min–max)")
    p.add_argument("--set", action="append", default=[], help="extra overrides for both methods")
    p.add_argument("--acai-set", action="append", default=[],
                   help="extra overrides for ACAI only (its own schedule: regularizers.acai.*)")
    p.add_argument("--acai-out", default=None,
                   help="folder for the ACAI runs (default --out); baselines stay in --out, so an ablation "
                        "with other --acai-set values reuses them")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only", choices=["ae", "acai"], help="train just one method (e.g. two processes in "
                   "parallel); a later run without --only resumes both, evaluates and writes the table")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: comma-separated integers, got {args.seeds!r}")
    if not seeds:
        p.error("--seeds: at least one seed")
    if any(not s.startswith("regularizers.acai.") for s in args.acai_set):
        p.error("--acai-set: only ACAI's own settings (regularizers.acai.*); shared ones go in --set")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    acai_out = Path(args.acai_out) if args.acai_out else out
    out.mkdir(parents=True, exist_ok=True)
    acai_out.mkdir(parents=True, exist_ok=True)
    names = [args.only] if args.only else ["ae", "acai"]
    results: dict[str, list[dict]] = {name: [] for name in names}
    for seed in seeds:
        for name in names:
            base = acai_out if name == "acai" else out
            results[name].append(run_one(name, args.budget_steps, base / f"seed{seed}" / name, args.set, seed,
                                         args.acai_set))
    if args.only:
        return 0
    md, ratio = table(results)
    header = (f"Lines benchmark: {args.budget_steps} steps × batch 64 per method, seeds {seeds}, "
              f"shared overrides {SHARED + args.set}, ACAI only {ACAI_ONLY + args.acai_set}\n\n")
    both = all(ratio[k] < 1 for k in METRICS[:2])
    half = all(ratio[k] <= 0.5 for k in METRICS[:2])
    verdict = (f"ACAI / baseline (ratio of means over {len(seeds)} seed(s)): Mean Distance "
               f"{_fmt(ratio[METRICS[0]], spec='.2f')}, Smoothness {_fmt(ratio[METRICS[1]], spec='.2f')}; "
               f"ACAI beats the baseline on both: {'yes' if both else 'no'}; "
               f"both ratios <= 0.5: {'yes' if half else 'no'}")
    (acai_out / "lines.md").write_text(header + md + "\n\n" + verdict + "\n")
    (acai_out / "lines.json").write_text(json.dumps(
        {"budget_steps": args.budget_steps, "seeds": seeds, "ratio_of_means": ratio, "results": results},
        indent=1, default=str).replace("NaN", "null") + "\n")
    print(header + md)
    first = seeds[0]
    for name in names:
        base = acai_out if name == "acai" else out
        save_grid_of(base / f"seed{first}" / name, acai_out / f"interpolations_{name}.png")
    # (this also writes lines.md beside lines.html, with the same text)
    comparison_report([out / f"seed{first}" / "ae", acai_out / f"seed{first}" / "acai"], acai_out / "lines.html",
                      header + md + "\n\n" + verdict)
    print(f"\n{verdict}")
    print(f"results in {acai_out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
