"""Pictures: image grids (PNG via PIL), training curves and 2-D latent scatter plots.

Plots are drawn on ``matplotlib.figure.Figure`` objects directly instead of ``pyplot``: no global
figure registry (nothing leaks in long training runs, safe from worker threads) and no
interactive backend is ever selected, so this works on headless machines without ``MPLBACKEND``.
Every writer creates the parent folder and returns the path it wrote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | Path


def _to_numpy(images: Any) -> np.ndarray:
    """Images as a float numpy array in [-1, 1] (uint8 input is mapped from [0, 255])."""
    if hasattr(images, "detach"):
        images = images.detach().to("cpu")
        if images.dtype.is_floating_point:
            images = images.float()
        images = images.numpy()
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"images must be float in [-1, 1] or uint8, got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


def image_grid(images: Any, nrow: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one uint8 picture of shape (H, W, C), C = 1 (grey) or 3 (RGB).

    ``images`` is (N, C, H, W) -- laid out ``nrow`` images per row (default: a near-square
    grid), a short last row is filled with ``pad_value`` -- or (R, K, C, H, W) -- R rows of K
    images, e.g. one interpolation path per row; ``nrow`` is then ignored. A single (C, H, W)
    image is accepted too. Values in [-1, 1] map to 0..255; ``pad`` pixels of ``pad_value``
    (white by default, so black-background digits stay visibly separate) surround every image.
    """
    x = _to_numpy(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 5:
        rows, ncol = x.shape[:2]
        x = x.reshape(rows * ncol, *x.shape[2:])
    elif x.ndim == 4:
        if nrow is not None and nrow < 1:
            raise ValueError(f"nrow must be >= 1, got {nrow}")
        ncol = nrow if nrow is not None else max(1, math.ceil(math.sqrt(x.shape[0])))
        ncol = min(ncol, max(1, x.shape[0]))
        rows = math.ceil(x.shape[0] / ncol)
    else:
        raise ValueError(f"images must be (N, C, H, W) or (R, K, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if c not in (1, 3):
        raise ValueError(f"images need 1 (grey) or 3 (RGB) channels in dim -3, got {c} (shape {x.shape})")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")

    canvas = np.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=np.float32)
    for idx in range(n):
        r, k = divmod(idx, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        canvas[:, top : top + h, left : left + w] = x[idx]
    canvas = np.nan_to_num(canvas, nan=-1.0, posinf=1.0, neginf=-1.0)
    out = np.clip(np.rint((canvas + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def save_grid(images: Any, path: PathLike, nrow: int | None = None, scale: int = 2, pad: int = 1) -> Path:
    """Write :func:`image_grid` as a PNG, upscaled ``scale`` times with nearest neighbour.

    Nearest upscaling keeps small (28-32 px) images crisp in viewers that blur when zooming.
    """
    from PIL import Image

    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    grid = image_grid(images, nrow=nrow, pad=pad)
    if scale > 1:
        grid = np.repeat(np.repeat(grid, int(scale), axis=0), int(scale), axis=1)
    # uint8 (H, W) -> mode "L", (H, W, 3) -> "RGB" (the mode= argument is deprecated in Pillow 11)
    img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def _is_scalar(v: Any) -> bool:
    """A plottable number (bools and strings are metadata, not curves)."""
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def numeric_keys(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Scalar keys other than 'step' in first-seen order across all runs."""
    keys: dict[str, None] = {}
    for records in runs.values():
        for rec in records:
            for k, v in rec.items():
                if k != "step" and _is_scalar(v):
                    keys.setdefault(k, None)
    return list(keys)


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that hold ``key``; the row index stands in for a missing step."""
    xs, ys = [], []
    for i, rec in enumerate(records):
        v = rec.get(key)
        if _is_scalar(v):
            step = rec.get("step", i)
            xs.append(float(step) if _is_scalar(step) else float(i))
            ys.append(float(v))
    return np.asarray(xs), np.asarray(ys)


def _save_figure(fig: Any, path: PathLike, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_runs(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    path: PathLike,
    keys: Sequence[str] | None = None,
    title: str = "training curves",
    logy: bool = False,
) -> Path:
    """One subplot per metric key, one line per run (``runs`` maps run name -> metrics.jsonl rows).

    ``keys`` defaults to every scalar key found (except 'step'). Sparse series (evaluation
    metrics logged every few thousand steps) get markers so single points stay visible;
    non-finite values leave gaps. ``logy`` puts positive panels spanning over a decade on a log scale.
    """
    from matplotlib.figure import Figure

    keys = list(keys) if keys is not None else numeric_keys(runs)
    if not keys:
        raise ValueError("no scalar metrics to plot (records need numeric keys besides 'step')")
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, keys, strict=False):
        all_ys = []
        for name, records in runs.items():
            xs, ys = _series(records, key)
            if len(xs) == 0:
                continue
            ax.plot(xs, ys, label=name, marker="o" if len(xs) <= 30 else None, markersize=3, linewidth=1.2)
            all_ys.append(ys)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        if not all_ys:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        ys = np.concatenate(all_ys)
        ys = ys[np.isfinite(ys)]
        if logy and len(ys) and ys.min() > 0 and ys.max() / ys.min() > 20:  # narrow ranges read better linear
            ax.set_yscale("log")
        ax.legend(fontsize="small")
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return _save_figure(fig, path)


def plot_curves(
    records: Sequence[Mapping[str, Any]],
    keys: Sequence[str] | None,
    path: PathLike,
    title: str = "training curves",
    label: str = "run",
    logy: bool = False,
) -> Path:
    """Curves of one run's metrics.jsonl rows, one subplot per key (see :func:`plot_runs`)."""
    return plot_runs({label: records}, path, keys=keys, title=title, logy=logy)


def scatter_latents(
    z2d: Any,
    labels: Any | None,
    path: PathLike,
    title: str = "latent space",
    xlabel: str = "z[0]",
    ylabel: str = "z[1]",
) -> Path:
    """Scatter 2-D latents coloured by class: a legend up to 20 classes, a colorbar beyond.

    Points are small, semi-transparent and rasterised so 60,000-point plots stay readable and
    the file stays small.
    """
    from matplotlib.figure import Figure

    if hasattr(z2d, "detach"):
        z2d = z2d.detach().cpu().float().numpy()
    z = np.asarray(z2d, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"scatter_latents needs (N, 2) latents, got shape {tuple(z.shape)}; project first")
    if labels is not None:
        if hasattr(labels, "detach"):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(z):
            raise ValueError(f"{len(labels)} labels for {len(z)} points")

    n = len(z)
    size = 12.0 if n <= 1000 else 4.0 if n <= 10000 else 1.5
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.subplots()
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=size, alpha=0.6, linewidths=0, rasterized=True)
    else:
        classes = np.unique(labels)
        if len(classes) <= 20:
            import matplotlib

            cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
            for i, cls in enumerate(classes):
                m = labels == cls
                ax.scatter(
                    z[m, 0],
                    z[m, 1],
                    s=size,
                    alpha=0.7,
                    linewidths=0,
                    color=cmap(i),
                    label=str(cls),
                    rasterized=True,
                )
            ax.legend(title="class", markerscale=8 / math.sqrt(size), fontsize="small", loc="best")
        else:
            codes = np.unique(labels, return_inverse=True)[1] if labels.dtype.kind not in "iuf" else labels
            sc = ax.scatter(
                z[:, 0], z[:, 1], c=codes, s=size, alpha=0.7, linewidths=0, cmap="viridis", rasterized=True
            )
            fig.colorbar(sc, ax=ax, label="class")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.2)
    return _save_figure(fig, path)


__all__ = ["image_grid", "plot_curves", "plot_runs", "save_grid", "scatter_latents"]
