"""Shared by the benchmark scripts: the common options, train one configured run, evaluate it, write tables."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def benchmark_parser(doc: str, out: str, out_help: str = "output folder") -> argparse.ArgumentParser:
    """A parser (described by ``doc``'s first line) with the options every benchmark takes.

    --out (default ``out``), --seed, --set (extra overrides for every run, repeatable) and --threads
    (torch CPU threads; see ``parse_args``).
    """
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", default=out, help=out_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra overrides for every run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    return p


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply --threads."""
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args


def schedule(steps: int, log_every: int = 100) -> list[str]:
    """Overrides for a fixed budget: ``steps`` steps, one evaluation (at the end), one checkpoint (at the end),
    no sample grids, progress bar or TensorBoard."""
    return [
        f"train.steps={steps}", f"train.eval_every={steps + 1}", f"train.checkpoint_every={steps}",
        "train.sample_every=100000000", f"train.log_every={log_every}", "train.progress=false",
        "train.tensorboard=false",
    ]


def train_and_evaluate(config: str | Path, run_dir: Path, overrides: list[str], *, fresh: bool = False,
                       extra: Callable[[object, object], dict] | None = None) -> tuple[object, dict]:
    """Train ``config`` with ``overrides`` into ``run_dir``, evaluate, save eval.json.

    An existing ``run_dir`` is resumed, or removed first with ``fresh`` (a resumed run would report no
    training time). ``extra(method, trainer)`` adds metrics of its own to ``nonvae eval``'s before eval.json
    is written. Returns the method (in eval mode) and the metrics plus ``train_seconds`` and
    ``eval_seconds`` (evaluation, ``extra`` included).
    """
    from nonvae.config import load_config
    from nonvae.evaluate.run import evaluate, save_metrics
    from nonvae.rundir import RunDir
    from nonvae.train import Trainer

    cfg = load_config(REPO / config if not Path(config).is_absolute() else config, overrides)
    if fresh and Path(run_dir).exists():
        shutil.rmtree(run_dir)
    started = time.time()
    trainer = Trainer(cfg, run_dir)
    trainer.fit()
    seconds = time.time() - started
    method = trainer.method.eval()
    metrics = evaluate(method, trainer.data, cfg, trainer.device)
    if extra is not None:
        metrics.update(extra(method, trainer))
    save_metrics(metrics, RunDir(run_dir).eval)
    return method, {**metrics, "train_seconds": seconds, "eval_seconds": time.time() - started - seconds}


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """rows of dicts -> Markdown; columns are (header, key, format)."""
    out = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            ok = isinstance(value, int | float) and value == value  # NaN: undefined
            cells.append(format(value, fmt) if ok else str(value if isinstance(value, str) else "-"))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def write_outputs(out: Path, name: str, header: str, table: str, payload: dict) -> None:
    """Write ``out``/``name``.md (header, blank line, table) and ``name``.json (payload); print the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(header + "\n\n" + table + "\n")
    (out / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(header + "\n\n" + table)


def comparison_report(run_dirs: list[Path], out_html: Path, table_md: str) -> None:
    """The benchmark's HTML comparison (never fails the benchmark: a warning instead)."""
    import sys

    from nonvae.report import write_comparison

    try:
        write_comparison(run_dirs, out_html, table_md)
        print(f"comparison report: {out_html}")
    except Exception as exc:  # noqa: BLE001 - the numbers are already written
        print(f"warning: could not write {out_html}: {exc}", file=sys.stderr)
