"""``nonvae report``: one self-contained HTML page for one or more runs or exported models.

This module collects (reads a run's files, decodes pictures from its model into RunPage objects);
:mod:`nonvae.report_html` renders them.

Why a single file: it can be mailed, attached to an issue or opened from a cluster's
scratch folder with no server, no network and no extra files. Every picture is a base64
PNG data URI, the CSS and the few lines of JavaScript (the interpolation explorer) are
inline, and the page never references a URL.

The page holds, per run: the resolved config (collapsible), reconstructions and interpolation
grids decoded at report time from the loaded model on the run's test set (the latest
``samples/*.png`` when the model or its data cannot be loaded), an interpolation explorer (a
pair picker and an alpha slider over precomputed frames), add/remove/transfer grids for
split (disentanglement) backbones and a latent scatter plot for 2-D codes; across runs: the
evaluation metrics side by side with the best value per row marked, and the training curves
overlaid.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nonvae.config import transform_of
from nonvae.errors import CheckpointError, ConfigError, NonvaeError
from nonvae.report_html import best_of, markdown_html, render_html  # noqa: F401  (re-exported)
from nonvae.rundir import RunDir
from nonvae.viz import numeric_keys

log = logging.getLogger(__name__)

PathLike = str | Path

THROUGHPUT_KEYS = ("steps_per_s", "images_per_s", "threads")
NOT_CURVES = ("skipped",)


# --------------------------------------------------------------------------- small helpers
def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 (H, W, 1|3) or (H, W) array as a PNG data URI."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def file_data_uri(path: Path) -> str:
    """An image file as a data URI (PNG unless the suffix says otherwise)."""
    mime = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def read_records(run_dir: Path) -> list[dict]:
    """metrics.jsonl rows; a torn last line (a run being written) is skipped, not fatal."""
    path = RunDir(run_dir).metrics
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_meta(run_dir: Path) -> dict[str, dict]:
    """What each eval.json key means (its ``_meta`` section: direction, reference); {} when absent."""
    from nonvae.metrics import META

    try:
        meta = json.loads(RunDir(run_dir).eval.read_text(encoding="utf-8")).get(META)
    except (OSError, json.JSONDecodeError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in meta.items() if isinstance(v, dict)} if isinstance(meta, dict) else {}


def read_metrics(run_dir: Path, records: Sequence[dict]) -> tuple[dict[str, float], str]:
    """eval.json, else the latest periodic evaluation in metrics.jsonl; with a note on the source."""
    path = RunDir(run_dir).eval
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            # null = not measurable (e.g. smoothness of a degenerate path): keep the row, shown as n/a
            return {k: float(v) if _is_number(v) else math.nan for k, v in data.items()
                    if _is_number(v) or v is None}, path.name
        except (OSError, json.JSONDecodeError, ValueError) as exc:
            return {}, f"{path.name} unreadable ({exc})"
    evals = [r for r in records if r.get("kind") == "eval"]
    if evals:
        last = evals[-1]
        metrics = {k: float(v) for k, v in last.items() if k not in ("step", "kind") and _is_number(v)}
        return metrics, f"periodic evaluation at step {last.get('step')} (quick: test subset)"
    return {}, "not evaluated yet (run `nonvae eval RUN_DIR`)"


# --------------------------------------------------------------------------- pictures
@dataclass
class Picture:
    """One embedded image with a caption; ``pixelated`` images are small samples scaled up by CSS."""

    title: str
    uri: str
    caption: str = ""
    width: int | None = None  # display width in CSS pixels
    pixelated: bool = True
    native: int | None = None  # the image's own width in pixels (grids: for side-by-side upscaling)


def _display_scale(width: int, target: int = 900, cap: int = 4) -> int:
    return int(max(1, min(cap, target // max(width, 1))))


def grid_picture(images: Any, title: str, caption: str = "", target: int = 900) -> Picture:
    """An image grid (see viz.image_grid) at native resolution, displayed enlarged without blur."""
    from nonvae.viz import image_grid

    grid = image_grid(images)
    return Picture(title, png_data_uri(grid), caption, grid.shape[1] * _display_scale(grid.shape[1], target),
                   native=int(grid.shape[1]))


def _figure_picture(write: Callable[[Path], Any], title: str, caption: str = "") -> Picture:
    """Run a viz writer into a temporary PNG and embed it."""
    with tempfile.TemporaryDirectory(prefix="nonvae-report-") as tmp:
        path = Path(tmp) / "figure.png"
        write(path)
        return Picture(title, file_data_uri(path), caption, None, pixelated=False)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def model_pictures(method, test, device: torch.device, n_recon: int = 8, n_pairs: int = 6,
                   steps: int = 16) -> tuple[list[Picture], list[dict]]:
    """Reconstructions, an interpolation grid and the explorer's frames, decoded now from the model."""
    from nonvae.latent import interpolate, pick_pairs, reconstruct
    from nonvae.viz import image_grid

    pictures: list[Picture] = []
    n = min(n_recon, len(test))
    batch = _to_device(test.batch(torch.arange(n)), device)
    recon = reconstruct(method, batch["x"], batch.get("domain"))
    pictures.append(grid_picture(torch.stack([batch["x"].float(), recon]).cpu(), "Reconstructions",
                                 f"top: the first {n} test images; bottom: their reconstructions"))

    ia, ib = pick_pairs(len(test), n_pairs)
    a, b = _to_device(test.batch(ia), device), _to_device(test.batch(ib), device)
    frames = interpolate(method, a["x"], b["x"], steps, a.get("domain"), b.get("domain")).float().cpu()
    pictures.append(grid_picture(frames, "Interpolations",
                                 f"{len(ia)} test pairs, one per row: {steps} codes (1−α)·z_A + α·z_B, "
                                 "α = 0 … 1, decoded (endpoints are reconstructions)"))
    h = frames.shape[-2]
    explorer = []
    for p in range(len(ia)):
        explorer.append({
            "label": f"pair {p + 1}: test #{int(ia[p])} → #{int(ib[p])}",
            "a": png_data_uri(image_grid(a["x"][p].float().cpu(), pad=0)),
            "b": png_data_uri(image_grid(b["x"][p].float().cpu(), pad=0)),
            "frames": [png_data_uri(image_grid(frames[p, k], pad=0)) for k in range(steps)],
            "size": int(h),
        })
    return pictures, explorer


