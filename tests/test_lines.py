"""The lines renderer and the ACAI interpolation metrics (Mean Distance, Smoothness)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nonvae.data.base import ImageSet
from nonvae.data.lines import LinesStream, lines_test_pairs, lines_test_set, render
from nonvae.errors import DataError
from nonvae.evaluate.lines import (
    evaluate_interpolations,
    mean_distance_and_smoothness,
    nearest_reference,
    reference_lines,
    smoothness_scores,
)

STEPS = 16


def _t(steps: int = STEPS) -> torch.Tensor:
    return torch.linspace(0, 1, steps).view(1, steps, 1, 1, 1)


def _cross_fade(x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
    """Pixel-space interpolation (P, K, 1, H, W) between two batches of images."""
    t = _t()
    return (1 - t) * x_a.unsqueeze(1) + t * x_b.unsqueeze(1)


def _fade_like(metrics: dict[str, float]) -> bool:
    """The band a pixel cross-fade of 256 random pairs falls in (measured on the official renderer: 6.4e-3 and 0.89)."""
    return 4e-3 <= metrics["lines/mean_distance"] <= 1e-2 and 0.8 <= metrics["lines/smoothness"] <= 0.95


# ---------------------------------------------------------------- renderer
#
# Expected images below are derived by hand from the official rule (brain-research/acai,
# lib/data.py, draw_line; restated in nonvae.data.lines' docstring), for size 32: centre
# (row, col) = (16, 16), radius r = 15, tip (16 - 15 sin t, 16 + 15 cos t); scan the axis with
# the larger extent from m0 to m1 (m0 < m1), shift the minor coordinates by -1, slope
# s = dminor / dmajor; scan line k = floor(m0) .. ceil(m1) - 1 has weight ceil(m0) - m0 if
# k < ceil(m0), else 1; on it the band starts at xs = n0 + (k - m0 - 0.5) s: pixel floor(xs)
# gets weight * (ceil(xs) - xs), pixels ceil(xs) .. floor(xs + 2) - 1 get weight, pixel
# floor(xs + 2) gets weight * frac(xs + 2); value = 2 * share - 1, background -1.

SQRT5 = math.sqrt(5.0)


def _blank(size: int = 32) -> torch.Tensor:
    return torch.full((size, size), -1.0, dtype=torch.float64)


def _assert_image(angle: float, expected: torch.Tensor) -> None:
    got = render([angle], dtype=torch.float64)[0, 0]
    bad = (got - expected).abs() > 1e-9
    assert not bad.any(), f"angle {angle}: pixels {bad.nonzero().tolist()[:6]} got {got[bad][:6].tolist()}"


def test_render_horizontal_by_hand() -> None:
    # t = 0: tip (16 - 15 sin 0, 16 + 15 cos 0) = (16, 31). Column extent 15 > row extent 0: scan
    # columns m0 = 16 .. m1 = 31, minor (row) start 16 - 1 = 15, slope 0. Columns k = 16..30,
    # weight 1; xs = 15 exactly: rows 15 and 16 fully covered (no partial pixels).
    expected = _blank()
    expected[15:17, 16:31] = 1.0
    _assert_image(0.0, expected)


def test_render_vertical_by_hand() -> None:
    # t = pi/2: tip (16 - 15, 16 + 15 cos(pi/2)) = (1, 16) (15 * 6e-17 vanishes next to 16). Row
    # extent 15 > 0: scan rows; the tip's row is smaller, so m0 = 1, m1 = 16; minor (column)
    # start 16 - 1 = 15, slope 0. Rows k = 1..15, weight 1, columns 15 and 16 fully covered.
    expected = _blank()
    expected[1:16, 15:17] = 1.0
    _assert_image(math.pi / 2, expected)


def test_render_45_degrees_by_hand() -> None:
    # t = pi/4: in float64 sin(pi/4) = 0.7071067811865475 < cos(pi/4) = 0.7071067811865476, so
    # the row extent 15 sin is (by one ulp) smaller than the column extent 15 cos: scan columns.
    assert math.sin(math.pi / 4) < math.cos(math.pi / 4)
    # m0 = 16, m1 = 16 + 15 / sqrt 2 = 26.61; rows from n0 = 16 - 1 = 15 with slope -1 (up-right).
    # Columns k = 16..26 (weight 1), xs = 15 + (k - 16.5)(-1) = 31.5 - k: row 31 - k gets 0.5,
    # row 32 - k gets 1, row 33 - k gets 0.5 -> values 0, 1, 0. The band is centred one row
    # below the line's true centre (the official -0.5 samples the previous column).
    expected = _blank()
    for k in range(16, 27):
        expected[31 - k, k], expected[32 - k, k], expected[33 - k, k] = 0.0, 1.0, 0.0
    _assert_image(math.pi / 4, expected)


def test_render_irrational_angle_by_hand() -> None:
    # t = atan(1/2): cos = 2/sqrt5, sin = 1/sqrt5, tip (16 - 3 sqrt5, 16 + 6 sqrt5) = (9.29, 29.42).
    # Column extent 13.42 > 6.71: scan columns m0 = 16 .. m1 = 29.42, rows from n0 = 15, slope
    # -3 sqrt5 / 6 sqrt5 = -0.5. Columns k = 16..29 (ceil(m1) - 1 = 29; the last one is only 0.42
    # inside the segment but keeps weight 1), xs = 15 - 0.5 (k - 16.5) = 23.25 - k/2:
    #   k even: xs = 23.25 - k/2 -> row 23 - k/2 gets 0.75 (0.5), 24 - k/2 gets 1, 25 - k/2 gets 0.25 (-0.5)
    #   k odd:  xs = 23.75 - (k+1)/2 -> row 23 - (k+1)/2 gets 0.25 (-0.5), next 1, next 0.75 (0.5)
    expected = _blank()
    for k in range(16, 30):
        top = 23 - k // 2 if k % 2 == 0 else 23 - (k + 1) // 2
        expected[top : top + 3, k] = torch.tensor([0.5, 1.0, -0.5] if k % 2 == 0 else [-0.5, 1.0, 0.5])
    _assert_image(math.atan(0.5), expected)
    # t = pi + atan(1/2): the same line through the centre, pointing down-left to the tip
    # (16 + 3 sqrt5, 16 - 6 sqrt5) = (22.71, 2.58). Scan columns from the tip: m0 = 16 - 6 sqrt5,
    # m1 = 16; rows from n0 = 16 + 3 sqrt5 - 1, slope -0.5, so again xs = n0 - 0.5 (k - m0 - 0.5)
    # = 23.25 - k/2 (n0 + m0 / 2 = 23). Columns k = 2..15; column 2 < ceil(m0) = 3 has the
    # partial weight w = 3 - m0 = 6 sqrt5 - 13 = 0.416: rows 22, 23, 24 get 0.75 w, w, 0.25 w.
    w = 6 * SQRT5 - 13
    expected = _blank()
    for k in range(3, 16):
        top = 23 - k // 2 if k % 2 == 0 else 23 - (k + 1) // 2
        expected[top : top + 3, k] = torch.tensor([0.5, 1.0, -0.5] if k % 2 == 0 else [-0.5, 1.0, 0.5])
    expected[22:25, 2] = torch.tensor([2 * 0.75 * w - 1, 2 * w - 1, 2 * 0.25 * w - 1], dtype=torch.float64)
    _assert_image(math.pi + math.atan(0.5), expected)


def test_render_shape_range_and_background() -> None:
    x = render(torch.tensor([0.0, 1.0, 2.0, 4.0, 6.0]))
    assert x.shape == (5, 1, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    # corners are far from any segment starting at the centre: pure background
    assert (x[:, :, [0, 0, -1, -1], [0, -1, 0, -1]] == -1).all()
    assert render([0.5], size=24).shape == (1, 1, 24, 24)
    assert torch.equal(render([0.5, 2.0], dtype=torch.float64).float(), render([0.5, 2.0]))


def test_render_pixels_on_the_line_are_bright_and_ink_is_the_scan_length() -> None:
    angles = torch.linspace(0, 2 * math.pi, 50, dtype=torch.float64)[:-1]
    x = render(angles, dtype=torch.float64)
    for theta, image in zip(angles.tolist(), x, strict=True):
        col = int(16 + 8 * math.cos(theta))
        row = int(16 - 8 * math.sin(theta))
        assert image[0, row - 1 : row + 2, col - 1 : col + 2].max() > 0.5, theta
    # each scan line carries 2 px of ink times its weight; the weights sum to ceil(m1) - m0,
    # between the major extent 15 max(|cos|, |sin|) and that plus 1
    ink = ((x + 1) / 2).sum(dim=(1, 2, 3))
    extent = 15 * torch.maximum(angles.cos().abs(), angles.sin().abs())
    assert ((ink >= 2 * extent - 1e-9) & (ink < 2 * (extent + 1))).all()


def test_render_angle_matters_and_is_nearly_continuous() -> None:
    x = render([0.0, math.pi, 1e-3, 2 * math.pi])
    assert (x[0] - x[1]).abs().max() > 1.5
    assert (x[0] - x[2]).abs().max() < 0.05
    assert torch.allclose(x[0], x[3], atol=1e-4)


def test_render_refuses_sizes_the_official_renderer_overruns() -> None:
    with pytest.raises(DataError, match="size >= 10"):
        render([0.0], size=8)
    with pytest.raises(DataError, match="finite"):
        render([float("nan")])


# ---------------------------------------------------------------- data sets


def test_stream_batches_depend_only_on_seed_step_rank() -> None:
    stream = LinesStream(size=32, seed=3)
    a, b = stream.batch(5, 8), LinesStream(size=32, seed=3).batch(5, 8)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["angle"], b["angle"])
    assert a["x"].shape == (8, 1, 32, 32) and a["angle"].shape == (8,)
    assert ((a["angle"] >= 0) & (a["angle"] < 2 * math.pi)).all()
    assert torch.equal(a["x"], render(a["angle"]))
    for other in (stream.batch(6, 8), stream.batch(5, 8, rank=1), LinesStream(seed=4).batch(5, 8)):
        assert not torch.equal(a["angle"], other["angle"])


def test_test_set_and_pairs_are_fixed() -> None:
    test = lines_test_set(40, seed=1)
    assert isinstance(test, ImageSet) and test.labels is None and test.shape == (1, 32, 32)
    assert torch.equal(test.images, lines_test_set(40, seed=1).images)
    assert torch.equal(test.images, render(test.extras["angle"]))
    assert torch.equal(LinesStream(seed=9).test_set(40, seed=1).images, test.images)
    x_a, x_b, a_a, a_b = lines_test_pairs(16, seed=5)
    again = lines_test_pairs(16, seed=5)
    assert torch.equal(x_a, again[0]) and torch.equal(a_b, again[3])
    assert x_a.shape == x_b.shape == (16, 1, 32, 32) and not torch.equal(a_a, a_b)


# ---------------------------------------------------------------- metrics


def test_nearest_reference_is_chunk_independent() -> None:
    refs = reference_lines()
    gen = torch.Generator().manual_seed(0)
    noise = 0.3 * torch.randn(150, 1, 32, 32, generator=gen)
    images = render(torch.rand(150, generator=gen) * 2 * math.pi) + noise
    d_small, a_small = nearest_reference(images, refs, chunk=7)
    d_all, a_all = nearest_reference(images, refs, chunk=10_000)
    assert torch.equal(d_small, d_all) and torch.equal(a_small, a_all)


def test_nearest_reference_finds_the_angle() -> None:
    angles = torch.tensor([0.0, 1.0, 3.0, 5.5], dtype=torch.float64)
    dist, matched = nearest_reference(render(angles), reference_lines())
    assert (dist < 1e-5).all()
    assert torch.allclose(matched, angles, atol=2 * math.pi / 10_000)
    zero_dist, _ = nearest_reference(torch.zeros(1, 1, 32, 32), reference_lines())
    assert zero_dist.item() == pytest.approx(1.0)


def test_smoothness_scores_by_hand() -> None:
    linear = np.linspace(0.5, 2.0, STEPS)
    jump = np.r_[np.full(8, 0.5), np.full(8, 2.0)]
    across_zero = np.mod(np.linspace(-0.4, 0.4, STEPS), 2 * np.pi)  # shorter arc through 0
    flat = np.full(STEPS, 1.0)
    scores = smoothness_scores(np.stack([linear, jump, across_zero, flat]))
    assert scores[0] == pytest.approx(0.0, abs=1e-12)
    assert scores[1] == pytest.approx(1 - 1 / 15)
    assert scores[2] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(scores[3])


@pytest.mark.slow
def test_ideal_interpolation_scores_zero() -> None:
    _, _, a_a, a_b = lines_test_pairs(256, seed=1234)
    arc = torch.remainder(a_b.double() - a_a.double() + math.pi, 2 * math.pi) - math.pi
    angles = a_a.double().unsqueeze(1) + torch.linspace(0, 1, STEPS, dtype=torch.float64) * arc.unsqueeze(1)
    paths = render(angles.reshape(-1)).view(256, STEPS, 1, 32, 32)
    metrics = mean_distance_and_smoothness(paths)
    assert metrics["lines/mean_distance"] < 1e-4
    assert metrics["lines/smoothness"] < 0.05
    assert not _fade_like(metrics)


@pytest.mark.slow
def test_pixel_cross_fade_scores_like_the_paper_says() -> None:
    x_a, x_b, _, _ = lines_test_pairs(256, seed=1234)
    metrics = mean_distance_and_smoothness(_cross_fade(x_a, x_b))
    assert _fade_like(metrics), metrics


def test_constant_path_is_not_a_cross_fade() -> None:
    x_a, _, _, _ = lines_test_pairs(32, seed=1234)
    metrics = mean_distance_and_smoothness(x_a.unsqueeze(1).expand(32, STEPS, 1, 32, 32))
    assert metrics["lines/mean_distance"] < 1e-5
    assert math.isnan(metrics["lines/smoothness"])  # no path has a defined score
    assert not _fade_like(metrics)


def test_evaluate_interpolations_with_pixel_codes_is_a_cross_fade() -> None:
    def encode(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 1, 32, 32)

    metrics, paths = evaluate_interpolations(encode, decode, n_pairs=24, steps=STEPS, seed=7, batch=50)
    x_a, x_b, _, _ = lines_test_pairs(24, seed=7)
    assert paths.shape == (24, STEPS, 1, 32, 32)
    assert torch.equal(paths[:, 0], x_a) and torch.equal(paths[:, -1], x_b)
    assert metrics == mean_distance_and_smoothness(_cross_fade(x_a, x_b))
