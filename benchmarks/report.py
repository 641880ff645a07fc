"""A benchmark's comparison page: its Markdown table on top of one ``nonvae report`` over its runs.

Benchmark scripts call ``nonvae.report.write_comparison(run_dirs, out_html, table_md)`` at the end
(it writes the table as ``<out>.md`` and the HTML page beside it). This wrapper rebuilds the page for a
benchmark that has already run, e.g.

    python benchmarks/report.py --from results/lines --table results/lines/lines.md --out results/lines/report.html
    python benchmarks/report.py results/lines/ae results/lines/acai --out results/lines/report.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def find_runs(root: Path, depth: int = 2) -> list[Path]:
    """Run directories and exported models (folders holding config.yaml) up to ``depth`` levels below."""
    found = []
    for level in range(1, depth + 1):
        pattern = "/".join(["*"] * level) + "/config.yaml"
        found += [p.parent for p in root.glob(pattern) if "checkpoints" not in p.parts]
    return sorted(set(found))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="*", type=Path, help="run directories or exported model folders")
    p.add_argument("--from", dest="root", type=Path, help="use every run folder below this benchmark output")
    p.add_argument("--table", type=Path, help="the benchmark's Markdown table, shown on top")
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument("--title")
    args = p.parse_args(argv)

    from nonvae.errors import NonvaeError
    from nonvae.report import write_report

    runs = list(args.run_dirs) + (find_runs(args.root) if args.root else [])
    if not runs:
        p.error("give run directories or --from DIR (no folder with a config.yaml found)")
    table_md = args.table.read_text(encoding="utf-8") if args.table else None
    try:
        out = write_report(runs, args.out, title=args.title or f"nonvae benchmark: {args.out.stem}",
                           table_md=table_md)
    except NonvaeError as exc:
        print(f"benchmarks/report.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
