"""IDX (MNIST / Fashion-MNIST) reader: round trips, each malformed-file error, and fuzzing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nonvae.data.idx import (
    FASHION_MNIST_ROOT,
    load_fashion_mnist,
    load_idx_dataset,
    load_mnist,
    read_idx,
)
from nonvae.errors import DataError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file image: magic, big-endian dims, big-endian payload."""
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtypes[code]).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_split(root: Path, split: str = "train", n: int = 5, gz: bool = True, dotted: bool = False,
               n_labels: int | None = None, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny MNIST-like split in root; return (images, labels)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_labels or n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    sep = "." if dotted else "-"
    ext = ".gz" if gz else ""
    write(root / f"{prefix}-images{sep}idx3-ubyte{ext}", idx_bytes(images), gz)
    write(root / f"{prefix}-labels{sep}idx1-ubyte{ext}", idx_bytes(labels), gz)
    return images, labels


# ---------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(write(tmp_path / "a.idx", idx_bytes(array), gz))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)
    out.flat[0] = 7  # writable: no torch warning on from_numpy


def test_read_idx_detects_gzip_by_magic_not_extension(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "labels.raw", idx_bytes(array), gz=True)), array)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "labels.gz", idx_bytes(array), gz=False)), array)


@pytest.mark.parametrize("code", [0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_other_types_are_big_endian(tmp_path: Path, code: int) -> None:
    array = np.array([[-3, 0, 1], [2, 100, -100]])
    out = read_idx(write(tmp_path / "t.idx", idx_bytes(array, code)))
    np.testing.assert_array_equal(out, array)
    assert out.dtype.isnative


def test_wrong_magic(tmp_path: Path) -> None:
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8)))
    data[0] = 8
    path = write(tmp_path / "bad-magic-idx", bytes(data))
    with pytest.raises(DataError, match="not an IDX file") as info:
        read_idx(path)
    assert "bad-magic-idx" in str(info.value)


def test_unknown_type_code(tmp_path: Path) -> None:
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8)))
    data[2] = 0x0A
    with pytest.raises(DataError, match="type code 0x0a") as info:
        read_idx(write(tmp_path / "code.idx", bytes(data)))
    assert "code.idx" in str(info.value)


def test_zero_dimensions_and_short_header(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="0 dimensions"):
        read_idx(write(tmp_path / "zero.idx", b"\x00\x00\x08\x00"))
    with pytest.raises(DataError, match="truncated IDX header") as info:
        read_idx(write(tmp_path / "short.idx", b"\x00\x00\x08\x03\x00\x00\x00\x02"))
    assert "short.idx" in str(info.value)
    with pytest.raises(DataError, match="only 2 bytes"):
        read_idx(write(tmp_path / "tiny.idx", b"\x00\x00"))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-5]
    with pytest.raises(DataError, match="truncated") as info:
        read_idx(write(tmp_path / "trunc.idx", data, gz))
    message = str(info.value)
    assert "trunc.idx" in message and "needs 48 bytes" in message and "has 43" in message
    assert "\n" not in message


def test_trailing_bytes(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((3, 4), np.uint8)) + b"junk"
    with pytest.raises(DataError, match="4 unexpected trailing bytes") as info:
        read_idx(write(tmp_path / "trail.idx", data))
    assert "trail.idx" in str(info.value)


def test_absurd_empty_shape(tmp_path: Path) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x0E, 4) + struct.pack(">4I", 0, 2**32 - 1, 2**32 - 1, 2**32 - 1)
    with pytest.raises(DataError, match="not a valid array shape") as info:
        read_idx(write(tmp_path / "huge.idx", header))
    assert "huge.idx" in str(info.value)


