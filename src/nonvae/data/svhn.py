"""SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``).

Each file is a MATLAB v5 file with ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1)
where the digit 0 is stored as label 10.

The files are read by the small MAT v5 reader below rather than by
``scipy.io.loadmat``: scipy's compiled reader trusts the data-type codes in
the file, and a corrupt one makes it read out of bounds and crash the whole
process with a segmentation fault (seen with scipy 1.17 on mutated files),
which no ``except`` can turn into a readable error. The reader handles what
SVHN (and ``scipy.io.savemat``) write: numeric arrays, raw or zlib-compressed,
either byte order; other variables are skipped by their declared size.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch

from nonvae.config import DataConfig
from nonvae.data.base import DataBundle, ImageSet, array_bundle
from nonvae.errors import ConfigError, DataError
from nonvae.registry import register_dataset

SPLITS = ("train", "test", "extra")
NUM_CLASSES = 10
GET_SVHN = (
    "download it from http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits) "
    "and pass --set data.root=DIR"
)

# MAT v5 element types.
MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
# MAT v5 numeric array classes -> numpy dtype of the loaded array.
MX_DTYPES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
COMPLEX_FLAG = 0x800
HEADER = 128


class _Cursor:
    """Bounds-checked reading of MAT v5 elements from a byte buffer (every error names the file)."""

    def __init__(self, path: Path, data: bytes | memoryview, endian: str, pos: int = 0) -> None:
        self.path, self.data, self.endian, self.pos = path, memoryview(data), endian, pos
        self.end = len(self.data)

    def fail(self, what: str) -> DataError:
        return DataError(f"{self.path}: corrupt MAT file ({what} at byte {self.pos})")

    def _u32(self, offset: int) -> int:
        return int(np.frombuffer(self.data, self.endian + "u4", count=1, offset=offset)[0])

    def element(self, padded: bool = True) -> tuple[int, memoryview]:
        """The next element's (type, data), moving past it (and its padding to 8 bytes when padded)."""
        if self.pos + 8 > self.end:
            raise self.fail("truncated element tag")
        first = self._u32(self.pos)
        if first >> 16:  # 'small element': byte count in the upper half, data in the tag's second word
            mdtype, nbytes, start, after = first & 0xFFFF, first >> 16, self.pos + 4, self.pos + 8
            if nbytes > 4:
                raise self.fail(f"small element of {nbytes} bytes")
        else:
            mdtype, nbytes, start = first, self._u32(self.pos + 4), self.pos + 8
            if start + nbytes > self.end:
                raise self.fail(f"element of {nbytes} bytes runs past the end")
            after = min(self.end, start + ((nbytes + 7) // 8 * 8 if padded else nbytes))
        self.pos = after
        return mdtype, self.data[start : start + nbytes]

    def numbers(self, want: int | None, what: str) -> np.ndarray:
        """A numeric element (of type want, or any numeric type) as a numpy array in file byte order."""
        mdtype, raw = self.element()
        if mdtype not in MI_DTYPES or (want is not None and mdtype != want):
            raise self.fail(f"{what} has data type code {mdtype}")
        dtype = np.dtype(self.endian + MI_DTYPES[mdtype])
        if len(raw) % dtype.itemsize:
            raise self.fail(f"{what} has {len(raw)} bytes, not a multiple of {dtype.itemsize}")
        return np.frombuffer(raw, dtype)


def _header_endian(path: Path, data: bytes) -> str:
    """'<' or '>' from the 128-byte MAT v5 header; refuses v4, v7.3 (HDF5) and non-MAT files."""
    if len(data) < HEADER:
        raise DataError(f"{path}: not a MAT file ({len(data)} bytes, shorter than the 128-byte header)")
    if data[:10] == b"MATLAB 7.3" or data[512:516] == b"\x89HDF":
        raise DataError(f"{path}: MATLAB v7.3 (HDF5) MAT files are not supported; save it with -v7")
    indicator, version = data[126:128], data[124:126]
    major = version[1] if indicator == b"IM" else version[0]
    if indicator not in (b"IM", b"MI") or major != 1:
        raise DataError(f"{path}: not a MATLAB v5/v7 MAT file (no version/endian marker at bytes 124-127)")
    return "<" if indicator == b"IM" else ">"


def _matrix(path: Path, data: memoryview, endian: str, names: set[str]) -> tuple[str, np.ndarray | None]:
    """(name, array) of one miMATRIX body; array is None when the name is not wanted."""
    cur = _Cursor(path, data, endian)
    flags = cur.numbers(MI_UINT32, "array flags")
    dims = cur.numbers(MI_INT32, "dimensions")
    name_raw = cur.numbers(MI_INT8, "array name")
    if len(flags) < 2 or len(dims) < 2 or (dims < 0).any():
        raise cur.fail("bad array flags or dimensions")
    name = name_raw.tobytes().decode("latin-1")
    if name not in names:
        return name, None
    mx_class = int(flags[0]) & 0xFF
    if mx_class not in MX_DTYPES or int(flags[0]) & COMPLEX_FLAG:
        raise DataError(f"{path}: variable {name} is not a real numeric array (MAT class {mx_class})")
    values, target = cur.numbers(None, f"values of {name}"), np.dtype(MX_DTYPES[mx_class])
    if not np.can_cast(values.dtype, target, casting="safe"):  # MATLAB only ever stores narrower types
        raise cur.fail(f"{name} of class {target} stored as {values.dtype}")
    shape = tuple(int(d) for d in dims)
    if values.size != math.prod(shape):
        raise cur.fail(f"{name} has {values.size} values for shape {shape}")
    try:
        return name, values.astype(target).reshape(shape, order="F")
    except ValueError as exc:  # a zero dimension next to absurd ones: numpy refuses the shape
        raise cur.fail(f"{name} has an invalid shape {shape}") from exc


def _inflate(path: Path, data: memoryview) -> bytes:
    """A compressed element's contents (one whole variable)."""
    try:
        return zlib.decompress(data)
    except zlib.error as exc:
        raise DataError(f"{path}: corrupt compressed variable in MAT file ({exc})") from exc


def read_mat(path: str | Path, names: set[str]) -> dict[str, np.ndarray]:
    """The named numeric variables of a MATLAB v5 file (other variables are skipped, not converted)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read MAT file ({exc.strerror or exc})") from exc
    endian = _header_endian(path, data)
    cur, found = _Cursor(path, data, endian, pos=HEADER), {}
    while cur.pos < cur.end and len(found) < len(names):
        mdtype, body = cur.element(padded=False)
        if mdtype == MI_COMPRESSED:
            inner = _Cursor(path, _inflate(path, body), endian)
            mdtype, body = inner.element(padded=False)
        if mdtype != MI_MATRIX:
            raise cur.fail(f"top-level element of type {mdtype}, expected a variable")
        if len(body) == 0:
            continue
        name, array = _matrix(path, body, endian, names)
        if array is not None:
            found[name] = array
    return found


def _locate(root: Path, split: str) -> Path:
    """root/<split>_32x32.mat, or a DataError saying which file is expected where."""
    if split not in SPLITS:
        raise DataError(f"{root}: unknown SVHN split {split!r} (valid: {', '.join(SPLITS)})")
    path = root / f"{split}_32x32.mat"
    if not path.is_file():
        where = "folder does not exist" if not root.is_dir() else "not found"
        raise DataError(f"{root}: SVHN {split} file {where}: looked for {path.name}; {GET_SVHN}")
    return path


def _images(path: Path, x: np.ndarray) -> np.ndarray:
    """X (32, 32, 3, N) uint8 -> (N, 3, 32, 32) uint8."""
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: X must have shape (32, 32, 3, N), got {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{path}: X must be uint8, got {x.dtype}")
    if x.shape[3] == 0:
        raise DataError(f"{path}: X holds no images")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1))


def _labels(path: Path, y: np.ndarray, n: int) -> np.ndarray:
    """y (N, 1) with 10 meaning digit 0 -> int64 (N,) in 0..9."""
    if y.size != n or y.ndim > 2:
        raise DataError(f"{path}: y must be {n} labels (N, 1) matching X, got shape {y.shape}")
    flat = y.reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat > NUM_CLASSES) | (flat != np.round(flat)))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: label {flat[i]} at index {i} is not an integer in 0..10")
    return flat.astype(np.int64) % NUM_CLASSES


def load_svhn(root: str | Path, split: str = "train") -> ImageSet:
    """SVHN cropped digits from root/<split>_32x32.mat as 3x32x32 uint8 images, labels 0..9."""
    root = Path(root).expanduser()
    path = _locate(root, split)
    mat = read_mat(path, {"X", "y"})
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        raise DataError(f"{path}: MAT file has no variable {' or '.join(missing)} (expected X and y)")
    images = _images(path, mat["X"])
    labels = _labels(path, mat["y"], len(images))
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), name="svhn", num_classes=NUM_CLASSES)


@register_dataset("svhn")
def build_svhn(cfg: DataConfig, seed: int) -> DataBundle:
    """data.name svhn: train_32x32.mat and test_32x32.mat in data.root."""
    if cfg.root is None:
        raise ConfigError("data.root: SVHN needs train_32x32.mat and test_32x32.mat; pass --set data.root=DIR")
    return array_bundle(cfg, load_svhn(cfg.root, "train"), load_svhn(cfg.root, "test"), seed)
