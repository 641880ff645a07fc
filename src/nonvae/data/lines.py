"""The synthetic *lines* benchmark of ACAI (Berthelot et al. 2018, arXiv 1807.07543).

Each image shows one 2-pixel-wide anti-aliased segment from the image centre
out to radius ``size/2 - 1`` at an angle theta ~ U[0, 2pi); background is -1
and a pixel is ``2 * coverage - 1`` (so a fully covered pixel is +1). The data
has a single, known, circular factor of variation, which is what makes the
interpolation metrics of :mod:`nonvae.evaluate.lines` possible.

Geometry: pixel (row i, column j) is the unit square whose centre is at
(x, y) = (j + 1/2, i + 1/2); the segment starts at (size/2, size/2) and points
along (cos theta, -sin theta), i.e. theta is counter-clockwise on screen with
theta = 0 pointing right (as in the official code).

Anti-aliasing is analytic, without supersampling: the area of a unit pixel
inside an infinite strip of half-width 1 depends only on the signed distance d
of its centre to the strip axis, and equals P(|d + U| <= 1) where U, the
projection of a uniform point of the pixel on the strip normal, is the sum of
two uniforms of widths |cos theta| and |sin theta| (a trapezoid law whose CDF is
piecewise quadratic). The same law cuts the strip at both ends of the segment;
taking the product of the two factors is exact away from the two ends and a
close approximation at them. This is continuous in theta, so nearby angles give
nearby images, and costs a handful of tensor ops per pixel. (The official scanline renderer,
``draw_line`` in brain-research/acai, makes the line 2 px wide along the minor axis, so its
diagonals are thinner, 2 cos 45 = 1.4 px; here the width is 2 px across the line at every angle.
Both give the same metric values for a pixel cross-fade to within 10%.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from nonvae.data.base import ImageSet
from nonvae.errors import DataError

LINE_WIDTH = 2.0
_RENDER_CHUNK = 2048


def _as_angles(angles: torch.Tensor | Sequence[float] | np.ndarray | float) -> torch.Tensor:
    """Any angle container -> a flat float64 tensor (float64 keeps the trigonometry exact)."""
    if isinstance(angles, torch.Tensor):
        return angles.detach().reshape(-1).to(torch.float64)
    return torch.as_tensor(np.asarray(angles, dtype=np.float64).reshape(-1))


def _half_ramp(u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(relu(u)^2 - relu(u - b)^2) / (2b): 0 below 0, u^2/(2b) on [0, b], u - b/2 beyond.

    Written as m^2/(2b) + (relu(u) - m) with m = clamp(u, 0, b), which stays exact as b -> 0
    (no division of a difference of squares by a tiny b).
    """
    m = torch.minimum(u.clamp(min=0), b)
    return m.square().div_(2 * b).add_(u.clamp(min=0).sub_(m))


