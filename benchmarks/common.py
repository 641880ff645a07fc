"""Shared by the benchmark scripts: train one configured run, evaluate it, write tables."""

from __future__ import annotations

import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train_and_evaluate(config: str | Path, run_dir: Path, overrides: list[str]) -> tuple[object, dict]:
    """Train ``config`` with ``overrides`` into ``run_dir`` (resuming if present), evaluate, save eval.json."""
    from nonvae.config import load_config
    from nonvae.evaluate.run import evaluate, save_metrics
    from nonvae.train import Trainer

    cfg = load_config(REPO / config if not Path(config).is_absolute() else config, overrides)
    started = time.time()
    trainer = Trainer(cfg, run_dir)
    trainer.fit()
    seconds = time.time() - started
    method = trainer.method.eval()
    metrics = evaluate(method, trainer.data, cfg, trainer.device)
    save_metrics(metrics, Path(run_dir) / "eval.json")
    return method, {**metrics, "train_seconds": seconds}


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
