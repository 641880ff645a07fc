"""Image grids, PNG writing and plots (Agg, no display needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nonvae.viz import image_grid, plot_curves, plot_runs, save_grid, scatter_latents


def is_png(path) -> bool:
    return path.stat().st_size > 100 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_flat_layout_shape_and_values():
    x = torch.linspace(-1, 1, 10 * 8 * 8).reshape(10, 1, 8, 8)
    g = image_grid(x, nrow=4, pad=1)
    assert g.dtype == np.uint8
    assert g.shape == (3 * 9 + 1, 4 * 9 + 1, 1)  # 10 images, 4 per row -> 3 rows
    assert g[0, 0, 0] == 255  # padding is white
    assert g[1, 1, 0] == 0  # first pixel of first image is -1
    default = image_grid(np.zeros((10, 3, 5, 5), dtype=np.float32), pad=0)
    assert default.shape == (3 * 5, 4 * 5, 3)  # near-square: ceil(sqrt(10)) = 4 per row


def test_grid_row_layout_shape():
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 5, 3, 6, 6)).astype(np.float32)
    g = image_grid(x, pad=2)
    assert g.shape == (2 * 8 + 2, 5 * 8 + 2, 3)
    np.testing.assert_array_equal(
        g[2:8, 2:8].transpose(2, 0, 1), np.rint((x[0, 0] + 1) * 127.5).astype(np.uint8)
    )
    np.testing.assert_array_equal(
        g[10:16, 2:8].transpose(2, 0, 1), np.rint((x[1, 0] + 1) * 127.5).astype(np.uint8)
    )


def test_grid_clips_and_rejects_bad_channels():
    g = image_grid(np.array([[[[-5.0, 5.0, np.nan]]]]), pad=0)
    assert g[0, :, 0].tolist() == [0, 255, 0]
    with pytest.raises(ValueError, match="channels"):
        image_grid(np.zeros((2, 2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        image_grid(np.zeros((4, 4), dtype=np.float32))


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_grid_png(tmp_path, channels, mode):
    x = torch.rand(6, channels, 7, 7) * 2 - 1
    path = save_grid(x, tmp_path / "sub" / "grid.png", nrow=3, scale=3)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == mode
        assert img.size == (3 * (3 * 8 + 1), 3 * (2 * 8 + 1))  # (width, height)
        arr = np.asarray(img)
    small = image_grid(x, nrow=3)
    np.testing.assert_array_equal(arr[::3, ::3].reshape(small.shape), small)


def test_plot_curves_and_runs(tmp_path):
    records = [
        {"step": s, "loss": 1.0 / (s + 1), "recon": 0.5 / (s + 1), "split": "train"} for s in range(50)
    ]
    records += [{"step": 49, "eval/probe/accuracy": 0.9, "ok": True}]
    path = plot_curves(records, None, tmp_path / "curves.png", title="test run")
    assert is_png(path)
    path = plot_curves(records, ["loss"], tmp_path / "loss.png", logy=True)
    assert is_png(path)
    other = [{"step": s, "loss": 2.0 / (s + 1)} for s in range(0, 50, 5)]
    path = plot_runs({"a": records, "b": other}, tmp_path / "runs.png")
    assert is_png(path)
    with pytest.raises(ValueError, match="no scalar"):
        plot_curves([{"step": 1, "split": "train"}], None, tmp_path / "none.png")


@pytest.mark.parametrize("n_classes", [3, 25])
def test_scatter_latents(tmp_path, n_classes):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 2))
    labels = rng.integers(0, n_classes, 200)
    path = scatter_latents(z, labels, tmp_path / f"scatter{n_classes}.png", title="z")
    assert is_png(path)
    assert is_png(scatter_latents(torch.from_numpy(z), None, tmp_path / "plain.png"))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        scatter_latents(rng.normal(size=(10, 3)), None, tmp_path / "bad.png")
