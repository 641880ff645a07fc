"""Datasets by config name, and the step-indexed batch streams the trainer draws from.

A batch depends only on (seed, step, rank, world size), never on what was drawn
before, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from nonvae.config import DataConfig
from nonvae.data.base import ImageSet, to_float
from nonvae.errors import ConfigError

__all__ = ["ImageSet", "ArrayStream", "DataBundle", "build_data", "to_float"]


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


def _limit(ds: ImageSet, n: int | None) -> ImageSet:
    return ds if n is None else ds.subset(n)


def build_data(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """Load (or generate) the configured dataset."""
    name = cfg.name
    if name == "lines":
        from nonvae.data.lines import LinesStream, lines_test_set

        stream = LinesStream(size=cfg.image_size, seed=seed)
        test = lines_test_set(cfg.test_limit or 1024, size=cfg.image_size)
        return DataBundle(name, stream, test, None, (1, cfg.image_size, cfg.image_size))
    if name in ("fashion_mnist", "mnist"):
        from nonvae.data.idx import load_fashion_mnist, load_mnist

        loader = load_fashion_mnist if name == "fashion_mnist" else load_mnist
        kwargs = {"root": cfg.root} if cfg.root is not None else {}
        if name == "mnist" and cfg.root is None:
            raise ConfigError(
                "data.root: MNIST needs your copy of the IDX files (train-images-idx3-ubyte[.gz], "
                "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); "
                "pass --set data.root=DIR"
            )
        train = loader(split="train", image_size=cfg.image_size, **kwargs)  # zero-padded to image_size
        test = loader(split="test", image_size=cfg.image_size, **kwargs)
    elif name == "cifar10":
        from nonvae.data.cifar import load_cifar10

        if cfg.root is None:
            raise ConfigError("data.root: CIFAR-10 needs the binary batches folder (cifar-10-batches-bin); "
                              "pass --set data.root=DIR")
        train, test = load_cifar10(cfg.root, "train"), load_cifar10(cfg.root, "test")
    elif name == "svhn":
        from nonvae.data.svhn import load_svhn

        if cfg.root is None:
            raise ConfigError("data.root: SVHN needs train_32x32.mat and test_32x32.mat; pass --set data.root=DIR")
        train, test = load_svhn(cfg.root, "train"), load_svhn(cfg.root, "test")
    elif name == "digits":
        from nonvae.data.digits import load_digits

        train = load_digits("train", image_size=cfg.image_size, seed=seed)
        test = load_digits("test", image_size=cfg.image_size, seed=seed)
    elif name in ("attributes", "domains"):
        from nonvae.data.domains import build_domain_data

        return build_domain_data(cfg, seed)
    else:  # guarded by config validation
        raise ConfigError(f"data.name: unknown dataset {name!r}")
    train, test = _limit(train, cfg.train_limit), _limit(test, cfg.test_limit)
    if train.shape[0] != cfg.channels or train.shape[1] != cfg.image_size:
        raise ConfigError(
            f"data: {name} images are {train.shape[0]}x{train.shape[1]}x{train.shape[2]} but the config says "
            f"channels={cfg.channels}, image_size={cfg.image_size}; set data.channels/data.image_size to match"
        )
    return DataBundle(name, ArrayStream(train, seed), test, train, train.shape)
