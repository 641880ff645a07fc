"""Evaluation of frozen latent codes: linear probe, k-means clustering, linear regression.

All functions take numpy arrays (torch tensors are accepted and converted) of shape ``(N, D)``
and integer labels of shape ``(N,)``; they return plain floats keyed the way ``metrics.jsonl``
stores them so callers can ``dict.update`` the results.

The linear probe uses scikit-learn's multinomial L-BFGS logistic regression on standardised
latents. It was measured fast enough on two cores (60,000 x 256 in well under 30 s even on an
ill-conditioned synthetic set), so there is no torch re-implementation to maintain.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

# L-BFGS defaults: standardised latents usually converge in 10-60 iterations; an ill-conditioned
# (correlated, three-decade spectrum) 60,000 x 256 set needed ~170-230 iterations at tol=1e-4, and
# going to tol=1e-7 changed the test accuracy by < 0.2 %. 300 iterations bound the worst case at
# roughly 15 s for 256-d latents on two cores.
PROBE_MAX_ITER = 300
PROBE_TOL = 1e-4

# PCA components whose variance is below this fraction of the largest one are dropped before
# whitening: whitening a (numerically) zero-variance direction would blow rounding noise up to unit
# variance and hand k-means a meaningless extra coordinate (dead latent units are common).
PCA_REL_VAR_TOL = 1e-8


def _as_2d_float(x: Any, name: str) -> np.ndarray:
    """Latents as a finite float array (N, D); torch tensors are detached to CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _as_labels(y: Any, n: int, name: str) -> np.ndarray:
    """Labels as a 1-D integer array of length ``n``."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels for {n} latents")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y


def hungarian_accuracy(y_true: Any, y_pred: Any) -> float:
    """Accuracy of ``y_pred`` after the best one-to-one relabelling of its values onto ``y_true``.

    Cluster ids are arbitrary, so clustering accuracy is defined up to a permutation; the optimal
    permutation maximises the matched mass of the contingency matrix (Hungarian algorithm). When
    there are more clusters than classes, the surplus clusters stay unmatched and count as errors.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("hungarian_accuracy needs at least one sample")
    _, t = np.unique(y_true, return_inverse=True)
    _, p = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(counts, (p, t), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y_true))


def _probe_inputs(train_z: Any, train_y: Any, test_z: Any, test_y: Any, who: str):
    """Checked (train_z, train_y, test_z, test_y) arrays for a probe named ``who``."""
    train_z = _as_2d_float(train_z, "train_z")
    test_z = _as_2d_float(test_z, "test_z")
    train_y = _as_labels(train_y, len(train_z), "train_y")
    test_y = _as_labels(test_y, len(test_z), "test_y")
    if train_z.shape[1] != test_z.shape[1]:
        raise ValueError(f"train_z has {train_z.shape[1]} features but test_z has {test_z.shape[1]}")
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"{who} needs at least two classes in train_y")
    if len(test_z) == 0:
        raise ValueError(f"{who} needs at least one test sample")
    return train_z, train_y, test_z, test_y


def linear_probe(
    train_z: Any,
    train_y: Any,
    test_z: Any,
    test_y: Any,
    max_iter: int = PROBE_MAX_ITER,
    seed: int = 0,
    tol: float = PROBE_TOL,
    C: float = 1.0,
    threads: int | None = 1,
) -> dict[str, float]:
    """Test accuracy of one softmax layer trained on frozen latents (how linearly decodable they are).

    Latents are standardised with statistics of the training split only, which makes L-BFGS
    converge in few iterations whatever the latent scale. ``ConvergenceWarning`` is silenced:
    hitting ``max_iter`` leaves the accuracy within a fraction of a percent (see ``PROBE_MAX_ITER``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_z, train_y, test_z, test_y = _probe_inputs(train_z, train_y, test_z, test_y, "linear_probe")

    scaler = StandardScaler().fit(train_z)
    # float32: L-BFGS keeps the dtype, 1.5x faster on 60k x 256 codes than float64, same accuracy
    xtr = scaler.transform(train_z).astype(np.float32)
    xte = scaler.transform(test_z).astype(np.float32)
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=tol, random_state=seed)
    # one BLAS/OpenMP thread: on a shared 2-core machine 2 threads made this fit 1.6x slower (60k x 256)
    limit = threadpool_limits(limits=threads) if threads else contextlib.nullcontext()
    with warnings.catch_warnings(), limit:
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, train_y)
    return {
        "probe/accuracy": float(np.mean(clf.predict(xte) == test_y)),
        "probe/train_accuracy": float(np.mean(clf.predict(xtr) == train_y)),
    }


def mlp_probe(train_z: Any, train_y: Any, test_z: Any, test_y: Any, hidden: tuple[int, ...] = (256,),
              max_iter: int = 200, seed: int = 0) -> dict[str, float]:
    """Test accuracy of a small nonlinear classifier (one ReLU hidden layer) on frozen latents.

    A linear probe at chance does not mean the information is gone: this asks the same question
    with a nonlinear reader (early stopping on 10% of the training codes keeps it from memorising).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    train_z, train_y, test_z, test_y = _probe_inputs(train_z, train_y, test_z, test_y, "mlp_probe")
    scaler = StandardScaler().fit(train_z)
    early = len(train_z) >= 50
    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, early_stopping=early,
                        random_state=seed, n_iter_no_change=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train_z), train_y)
    return {"probe/accuracy": float(np.mean(clf.predict(scaler.transform(test_z)) == test_y))}


