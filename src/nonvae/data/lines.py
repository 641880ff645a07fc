"""The synthetic *lines* benchmark of ACAI (Berthelot et al. 2018, arXiv 1807.07543).

Each image shows one anti-aliased segment from the image centre out to radius ``size/2 - 1``
at an angle theta ~ U[0, 2pi); background is -1 and a pixel is ``2 * coverage - 1`` clipped to
[-1, 1]. The data has a single, known, circular factor of variation, which is what makes the
interpolation metrics of :mod:`nonvae.evaluate.lines` possible.

The images are exactly those of the official renderer (``draw_line`` in brain-research/acai,
``lib/data.py``), because the paper's Mean Distance and Smoothness compare decoded images with
reference lines drawn by it: a different renderer moves every metric value. Its rule, which
:func:`render` reimplements vectorised over images and scan lines:

* Endpoints: the centre (row, col) = (size/2, size/2) and the tip
  (size/2 + r sin(-theta), size/2 + r cos(-theta)) with r = size/2 - 1, in continuous pixel
  coordinates (pixel (i, j) spans [i, i+1) x [j, j+1)); theta = 0 points right, pi/2 up.
* The *major* axis is the one with the larger extent (columns only when the row extent is
  strictly smaller); endpoints are ordered so the major coordinate increases (m0 <= m1), and
  both minor coordinates are shifted by -1 (half the width 2).
* Every scan line k = floor(m0), ..., ceil(m1) - 1 of the major axis gets weight
  ``ceil(m0) - m0`` if k < ceil(m0) (the first, partial line) and 1 otherwise; the last partial
  line gets full weight, as in the official code. On it the band [xs, xs + 2) with
  ``xs = n0 + (k - m0 - 0.5) * slope`` (n0 the shifted minor start, slope = dminor/dmajor;
  note the -0.5: the band is sampled half a pixel *before* the line's centre) covers pixels
  ceil(xs) .. floor(xs + 2) - 1 fully, pixel floor(xs) by ``ceil(xs) - xs`` and pixel
  floor(xs + 2) by ``xs + 2 - floor(xs + 2)``, each times the line's weight.
* Each pixel is touched at most once (for size >= 10; smaller official images index outside
  the array, so they are refused), so a pixel is ``2 * weight * share - 1``.

The arithmetic is done in float64 in the same order as the official code, with Python's
``math.cos``/``math.sin`` (NumPy's vectorised versions may differ in the last bit), so the
float64 images are bit-identical to ``draw_line``'s; :func:`render` returns float32 by default
(the official input pipeline casts to float32 too) and float64 on request (the official metrics
compare with float64 reference lines).

Why no other renderer: an analytic constant-width segment looks nicer (the official band is
2 px along the minor axis, so diagonals are 2 cos 45 = 1.4 px thick, and images jump where the
major axis switches at 45 degrees) but differs by up to 1.9 per pixel, and metric values on it
cannot be compared with the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from nonvae.config import DataConfig
from nonvae.data.base import DataBundle, ImageSet
from nonvae.errors import ConfigError, DataError
from nonvae.registry import register_dataset

LINE_WIDTH = 2.0
MIN_SIZE = 10
_RENDER_CHUNK = 1024


def _as_angles(angles: torch.Tensor | Sequence[float] | np.ndarray | float) -> np.ndarray:
    """Any angle container -> a flat float64 array (float64 keeps the trigonometry exact)."""
    if isinstance(angles, torch.Tensor):
        return angles.detach().reshape(-1).cpu().to(torch.float64).numpy()
    return np.asarray(angles, dtype=np.float64).reshape(-1)


def _check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise DataError(f"lines images need size >= {MIN_SIZE} (the official renderer leaves the image below), "
                        f"got {size}")


def _render_chunk(theta: np.ndarray, size: int) -> np.ndarray:
    """Pixel values (n, size, size) float64 in [-1, 1] for float64 angles (n,)."""
    half = size * 0.5
    # math.cos / math.sin per angle: bit-identical to the official scalar code.
    cos = np.array([math.cos(-a) for a in theta.tolist()], dtype=np.float64)
    sin = np.array([math.sin(-a) for a in theta.tolist()], dtype=np.float64)
    row0 = col0 = np.full(len(theta), half)
    col1 = half + (half - 1) * cos
    row1 = half + (half - 1) * sin
    flip = np.abs(row0 - row1) < np.abs(col0 - col1)  # scan along columns
    maj0, maj1 = np.where(flip, col0, row0), np.where(flip, col1, row1)
    min0, min1 = np.where(flip, row0, col0), np.where(flip, row1, col1)
    back = maj1 < maj0
    maj0, maj1 = np.where(back, maj1, maj0), np.where(back, maj0, maj1)
    min0, min1 = np.where(back, min1, min0), np.where(back, min0, min1)
    min0, min1 = min0 - LINE_WIDTH / 2, min1 - LINE_WIDTH / 2
    slope = (min1 - min0) / (maj1 - maj0)  # |maj1 - maj0| >= r / sqrt 2 > 0
    m0, m1, n0, ds = (v[:, None] for v in (maj0, maj1, min0, slope))
    k = np.arange(size, dtype=np.float64)[None, :]  # scan line index along the major axis
    on = (k >= np.floor(m0)) & (k < np.ceil(m1))
    weight = np.where(k < np.ceil(m0), np.ceil(m0) - m0, 1.0)
    xs = n0 + ((k - m0) - 0.5) * ds  # (n, size): band start on each scan line
    xe = xs + LINE_WIDTH
    first, last = np.ceil(xs), np.floor(xe)
    p = np.arange(size, dtype=np.float64)[None, None, :]  # pixel index along the minor axis
    xs3, xe3, first3, last3, w3 = (v[:, :, None] for v in (xs, xe, first, last, weight))
    share = np.where((p >= first3) & (p < last3), w3, 0.0)
    share = np.where((p == np.floor(xs3)) & (first3 != xs3), w3 * (first3 - xs3), share)
    share = np.where((p == last3) & (last3 != xe3), w3 * (xe3 - last3), share)
    share = np.where(on[:, :, None], share, 0.0)  # (n, major, minor)
    out = np.where(flip[:, None, None], share.transpose(0, 2, 1), share)  # -> (n, row, col)
    return np.clip(2 * out - 1, -1, 1)


def render(
    angles: torch.Tensor | Sequence[float] | np.ndarray | float,
    size: int = 32,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Lines images (N, 1, size, size) in [-1, 1] for the N given angles (radians), on the CPU.

    Exactly the official ``draw_line`` images (see the module docstring), vectorised in chunks
    of 1024 angles: 10,000 images of 32x32 take well under a second on one core.
    """
    _check_size(size)
    theta = _as_angles(angles)
    if not np.isfinite(theta).all():
        raise DataError("lines: angles must be finite")
    out = torch.empty(len(theta), 1, size, size, dtype=dtype)
    for start in range(0, len(theta), _RENDER_CHUNK):
        chunk = _render_chunk(theta[start : start + _RENDER_CHUNK], size)
        out[start : start + _RENDER_CHUNK, 0] = torch.from_numpy(chunk).to(dtype)
    return out