@torch.no_grad()
def disentangle_pictures(method, test, device: torch.device, n: int = 6) -> list[Picture]:
    """Remove / add / transfer the attribute with a split backbone (domain A = 1 has the attribute)."""
    from nonvae.latent import backbone_of, decode_parts, split_codes

    if not hasattr(backbone_of(method), "encode_parts") or "domain" not in test.extras:
        return []
    domain = test.extras["domain"].float().reshape(-1)
    idx_a = torch.nonzero(domain > 0.5).flatten()
    idx_b = torch.nonzero(domain <= 0.5).flatten()
    n = min(n, len(idx_a), len(idx_b))
    if n < 1:
        return []
    a = _to_device(test.batch(idx_a[:n]), device)
    b = _to_device(test.batch(idx_b[:n]), device)
    ca, aa = split_codes(method, a["x"], a["domain"])
    cb, _ = split_codes(method, b["x"], b["domain"])
    donor = torch.roll(torch.arange(n, device=aa.device), 1) if n > 1 else torch.arange(n, device=aa.device)

    def dec(content: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
        return decode_parts(method, content, attribute)

    xa, xb = a["x"].float(), b["x"].float()
    removed = dec(ca, torch.zeros_like(aa))
    added = dec(cb, aa)
    moved = dec(ca, aa[donor])
    return [
        grid_picture(torch.stack([xa, dec(ca, aa), removed]).cpu(), "Remove the attribute",
                     "domain A (has the attribute): input / reconstruction / attribute code zeroed"),
        grid_picture(torch.stack([xb, xa, added]).cpu(), "Add the attribute",
                     "domain B input / donor from A / B's content with the donor's attribute code"),
        grid_picture(torch.stack([xa, xa[donor], moved]).cpu(), "Transfer between donors",
                     "domain A input / another A donor / input's content with the donor's attribute code"),
    ]


@torch.no_grad()
def latent_pictures(method, test, device: torch.device, limit: int = 2000, batch_size: int = 256) -> list[Picture]:
    """The latent scatter for 2-D codes (e.g. LTAE), coloured by class when the data has labels."""
    from nonvae.latent import backbone_of, encode_all
    from nonvae.viz import scatter_latents

    numel = math.prod(getattr(backbone_of(method), "latent_shape", (0,)))
    if numel != 2:
        return []
    n = min(limit, len(test))
    z, _ = encode_all(method, test, device, batch_size, recon=False, limit=n)
    labels = None if test.labels is None else test.labels[:n].numpy()
    title = f"2-D latent codes of {n} test images" + (" by class" if labels is not None else "")
    return [_figure_picture(lambda p: scatter_latents(z, labels, p, title=title, xlabel="z[0] (code units)",
                                                      ylabel="z[1] (code units)"),
                            "Latent space", "every point is one test image's code")]


def sample_file_pictures(run_dir: Path) -> list[Picture]:
    """The latest training-time sample grids (used when the model cannot be rebuilt)."""
    out = []
    run = RunDir(run_dir)
    for kind, title in (("recon", "Reconstructions"), ("interp", "Interpolations")):
        file = run.latest_grid(kind)
        if file is not None:
            from PIL import Image

            with Image.open(file) as img:
                width = img.width
            out.append(Picture(f"{title} (from training)", file_data_uri(file),
                               f"{file.relative_to(run.path)}, written during training", width))
    return out


def curve_pictures(runs: Mapping[str, Sequence[dict]]) -> list[Picture]:
    """Training losses (one panel per loss, runs overlaid), periodic evaluation metrics, throughput."""
    from nonvae.viz import plot_runs

    train = {name: [r for r in rows if r.get("kind", "train") == "train"] for name, rows in runs.items()}
    train = {k: v for k, v in train.items() if v}
    evals = {name: [r for r in rows if r.get("kind") == "eval"] for name, rows in runs.items()}
    evals = {k: v for k, v in evals.items() if v}
    pictures = []
    if train:
        keys = [k for k in numeric_keys(train) if k not in THROUGHPUT_KEYS and k not in NOT_CURVES]
        if keys:
            pictures.append(_figure_picture(
                lambda p: plot_runs(train, p, keys=keys, title="Training losses per step (dimensionless)",
                                    logy=True),
                "Training losses", "one panel per loss term, one line per run; x: training step"))
        tkeys = [k for k in THROUGHPUT_KEYS if any(k in r for rows in train.values() for r in rows)]
        if tkeys:
            pictures.append(_figure_picture(
                lambda p: plot_runs(train, p, keys=tkeys, title="Throughput (steps/s, images/s; all ranks)"),
                "Throughput", "training speed since the (re)start, averaged"))
    if evals:
        keys = numeric_keys(evals)
        if keys:
            pictures.append(_figure_picture(
                lambda p: plot_runs(evals, p, keys=keys, title="Periodic evaluation (quick: test subset)"),
                "Periodic evaluation", "metrics measured during training; x: training step"))
    return pictures


# --------------------------------------------------------------------------- one run
@dataclass
class RunPage:
    """Everything the page shows about one run directory or exported model."""

    path: Path
    name: str
    kind: str = "run"  # run | export
    config_text: str = ""
    summary: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str = ""
    records: list[dict] = field(default_factory=list)
    meta: dict[str, dict] = field(default_factory=dict)  # eval.json's _meta: what each metric key means
    pictures: list[Picture] = field(default_factory=list)
    explorer: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_key: str = ""  # what the metrics are measured on (compare.data_key): runs are ranked within a key
    data_label: str = ""
    pairs_from: str = ""  # the test images the interpolation pairs were drawn from (same = same pairs)


def _trained_steps(path: Path) -> int | None:
    from nonvae.checkpoint import read_state
    from nonvae.pipeline import checkpoint_dir_of

    try:
        return int(read_state(checkpoint_dir_of(path)).get("step"))
    except (NonvaeError, OSError, TypeError, ValueError):
        return None


def _test_images(path: Path, cfg, page: RunPage):
    """The run's test set; for a model folder whose data is not on this machine, its samples.npz."""
    from nonvae.data import build_data
    from nonvae.pipeline import test_set_or_samples

    test, note = test_set_or_samples(path, lambda: build_data(cfg.data, cfg.seed).test)
    if note:  # short: the long reason (which files are missing) is not what a reader of the report needs
        page.notes.append(f"Pictures use the {len(test)} test images stored with the model "
                          f"({cfg.data.name} is not on this machine).")
    return test


def collect_run(path: Path, name: str, device: torch.device | str = "cpu",
                preloaded: tuple[Any, Any] | None = None, pairs: int = 6, steps: int = 16) -> RunPage:
    """Read a run's files and decode its pictures; ``preloaded`` = (method, data) skips loading."""
    import yaml

    from nonvae.config import to_dict
    from nonvae.pipeline import config_of

    device = torch.device(device)
    cfg = config_of(path)  # raises CheckpointError for a folder that is neither a run nor an export
    records = read_records(path)
    is_export = RunDir(path).is_export
    page = RunPage(path=path, name=name, kind="export" if is_export else "run", records=records)
    config_file = RunDir(path).config
    page.config_text = (config_file.read_text(encoding="utf-8") if config_file.is_file()
                        else yaml.safe_dump(to_dict(cfg), sort_keys=False))
    page.metrics, page.metrics_source = read_metrics(path, records)
    page.meta = read_meta(path)
    from nonvae.compare import data_key, data_label

    page.data_key, page.data_label = data_key(cfg), data_label(cfg)
    regs = [k for k, v in cfg.regularizers.items() if v is not None]
    trained = _trained_steps(path)
    page.summary = {
        "kind": "exported model" if is_export else "run directory",
        "method": cfg.method,
        "data": f"{cfg.data.name} ({cfg.data.channels}×{cfg.data.image_size}×{cfg.data.image_size})",
        "backbone": cfg.model.backbone + (f" + {transform_of(cfg)} transform" if transform_of(cfg) != "none"
                                          else ""),
        "regularizers": ", ".join(regs) or "none",
        "steps trained": f"{trained} of {cfg.train.steps}" if trained is not None else "unknown",
        "metrics from": page.metrics_source,
        "path": str(path),
    }

    try:
        if preloaded is not None:
            method, data = preloaded
            test = data.test
        else:
            from nonvae.pipeline import load

            method = load(path, device)
            test = _test_images(path, cfg, page)
        was_training = method.training
        method.eval()
        try:
            pics, page.explorer = model_pictures(method, test, device, n_pairs=pairs, steps=steps)
            page.pairs_from = f"{test.name}:{len(test)}"
            page.pictures += pics
            if cfg.model.backbone == "split":
                page.pictures += disentangle_pictures(method, test, device)
            page.pictures += latent_pictures(method, test, device)
        finally:
            method.train(was_training)
    except Exception as exc:  # a missing dataset or an incompatible checkpoint still gets a report
        page.notes.append(f"Pictures not decoded from the model ({type(exc).__name__}: {exc}); "
                          "showing the latest training samples instead." )
        page.pictures += sample_file_pictures(path)
        if not page.pictures:
            page.notes.append("No sample pictures in this folder either.")
    return page


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Short column names: the folder name, with its parent when two runs share a name."""
    names = [p.name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.name}" for p in paths]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


# --------------------------------------------------------------------------- entry points
def write_report(run_dirs: Sequence[PathLike], out: PathLike, title: str | None = None,
                 device: torch.device | str = "cpu", table_md: str | None = None,
                 preloaded: Mapping[Path, tuple[Any, Any]] | None = None, pairs: int = 6,
                 steps: int = 16) -> Path:
    """Write the HTML report for ``run_dirs`` to ``out`` (atomically: a viewer never sees half a file).

    ``preloaded`` maps a run directory to its (method, data) already in memory (the trainer
    passes its own, so refreshing the report does not reload weights or data).
    """
    from nonvae.resources import model_path

    paths = [Path(p) if Path(p).exists() else model_path(p) for p in run_dirs]  # shipped names too
    if pairs < 1 or steps < 2:
        raise ConfigError(f"nonvae report: need pairs >= 1 and steps >= 2, got pairs={pairs}, steps={steps}")
    if not paths:
        raise NonvaeError("nonvae report: give at least one run directory or exported model folder")
    for p in paths:
        if not p.exists():
            raise CheckpointError(f"{p}: no such run directory or model folder")
    from nonvae.limits import check_memory

    # lower bound: the pairs' decoded float32 frames (at least 32 px a side, one channel), three copies
    check_memory(3 * 4 * pairs * (steps + 2) * 32 * 32, f"nonvae report --pairs {pairs} x --steps {steps}")
    pre = {Path(k).resolve(): v for k, v in (preloaded or {}).items()}
    names = unique_names(paths)
    pages = [collect_run(p, n, device, pre.get(p.resolve()), pairs, steps) for p, n in zip(paths, names, strict=True)]
    curves = curve_pictures({p.name: p.records for p in pages if p.records})
    if title is None:
        title = f"nonvae report: {pages[0].name}" if len(pages) == 1 else f"nonvae report: {len(pages)} runs"
    text = render_html(pages, curves, title, table_md)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def write_comparison(run_dirs: list[Path], out_html: Path, table_md: str | None,
                     title: str | None = None) -> Path:
    """For benchmark scripts: the Markdown table beside ``out_html`` (same name, .md) and one HTML
    report comparing the benchmark's runs with that table on top."""
    out_html = Path(out_html)
    if table_md:
        out_html.parent.mkdir(parents=True, exist_ok=True)
        out_html.with_suffix(".md").write_text(table_md.rstrip("\n") + "\n", encoding="utf-8")
    return write_report(run_dirs, out_html, title=title or f"nonvae benchmark: {out_html.stem}", table_md=table_md)


def default_report_path(first: PathLike) -> Path:
    """FIRST_RUN/report.html; the working directory's report.html for a model shipped inside the package."""
    from nonvae.resources import PRETRAINED, model_path

    folder = model_path(first)
    return Path(RunDir.report.name) if PRETRAINED in folder.resolve().parents else RunDir(folder).report


def cmd_report(args: argparse.Namespace) -> int:
    from nonvae.limits import output_file

    table_md = None
    if args.table is not None:
        if not Path(args.table).is_file():  # a FIFO would block the read forever
            raise ConfigError(f"--table {args.table}: not a readable file")
        try:
            table_md = Path(args.table).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not a UTF-8 text file"
            raise ConfigError(f"--table {args.table}: cannot read it ({why})") from None
    if args.out is None:
        args.out = default_report_path(args.run_dirs[0])
    args.out = output_file(args.out)
    out = write_report(args.run_dirs, args.out, title=args.title, device=args.device, table_md=table_md,
                       pairs=args.pairs, steps=args.steps)
    size = out.stat().st_size
    log.info("wrote %s (%.0f KiB, self-contained: open it in any browser)", out, size / 1024)
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``nonvae report`` (cli.py imports this module when it is present)."""
    r = subparsers.add_parser("report", help="one self-contained HTML report for runs and exported models")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories or exported model folders")
    r.add_argument("--out", default=None, help=f"HTML file to write (default: FIRST_RUN_DIR/{RunDir.report.name}; "
                                                f"./{RunDir.report.name} for shipped models)")
    r.add_argument("--title", help="page title")
    r.add_argument("--table", metavar="MD", help="a Markdown file (e.g. a benchmark table) to show on top")
    r.add_argument("--pairs", type=int, default=6, help="interpolation pairs (default 6)")
    r.add_argument("--steps", type=int, default=16, help="decoded steps per pair (default 16)")
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=cmd_report)


__all__ = ["add_parser", "write_comparison", "write_report"]
