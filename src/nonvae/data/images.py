"""Your own images (data.name 'images') for every single-domain method, and in-memory data from Python.

data.root is a folder (searched recursively; any format Pillow reads) or a list file (one path per
line). The held-out test images are, in this order:
- data.test: a folder or list file you name;
- a sibling whose name has 'test' for 'train' (``photos/train`` -> ``photos/test``, ``train.txt`` ->
  ``test.txt``), or ``train/`` and ``test/`` folders inside data.root;
- else data.test_limit images (default: a tenth, at most 256) held out from the listed images, chosen by
  a fixed shuffle that does not depend on the run's seed (the same test set for every run).
Each image is centre-cropped (data.crop, else the largest centred square), resized to data.image_size
and converted to data.channels (1: grey, 3: RGB), decoded once into the memory-mapped cache
(:mod:`nonvae.data.cache`) and reused by later runs; data.bad_images says what a corrupt file does.
When every image lies in a first-level sub-folder and there are at least two, the sub-folder names
are the classes (so ``nonvae eval`` also runs the linear probe and k-means).

``memory_bundle`` turns tensors or a ``torch.utils.data.Dataset`` into the same kind of bundle
(``nonvae.fit``); such a run's config says data.name 'memory', which cannot be rebuilt from files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from nonvae.config import DataConfig, positive
from nonvae.data.base import ArrayStream, DataBundle, ImageSet, array_bundle
from nonvae.data.folders import ImageSource, list_images
from nonvae.errors import ConfigError, DataError
from nonvae.registry import register_dataset

MAX_HOLDOUT = 256
SPLIT_SEED = 20260  # the fixed shuffle of the hold-out split (independent of the run's seed)


@dataclass
class ImagesData(DataConfig):
    """``data`` keys of data.name images (your own image files)."""

    test: str | None = None  # folder or list file of the test images (None: a 'test' sibling, else held out)
    crop: int | None = positive(None)  # centre crop (pixels) before resizing (None: the largest square)
    hflip: bool = False  # mirror each training image with probability 1/2
    cache_dir: str | None = None  # decoded-image cache (None: $XDG_CACHE_HOME/nonvae or ~/.cache/nonvae)
    bad_images: Literal["error", "skip"] = "error"  # what a corrupt or missing image file does


def _sibling(path: Path) -> Path | None:
    if "train" not in path.name:
        return None
    sibling = path.with_name(path.name.replace("train", "test"))
    return sibling if sibling.exists() else None


def image_sources(cfg: ImagesData) -> tuple[ImageSource, ImageSource]:
    """(train, test) lists of image files (see the module docstring for where the test images come from)."""
    if cfg.root is None:
        raise ConfigError("data: name 'images' needs data.root (a folder of images or a list file); "
                          "pass --set data.root=PATH")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: data.root not found (a folder of images or a list file of image paths)")
    test_path = Path(cfg.test).expanduser() if cfg.test else _sibling(root)
    if test_path is None and root.is_dir() and (root / "train").is_dir() and (root / "test").is_dir():
        root, test_path = root / "train", root / "test"
    train = list_images(root)
    if test_path is not None:
        test = list_images(test_path)
        return _limited(train, cfg.train_limit), _limited(test, cfg.test_limit)
    k = cfg.test_limit or max(1, min(MAX_HOLDOUT, len(train) // 10))
    if len(train) <= k:
        raise DataError(f"{root}: {len(train)} images, too few to hold out {k} for testing "
                        "(set data.test_limit, or give data.test)")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train))
    test, rest = train.take(np.sort(order[:k])), train.take(np.sort(order[k:]))
    return _limited(rest, cfg.train_limit), test


def _limited(src: ImageSource, n: int | None) -> ImageSource:
    return src if n is None else src.slice(0, n)


def _class_of(path: Path, base: Path) -> str | None:
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        return None
    return parts[0] if len(parts) >= 2 else None


def _labels(train: ImageSource, test: ImageSource) -> tuple[list[int], list[int], int] | None:
    """Class labels from first-level sub-folders, when every image has one and there are >= 2 classes."""
    bases = [Path(s.name) for s in (train, test)]
    if not all(b.is_dir() for b in bases):
        return None
    names = [[_class_of(p, b) for p in s.paths] for s, b in zip((train, test), bases, strict=True)]
    flat = names[0] + names[1]
    if any(n is None for n in flat):
        return None
    classes = sorted(set(flat))  # type: ignore[arg-type]
    if len(classes) < 2:
        return None
    index = {c: i for i, c in enumerate(classes)}
    return [index[n] for n in names[0]], [index[n] for n in names[1]], len(classes)  # type: ignore[index]


def _decode(source: ImageSource, cfg: ImagesData, labels: list[int] | None, num_classes: int | None,
            name: str) -> ImageSet:
    from nonvae.data.cache import cached_images

    found = cached_images(source, cfg.image_size, cfg.crop, cfg.channels, cfg.cache_dir, cfg.bad_images,
                          progress=True, workers=cfg.num_workers or None)
    y = None if labels is None else torch.tensor(labels, dtype=torch.long)[torch.from_numpy(found.kept)]
    return ImageSet(torch.from_numpy(found.images), y, name=name, num_classes=num_classes)


class FlipStream:
    """An ArrayStream whose images are mirrored with probability 1/2, seeded by (seed, step, rank)."""

    def __init__(self, stream: ArrayStream, seed: int) -> None:
        self.stream, self.seed, self.shape = stream, seed, stream.shape

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        out = self.stream.batch(step, batch_size, rank, world)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step * 7919 + rank * 104_729 + 29) % (2**63 - 1))
        flip = torch.rand(len(out["x"]), generator=g) < 0.5
        out["x"] = torch.where(flip.view(-1, 1, 1, 1), out["x"].flip(-1), out["x"])
        return out


@register_dataset("images", config=ImagesData)
def build_images(cfg: ImagesData, seed: int = 0) -> DataBundle:
    """data.name images: your image files (a folder or list file), decoded once into the cache."""
    train_src, test_src = image_sources(cfg)
    labels = _labels(train_src, test_src)
    label = Path(cfg.root or "images").name
    ytr, yte, k = labels if labels is not None else (None, None, None)
    train = _decode(train_src, cfg, ytr, k, f"{label}/train")
    test = _decode(test_src, cfg, yte, k, f"{label}/test")
    bundle = array_bundle(cfg, train, test, seed)  # the limits were applied to the lists: no-ops here
    if cfg.hflip:
        bundle.train = FlipStream(bundle.train, seed)  # type: ignore[arg-type]
    return bundle


# --------------------------------------------------------------------------- in-memory data (nonvae.fit)
@dataclass
class MemoryData(DataConfig):
    """``data`` of a run trained from Python tensors or a Dataset (``nonvae.fit``): nothing to rebuild."""


@register_dataset("memory", config=MemoryData)
def build_memory(cfg: MemoryData, seed: int = 0) -> DataBundle:
    """data.name memory: the images were passed from Python; they are not on disk to rebuild."""
    raise DataError("this run was trained on images passed from Python (nonvae.fit); pass them again "
                    "(nonvae.fit(..., train=..., test=...)) or use the test images stored with the model")


def as_image_set(data: Any, name: str) -> ImageSet:
    """A float tensor (N, C, H, W) in [-1, 1], a uint8 tensor, or a Dataset yielding images -> ImageSet.

    A Dataset item may be an image tensor, an (image, label) pair or a dict with 'x' (and 'y').
    """
    if isinstance(data, ImageSet):
        return data
    labels = None
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if not isinstance(data, torch.Tensor):
        if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
            raise DataError(f"{name}: expected a tensor (N, C, H, W) in [-1, 1] or a torch Dataset, "
                            f"got {type(data).__name__}")
        images, ys = [], []
        for i in range(len(data)):
            item = data[i]
            y = None
            if isinstance(item, dict):
                item, y = item.get("x"), item.get("y")
            elif isinstance(item, tuple | list):
                item, y = item[0], (item[1] if len(item) > 1 else None)
            if not isinstance(item, torch.Tensor):
                raise DataError(f"{name}: item {i} is {type(item).__name__}, expected an image tensor (C, H, W)")
            images.append(item)
            ys.append(y)
        if not images:
            raise DataError(f"{name}: the dataset is empty")
        try:
            data = torch.stack(images)
        except RuntimeError as exc:
            raise DataError(f"{name}: images of different shapes ({' '.join(str(exc).split())})") from None
        if all(y is not None for y in ys):
            labels = torch.as_tensor([int(y) for y in ys], dtype=torch.long)
    if data.ndim == 3:
        data = data.unsqueeze(1)  # (N, H, W) grey images
    if data.ndim != 4:
        raise DataError(f"{name}: expected images (N, C, H, W), got shape {tuple(data.shape)}")
    if data.dtype != torch.uint8:
        data = data.detach().float().cpu()
        if not torch.isfinite(data).all():
            raise DataError(f"{name}: images contain NaN or infinite values")
        lo, hi = float(data.min()), float(data.max())
        if lo < -1.001 or hi > 1.001:
            raise DataError(f"{name}: image values must be in [-1, 1] (got {lo:.3g} .. {hi:.3g}); "
                            "scale them, e.g. x * 2 - 1 for [0, 1] images")
    return ImageSet(data, labels, name=name)


def memory_bundle(cfg: DataConfig, train: Any, test: Any | None, seed: int) -> DataBundle:
    """The bundle of in-memory images (``nonvae.fit``); without ``test`` a tenth (<= 256) is held out."""
    train_set = as_image_set(train, "train")
    if test is None:
        k = cfg.test_limit or max(1, min(MAX_HOLDOUT, len(train_set) // 10))
        if len(train_set) <= k:
            raise DataError(f"train: {len(train_set)} images, too few to hold out {k} for testing; pass test=...")
        order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(train_set)))
        held, rest = order[:k].sort().values, order[k:].sort().values
        test_set = ImageSet(train_set.images[held], None if train_set.labels is None else train_set.labels[held],
                            name="test", num_classes=train_set.num_classes)
        train_set = ImageSet(train_set.images[rest], None if train_set.labels is None else train_set.labels[rest],
                             name="train", num_classes=train_set.num_classes)
    else:
        test_set = as_image_set(test, "test")
        if test_set.shape != train_set.shape:
            raise DataError(f"test images are {test_set.shape}, training images {train_set.shape}")
    if cfg.train_limit is not None:
        train_set = train_set.subset(cfg.train_limit)
    if cfg.test_limit is not None:
        test_set = test_set.subset(cfg.test_limit)
    return DataBundle("memory", ArrayStream(train_set, seed), test_set, train_set, train_set.shape)


__all__ = ["ImagesData", "MemoryData", "as_image_set", "build_images", "image_sources", "memory_bundle"]