def _generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from several integers (independent streams per key tuple)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _random_angles(n: int, *keys: int) -> torch.Tensor:
    """n angles ~ U[0, 2pi) as float64, drawn as the official ``2 * u * pi`` with u ~ U[0, 1)."""
    u = torch.rand(n, generator=_generator(*keys), dtype=torch.float64)
    return 2 * u * math.pi  # float64: (2 - 2^-52) * pi still rounds below 2 pi


# Stream tags keep the training stream, the test set and the test pairs independent for one seed.
_TRAIN, _TEST_SET, _TEST_PAIRS = 0, 1, 2


class LinesStream:
    """Infinite training set: every example has a fresh random angle.

    A batch is a pure function of (seed, step, rank), so resuming at a step, or running
    several ranks, reproduces exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, size: int = 32, seed: int = 0) -> None:
        _check_size(size)
        self.size = size
        self.seed = seed
        self.name = f"lines{size}"

    @property
    def shape(self) -> tuple[int, int, int]:
        return 1, self.size, self.size

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """{'x': (B, 1, size, size) float32 in [-1, 1], 'angle': (B,) float64 radians}.

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


@register_dataset("lines")
def build_lines(cfg: DataConfig, seed: int) -> DataBundle:
    """data.name lines: an endless seeded training stream and data.test_limit (default 1024) test lines."""
    if cfg.channels != 1:  # never train a 1-channel model while config.yaml says otherwise
        raise ConfigError(f"data: lines images have 1 channel but the config says channels={cfg.channels}; "
                          "set data.channels=1")
    stream = LinesStream(size=cfg.image_size, seed=seed)
    test = lines_test_set(cfg.test_limit or 1024, size=cfg.image_size)
    return DataBundle(cfg.name, stream, test, None, (1, cfg.image_size, cfg.image_size))
