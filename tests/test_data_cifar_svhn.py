"""CIFAR-10 binary and SVHN .mat loaders: round trips, malformed files, and fuzzing."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nonvae.data.cifar import RECORD, load_cifar10
from nonvae.data.svhn import load_svhn, read_mat
from nonvae.errors import DataError

# Flip positions: often inside the headers (the interesting part), sometimes anywhere.
POSITIONS = st.one_of(st.integers(0, 300), st.integers(0, 10**5))
FLIPS = st.lists(st.tuples(POSITIONS, st.integers(0, 255)), max_size=4)
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]


# ---------------------------------------------------------------- CIFAR-10


def cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n records in the binary format (label byte + R, G, B planes), and what they encode."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
    return records.tobytes(), images, labels


def make_cifar(folder: Path, n: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny cifar-10-batches-bin folder with all six files."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for seed, name in enumerate([*TRAIN_FILES, "test_batch.bin"]):
        data, images, labels = cifar_batch(n, seed)
        (folder / name).write_bytes(data)
        out[name] = (images, labels)
    return out


@pytest.mark.parametrize("use_parent", [False, True])
def test_cifar_round_trip(tmp_path: Path, use_parent: bool) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    truth = make_cifar(folder)
    root = tmp_path if use_parent else folder
    test = load_cifar10(root, "test")
    assert tuple(test.images.shape) == (3, 3, 32, 32) and str(test.images.dtype) == "torch.uint8"
    np.testing.assert_array_equal(test.images.numpy(), truth["test_batch.bin"][0])
    np.testing.assert_array_equal(test.labels.numpy(), truth["test_batch.bin"][1])
    assert str(test.labels.dtype) == "torch.int64" and test.num_classes == 10
    train = load_cifar10(root, "train")
    assert len(train) == 15
    np.testing.assert_array_equal(train.images[12:].numpy(), truth["data_batch_5.bin"][0])
    np.testing.assert_array_equal(train.labels[:3].numpy(), truth["data_batch_1.bin"][1])


def test_cifar_channel_order(tmp_path: Path) -> None:
    """First 1024 pixel bytes are red, in row-major order."""
    record = np.zeros(RECORD, np.uint8)
    record[0] = 7
    record[1 + 5] = 200  # red, row 0, column 5
    record[1 + 1024 + 32] = 100  # green, row 1, column 0
    (tmp_path / "test_batch.bin").write_bytes(record.tobytes())
    data = load_cifar10(tmp_path, "test")
    assert int(data.images[0, 0, 0, 5]) == 200 and int(data.images[0, 1, 1, 0]) == 100
    assert int(data.images.sum()) == 300 and int(data.labels[0]) == 7


def test_cifar_missing_files_named(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin") as info:
        load_cifar10(tmp_path, "train")
    assert "data_batch_1.bin" not in str(info.value) and str(tmp_path) in str(info.value)
    with pytest.raises(DataError, match="test_batch.bin") as info:
        load_cifar10(tmp_path / "empty", "test")
    assert "binary version" in str(info.value) and "\n" not in str(info.value)


def test_cifar_truncated(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{3 * RECORD - 100} bytes is not") as info:
        load_cifar10(tmp_path, "test")
    assert "test_batch.bin" in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="0 bytes"):
        load_cifar10(tmp_path, "test")


def test_cifar_bad_label(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    path = tmp_path / "data_batch_2.bin"
    data = bytearray(path.read_bytes())
    data[2 * RECORD] = 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="record 2 has label 10") as info:
        load_cifar10(tmp_path, "train")
    assert "data_batch_2.bin" in str(info.value)


@pytest.mark.parametrize("nested", [False, True])
def test_cifar_pickle_version_refused(tmp_path: Path, nested: bool) -> None:
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    folder.mkdir(exist_ok=True)
    (folder / "data_batch_1").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(DataError, match="pickle") as info:
        load_cifar10(tmp_path, "train")
    message = str(info.value)
    assert "data_batch_1" in message and "binary version" in message and "\n" not in message


def test_cifar_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split 'extra'"):
        load_cifar10(tmp_path, "extra")


@FUZZ
@given(data=st.binary(max_size=2 * RECORD + 10))
def test_cifar_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "test_batch.bin").write_bytes(data)
    try:
        loaded = load_cifar10(tmp_path, "test")
    except DataError as exc:
        assert "test_batch.bin" in str(exc) and "\n" not in str(exc)
    else:
        assert len(loaded) * RECORD == len(data)


@FUZZ
@given(cut=st.integers(0, RECORD + 5), flips=FLIPS)
def test_cifar_fuzz_mutated(tmp_path: Path, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(cifar_batch(2, 0)[0])
    data = data[: len(data) - cut]
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    (tmp_path / "test_batch.bin").write_bytes(bytes(data))
    try:
        load_cifar10(tmp_path, "test")
    except DataError as exc:
        assert "test_batch.bin" in str(exc)


# ---------------------------------------------------------------- SVHN


def make_svhn(
    root: Path, split: str = "train", n: int = 4, compress: bool = False, **override: object
) -> tuple[np.ndarray, np.ndarray]:
    """A MATLAB v5 file shaped like the real SVHN cropped-digits files; returns (X, y)."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, size=(n, 1), dtype=np.uint8)
    y[0, 0] = 10
    variables = {"X": x, "y": y, **override}
    kept = {k: v for k, v in variables.items() if v is not None}
    scipy.io.savemat(root / f"{split}_32x32.mat", kept, do_compression=compress)
    return x, y


