"""Hausdorff distances between the data and model samples, in bounded memory.

``directed_hausdorff(a, b) = max_{x in a} min_{y in b} ||x - y||``. Data-to-samples measures
coverage (a data point far from every sample is a missed mode); samples-to-data measures
fidelity (a sample far from every data point is off-manifold).

Why not ``scipy.spatial.distance.directed_hausdorff`` directly: scipy's is exact and O(1) in
memory, but it is a scalar loop whose early exit only pays off when the nearest-neighbour
distances are small next to the Hausdorff distance. When samples lie close to the data -- the
interesting case for a good model -- it approaches the full N*M*D scalar loop. Measured on two
shared cores, 1,024-d samples (rel. difference between the two results <= 1e-15):

=====================================  =====================  ==========================
case                                   scipy (one direction)  chunked here (both ways)
=====================================  =====================  ==========================
2,000 x 2,000, independent uniform     0.16 s                 0.11 s
2,000 x 2,000, samples = data + noise  0.91 s                 0.10 s
2,000 x 2,000, 10 tight clusters       0.03 s                 0.10 s
10,000 x 10,000, samples = data+noise  23.7 s                 2.5 s
10,000 x 10,000, 10 tight clusters     0.45 s                 3.3 s
=====================================  =====================  ==========================

scipy is unpredictable (0.03 s to 24 s for the same sizes); the evaluation runs 10 repeats in
both directions, so the worst case is minutes. Here the squared distances come from chunked
float64 matrix products (BLAS) with a cost that depends only on the sizes, both directions
from one pass, with the working set capped at ``chunk x chunk`` floats: linear memory in N.

Accuracy: ``|x|^2 + |y|^2 - 2 x.y`` loses precision when distances are tiny next to norms, so
both sets are centred on a common mean first, and every point's distance to its chosen nearest
neighbour is recomputed exactly as ``||x - y||``. The result matches scipy to float64 rounding
(an exact duplicate gives exactly 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _as_rows(x: Any, name: str) -> torch.Tensor:
    """Flatten each sample to a row, as a float64 CPU tensor."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float64)
    else:
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.ndim == 0:
        raise ValueError(f"{name} must have a sample dimension")
    t = t.reshape(t.shape[0], -1) if t.ndim != 1 else t.reshape(-1, 1)
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def nearest_distances(a: Any, b: Any, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest-neighbour distances both ways: (for each row of a -> b, for each row of b -> a).

    One chunked pass over the ``len(a) x len(b)`` distance matrix yields both row and column
    minima, so the two directed Hausdorff distances cost one matrix product, not two.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    ta = _as_rows(a, "a")
    tb = _as_rows(b, "b")
    if ta.shape[1] != tb.shape[1]:
        raise ValueError(f"a has {ta.shape[1]} features per sample but b has {tb.shape[1]}")
    centre = (ta.sum(dim=0, keepdim=True) + tb.sum(dim=0, keepdim=True)) / (ta.shape[0] + tb.shape[0])
    ta = ta - centre
    tb = tb - centre
    na = (ta * ta).sum(dim=1)
    nb = (tb * tb).sum(dim=1)
    best_a = torch.full((ta.shape[0],), float("inf"), dtype=torch.float64)
    arg_a = torch.zeros(ta.shape[0], dtype=torch.long)
    best_b = torch.full((tb.shape[0],), float("inf"), dtype=torch.float64)
    arg_b = torch.zeros(tb.shape[0], dtype=torch.long)
    with torch.no_grad():
        for i in range(0, ta.shape[0], chunk):
            xa = ta[i : i + chunk]
            for j in range(0, tb.shape[0], chunk):
                xb = tb[j : j + chunk]
                d2 = torch.addmm(nb[None, j : j + chunk], xa, xb.T, beta=1.0, alpha=-2.0)
                d2 += na[i : i + chunk, None]
                v, k = d2.min(dim=1)
                upd = v < best_a[i : i + chunk]
                best_a[i : i + chunk] = torch.where(upd, v, best_a[i : i + chunk])
                arg_a[i : i + chunk] = torch.where(upd, k + j, arg_a[i : i + chunk])
                v, k = d2.min(dim=0)
                upd = v < best_b[j : j + chunk]
                best_b[j : j + chunk] = torch.where(upd, v, best_b[j : j + chunk])
                arg_b[j : j + chunk] = torch.where(upd, k + i, arg_b[j : j + chunk])
        # exact distances to the chosen neighbours (row-chunked to keep memory bounded)
        da = torch.empty(ta.shape[0], dtype=torch.float64)
        for i in range(0, ta.shape[0], chunk):
            da[i : i + chunk] = (ta[i : i + chunk] - tb[arg_a[i : i + chunk]]).norm(dim=1)
        db = torch.empty(tb.shape[0], dtype=torch.float64)
        for j in range(0, tb.shape[0], chunk):
            db[j : j + chunk] = (tb[j : j + chunk] - ta[arg_b[j : j + chunk]]).norm(dim=1)
    return da.numpy(), db.numpy()


def directed_hausdorff_chunked(a: Any, b: Any, chunk: int = 2048) -> float:
    """``max_{x in a} min_{y in b} ||x - y||`` over flattened samples; equals scipy's, but BLAS-fast."""
    da, _ = nearest_distances(a, b, chunk=chunk)
    return float(da.max())


def hausdorff_both(
    real: Any,
    samples: Any,
    repeats: int = 1,
    n: int | None = None,
    seed: int = 0,
    chunk: int = 2048,
) -> dict[str, float]:
    """Both directed Hausdorff distances between data and samples, averaged over random subsets.

    Hausdorff distance grows with set size (more chances for an outlier), so the two sets are
    compared at equal size ``n`` (default: the smaller set's size). Each repeat draws a fresh
    subset without replacement from each set; with ``repeats=1`` and ``n`` covering both sets
    the full sets are used and the result is deterministic.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    ta = _as_rows(real, "real")
    tb = _as_rows(samples, "samples")
    smaller = min(ta.shape[0], tb.shape[0])
    size = smaller if n is None else int(n)
    if not 1 <= size <= smaller:
        raise ValueError(f"n={size} must be between 1 and the smaller set size {smaller}")
    gen = np.random.default_rng(seed)
    d2s, s2d = [], []
    for _ in range(repeats):
        ia = gen.choice(ta.shape[0], size=size, replace=False) if size < ta.shape[0] else None
        ib = gen.choice(tb.shape[0], size=size, replace=False) if size < tb.shape[0] else None
        xa = ta if ia is None else ta[torch.as_tensor(ia)]
        xb = tb if ib is None else tb[torch.as_tensor(ib)]
        da, db = nearest_distances(xa, xb, chunk=chunk)
        d2s.append(float(da.max()))
        s2d.append(float(db.max()))
        if ia is None and ib is None:
            break  # full sets both sides: every repeat would give the same numbers
    return {
        "hausdorff/data_to_samples": float(np.mean(d2s)),
        "hausdorff/samples_to_data": float(np.mean(s2d)),
    }


__all__ = ["directed_hausdorff_chunked", "hausdorff_both", "nearest_distances"]
