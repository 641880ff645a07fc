"""Sampling a deterministic autoencoder: a density on its codes, decoded.

LTAE is trained so that its transformed codes look like N(0, I), so its samples are decoded
N(0, I) codes. Every other model gets an ex-post density: a Gaussian mixture (10 components)
fitted to the codes of its training images (Ghosh et al., ICLR 2020, "From Variational to
Deterministic Autoencoders"). The fitted mixture is stored beside the weights as
``sampler.safetensors`` (tensors, with the settings as JSON metadata; no pickle), so sampling is
deterministic for a seed, needs no scikit-learn and does not refit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from nonvae.errors import CheckpointError
from nonvae.latent import backbone_of
from nonvae.rundir import RunDir

SAMPLER_FILE = RunDir.sampler.name
COMPONENTS = 10
FIT_LIMIT = 10000  # training codes the mixture is fitted to
FULL_COVARIANCE_MAX_DIM = 512  # larger codes get diagonal covariances (a full one would not fit well)


class Sampler:
    """Codes for sampling: N(0, I) (``kind='normal'``) or a stored Gaussian mixture (``kind='gmm'``)."""

    def __init__(self, kind: str, latent_shape: tuple[int, ...], tensors: dict[str, torch.Tensor] | None = None,
                 info: dict | None = None) -> None:
        self.kind = kind
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.tensors = tensors or {}
        self.info = info or {}

    @property
    def dim(self) -> int:
        return math.prod(self.latent_shape)

    def codes(self, n: int, seed: int = 0) -> torch.Tensor:
        """n codes of shape (n, *latent_shape), the same for the same seed (float32, CPU)."""
        g = torch.Generator().manual_seed(seed)
        if self.kind == "normal":
            return torch.randn((n, *self.latent_shape), generator=g)
        weights, means, scale = (self.tensors[k].double() for k in ("weights", "means", "scale"))
        if self.info.get("covariance_type") == "full":  # packed lower triangles -> (K, D, D) Cholesky factors
            rows, cols = torch.tril_indices(self.dim, self.dim)
            full = torch.zeros((len(scale), self.dim, self.dim), dtype=torch.float64)
            full[:, rows, cols] = scale
            scale = full
        component = torch.multinomial(weights, n, replacement=True, generator=g)
        eps = torch.randn((n, self.dim), generator=g, dtype=torch.float64)
        if scale.ndim == 3:  # full covariance: z = mean + L eps with L the Cholesky factor
            z = means[component] + torch.einsum("nij,nj->ni", scale[component], eps)
        else:  # diagonal: scale holds the standard deviations
            z = means[component] + scale[component] * eps
        return z.float().view(n, *self.latent_shape)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        meta = {"kind": self.kind, "latent_shape": json.dumps(list(self.latent_shape)), "info": json.dumps(self.info)}
        tensors = {k: v.contiguous() for k, v in self.tensors.items()} or {"none": torch.zeros(1)}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> Sampler:
        from safetensors import safe_open

        from nonvae.checkpoint import load_tensors

        tensors = load_tensors(path)
        try:
            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
            kind, shape, info = meta["kind"], json.loads(meta["latent_shape"]), json.loads(meta.get("info", "{}"))
        except (KeyError, ValueError, OSError) as exc:
            raise CheckpointError(f"{path}: not a nonvae sampler file ({exc})") from None
        if kind == "gmm" and not {"weights", "means", "scale"} <= set(tensors):
            raise CheckpointError(f"{path}: sampler file lacks the mixture's weights/means/scale")
        return cls(kind, tuple(shape), {k: v for k, v in tensors.items() if k != "none"}, info)


def fit_gmm(codes: np.ndarray, latent_shape: tuple[int, ...], components: int = COMPONENTS,
            seed: int = 0) -> Sampler:
    """A Gaussian mixture fitted to (N, D) codes (scikit-learn's GaussianMixture, seeded)."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    k = max(1, min(components, len(codes) // 2))
    cov = "full" if codes.shape[1] <= FULL_COVARIANCE_MAX_DIM else "diag"
    # reg_covar relative to the codes' scale: collapsed dimensions stay sampleable
    reg = 1e-6 * max(float(codes.var(axis=0).mean()), 1e-12)
    with threadpool_limits(1):
        gmm = GaussianMixture(k, covariance_type=cov, random_state=seed, reg_covar=reg, max_iter=200).fit(codes)
    covariances = torch.from_numpy(gmm.covariances_)
    if cov == "full":  # Cholesky factors, only their lower triangles stored (half the bytes)
        rows, cols = torch.tril_indices(codes.shape[1], codes.shape[1])
        scale = torch.linalg.cholesky(covariances)[:, rows, cols]
    else:
        scale = covariances.sqrt()
    # float32 on disk: sampling precision is far below what decoding can show
    tensors = {"weights": torch.from_numpy(gmm.weights_).float(), "means": torch.from_numpy(gmm.means_).float(),
               "scale": scale.float()}
    info = {"components": k, "covariance_type": cov, "fitted_on": len(codes), "seed": seed,
            "converged": bool(gmm.converged_)}
    return Sampler("gmm", latent_shape, tensors, info)


def training_images(cfg, data=None, limit: int = FIT_LIMIT) -> torch.Tensor:
    """Up to ``limit`` training images of a run's data in [-1, 1] (drawn from the stream when it has no set).

    ``data`` is the run's :class:`~nonvae.data.DataBundle` when already built.
    """
    if data is None:
        from nonvae.data import build_data

        data = build_data(cfg.data, cfg.seed)
    if data.train_set is not None:
        train = data.train_set
        return train.batch(torch.arange(min(limit, len(train))))["x"]
    batches, total, step = [], 0, 0
    while total < limit:
        x = data.train.batch(step, min(256, limit - total))["x"]
        batches.append(x)
        total += len(x)
        step += 1
    return torch.cat(batches)


@torch.no_grad()
def fit_sampler(model, images: torch.Tensor, seed: int = 0, batch_size: int = 256) -> Sampler:
    """The sampler of ``model`` (inference model, method or backbone): N(0, I) for LTAE (a latent transform),
    else a GMM on the codes of ``images``."""
    backbone = backbone_of(model)
    shape = tuple(backbone.latent_shape)
    if getattr(backbone, "transform", None) is not None:
        return Sampler("normal", shape, info={"why": "LTAE: the transformed codes are trained towards N(0, I)"})
    device = next(backbone.parameters()).device
    codes = [backbone.encode(images[i: i + batch_size].to(device)).flatten(1).float().cpu()
             for i in range(0, len(images), batch_size)]
    return fit_gmm(torch.cat(codes).numpy(), shape, seed=seed)


def sampler_for(model, folder: str | Path, cfg, fit: bool = True, data=None) -> Sampler:
    """The sampler stored in ``folder`` (a run directory or model folder), else fitted and stored there.

    Fitting needs the run's training data on this machine; a stored sampler does not.
    """
    folder = Path(folder)
    path = folder / SAMPLER_FILE
    step = _step_of(folder)
    if path.is_file():
        sampler = Sampler.read(path)
        if sampler.info.get("step") in (None, step):
            return sampler
    if getattr(backbone_of(model), "transform", None) is not None:
        return fit_sampler(model, torch.empty(0))
    if not fit:
        raise CheckpointError(f"{folder}: no {SAMPLER_FILE} stored for this model")
    try:
        images = training_images(cfg, data)
    except Exception as exc:
        from nonvae.errors import NonvaeError

        if not isinstance(exc, NonvaeError):
            raise
        raise CheckpointError(f"{folder}: no {SAMPLER_FILE} stored and the training data to fit one is not on "
                              f"this machine ({exc})") from None
    sampler = fit_sampler(model, images, seed=cfg.seed)
    sampler.info["step"] = step
    try:
        sampler.save(path)
    except OSError:  # a read-only model folder: sample anyway, fit again next time
        pass
    return sampler


def _step_of(folder: Path) -> int | None:
    """The trained step of a run directory or model folder (None when unknown)."""
    from nonvae.checkpoint import read_state
    from nonvae.pipeline import checkpoint_dir_of

    try:
        return int(read_state(checkpoint_dir_of(folder)).get("step"))
    except Exception:  # no state.json: an unknown step never invalidates a stored sampler
        return None


@torch.no_grad()
def sample(model, sampler: Sampler, n: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """n decoded samples in [-1, 1]: (n, C, H, W)."""
    backbone = backbone_of(model)
    device = next(backbone.parameters()).device
    codes = sampler.codes(n, seed)
    out = [backbone.decode(codes[i: i + batch_size].to(device)).float().clamp(-1, 1).cpu()
           for i in range(0, n, batch_size)]
    return torch.cat(out) if out else torch.empty(0)


__all__ = ["SAMPLER_FILE", "Sampler", "fit_gmm", "fit_sampler", "sample", "sampler_for", "training_images"]
