"""Two-domain data for content disentanglement: image files (data.name 'domains') or the synthetic
ground-truth benchmark (data.name 'attributes').

Training draws ``batch_size`` images of EACH domain per step from two
step-indexed :class:`ArrayStream` samplers with different seeds, so a batch
depends only on (seed, step, rank, world) and resuming is exact, whatever the
domain sizes (CelebA has ~13k faces with glasses and ~190k without). A batch is
``{'x': cat(x_A, x_B), 'domain': cat(ones, zeros)}``; with data.hflip each image
is mirrored with probability 1/2 from a generator seeded by (seed, step, rank).

Evaluation sets interleave the domains (A0, B0, A1, B1, ...) so that every
prefix, e.g. ``test.subset(2000)``, holds both. Their extras: 'domain' (1 = A),
and for 'attributes' 'clean' and 'factors' (the ground truth).

Image files (data.name 'domains'):
- data.root = a folder holding trainA/ trainB/ testA/ testB/ sub-folders or the
  trainA.txt ... list files ``nonvae preprocess celeba`` writes;
- or data.domain_a / data.domain_b = list files or folders of each domain's
  training images; a sibling whose name has 'test' for 'train' (testA.txt next
  to trainA.txt) is the test set, else the first data.test_limit (default 64,
  as the official code) images of each domain are held out.
Images are decoded once into the memory-mapped cache (:mod:`nonvae.data.cache`).
data.train_limit / data.test_limit count images per domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nonvae.config import DataConfig, positive
from nonvae.data.attributes import AttributesData, attribute_sets, attribute_test_set, interleave
from nonvae.data.base import ArrayStream, DataBundle, ImageSet, to_float
from nonvae.data.folders import ImageSource, list_images
from nonvae.errors import ConfigError, DataError
from nonvae.registry import register_dataset


@dataclass
class DomainsData(DataConfig):
    """``data`` keys of data.name domains (two folders or list files of images, e.g. CelebA's split)."""

    domain_a: str | None = None  # list file or folder of the domain with the attribute
    domain_b: str | None = None
    crop: int | None = positive(None)  # centre crop before resizing (CelebA: 178)
    hflip: bool = False  # mirror each training image with probability 1/2
    cache_dir: str | None = None  # decoded-image cache (None: $XDG_CACHE_HOME/nonvae or ~/.cache/nonvae)
    bad_images: Literal["error", "skip"] = "error"  # what a corrupt or missing image file does


HOLDOUT = 64  # test images per domain when only training lists are given (official num_test_imgs)
PARTS = ("trainA", "trainB", "testA", "testB")


class _Indexed:
    """Rows ``index`` of an image tensor, as the dataset an ArrayStream samples from."""

    def __init__(self, images: torch.Tensor, index: torch.Tensor) -> None:
        self.images, self.index = images, index
        c, h, w = images.shape[1:]
        self.shape = (int(c), int(h), int(w))

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": to_float(self.images[self.index[idx]])}


class DomainPairs:
    """The training source: batch_size images of domain A then batch_size of domain B."""

    def __init__(self, train: ImageSet, seed: int, hflip: bool) -> None:
        domain = train.extras["domain"]
        idx_a = torch.nonzero(domain > 0.5).view(-1)
        idx_b = torch.nonzero(domain <= 0.5).view(-1)
        if len(idx_a) == 0 or len(idx_b) == 0:
            raise DataError(f"{train.name}: training images of both domains are needed "
                            f"(A: {len(idx_a)}, B: {len(idx_b)})")
        self.sizes = (len(idx_a), len(idx_b))
        self.seed, self.hflip = seed, hflip
        self.stream_a = ArrayStream(_Indexed(train.images, idx_a), 2 * seed + 1)  # type: ignore[arg-type]
        self.stream_b = ArrayStream(_Indexed(train.images, idx_b), 2 * seed + 2)  # type: ignore[arg-type]
        self.shape = train.shape

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        xa = self.stream_a.batch(step, batch_size, rank, world)["x"]
        xb = self.stream_b.batch(step, batch_size, rank, world)["x"]
        x = torch.cat([xa, xb])
        if self.hflip:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + step * 7919 + rank * 104_729 + 17)
                                              % (2**63 - 1))
            flip = torch.rand(len(x), generator=g) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        domain = torch.cat([torch.ones(len(xa)), torch.zeros(len(xb))])
        return {"x": x, "domain": domain}


# --------------------------------------------------------------------------- image files
@dataclass
class DomainFiles:
    """The four image lists of a two-domain folder layout."""

    train_a: ImageSource
    train_b: ImageSource
    test_a: ImageSource
    test_b: ImageSource


def _find_part(root: Path, part: str) -> Path | None:
    for candidate in (root / f"{part}.txt", root / part):
        if candidate.exists():
            return candidate
    return None


def _test_sibling(path: Path) -> Path | None:
    if "train" not in path.name:
        return None
    sibling = path.with_name(path.name.replace("train", "test"))
    return sibling if sibling.exists() else None


