"""A two-domain benchmark with a ground-truth attribute: synthetic "glasses" on real images.

CelebA has no ground truth for "this face without its glasses", so removal and
transfer can only be judged by eye there. Here they can be measured:

- base images: Fashion-MNIST (the Debian package's IDX files), else
  scikit-learn's 8x8 digits upsampled, else generated shapes;
- domain B: base images as they are; domain A: other base images with an
  attribute overlay of kind ``data.attribute``: 'rings' (glasses: two ring lenses
  with a light tint and a bridge; lens size, vertical position, lens spacing),
  'band' (a thin straight band across the image; width, angle, offset) or
  'patch' (a solid square in a corner; side, corner, margin), each with a
  random intensity and every factor drawn per image;
- every A image keeps its clean version and its factors.

Compositing is additive in uint8 with headroom: base images are scaled to
[0, CLEAN_MAX] and the overlay adds at most OVERLAY_MAX levels, so nothing
clips and ``A - clean == render_overlay(factors)`` holds exactly. The same
arithmetic gives the exact target of a transfer: ``b + overlay(donor)``.
Everything is deterministic: the training split from the run seed, the test
split from a fixed seed so that runs with different seeds share one test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from nonvae.config import DataConfig
from nonvae.data.base import ImageSet
from nonvae.errors import DataError

OVERLAY_MAX = 96  # uint8 levels the overlay may add at full intensity
CLEAN_MAX = 255 - OVERLAY_MAX  # base images are scaled into [0, CLEAN_MAX]
# every kind has four factors, the first a size (> 0) and the last the intensity (fraction of OVERLAY_MAX);
# ranges are fractions of the image size except angles (radians), corners (index) and intensity
KINDS: dict[str, dict[str, tuple[float, float]]] = {
    # glasses: two ring lenses with a light tint and a bridge
    "rings": {"size": (0.09, 0.15), "height": (0.28, 0.50), "spacing": (0.42, 0.58), "intensity": (0.5, 1.0)},
    # a thin straight band across the whole image at any angle and offset from the centre
    "band": {"half_width": (0.03, 0.07), "angle": (0.0, math.pi), "offset": (-0.3, 0.3), "intensity": (0.5, 1.0)},
    # a solid square in one of the four corners, set in from the edges by a margin
    "patch": {"side": (0.2, 0.35), "corner": (0.0, 4.0), "margin": (0.02, 0.1), "intensity": (0.5, 1.0)},
}
FACTOR_NAMES = tuple(KINDS["rings"])
RANGES = KINDS["rings"]
UNSCALED = {"intensity", "angle", "corner"}  # factors that are not fractions of the image size
TINT = 0.5  # lens tint relative to the frame
TEST_SEED = 20_190_501  # the test split does not depend on the run seed
SHAPES_PER_SPLIT = {"train": 6000, "test": 1000}


# --------------------------------------------------------------------------- the overlay
@dataclass
class AttributesData(DataConfig):
    """``data`` keys of data.name attributes (the synthetic ground-truth two-domain benchmark)."""

    base: Literal["auto", "fashion_mnist", "digits", "shapes"] = "auto"  # auto: Fashion-MNIST if installed,
    # else sklearn digits, else generated shapes
    hflip: bool = False  # mirror each training image with probability 1/2
    attribute: Literal["rings", "band", "patch"] = "rings"  # the overlay of domain A: rings (glasses) | band | patch


def sample_factors(n: int, size: int, rng: np.random.Generator, kind: str = "rings") -> np.ndarray:
    """(n, 4) float32 factors of ``kind`` (rings: lens radius (px), lens-centre row (px), lens-centre
    distance (px), intensity; band: half width (px), angle, offset (px), intensity; patch: side (px),
    corner 0-3, margin (px), intensity)."""
    cols = []
    for name, (lo, hi) in KINDS[kind].items():
        col = rng.uniform(lo, hi, size=n) * (1.0 if name in UNSCALED else size)
        cols.append(np.floor(col) if name == "corner" else col)
    return np.stack(cols, 1).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(size, dtype=np.float32) + 0.5
    return grid[None, :, None], grid[None, None, :]


def _rings(f: np.ndarray, size: int) -> np.ndarray:
    r, cy, d = f[:, 0, None, None], f[:, 1, None, None], f[:, 2, None, None]
    yy, xx = _grid(size)
    half = max(0.75, 0.05 * size)  # half the frame thickness (3.2 px frames at 32 px)
    cover = np.zeros((len(f), size, size), dtype=np.float32)
    for side in (-1.0, 1.0):
        cx = size / 2 + side * d / 2
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        ring = np.clip(half + 0.5 - np.abs(dist - r), 0, 1)
        tint = TINT * np.clip(r - dist + 0.5, 0, 1)
        cover = np.maximum(cover, np.maximum(ring, tint))
    x0, x1 = size / 2 - d / 2 + r, size / 2 + d / 2 - r
    across = np.clip(np.minimum(xx - x0, x1 - xx) + 0.5, 0, 1)
    bridge = np.clip(half + 0.5 - np.abs(yy - cy), 0, 1) * across
    return np.maximum(cover, bridge)


def _band(f: np.ndarray, size: int) -> np.ndarray:
    half, angle, offset = f[:, 0, None, None], f[:, 1, None, None], f[:, 2, None, None]
    yy, xx = _grid(size)
    # signed distance from the line through centre + offset * normal, normal = (cos, sin)
    dist = (xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle) - offset
    return np.clip(half + 0.5 - np.abs(dist), 0, 1).astype(np.float32)


def _patch(f: np.ndarray, size: int) -> np.ndarray:
    side, corner, margin = f[:, 0, None, None], f[:, 1, None, None].astype(np.int64), f[:, 2, None, None]
    yy, xx = _grid(size)
    left = np.where(corner % 2 == 0, margin, size - margin - side)
    top = np.where(corner // 2 == 0, margin, size - margin - side)
    cx = np.clip(np.minimum(xx - left, left + side - xx) + 0.5, 0, 1)
    cy = np.clip(np.minimum(yy - top, top + side - yy) + 0.5, 0, 1)
    return (cx * cy).astype(np.float32)


COVERAGE = {"rings": _rings, "band": _band, "patch": _patch}


def overlay_coverage(factors: np.ndarray, size: int, kind: str = "rings") -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the attribute, (n, size, size) float32."""
    f = np.asarray(factors, dtype=np.float32).reshape(-1, 4)
    return COVERAGE[kind](f, size)


