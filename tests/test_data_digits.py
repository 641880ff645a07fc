"""scikit-learn 8x8 digits loader: shapes, scaling, deterministic stratified split, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits as sk_load_digits

from nonvae.data.digits import load_digits
from nonvae.errors import DataError


@pytest.fixture(scope="module")
def sk() -> tuple[np.ndarray, np.ndarray]:
    bunch = sk_load_digits()
    return bunch.images, bunch.target


def test_shapes_types_and_sizes() -> None:
    train, test = load_digits("train"), load_digits("test")
    assert tuple(train.images.shape[1:]) == (1, 16, 16) and tuple(test.images.shape[1:]) == (1, 16, 16)
    assert len(train) + len(test) == 1797 and len(test) == 450
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.num_classes == 10 and train.name == "digits"
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_scaling_and_nearest_upsampling(sk: tuple[np.ndarray, np.ndarray]) -> None:
    images, target = sk
    data = load_digits("test", image_size=32)
    assert tuple(data.images.shape[1:]) == (1, 32, 32)
    small = data.images[:, 0, ::4, ::4].numpy()
    for block_row in range(4):  # every pixel of a 4x4 block equals its corner
        for block_col in range(4):
            np.testing.assert_array_equal(data.images[:, 0, block_row::4, block_col::4].numpy(), small)
    # each test image is some sklearn digit, scaled 0..16 -> 0..255, with its label
    scaled = np.rint(images * 255 / 16).astype(np.uint8).reshape(len(images), -1)
    lookup = {row.tobytes(): i for i, row in enumerate(scaled)}
    for image, label in zip(small[:20], data.labels[:20].tolist(), strict=True):
        index = lookup[image.reshape(-1).tobytes()]
        assert target[index] == label


def test_split_deterministic_disjoint_stratified() -> None:
    a, b = load_digits("train", seed=3), load_digits("train", seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    other = load_digits("train", seed=4)
    assert not torch.equal(a.labels, other.labels)
    train = load_digits("train", seed=0, test_fraction=0.2)
    test = load_digits("test", seed=0, test_fraction=0.2)
    train_rows = {bytes(x.numpy()) for x in train.images}
    test_rows = [bytes(x.numpy()) for x in test.images]
    # a few digits are exact duplicates in the raw data, so allow a handful of overlaps
    assert sum(r in train_rows for r in test_rows) < 10
    counts = torch.bincount(test.labels, minlength=10)
    assert int(counts.min()) >= 33 and int(counts.max()) <= 38  # ~20% of each class (174..183 per class)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"split": "valid"}, "split 'valid'"),
        ({"image_size": 20}, "multiple of 8"),
        ({"image_size": 0}, "multiple of 8"),
        ({"test_fraction": 0.0}, "between 0 and 1"),
        ({"test_fraction": 1.0}, "between 0 and 1"),
        ({"test_fraction": 0.001}, "cannot split"),
    ],
)
def test_bad_arguments(kwargs: dict, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern) as info:
        load_digits(**kwargs)
    assert "load_digits" in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=10, deadline=None)
@given(fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_any_fraction_splits_or_refuses(fraction: float, seed: int) -> None:
    try:
        train = load_digits("train", image_size=8, test_fraction=fraction, seed=seed)
        test = load_digits("test", image_size=8, test_fraction=fraction, seed=seed)
    except DataError:
        return
    assert len(train) + len(test) == 1797