def _pixel_cdf(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CDF at x of U[-a/2, a/2] + U[-b/2, b/2] (a >= b): the share of a unit pixel left of a line.

    a = max(|cos|, |sin|) >= 1/sqrt(2), so dividing by it is safe.
    """
    u = x + (a + b) / 2
    return (_half_ramp(u, b) - _half_ramp(u - a, b)).div_(a).clamp_(0, 1)


def _render_chunk(angles: torch.Tensor, size: int) -> torch.Tensor:
    """Coverage (n, size, size) float32 in [0, 1] for float64 angles (n,)."""
    centre = size / 2
    length = size / 2 - 1
    half = LINE_WIDTH / 2
    coords = torch.arange(size, dtype=torch.float32, device=angles.device) + 0.5 - centre
    x = coords.view(1, 1, size)  # column offset from the centre
    y = coords.view(1, size, 1)  # row offset (down is +)
    c64, s64 = torch.cos(angles), torch.sin(angles)
    c, s = c64.float().view(-1, 1, 1), s64.float().view(-1, 1, 1)
    a = torch.maximum(c64.abs(), s64.abs()).float().view(-1, 1, 1)
    b = torch.minimum(c64.abs(), s64.abs()).clamp(min=1e-9).float().view(-1, 1, 1)
    along = x * c - y * s  # position along the segment direction (cos, -sin)
    across = x * s + y * c  # signed distance to the segment axis
    strip = _pixel_cdf(half - across, a, b).sub_(_pixel_cdf(-half - across, a, b))
    span = _pixel_cdf(length - along, a, b).sub_(_pixel_cdf(-along, a, b))
    return strip.mul_(span).clamp_(0, 1)


def render(angles: torch.Tensor | Sequence[float] | np.ndarray | float, size: int = 32) -> torch.Tensor:
    """Lines images (N, 1, size, size) float32 in [-1, 1] for the N given angles (radians).

    Vectorised over images (chunks of 2048 to bound memory): 10,000 images of 32x32 take a
    fraction of a second on one CPU core. Runs on the device of ``angles`` when it is a tensor.
    """
    if size < 4:
        raise DataError(f"lines images need size >= 4, got {size}")
    theta = _as_angles(angles)
    if not torch.isfinite(theta).all():
        raise DataError("lines: angles must be finite")
    out = torch.empty(len(theta), 1, size, size, dtype=torch.float32, device=theta.device)
    for start in range(0, len(theta), _RENDER_CHUNK):
        cover = _render_chunk(theta[start : start + _RENDER_CHUNK], size)
        out[start : start + _RENDER_CHUNK, 0] = (2 * cover - 1).clamp(-1, 1).float()
    return out


def _generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from several integers (independent streams per key tuple)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _random_angles(n: int, *keys: int) -> torch.Tensor:
    """n angles ~ U[0, 2pi) as float32 (float64 draw, then rounded; always below 2pi)."""
    theta = (torch.rand(n, generator=_generator(*keys), dtype=torch.float64) * (2 * math.pi)).float()
    return torch.where(theta >= 2 * math.pi, torch.zeros_like(theta), theta)


# Stream tags keep the training stream, the test set and the test pairs independent for one seed.
_TRAIN, _TEST_SET, _TEST_PAIRS = 0, 1, 2


class LinesStream:
    """Infinite training set: every example has a fresh random angle.

    A batch is a pure function of (seed, step, rank), so resuming at a step, or running
    several ranks, reproduces exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, size: int = 32, seed: int = 0) -> None:
        if size < 4:
            raise DataError(f"lines images need size >= 4, got {size}")
        self.size = size
        self.seed = seed
        self.name = f"lines{size}"

    @property
    def shape(self) -> tuple[int, int, int]:
        return 1, self.size, self.size

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """{'x': (B, 1, size, size) float32 in [-1, 1], 'angle': (B,) float32 radians}.

        Each rank draws its own seeded stream (``world`` is accepted for the common interface).
        """
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        angle = _random_angles(batch_size, _TRAIN, self.seed, step, rank)
        return {"x": render(angle, self.size), "angle": angle}

    def test_set(self, n: int = 5000, seed: int = 1234) -> ImageSet:
        """A fixed held-out set of n lines (see :func:`lines_test_set`)."""
        return lines_test_set(n, seed, self.size)


def lines_test_set(n: int = 5000, seed: int = 1234, size: int = 32) -> ImageSet:
    """A fixed, seeded set of n lines as an ImageSet (float images, angles in extras['angle'])."""
    if n < 1:
        raise DataError(f"lines test set needs n >= 1, got {n}")
    angle = _random_angles(n, _TEST_SET, seed)
    return ImageSet(render(angle, size), None, f"lines{size}", None, {"angle": angle})


def lines_test_pairs(
    n_pairs: int = 256, seed: int = 1234, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed interpolation endpoints: (x_a, x_b, angle_a, angle_b), n_pairs of each.

    Both ends are independent uniform angles, as with two random test lines in the paper.
    """
    if n_pairs < 1:
        raise DataError(f"lines test pairs need n_pairs >= 1, got {n_pairs}")
    angle = _random_angles(2 * n_pairs, _TEST_PAIRS, seed)
    angle_a, angle_b = angle[:n_pairs].clone(), angle[n_pairs:].clone()
    return render(angle_a, size), render(angle_b, size), angle_a, angle_b
