"""The in-memory dataset every loader returns.

Images are kept as uint8 (N, C, H, W) so that a whole dataset sits in memory
cheaply and batches are converted to float in [-1, 1] only when drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from nonvae.errors import ConfigError, DataError

if TYPE_CHECKING:
    from nonvae.config import DataConfig


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]; float input is returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images.float()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clipped)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (N, C, h, w) images symmetrically to (size, size); pad value is black (0 in uint8)."""
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise DataError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return torch.nn.functional.pad(images, (left, size - w - left, top, size - h - top))


@dataclass
class ImageSet:
    """A labelled (or unlabelled) image dataset held in memory.

    images: uint8 (N, C, H, W) or float (N, C, H, W) in [-1, 1].
    labels: int64 (N,) class labels, or None.
    extras: further per-example tensors (attributes, domains, clean images, factors).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    name: str = ""
    num_classes: int | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"{self.name or 'dataset'}: images must be (N, C, H, W), got {tuple(self.images.shape)}")
        if len(self.images) == 0:
            raise DataError(f"{self.name or 'dataset'}: no images")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(
                f"{self.name or 'dataset'}: {len(self.images)} images but {len(self.labels)} labels"
            )
        if self.labels is not None and self.num_classes is None:
            self.num_classes = int(self.labels.max()) + 1

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """A training batch: {'x': float [-1, 1], 'y': labels (if any), extras...}."""
        out = {"x": to_float(self.images[index])}
        if self.labels is not None:
            out["y"] = self.labels[index]
        for key, value in self.extras.items():
            out[key] = to_float(value[index]) if value.dtype == torch.uint8 and value.ndim == 4 else value[index]
        return out

    def subset(self, n: int) -> ImageSet:
        """The first n examples (for quick evaluation)."""
        n = min(n, len(self))
        return ImageSet(
            self.images[:n],
            None if self.labels is None else self.labels[:n],
            self.name,
            self.num_classes,
            {k: v[:n] for k, v in self.extras.items()},
        )


# --------------------------------------------------------------------------- what a dataset builds
class BatchSource(Protocol):
    shape: tuple[int, int, int]

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]: ...


class ArrayStream:
    """Epoch-wise seeded shuffles of an in-memory dataset, indexed by step.

    Global example positions for a step are [step * B * world, (step + 1) * B * world);
    rank r takes its contiguous slice, so world x (B) equals 1 x (world * B).
    """

    def __init__(self, dataset: ImageSet, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.shape = dataset.shape
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.dataset), generator=g)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def indices(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        n = len(self.dataset)
        start = (step * world + rank) * batch_size
        pos = torch.arange(start, start + batch_size)
        epochs, within = pos // n, pos % n
        out = torch.empty(batch_size, dtype=torch.long)
        for e in epochs.unique().tolist():
            mask = epochs == e
            out[mask] = self._permutation(int(e))[within[mask]]
        return out

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        return self.dataset.batch(self.indices(step, batch_size, rank, world))


@dataclass
class DataBundle:
    """What a run trains and evaluates on."""

    name: str
    train: BatchSource
    test: ImageSet
    train_set: ImageSet | None  # in-memory training set, when there is one (probes fit on it)
    shape: tuple[int, int, int]


def array_bundle(cfg: DataConfig, train: ImageSet, test: ImageSet, seed: int) -> DataBundle:
    """The bundle of an in-memory dataset: data.train_limit/test_limit applied, shape checked."""
    if cfg.train_limit is not None:
        train = train.subset(cfg.train_limit)
    if cfg.test_limit is not None:
        test = test.subset(cfg.test_limit)
    if train.shape[0] != cfg.channels or train.shape[1] != cfg.image_size:
        raise ConfigError(
            f"data: {cfg.name} images are {train.shape[0]}x{train.shape[1]}x{train.shape[2]} but the config says "
            f"channels={cfg.channels}, image_size={cfg.image_size}; set data.channels/data.image_size to match"
        )
    return DataBundle(cfg.name, ArrayStream(train, seed), test, train, train.shape)
