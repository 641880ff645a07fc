"""Frozen-latent evaluation: linear probe, k-means accuracy, Hungarian matching, linear R^2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nonvae.evaluate.probe import (
    hungarian_accuracy,
    kmeans_accuracy,
    linear_probe,
    linear_regression_r2,
    pca_whiten,
)


def blobs(n: int, d: int = 16, k: int = 10, sep: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes with far-apart means (linearly separable in practice)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * sep
    y = np.arange(n) % k
    rng.shuffle(y)
    return (means[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_probe_separable_blobs_high_accuracy():
    z, y = blobs(900)
    out = linear_probe(z[:600], y[:600], z[600:], y[600:])
    assert set(out) == {"probe/accuracy", "probe/train_accuracy"}
    assert out["probe/accuracy"] > 0.9
    assert out["probe/train_accuracy"] > 0.9


def test_probe_random_labels_near_chance():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(900, 16)).astype(np.float32)
    y = rng.integers(0, 10, 900)
    out = linear_probe(z[:600], y[:600], z[600:], y[600:])
    assert out["probe/accuracy"] < 0.3


def test_probe_accepts_torch_and_is_scale_invariant():
    z, y = blobs(600, seed=2)
    a = linear_probe(torch.from_numpy(z[:400]), torch.from_numpy(y[:400]), z[400:], y[400:])
    b = linear_probe(z[:400] * 1e4, y[:400], z[400:] * 1e4, y[400:])
    assert a["probe/accuracy"] == pytest.approx(b["probe/accuracy"], abs=0.02)


def test_probe_rejects_bad_input():
    z, y = blobs(100)
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(z, np.zeros(100, dtype=int), z, y)
    bad = z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(bad, y, z, y)
    with pytest.raises(ValueError, match="features"):
        linear_probe(z, y, z[:, :5], y)


def test_kmeans_separated_blobs_and_label_permutation():
    z, y = blobs(500, d=8, k=5, sep=10.0, seed=3)
    acc = kmeans_accuracy(z, y)["kmeans/accuracy"]
    assert acc > 0.99
    perm = np.array([3, 0, 4, 1, 2])
    assert kmeans_accuracy(z, perm[y])["kmeans/accuracy"] == pytest.approx(acc)


def test_kmeans_ignores_dead_latent_units():
    z, y = blobs(500, d=8, k=5, sep=10.0, seed=4)
    z = np.concatenate([z, np.full((500, 2), 3.0, dtype=np.float32), z[:, :1] * 2], axis=1)
    w = pca_whiten(z)
    assert np.isfinite(w).all() and w.shape[1] == 8  # constant and duplicated columns dropped
    np.testing.assert_allclose(w.std(axis=0, ddof=1), 1.0, rtol=1e-6)
    assert kmeans_accuracy(z, y, n_init="auto")["kmeans/accuracy"] > 0.99


def test_hungarian_hand_made():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert hungarian_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert hungarian_accuracy(y, np.array([5, 5, 7, 5, 9, 9])) == pytest.approx(5 / 6)
    # more clusters than classes: the surplus cluster is unmatched and counts as wrong
    assert hungarian_accuracy(y, np.array([0, 0, 1, 1, 2, 3])) == pytest.approx(5 / 6)
    # fewer clusters than classes
    assert hungarian_accuracy(y, np.zeros(6, dtype=int)) == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        hungarian_accuracy(y, y[:3])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=40),
    st.lists(st.integers(0, 4), min_size=40, max_size=40),
    st.permutations(list(range(5))),
)
def test_hungarian_invariant_to_relabelling(y_true, y_pred, perm):
    y_true = np.array(y_true)
    y_pred = np.array(y_pred[: len(y_true)])
    acc = hungarian_accuracy(y_true, y_pred)
    assert acc == hungarian_accuracy(y_true, np.array(perm)[y_pred])
    assert acc == hungarian_accuracy(np.array(perm)[y_true], y_pred)
    assert acc >= np.mean(y_true == y_pred) - 1e-12  # identity is one of the candidate matchings
    assert 0.0 < acc <= 1.0


def test_linear_regression_r2():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(400, 6))
    t = z @ rng.normal(size=(6, 3)) + 0.01 * rng.normal(size=(400, 3))
    assert linear_regression_r2(z[:300], t[:300], z[300:], t[300:]) > 0.99
    assert linear_regression_r2(z[:300], t[:300, 0], z[300:], t[300:, 0]) > 0.99  # 1-D target
    noise = rng.normal(size=(400, 2))
    assert linear_regression_r2(z[:300], noise[:300], z[300:], noise[300:]) < 0.1


def test_mlp_probe_reads_what_a_linear_probe_cannot():
    """XOR-labelled codes: linearly at chance, nonlinearly almost perfect (why leakage_acc_mlp exists)."""
    from nonvae.evaluate.probe import mlp_probe

    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, size=(1200, 2))
    y = ((z[:, 0] > 0) ^ (z[:, 1] > 0)).astype(int)
    linear = linear_probe(z[:1000], y[:1000], z[1000:], y[1000:])["probe/accuracy"]
    mlp = mlp_probe(z[:1000], y[:1000], z[1000:], y[1000:])["probe/accuracy"]
    assert linear < 0.7 and mlp > 0.9, (linear, mlp)


def test_bf16_encoding_is_close_to_fp32_but_really_bf16():
    """eval.precision: bf16 runs the encoder under autocast: codes differ by rounding only."""
    from nonvae.config import load_config
    from nonvae.data.base import ImageSet
    from nonvae.evaluate.run import encode_all
    from nonvae.methods import build_method

    from .conftest import REPO, tiny_overrides

    cfg = load_config(f"{REPO}/configs/lines/ae.yaml", tiny_overrides(**{"data.image_size": 16}))
    torch.manual_seed(0)
    method = build_method(cfg, (1, 16, 16)).eval()
    ds = ImageSet(torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8))
    z32, mse32 = encode_all(method, ds, torch.device("cpu"), batch_size=16)
    z16, mse16 = encode_all(method, ds, torch.device("cpu"), batch_size=16, precision="bf16")
    assert z16.dtype == np.float32 and not np.array_equal(z32, z16)
    assert np.linalg.norm(z16 - z32) / np.linalg.norm(z32) < 0.05
    assert abs(mse16 - mse32) / mse32 < 0.05
