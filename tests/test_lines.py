"""The lines renderer and the ACAI interpolation metrics (Mean Distance, Smoothness)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nonvae.data.base import ImageSet
from nonvae.data.lines import LinesStream, lines_test_pairs, lines_test_set, render
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
    """The band a pixel cross-fade of 256 random pairs falls in (measured: 6.8e-3 and 0.88)."""
    return 4e-3 <= metrics["lines/mean_distance"] <= 1e-2 and 0.8 <= metrics["lines/smoothness"] <= 0.95


# ---------------------------------------------------------------- renderer


def test_render_shape_range_and_background() -> None:
    x = render(torch.tensor([0.0, 1.0, 2.0, 4.0, 6.0]))
    assert x.shape == (5, 1, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    # corners are far from any segment starting at the centre: pure background
    assert (x[:, :, [0, 0, -1, -1], [0, -1, 0, -1]] == -1).all()
    assert render([0.5], size=24).shape == (1, 1, 24, 24)


def test_render_pixels_on_the_line_are_bright() -> None:
    angles = torch.linspace(0, 2 * math.pi, 50)[:-1]
    x = render(angles)
    # angle 0 points right from the centre (16, 16): rows 15 and 16 are fully covered
    assert x[0, 0, 15:17, 17:30].min() == pytest.approx(1.0)
    for theta, image in zip(angles.tolist(), x, strict=True):
        col = int(16 + 8 * math.cos(theta))
        row = int(16 - 8 * math.sin(theta))
        assert image[0, row, col] > 0.5, theta
    # anti-aliased ink is conserved: coverage sums to width x length = 2 x 15 at any angle
    ink = ((x + 1) / 2).sum(dim=(1, 2, 3))
    assert torch.allclose(ink, torch.full_like(ink, 30.0), atol=0.1)


def test_render_angle_matters_and_is_continuous() -> None:
    x = render([0.0, math.pi, 1e-3, 2 * math.pi])
    assert (x[0] - x[1]).abs().max() > 1.5
    assert (x[0] - x[2]).abs().max() < 0.05
    assert torch.allclose(x[0], x[3], atol=1e-4)


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


def test_ideal_interpolation_scores_zero() -> None:
    _, _, a_a, a_b = lines_test_pairs(256, seed=1234)
    arc = torch.remainder(a_b.double() - a_a.double() + math.pi, 2 * math.pi) - math.pi
    angles = a_a.double().unsqueeze(1) + torch.linspace(0, 1, STEPS, dtype=torch.float64) * arc.unsqueeze(1)
    paths = render(angles.reshape(-1)).view(256, STEPS, 1, 32, 32)
    metrics = mean_distance_and_smoothness(paths)
    assert metrics["lines/mean_distance"] < 1e-4
    assert metrics["lines/smoothness"] < 0.05
    assert not _fade_like(metrics)


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