def domain_files(cfg: DomainsData) -> DomainFiles:
    """Locate the lists of each domain's train and test images (see the module docstring)."""
    if (cfg.domain_a is None) != (cfg.domain_b is None):
        raise ConfigError("data.domain_a and data.domain_b must be given together")
    if cfg.domain_a is not None and cfg.domain_b is not None:
        root = Path(cfg.root).expanduser() if cfg.root else None
        sources = []
        for given in (cfg.domain_a, cfg.domain_b):
            path = Path(given).expanduser()
            if root is not None and not path.is_absolute() and not path.exists() and (root / path).exists():
                path = root / path
            sources.append(path)
        a, b = (list_images(p) for p in sources)
        tests = [_test_sibling(p) for p in sources]
        if tests[0] is not None and tests[1] is not None:
            return DomainFiles(a, b, list_images(tests[0]), list_images(tests[1]))
        k = cfg.test_limit or HOLDOUT
        for src in (a, b):
            if len(src) <= k:
                raise DataError(f"{src.name}: {len(src)} images, too few to hold out {k} for testing")
        return DomainFiles(a.slice(k, None), b.slice(k, None), a.slice(0, k), b.slice(0, k))
    if cfg.root is None:
        raise ConfigError("data: name 'domains' needs data.root (a folder with trainA/trainB/testA/testB "
                          "folders or the .txt lists of `nonvae preprocess celeba`) or data.domain_a and "
                          "data.domain_b")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data.root folder not found (run `nonvae preprocess celeba ... --dest {root}`)")
    found = {part: _find_part(root, part) for part in PARTS}
    missing = [p for p, f in found.items() if f is None]
    if missing:
        raise DataError(f"{root}: missing {', '.join(missing)} (expected {'/ '.join(PARTS)}/ folders or "
                        f"{'.txt '.join(PARTS)}.txt lists)")
    lists = [list_images(found[p]) for p in PARTS]  # type: ignore[arg-type]
    return DomainFiles(*lists)


def _two_domain_set(a: ImageSource, b: ImageSource, cfg: DomainsData, name: str, progress: bool) -> ImageSet:
    """Decode (through the cache) the interleaved images of a and b; extras['domain'] 1 for a."""
    from nonvae.data.cache import cached_images

    order = interleave(len(a), len(b))
    source = (a + b).take(order)
    source.name = name
    domain = np.concatenate([np.ones(len(a), np.float32), np.zeros(len(b), np.float32)])[order]
    found = cached_images(source, cfg.image_size, cfg.crop, cfg.channels, cfg.cache_dir, cfg.bad_images,
                          progress, workers=cfg.num_workers or None)
    images = torch.from_numpy(found.images)
    return ImageSet(images, None, name=name, extras={"domain": torch.from_numpy(domain[found.kept])})


def _limited(src: ImageSource, n: int | None) -> ImageSource:
    return src if n is None else src.slice(0, n)


def file_sets(cfg: DomainsData, test_only: bool = False, progress: bool = True) -> tuple[ImageSet | None, ImageSet]:
    """(train, test) interleaved sets from image files; train is None with ``test_only``."""
    files = domain_files(cfg)
    label = Path(cfg.root or cfg.domain_a or "domains").name
    test = _two_domain_set(_limited(files.test_a, cfg.test_limit), _limited(files.test_b, cfg.test_limit),
                           cfg, f"{label}/test", progress)
    if test_only:
        return None, test
    train = _two_domain_set(_limited(files.train_a, cfg.train_limit), _limited(files.train_b, cfg.train_limit),
                            cfg, f"{label}/train", progress)
    return train, test


# --------------------------------------------------------------------------- the bundle
def _check_shape(ds: ImageSet, cfg: DataConfig) -> None:
    c, h, _ = ds.shape
    if c != cfg.channels or h != cfg.image_size:
        raise ConfigError(f"data: {ds.name} images are {c}x{h}x{h} but the config says channels={cfg.channels}, "
                          f"image_size={cfg.image_size}")


def domain_test_set(cfg: DataConfig) -> ImageSet:
    """Only the test set (``nonvae transfer`` needs no training images; it does not depend on the seed)."""
    if isinstance(cfg, AttributesData):
        return attribute_test_set(cfg)
    if isinstance(cfg, DomainsData):
        return file_sets(cfg, test_only=True)[1]
    raise ConfigError(f"data.name: {cfg.name!r} is not a two-domain dataset")


def _pairs_bundle(cfg: AttributesData | DomainsData, train: ImageSet, test: ImageSet, seed: int) -> DataBundle:
    _check_shape(train, cfg)
    _check_shape(test, cfg)
    return DataBundle(cfg.name, DomainPairs(train, seed, cfg.hflip), test, train, train.shape)


@register_dataset("attributes", config=AttributesData)
def build_attributes(cfg: AttributesData, seed: int = 0) -> DataBundle:
    """data.name attributes: base images with and without a synthetic overlay (ground truth known)."""
    train, test = attribute_sets(cfg, seed)
    return _pairs_bundle(cfg, train, test, seed)


@register_dataset("domains", config=DomainsData)
def build_domains(cfg: DomainsData, seed: int = 0) -> DataBundle:
    """data.name domains: image files of two domains, decoded once into the cache."""
    train, test = file_sets(cfg)
    assert train is not None
    return _pairs_bundle(cfg, train, test, seed)