def test_corrupt_gzip(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    broken = good[:10] + bytes(b ^ 0xFF for b in good[10:20]) + good[20:]
    for name, data in [("cut.gz", good[: len(good) // 2]), ("flip.gz", broken), ("magic.gz", b"\x1f\x8b")]:
        with pytest.raises(DataError, match="corrupt gzip") as info:
            read_idx(write(tmp_path / name, data))
        assert name in str(info.value) and "\n" not in str(info.value)


def test_unreadable_path_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path)


# ---------------------------------------------------------------- load_idx_dataset


@pytest.mark.parametrize("gz,dotted", [(True, False), (False, False), (False, True), (True, True)])
def test_load_split_round_trip_and_padding(tmp_path: Path, gz: bool, dotted: bool) -> None:
    images, labels = make_split(tmp_path, "test", n=4, gz=gz, dotted=dotted)
    data = load_mnist(tmp_path, "test")
    assert data.images.shape == (4, 1, 32, 32) and data.images.dtype.is_floating_point is False
    assert str(data.images.dtype) == "torch.uint8" and str(data.labels.dtype) == "torch.int64"
    assert data.num_classes == 10 and data.name == "mnist"
    np.testing.assert_array_equal(data.images[:, 0, 2:30, 2:30].numpy(), images)
    assert int(data.images[:, :, :2].sum() + data.images[:, :, 30:].sum()) == 0
    assert int(data.images[:, :, :, :2].sum() + data.images[:, :, :, 30:].sum()) == 0
    np.testing.assert_array_equal(data.labels.numpy(), labels)


def test_image_size_28_keeps_images(tmp_path: Path) -> None:
    images, _ = make_split(tmp_path, "train", n=3)
    data = load_idx_dataset(tmp_path, "train", "fashion-mnist", image_size=28)
    np.testing.assert_array_equal(data.images[:, 0].numpy(), images)
    with pytest.raises(DataError, match="do not fit") as info:
        load_idx_dataset(tmp_path, "train", "fashion-mnist", image_size=16)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_missing_files_lists_names_and_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_fashion_mnist(tmp_path, "test")
    message = str(info.value)
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                 "t10k-images.idx3-ubyte"):
        assert name in message
    assert str(tmp_path) in message and "apt-get install dataset-fashion-mnist" in message
    assert "\n" not in message
    with pytest.raises(DataError, match="data.root") as info:
        load_mnist(tmp_path / "nowhere", "train")
    assert "train-labels-idx1-ubyte" in str(info.value) and "does not exist" in str(info.value)


def test_only_labels_missing_names_only_labels(tmp_path: Path) -> None:
    make_split(tmp_path, "train")
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, "train")
    assert "train-labels-idx1-ubyte" in str(info.value) and "train-images-idx3" not in str(info.value)


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split 'valid'"):
        load_mnist(tmp_path, "valid")


def test_count_mismatch_names_both_files(tmp_path: Path) -> None:
    make_split(tmp_path, "train", n=5, n_labels=4)
    with pytest.raises(DataError, match="4 labels but") as info:
        load_mnist(tmp_path, "train")
    assert "train-labels-idx1-ubyte.gz" in str(info.value)
    assert "train-images-idx3-ubyte.gz has 5 images" in str(info.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    make_split(tmp_path, "train", n=3, gz=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([1, 12, 3], np.uint8)))
    with pytest.raises(DataError, match="label 12 at index 1") as info:
        load_mnist(tmp_path, "train")
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_wrong_image_shape_or_type(tmp_path: Path) -> None:
    make_split(tmp_path, "train", n=3, gz=False)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((3, 784), np.uint8)))
    with pytest.raises(DataError, match="3 dimensions") as info:
        load_mnist(tmp_path, "train")
    assert "train-images-idx3-ubyte" in str(info.value)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((3, 28, 28)), 0x0D))
    with pytest.raises(DataError, match="unsigned bytes"):
        load_mnist(tmp_path, "train")


# ---------------------------------------------------------------- fuzzing


@FUZZ
@given(data=st.binary(max_size=200), gz=st.booleans())
def test_fuzz_random_bytes(tmp_path: Path, data: bytes, gz: bool) -> None:
    path = write(tmp_path / "random.idx", data, gz)
    try:
        read_idx(path)
    except DataError as exc:
        assert "random.idx" in str(exc) and "\n" not in str(exc)


@FUZZ
@given(
    gz=st.booleans(),
    cut=st.integers(0, 40),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
)
def test_fuzz_mutated_valid_split(tmp_path: Path, gz: bool, cut: int, flips: list[tuple[int, int]]) -> None:
    make_split(tmp_path, "train", n=3, gz=False)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        raw = (tmp_path / name).read_bytes()
        raw = gzip.compress(raw) if gz else raw
        data = bytearray(raw[: max(0, len(raw) - cut)])
        for pos, value in flips:
            if data:
                data[pos % len(data)] = value
        write(tmp_path / name, bytes(data))
    try:
        data_set = load_mnist(tmp_path, "train")
    except DataError as exc:
        assert "train-" in str(exc) and "\n" not in str(exc)
    else:
        assert data_set.images.shape[1:] == (1, 32, 32)
        assert int(data_set.labels.max()) < 10


# ---------------------------------------------------------------- the real thing


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason=f"{FASHION_MNIST_ROOT} absent "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_test_split() -> None:
    data = load_fashion_mnist(split="test")
    assert tuple(data.images.shape) == (10000, 1, 32, 32)
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    assert data.num_classes == 10