def render_overlay(factors: np.ndarray, size: int, channels: int = 1, kind: str = "rings") -> np.ndarray:
    """The uint8 (n, channels, size, size) image the attribute adds."""
    f = np.asarray(factors, dtype=np.float32).reshape(-1, 4)
    out = np.empty((len(f), channels, size, size), dtype=np.uint8)
    for start in range(0, len(f), 2048):  # bounded memory for large sets
        part = f[start: start + 2048]
        levels = overlay_coverage(part, size, kind) * (OVERLAY_MAX * part[:, 3, None, None])
        out[start: start + 2048] = np.rint(levels).astype(np.uint8)[:, None]
    return out


def scale_clean(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> uint8 [0, CLEAN_MAX], the headroom the overlay needs."""
    return np.rint(images.astype(np.float32) * (CLEAN_MAX / 255.0)).astype(np.uint8)


# --------------------------------------------------------------------------- base images
def generate_shapes(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Filled discs, squares and triangles (classes 0, 1, 2) of random size, place and brightness."""
    labels = rng.integers(0, 3, size=n)
    grid = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = grid[None, :, None], grid[None, None, :]
    half = rng.uniform(0.18, 0.32, size=n).astype(np.float32)[:, None, None] * size
    cx = (size / 2 + rng.uniform(-0.12, 0.12, size=n) * size).astype(np.float32)[:, None, None]
    cy = (size / 2 + rng.uniform(-0.12, 0.12, size=n) * size).astype(np.float32)[:, None, None]
    level = rng.uniform(150, 255, size=n).astype(np.float32)[:, None, None]
    dx, dy = np.abs(xx - cx), yy - cy
    disc = np.clip(half - np.sqrt(dx**2 + dy**2) + 0.5, 0, 1)
    square = np.clip(half - np.maximum(dx, np.abs(dy)) + 0.5, 0, 1)
    triangle = np.clip(np.minimum(half - dy, (dy + half) / 2 - dx) + 0.5, 0, 1)  # apex at the top
    cover = np.where(labels[:, None, None] == 0, disc, np.where(labels[:, None, None] == 1, square, triangle))
    return np.rint(cover * level).astype(np.uint8)[:, None], labels.astype(np.int64)


def load_base(cfg: AttributesData, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 (N, 1, S, S), int64 labels, source name) for data.base (auto: the first that works)."""
    size = cfg.image_size
    order = ["fashion_mnist", "digits", "shapes"] if cfg.base == "auto" else [cfg.base]
    reasons = []
    for base in order:
        try:
            if base == "fashion_mnist":
                from nonvae.data.idx import load_fashion_mnist

                ds = load_fashion_mnist(cfg.root, split=split, image_size=size)
            elif base == "digits":
                from nonvae.data.digits import load_digits

                ds = load_digits(split, image_size=size, seed=0)
            else:
                seed = TEST_SEED if split == "test" else TEST_SEED + 1
                images, labels = generate_shapes(SHAPES_PER_SPLIT[split], size, np.random.default_rng(seed))
                return images, labels, "shapes"
        except DataError as exc:
            if cfg.base != "auto":
                raise
            reasons.append(f"{base}: {exc}")
            continue
        assert ds.labels is not None
        return ds.images.numpy(), ds.labels.numpy(), base
    raise DataError("attributes: no base images available (" + "; ".join(reasons) + ")")  # pragma: no cover


# --------------------------------------------------------------------------- the two domains
def interleave(n_a: int, n_b: int) -> np.ndarray:
    """Positions A0, B0, A1, B1, ... (then the longer domain's rest) as ids (A: i, B: n_a + i).

    Every prefix of an interleaved set is balanced, so ``subset(n)`` evaluates both domains.
    """
    m = min(n_a, n_b)
    pairs = np.stack([np.arange(m), n_a + np.arange(m)], 1).reshape(-1)
    rest = np.arange(m, n_a) if n_a > m else n_a + np.arange(m, n_b)
    return np.concatenate([pairs, rest]).astype(np.int64)


def make_domains(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, limit: int | None,
                 channels: int, name: str, kind: str = "rings") -> ImageSet:
    """Split base images into two disjoint halves; overlay the attribute on the first (A). Interleaved set.

    Extras: 'domain' float (1 = A), 'clean' uint8 (the image without glasses; B: itself),
    'factors' float32 (N, 4) (zeros for B).
    """
    n = len(images)
    perm = rng.permutation(n)
    half = n // 2
    idx_a, idx_b = perm[:half], perm[half: 2 * half]
    if limit is not None:
        idx_a, idx_b = idx_a[:limit], idx_b[:limit]
    if len(idx_a) == 0:
        raise DataError(f"{name}: not enough base images for two domains ({n})")
    size = images.shape[-1]
    clean = scale_clean(images[np.concatenate([idx_a, idx_b])])
    if channels != clean.shape[1]:
        clean = np.repeat(clean, channels, axis=1)
    n_a = len(idx_a)
    factors = np.zeros((len(clean), 4), dtype=np.float32)
    factors[:n_a] = sample_factors(n_a, size, rng, kind)
    dirty = clean.copy()
    dirty[:n_a] += render_overlay(factors[:n_a], size, channels, kind)  # no overflow: clean <= CLEAN_MAX
    domain = np.zeros(len(clean), dtype=np.float32)
    domain[:n_a] = 1.0
    order = interleave(n_a, len(idx_b))
    y = labels[np.concatenate([idx_a, idx_b])]
    return ImageSet(
        torch.from_numpy(dirty[order]),
        torch.from_numpy(y[order].astype(np.int64)),
        name=name,
        num_classes=int(labels.max()) + 1,
        extras={
            "domain": torch.from_numpy(domain[order]),
            "clean": torch.from_numpy(clean[order]),
            "factors": torch.from_numpy(factors[order]),
        },
    )


def attribute_test_set(cfg: AttributesData) -> ImageSet:
    """The interleaved test set (fixed seed; data.test_limit per domain)."""
    if cfg.channels not in (1, 3):
        raise DataError(f"attributes: data.channels must be 1 or 3, got {cfg.channels}")
    images, labels, base = load_base(cfg, "test")
    return make_domains(images, labels, np.random.default_rng(TEST_SEED), cfg.test_limit, cfg.channels,
                        f"attributes/{base}/{cfg.attribute}/test", cfg.attribute)


def attribute_sets(cfg: AttributesData, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train, test) interleaved two-domain sets; limits (data.train_limit/test_limit) are per domain."""
    test = attribute_test_set(cfg)
    images, labels, base = load_base(cfg, "train")
    train = make_domains(images, labels, np.random.default_rng(seed), cfg.train_limit, cfg.channels,
                         f"attributes/{base}/{cfg.attribute}/train", cfg.attribute)
    return train, test