@pytest.mark.parametrize("split,compress", [("train", False), ("test", True), ("extra", False)])
def test_svhn_round_trip(tmp_path: Path, split: str, compress: bool) -> None:
    x, y = make_svhn(tmp_path, split, compress=compress)
    data = load_svhn(tmp_path, split)
    assert tuple(data.images.shape) == (4, 3, 32, 32) and str(data.images.dtype) == "torch.uint8"
    # images[n, c, h, w] == X[h, w, c, n]
    np.testing.assert_array_equal(data.images.numpy(), x.transpose(3, 2, 0, 1))
    assert int(data.images[2, 1, 5, 7]) == int(x[5, 7, 1, 2])
    assert int(data.labels[0]) == 0
    np.testing.assert_array_equal(data.labels.numpy(), y[:, 0] % 10)
    assert str(data.labels.dtype) == "torch.int64" and data.num_classes == 10


def test_svhn_reader_matches_scipy(tmp_path: Path) -> None:
    """Our MAT reader agrees with scipy on the variables SVHN needs, other variables skipped."""
    variables = {
        "other": np.arange(6.0).reshape(2, 3),
        "X": np.arange(32 * 32 * 3 * 2, dtype=np.uint32).reshape(32, 32, 3, 2).astype(np.uint8),
        "y": np.array([[1.0], [10.0]]),
        "text": "a string",
    }
    for compress in (False, True):
        path = tmp_path / f"m{compress}.mat"
        scipy.io.savemat(path, variables, do_compression=compress)
        ours, theirs = read_mat(path, {"X", "y"}), scipy.io.loadmat(path)
        assert set(ours) == {"X", "y"}
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])
            assert ours[key].dtype == theirs[key].dtype


def big_endian_mat(x: np.ndarray, y: np.ndarray) -> bytes:
    """A hand-written big-endian ('MI') MAT v5 file, as written on big-endian machines."""

    def element(mdtype: int, payload: bytes) -> bytes:
        return struct.pack(">II", mdtype, len(payload)) + payload + bytes(-len(payload) % 8)

    def matrix(name: str, array: np.ndarray, mx_class: int, mi_type: int, dtype: str) -> bytes:
        body = (
            element(6, struct.pack(">II", mx_class, 0))
            + element(5, struct.pack(f">{array.ndim}i", *array.shape))
            + element(1, name.encode())
            + element(mi_type, array.astype(dtype).tobytes(order="F"))
        )
        return element(14, body)

    header = b"MATLAB 5.0 MAT-file, big-endian test".ljust(124, b" ") + b"\x01\x00MI"
    return header + matrix("X", x, 9, 2, ">u1") + matrix("y", y, 6, 9, ">f8")


def test_svhn_big_endian_file(tmp_path: Path) -> None:
    x = np.random.default_rng(3).integers(0, 256, size=(32, 32, 3, 2), dtype=np.uint8)
    (tmp_path / "test_32x32.mat").write_bytes(big_endian_mat(x, np.array([[10.0], [4.0]])))
    data = load_svhn(tmp_path, "test")
    np.testing.assert_array_equal(data.images.numpy(), x.transpose(3, 2, 0, 1))
    assert data.labels.tolist() == [0, 4]


