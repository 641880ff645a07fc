"""A dataset in one file: images stored as .npy arrays.

``data.root`` holds ``train.npy`` and ``test.npy`` (uint8, shape (N, H, W) or (N, C, H, W), values
0..255) and optionally ``train_labels.npy`` / ``test_labels.npy`` (integers, shape (N,)); the file
names are settings. Enable it with ``plugins: [npy_dataset.py]`` and ``data.name: npy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nonvae.config import DataConfig
from nonvae.data.base import DataBundle, ImageSet, array_bundle
from nonvae.errors import ConfigError, DataError
from nonvae.registry import register_dataset


@dataclass
class NpyData(DataConfig):
    """``data`` keys of data.name npy."""

    train_file: str = "train.npy"
    test_file: str = "test.npy"


def load_npy(root: Path, images: str) -> ImageSet:
    path = root / images
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise DataError(f"{path}: expected uint8 images (N, H, W) or (N, C, H, W), got {array.dtype} "
                        f"{array.shape}")
    array = array[:, None] if array.ndim == 3 else array
    labels_path = path.with_name(path.stem + "_labels.npy")
    labels = torch.from_numpy(np.load(labels_path).astype(np.int64)) if labels_path.is_file() else None
    return ImageSet(torch.from_numpy(np.ascontiguousarray(array)), labels, name=str(path))


@register_dataset("npy", config=NpyData)
def build_npy(cfg: NpyData, seed: int) -> DataBundle:
    if cfg.root is None:
        raise ConfigError("data.root: the npy dataset needs the folder holding the .npy files")
    root = Path(cfg.root).expanduser()
    return array_bundle(cfg, load_npy(root, cfg.train_file), load_npy(root, cfg.test_file), seed)
