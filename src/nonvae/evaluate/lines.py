"""Interpolation metrics of the ACAI *lines* benchmark (Berthelot et al. 2018, arXiv 1807.07543).

Decoded interpolations between two test lines are compared with 10,000 reference lines at
angles 2 pi k / 10000 (``np.linspace(0, 2 pi - 2 pi / 10000, 10000)``, as in the official code),
drawn in float64 by the official renderer (:func:`nonvae.data.lines.render`):

* Mean Distance: for every decoded image, the cosine distance to its nearest reference line,
  averaged over all images of all paths. It is 0 when every intermediate image is a clean line.
* Smoothness: with theta_k the angle of the nearest reference line of the k-th image of a path
  (unwrapped along the path), ``max_k |theta_{k+1} - theta_k| / |theta_{K-1} - theta_0| - 1/(K-1)``;
  0 when the angle moves in equal steps, 1 - 1/(K-1) when it jumps at once (a cross-fade).
  Paths whose matched endpoints coincide (``|theta_{K-1} - theta_0| < 1e-4``) have no defined
  score and count as 0 in the mean, i.e. the sum over defined paths is divided by all paths.

Convention, as in the official code (``lib/eval.py`` of brain-research/acai: scipy ``cdist`` with
``metric='cosine'`` between the decoder outputs and ``draw_line`` images): the cosine distance is
taken on images in [-1, 1] (background -1), not rescaled to [0, 1]. The large shared background
then dominates both vectors, which is why distances are small: a pixel cross-fade between the two
endpoint images scores about 6.4e-3 Mean Distance and 0.89 Smoothness on the fixed 256 test pairs
(in [0, 1] it would be ~0.2). The paper trains for 2^24 samples (262,144 steps of 64, the official
code's default ``total_kimg``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from nonvae.data.lines import lines_test_pairs, render
from nonvae.errors import DataError

N_REFERENCES = 10_000
ZERO_ARC = 1e-4
_EPS = 1e-12


@lru_cache(maxsize=4)
def reference_lines(n: int = N_REFERENCES, size: int = 32) -> torch.Tensor:
    """The n reference lines at :func:`reference_angles`, (n, 1, size, size) float64 (cached: do not modify).

    float64 as in the official evaluation (its ``draw_line`` images are float64 arrays).
    """
    return render(reference_angles(n), size, dtype=torch.float64)


def reference_angles(n: int = N_REFERENCES) -> torch.Tensor:
    """Angles of :func:`reference_lines`, float64 (n,): ``np.linspace(0, 2 pi - 2 pi / n, n)``, i.e. 2 pi k / n
    up to the last bit, computed exactly as the official evaluation does."""
    return torch.from_numpy(np.linspace(0, 2 * np.pi - 2 * np.pi / n, n))


def _unit_rows(images: torch.Tensor) -> torch.Tensor:
    """Flatten to (N, D) float64 and scale rows to unit norm (all-zero rows stay zero)."""
    flat = images.detach().reshape(len(images), -1).to(torch.float64)
    return flat / flat.norm(dim=1, keepdim=True).clamp(min=_EPS)


# The last reference set used and its unit rows: the cached reference_lines() object comes back on
# every evaluation, so its float64 normalisation (80 MB for 10k 32x32 lines) is done once.
_unit_cache: list[tuple[torch.Tensor, torch.Tensor]] = []


def _unit_references(refs: torch.Tensor) -> torch.Tensor:
    if _unit_cache and _unit_cache[0][0] is refs:
        return _unit_cache[0][1]
    unit = _unit_rows(refs.cpu())
    _unit_cache[:] = [(refs, unit)]
    return unit


def nearest_reference(
    images: torch.Tensor,
    refs: torch.Tensor,
    chunk: int = 1024,
    ref_angles: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(min cosine distance, angle of the nearest reference), both float64 (N,), for images (N, ...).

    The N x len(refs) similarity matrix is built ``chunk`` images at a time, so memory is
    linear in N. The product is float64 and the winner's similarity is recomputed per row, so
    results do not depend on ``chunk``. ``ref_angles`` defaults to 2 pi k / len(refs), the angles
    of :func:`reference_lines`. An all-zero image has cosine similarity 0 to every line
    (distance 1), where scipy would give NaN.
    """
    if len(images) == 0:
        raise DataError("nearest_reference: no images")
    if images[0].numel() != refs[0].numel():
        raise DataError(
            f"nearest_reference: images of {images[0].numel()} values vs references of {refs[0].numel()}"
        )
    if chunk < 1:
        raise DataError(f"nearest_reference: chunk must be >= 1, got {chunk}")
    angles = reference_angles(len(refs)) if ref_angles is None else ref_angles.to(torch.float64).cpu()
    if len(angles) != len(refs):
        raise DataError(f"nearest_reference: {len(refs)} references but {len(angles)} angles")
    unit_refs = _unit_references(refs)
    unit_refs_t = unit_refs.T
    dist = torch.empty(len(images), dtype=torch.float64)
    index = torch.empty(len(images), dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            query = _unit_rows(images[start : start + chunk].cpu())
            arg = (query @ unit_refs_t).argmax(dim=1)
            # BLAS may round a row differently with another number of rows: recompute the winning
            # similarity row by row so the distance does not depend on the chunk size.
            dist[start : start + chunk] = 1.0 - (query * unit_refs[arg]).sum(dim=1)
            index[start : start + chunk] = arg
    return dist.clamp_(min=0.0), angles[index]


def smoothness_scores(angles: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-path smoothness for matched angles (P, K); NaN where the unwrapped endpoints coincide."""
    theta = np.unwrap(np.atleast_2d(np.asarray(angles, dtype=np.float64)), axis=-1)
    steps = theta.shape[-1] - 1
    if steps < 1:
        raise DataError("smoothness needs paths of at least 2 images")
    total = np.abs(theta[:, -1] - theta[:, 0])
    defined = total >= ZERO_ARC
    largest = np.abs(np.diff(theta, axis=-1)).max(axis=-1)
    score = np.full(len(theta), np.nan)
    score[defined] = largest[defined] / total[defined] - 1.0 / steps
    return score


def mean_distance_and_smoothness(paths: torch.Tensor, chunk: int = 1024) -> dict[str, float]:
    """{'lines/mean_distance', 'lines/smoothness'} for decoded paths (P, K, 1, H, W), raw values.

    Mean distance is not scaled (the paper's tables show it x 1e-3). Paths with undefined
    smoothness count as 0 in its mean (as in the official code); if none is defined it is NaN.
    """
    if paths.ndim != 5 or paths.shape[-1] != paths.shape[-2]:
        raise DataError(f"paths must be (P, K, C, H, H), got {tuple(paths.shape)}")
    p, k = paths.shape[:2]
    refs = reference_lines(N_REFERENCES, int(paths.shape[-1]))
    dist, angle = nearest_reference(paths.reshape(p * k, *paths.shape[2:]), refs, chunk=chunk)
    scores = smoothness_scores(angle.view(p, k).numpy())
    defined = ~np.isnan(scores)
    smooth = float(scores[defined].sum() / len(scores)) if defined.any() else math.nan
    return {"lines/mean_distance": float(dist.mean()), "lines/smoothness": smooth}


def evaluate_interpolations(
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    n_pairs: int = 256,
    steps: int = 16,
    seed: int = 1234,
    batch: int = 256,
    size: int = 32,
    device: torch.device | str | None = None,
) -> tuple[dict[str, float], torch.Tensor]:
    """Encode the fixed test pairs, decode codes at t = k/(steps-1), score: (metrics, paths).

    Codes are interpolated linearly, ``(1 - t) z_a + t z_b``, whatever their shape; both
    endpoints are decoded too. Inputs go to ``device`` (if given); paths come back on the CPU
    as (n_pairs, steps, C, H, W) float32.
    """
    if steps < 2:
        raise DataError(f"interpolation needs steps >= 2, got {steps}")
    if batch < 1:
        raise DataError(f"batch must be >= 1, got {batch}")
    x_a, x_b, _, _ = lines_test_pairs(n_pairs, seed, size)
    with torch.no_grad():

        def run(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            outs = []
            for start in range(0, len(inputs), batch):
                part = inputs[start : start + batch]
                outs.append(fn(part if device is None else part.to(device)).detach().cpu())
            return torch.cat(outs)

        z_a, z_b = run(encode, x_a), run(encode, x_b)
        t = torch.linspace(0, 1, steps, dtype=z_a.dtype).view(1, steps, *([1] * (z_a.ndim - 1)))
        codes = (1 - t) * z_a.unsqueeze(1) + t * z_b.unsqueeze(1)  # (P, K, ...)
        decoded = run(decode, codes.reshape(n_pairs * steps, *z_a.shape[1:]))
        paths = decoded.float().reshape(n_pairs, steps, *decoded.shape[1:])
    return mean_distance_and_smoothness(paths), paths
