"""Chunked directed Hausdorff distance equals scipy's exact one, whatever the chunk size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import directed_hausdorff

from nonvae.evaluate.hausdorff import directed_hausdorff_chunked, hausdorff_both, nearest_distances


def test_equals_scipy_on_images():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, size=(60, 3, 4, 4))
    b = rng.uniform(-1, 1, size=(75, 48))
    ref = directed_hausdorff(a.reshape(60, -1), b)[0]
    assert directed_hausdorff_chunked(a, b) == pytest.approx(ref, rel=1e-12)
    ref_back = directed_hausdorff(b, a.reshape(60, -1))[0]
    assert directed_hausdorff_chunked(b, a) == pytest.approx(ref_back, rel=1e-12)


def test_chunk_size_does_not_change_result():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(53, 20)) + 100.0  # large offset: the centring keeps the a^2+b^2-2ab trick exact
    b = rng.normal(size=(41, 20)) + 100.0
    ref = directed_hausdorff(a, b)[0]
    for chunk in (1, 7, 16, 53, 4096):
        assert directed_hausdorff_chunked(a, b, chunk=chunk) == pytest.approx(ref, rel=1e-12)


def test_duplicates_give_exact_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 10)) * 1e3
    b = np.concatenate([a, rng.normal(size=(20, 10))])
    assert directed_hausdorff_chunked(a, b) == 0.0
    assert directed_hausdorff_chunked(a, b) <= directed_hausdorff_chunked(b, a)


def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(3)
    a = torch.randn(25, 5, generator=torch.Generator().manual_seed(0))
    b = rng.normal(size=(18, 5))
    da, db = nearest_distances(a, b, chunk=4)
    full = np.linalg.norm(a.numpy().astype(np.float64)[:, None] - b[None], axis=-1)
    np.testing.assert_allclose(da, full.min(axis=1), rtol=1e-12)
    np.testing.assert_allclose(db, full.min(axis=0), rtol=1e-12)


def test_hausdorff_both_full_and_subsampled():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(40, 12))
    samples = rng.normal(size=(40, 12)) * 1.5
    out = hausdorff_both(real, samples, repeats=3)
    assert out == {
        "hausdorff/data_to_samples": pytest.approx(directed_hausdorff(real, samples)[0], rel=1e-12),
        "hausdorff/samples_to_data": pytest.approx(directed_hausdorff(samples, real)[0], rel=1e-12),
    }
    sub = hausdorff_both(real, samples, repeats=4, n=20, seed=7)
    assert sub == hausdorff_both(real, samples, repeats=4, n=20, seed=7)
    assert all(np.isfinite(v) and v > 0 for v in sub.values())
    with pytest.raises(ValueError):
        hausdorff_both(real, samples, n=41)


def test_rejects_mismatched_or_nonfinite():
    with pytest.raises(ValueError, match="features"):
        directed_hausdorff_chunked(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        directed_hausdorff_chunked(np.full((3, 4), np.nan), np.zeros((3, 4)))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.integers(1, 8),
    st.integers(1, 10),
    st.integers(0, 2**31 - 1),
)
def test_property_equals_scipy(na, nb, d, chunk, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(na, d))
    b = rng.normal(size=(nb, d))
    assert directed_hausdorff_chunked(a, b, chunk=chunk) == pytest.approx(
        directed_hausdorff(a, b)[0], rel=1e-9, abs=1e-12
    )