def pca_whiten(z: Any, seed: int = 0) -> np.ndarray:
    """PCA-whitened latents (all non-degenerate components, unit variance each).

    Whitening makes k-means insensitive to the arbitrary per-direction scale of a latent space,
    so clustering accuracy compares latent geometry rather than units.
    """
    from sklearn.decomposition import PCA

    z = _as_2d_float(z, "z").astype(np.float64)
    n_components = min(z.shape)
    pca = PCA(n_components=n_components, whiten=True, random_state=seed)
    w = pca.fit_transform(z)
    var = pca.explained_variance_
    if len(var) == 0 or var[0] <= 0:
        return np.zeros((len(z), 1))
    keep = var > PCA_REL_VAR_TOL * var[0]
    return w[:, keep]


def kmeans_accuracy(
    z: Any, y: Any, n_clusters: int | None = None, seed: int = 0, n_init: int | str = 10
) -> dict[str, float]:
    """Unsupervised class recovery: k-means on PCA-whitened latents scored by Hungarian matching.

    ``n_clusters`` defaults to the number of distinct labels in ``y``.
    """
    from sklearn.cluster import KMeans

    z = _as_2d_float(z, "z")
    y = _as_labels(y, len(z), "y")
    k = int(n_clusters) if n_clusters is not None else len(np.unique(y))
    if k < 1:
        raise ValueError(f"n_clusters must be >= 1, got {k}")
    if k > len(z):
        raise ValueError(f"n_clusters={k} exceeds the number of samples {len(z)}")
    w = pca_whiten(z, seed=seed)
    pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(w)
    return {"kmeans/accuracy": hungarian_accuracy(y, pred)}


def linear_regression_r2(train_z: Any, train_t: Any, test_z: Any, test_t: Any, alpha: float = 1e-6,
                         multioutput: str = "uniform_average") -> float:
    """Test R^2 (averaged over target columns) of a near-unregularised linear map latents -> targets.

    Used by disentanglement metrics to ask how linearly a factor (or another code) can be read
    from latents. The tiny ridge ``alpha`` only guards against collinear latent units; latents
    are standardised on the training split so ``alpha`` means the same at every latent scale.
    ``multioutput`` 'variance_weighted' weighs each target column by its variance (for pixels: the share of
    the whole image's variance explained, so near-constant pixels do not count as much as the rest).
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    train_z = _as_2d_float(train_z, "train_z")
    test_z = _as_2d_float(test_z, "test_z")
    train_t = _as_2d_float(train_t, "train_t").astype(np.float64)
    test_t = _as_2d_float(test_t, "test_t").astype(np.float64)
    if len(train_t) != len(train_z) or len(test_t) != len(test_z):
        raise ValueError("latents and targets must have the same number of rows")
    if train_t.shape[1] != test_t.shape[1]:
        raise ValueError(f"train_t has {train_t.shape[1]} targets but test_t has {test_t.shape[1]}")
    if len(test_t) < 2:
        raise ValueError("linear_regression_r2 needs at least two test samples")

    scaler = StandardScaler().fit(train_z)
    model = Ridge(alpha=alpha).fit(scaler.transform(train_z).astype(np.float64), train_t)
    pred = model.predict(scaler.transform(test_z).astype(np.float64))
    return float(r2_score(test_t, pred, multioutput=multioutput))


__all__ = [
    "hungarian_accuracy",
    "kmeans_accuracy",
    "linear_probe",
    "linear_regression_r2",
    "pca_whiten",
]
