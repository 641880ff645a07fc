"""scikit-learn's bundled 8x8 digits as a tiny labelled image set.

It ships inside scikit-learn (no download), so tests and quick examples always
have real labelled images. Pixels 0..16 are rescaled to uint8 0..255 and
upsampled by pixel repetition (nearest neighbour) so the images are large
enough for the convolutional encoders.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from nonvae.config import DataConfig
from nonvae.data.base import DataBundle, ImageSet, array_bundle
from nonvae.errors import DataError
from nonvae.registry import register_dataset

NUM_CLASSES = 10
SOURCE = "sklearn.datasets.load_digits"


def _check_args(split: str, image_size: int, test_fraction: float) -> None:
    """Reject a split, size or fraction the loader cannot honour."""
    if split not in ("train", "test"):
        raise DataError(f"{SOURCE}: unknown digits split {split!r} (valid: train, test)")
    if not isinstance(image_size, numbers.Integral) or image_size < 8 or image_size % 8:
        raise DataError(f"{SOURCE}: image_size must be a multiple of 8 (e.g. 16, 32), got {image_size}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"{SOURCE}: test_fraction must be strictly between 0 and 1, got {test_fraction}")


def _upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of (N, H, W) by an integer factor."""
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


def load_digits(
    split: str = "train", image_size: int = 16, test_fraction: float = 0.25, seed: int = 0
) -> ImageSet:
    """A deterministic stratified train/test split of the 1797 digits, 1 x image_size x image_size uint8."""
    from sklearn.datasets import load_digits as _sk_load_digits  # imported when used: slow to import
    from sklearn.model_selection import train_test_split

    _check_args(split, image_size, test_fraction)
    bunch = _sk_load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    try:
        train_idx, test_idx = train_test_split(
            index, test_size=test_fraction, random_state=seed, stratify=labels
        )
    except ValueError as exc:  # e.g. too few test examples to hold every class
        reason = " ".join(str(exc).split())
        raise DataError(f"{SOURCE}: cannot split with test_fraction={test_fraction}: {reason}") from exc
    chosen = np.sort(train_idx if split == "train" else test_idx)
    images = _upsample(pixels[chosen], int(image_size) // 8)[:, None]
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels[chosen]),
        name="digits",
        num_classes=NUM_CLASSES,
    )


@register_dataset("digits")
def build_digits(cfg: DataConfig, seed: int) -> DataBundle:
    """data.name digits: scikit-learn's 8x8 digits, upsampled to image_size, split by ``seed``."""
    train = load_digits("train", image_size=cfg.image_size, seed=seed)
    test = load_digits("test", image_size=cfg.image_size, seed=seed)
    return array_bundle(cfg, train, test, seed)