def test_svhn_absurd_empty_shape(tmp_path: Path) -> None:
    data = bytearray(big_endian_mat(np.zeros((32, 32, 3, 0), np.uint8), np.zeros((0, 1))))
    huge = struct.pack(">4i", 0, 2**31 - 1, 2**31 - 1, 2**31 - 1)
    start = data.index(struct.pack(">4i", 32, 32, 3, 0))
    data[start : start + 16] = huge
    (tmp_path / "test_32x32.mat").write_bytes(bytes(data))
    with pytest.raises(DataError, match="invalid shape") as info:
        load_svhn(tmp_path, "test")
    assert "test_32x32.mat" in str(info.value)


def test_svhn_v73_refused(tmp_path: Path) -> None:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512)
    (tmp_path / "train_32x32.mat").write_bytes(header + b"\x89HDF\r\n")
    with pytest.raises(DataError, match="v7.3") as info:
        load_svhn(tmp_path, "train")
    assert "train_32x32.mat" in str(info.value)


def test_svhn_missing_file(tmp_path: Path) -> None:
    make_svhn(tmp_path, "train")
    with pytest.raises(DataError, match="test_32x32.mat") as info:
        load_svhn(tmp_path, "test")
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="split 'valid'"):
        load_svhn(tmp_path, "valid")


NOT_MAT = [b"", b"hello, not matlab", b"\x00" * 300, b"MATLAB 5.0 MAT-file" + b"\x01" * 200]


@pytest.mark.parametrize("content", NOT_MAT)
def test_svhn_not_a_mat_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "train_32x32.mat").write_bytes(content)
    with pytest.raises(DataError) as info:
        load_svhn(tmp_path, "train")
    assert "train_32x32.mat" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("drop", ["X", "y"])
def test_svhn_missing_key(tmp_path: Path, drop: str) -> None:
    make_svhn(tmp_path, "train", **{drop: None, "other": np.zeros(3)})
    with pytest.raises(DataError, match=f"no variable {drop}") as info:
        load_svhn(tmp_path, "train")
    assert "train_32x32.mat" in str(info.value)


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"X": np.zeros((28, 28, 3, 4), np.uint8)}, r"shape \(32, 32, 3, N\)"),
        ({"X": np.zeros((32, 32, 3, 4), np.float64)}, "uint8"),
        ({"y": np.ones((3, 1), np.uint8)}, "4 labels"),
        ({"y": np.full((4, 1), 11, np.uint8)}, "label 11 at index 0"),
        ({"y": np.full((4, 1), 2.5)}, "label 2.5"),
    ],
)
def test_svhn_bad_shapes_and_labels(tmp_path: Path, override: dict, pattern: str) -> None:
    make_svhn(tmp_path, "train", **override)
    with pytest.raises(DataError, match=pattern) as info:
        load_svhn(tmp_path, "train")
    assert "train_32x32.mat" in str(info.value)


def test_svhn_accepts_flat_labels(tmp_path: Path) -> None:
    x, y = make_svhn(tmp_path, "train", y=np.array([10, 1, 2, 9], np.int32))
    np.testing.assert_array_equal(load_svhn(tmp_path, "train").labels.numpy(), [0, 1, 2, 9])


@FUZZ
@given(data=st.binary(max_size=400))
def test_svhn_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + data if data[:1] == b"M" else data)
    try:
        load_svhn(tmp_path, "test")
    except DataError as exc:
        assert "test_32x32.mat" in str(exc) and "\n" not in str(exc)


@FUZZ
@given(compress=st.booleans(), cut=st.integers(0, 300), flips=FLIPS)
def test_svhn_fuzz_mutated(tmp_path: Path, compress: bool, cut: int, flips: list[tuple[int, int]]) -> None:
    make_svhn(tmp_path, "test", n=2, compress=compress)
    path = tmp_path / "test_32x32.mat"
    data = bytearray(path.read_bytes())
    data = data[: len(data) - cut]
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    path.write_bytes(bytes(data))
    try:
        loaded = load_svhn(tmp_path, "test")
    except DataError as exc:
        assert "test_32x32.mat" in str(exc) and "\n" not in str(exc)
    else:
        assert loaded.images.shape[1:] == (3, 32, 32) and int(loaded.labels.max()) < 10
