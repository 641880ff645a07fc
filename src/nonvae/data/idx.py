"""MNIST-format IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.

The format is a 4-byte magic (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the payload. Every
check here turns a malformed file into a one-line :class:`DataError` naming
the file, instead of a numpy reshape error deep inside training.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch

from nonvae.config import DataConfig
from nonvae.data.base import DataBundle, ImageSet, array_bundle, pad_to
from nonvae.errors import ConfigError, DataError
from nonvae.registry import register_dataset

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype.
IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

MAX_DIMS = 16  # real files have 1 (labels) or 3 (images); anything far beyond is corruption
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
NUM_CLASSES = 10

_HINTS = {
    "fashion-mnist": (
        "`apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist, "
        "or pass --set data.root=DIR for your own copy"
    ),
    "mnist": (
        "MNIST is not bundled: put your own copy of the files from the usual MNIST distribution "
        "in a folder DIR and pass --set data.root=DIR"
    ),
}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when they start with the gzip magic (whatever the extension).

    A gzip stream is inflated in chunks and stopped as soon as it holds more than its IDX header
    declares (plus one byte, to report trailing data): a small file that inflates to gigabytes
    (a "zip bomb") costs no more memory than the declared payload.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc.strerror or exc})") from exc
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return _inflate_bounded(path, raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({_one_line(exc)})") from exc


def _inflate_bounded(path: Path, raw: bytes) -> bytes:
    """Inflate a gzip member (and any concatenated ones) to at most the size its IDX header declares."""
    from nonvae.limits import check_memory

    out = bytearray()
    limit: int | None = None
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = raw
    while True:
        while data:
            room = (limit + 1 - len(out)) if limit is not None else 1 << 16
            out += inflater.decompress(data, max(room, 1))
            data = inflater.unconsumed_tail
            if limit is None and len(out) >= 4:
                header_len = 4 + 4 * out[3] if out[:2] == b"\0\0" and out[3] <= MAX_DIMS else 4
                if len(out) >= header_len:
                    dtype, dims, header_len = _parse_header(path, bytes(out[:header_len]))
                    limit = header_len + math.prod(dims) * dtype.itemsize
                    check_memory(limit, f"{path}: the IDX header's shape {'x'.join(map(str, dims))}",
                                 "is the file corrupt?", DataError)
            if limit is not None and len(out) > limit:
                raise DataError(f"{path}: the gzip data inflates past the {limit} bytes its IDX header declares "
                                "(corrupt, or not the file it claims to be)")
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        rest = inflater.unused_data
        if not rest:  # a truncated stream fails above; trailing members are rare but legal gzip
            return bytes(out)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = rest


def _one_line(exc: BaseException) -> str:
    """An exception's message on a single line (messages shown to the user must be one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, header length) from the magic and dimension sizes, validated."""
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(data)} bytes, the header needs at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic starts with {data[0]:#04x} {data[1]:#04x}, expected 0x00 0x00)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"{c:#04x}" for c in IDX_TYPES)
        raise DataError(f"{path}: unknown IDX data type code {code:#04x} (known: {known})")
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions (expected 1 to {MAX_DIMS})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated IDX header ({ndim} dimensions need {header_len} bytes, file has {len(data)})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return np.dtype(IDX_TYPES[code]), dims, header_len


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian numpy array of the declared shape."""
    path = Path(path)
    data = _read_bytes(path)
    dtype, dims, header_len = _parse_header(path, data)
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on absurd dims
    actual = len(data) - header_len
    shape = "x".join(map(str, dims))
    if actual < expected:
        raise DataError(
            f"{path}: truncated IDX payload (shape {shape} needs {expected} bytes, file has {actual})"
        )
    if actual > expected:
        raise DataError(
            f"{path}: {actual - expected} unexpected trailing bytes after the IDX payload "
            f"(shape {shape} needs {expected} bytes, file has {actual})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).astype(dtype.newbyteorder("="))
    try:
        return array.reshape(dims)
    except ValueError as exc:  # a zero dimension next to absurd ones: numpy refuses the shape
        raise DataError(f"{path}: IDX shape {shape} is not a valid array shape") from exc


def _candidates(prefix: str, kind: str, ndim: int) -> list[str]:
    """File names to try, in order: the official dash naming, then the common dotted one."""
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return [n + ext for n in names for ext in ("", ".gz")]


def _find(root: Path, names: list[str]) -> Path | None:
    """The first existing file among names in root."""
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def _locate(root: Path, split: str, name: str) -> tuple[Path, Path]:
    """Paths of the image and label files of a split, or a DataError saying what to get and where."""
    if split not in SPLIT_PREFIX:
        raise DataError(f"{root}: unknown {name} split {split!r} (valid: train, test)")
    prefix = SPLIT_PREFIX[split]
    image_names = _candidates(prefix, "images", 3)
    label_names = _candidates(prefix, "labels", 1)
    images, labels = _find(root, image_names), _find(root, label_names)
    if images is None or labels is None:
        missing = (image_names if images is None else []) + (label_names if labels is None else [])
        where = "folder does not exist" if not root.is_dir() else "not found"
        hint = _HINTS.get(name, "pass --set data.root=DIR for the folder that holds them")
        raise DataError(
            f"{root}: {name} {split} files {where}: looked for {', '.join(missing)}; {hint}"
        )
    return images, labels


def _check_images(path: Path, images: np.ndarray, image_size: int) -> None:
    """Images must be non-empty uint8 (N, H, W) that fit in image_size."""
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images must be unsigned bytes (IDX type 0x08), got {images.dtype}")
    if images.ndim != 3:
        raise DataError(f"{path}: images must have 3 dimensions (N, H, W), got shape {images.shape}")
    n, h, w = images.shape
    if n == 0 or h == 0 or w == 0:
        raise DataError(f"{path}: empty image file (shape {images.shape})")
    if h > image_size or w > image_size:
        raise DataError(f"{path}: {h}x{w} images do not fit in image_size {image_size}")


def _check_labels(path: Path, labels: np.ndarray, image_path: Path, n_images: int) -> None:
    """Labels must be integer (N,), as many as images, each in 0..9."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path}: labels must be a 1-dimensional integer IDX array, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != n_images:
        raise DataError(
            f"{path}: {len(labels)} labels but {image_path.name} has {n_images} images"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: label {int(labels[i])} at index {i} is outside 0..{NUM_CLASSES - 1} "
            f"({bad.size} bad labels)"
        )


def load_idx_dataset(root: str | Path, split: str, name: str, image_size: int = 32) -> ImageSet:
    """An MNIST-like split from root, as 1-channel uint8 images zero-padded to image_size."""
    root = Path(root).expanduser()
    image_path, label_path = _locate(root, split, name)
    images = read_idx(image_path)
    _check_images(image_path, images, image_size)
    labels = read_idx(label_path)
    _check_labels(label_path, labels, image_path, len(images))
    tensor = pad_to(torch.from_numpy(images).unsqueeze(1), image_size)
    return ImageSet(
        tensor.contiguous(),
        torch.from_numpy(labels.astype(np.int64)),
        name=name,
        num_classes=NUM_CLASSES,
    )


def load_mnist(root: str | Path, split: str = "train", image_size: int = 32) -> ImageSet:
    """MNIST from the user's own copy of the IDX files in root."""
    return load_idx_dataset(root, split, "mnist", image_size)


def load_fashion_mnist(
    root: str | Path | None = None, split: str = "train", image_size: int = 32
) -> ImageSet:
    """Fashion-MNIST, by default from the Debian package's folder /usr/share/datasets/fashion-mnist."""
    return load_idx_dataset(FASHION_MNIST_ROOT if root is None else root, split, "fashion-mnist", image_size)


@register_dataset("fashion_mnist")
def build_fashion_mnist(cfg: DataConfig, seed: int) -> DataBundle:
    """data.name fashion_mnist: data.root or the Debian package's IDX files, zero-padded to image_size."""
    kwargs = {"root": cfg.root} if cfg.root is not None else {}
    train = load_fashion_mnist(split="train", image_size=cfg.image_size, **kwargs)
    test = load_fashion_mnist(split="test", image_size=cfg.image_size, **kwargs)
    return array_bundle(cfg, train, test, seed)


@register_dataset("mnist")
def build_mnist(cfg: DataConfig, seed: int) -> DataBundle:
    """data.name mnist: the user's IDX files in data.root, zero-padded to image_size."""
    if cfg.root is None:
        raise ConfigError(
            "data.root: MNIST needs your copy of the IDX files (train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); "
            "pass --set data.root=DIR"
        )
    train = load_mnist(cfg.root, split="train", image_size=cfg.image_size)
    test = load_mnist(cfg.root, split="test", image_size=cfg.image_size)
    return array_bundle(cfg, train, test, seed)
