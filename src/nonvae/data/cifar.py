"""CIFAR-10, binary version (``cifar-10-batches-bin``).

Each ``.bin`` file is a flat run of 3073-byte records: one label byte, then
1024 red, 1024 green and 1024 blue bytes of a 32x32 image in row-major order,
so the whole file is parsed with one ``numpy.frombuffer``. The Python version
of CIFAR-10 is pickled and unpickling can run arbitrary code, so it is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nonvae.config import DataConfig
from nonvae.data.base import DataBundle, ImageSet, array_bundle
from nonvae.errors import ConfigError, DataError
from nonvae.registry import register_dataset

BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
RECORD = 1 + 3 * 32 * 32
NUM_CLASSES = 10
SPLIT_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
GET_BINARY = (
    "download the binary version (cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), "
    f"extract it and pass --set data.root=DIR for the folder holding {BIN_DIR}"
)


def _batch_dir(root: Path) -> Path:
    """root itself, or root/cifar-10-batches-bin when root is its parent."""
    return root / BIN_DIR if (root / BIN_DIR).is_dir() else root


def _pickle_version(root: Path) -> Path | None:
    """A file of the pickled Python version of CIFAR-10 found near root, if any."""
    for folder in (root, root / PY_DIR):
        if (folder / "data_batch_1").is_file():
            return folder / "data_batch_1"
    return None


def _locate(root: Path, split: str) -> list[Path]:
    """The split's .bin files, or a DataError naming those missing (or refusing the pickle version)."""
    if split not in SPLIT_FILES:
        raise DataError(f"{root}: unknown CIFAR-10 split {split!r} (valid: train, test)")
    folder = _batch_dir(root)
    paths = [folder / name for name in SPLIT_FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if not missing:
        return paths
    pickled = _pickle_version(root)
    if pickled is not None and len(missing) == len(paths):
        raise DataError(
            f"{pickled}: this is the Python (pickle) version of CIFAR-10, which nonvae does not load "
            f"because unpickling can run code; {GET_BINARY}"
        )
    where = "folder does not exist" if not folder.is_dir() else "missing"
    raise DataError(f"{folder}: CIFAR-10 {split} files {where}: {', '.join(missing)}; {GET_BINARY}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 3, 32, 32), labels uint8 (n,)) from one binary batch file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read CIFAR-10 batch ({exc.strerror or exc})") from exc
    if len(raw) == 0 or len(raw) % RECORD:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a positive multiple of the {RECORD}-byte CIFAR-10 record "
            "(truncated or not a binary batch file)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0]
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: record {i} has label {int(labels[i])}, expected 0..{NUM_CLASSES - 1}")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | Path, split: str = "train") -> ImageSet:
    """CIFAR-10 from the binary batches in root (the cifar-10-batches-bin folder or its parent)."""
    root = Path(root).expanduser()
    batches = [_read_batch(p) for p in _locate(root, split)]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches]).astype(np.int64)
    return ImageSet(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        name="cifar10",
        num_classes=NUM_CLASSES,
    )


@register_dataset("cifar10")
def build_cifar10(cfg: DataConfig, seed: int) -> DataBundle:
    """data.name cifar10: the binary batches in data.root."""
    if cfg.root is None:
        raise ConfigError("data.root: CIFAR-10 needs the binary batches folder (cifar-10-batches-bin); "
                          "pass --set data.root=DIR")
    return array_bundle(cfg, load_cifar10(cfg.root, "train"), load_cifar10(cfg.root, "test"), seed)
