"""A regularizer in one file: a WAE-style MMD prior on the codes (Tolstikhin et al., ICLR 2018).

    mmd/prior = weight * MMD^2(codes of the batch, samples of N(0, scale^2 I))

with the inverse multiquadratic kernel k(x, y) = C / (C + ||x - y||^2), C = 2 d scale^2, as in
WAE-MMD. Enable it with ``plugins: [mmd_prior.py]`` and a ``regularizers.mmd`` section.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nonvae.config import non_negative, positive
from nonvae.registry import register_regularizer
from nonvae.regularizers.base import Regularizer, StepView


@dataclass
class MmdConfig:
    """``regularizers.mmd``."""

    weight: float = non_negative(1.0)
    scale: float = positive(1.0)  # standard deviation of the Gaussian prior


def imq_mmd(z: torch.Tensor, prior: torch.Tensor, scale: float) -> torch.Tensor:
    """Unbiased MMD^2 between two samples with the inverse multiquadratic kernel."""
    n, d = z.shape
    c = 2.0 * d * scale**2

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return c / (c + torch.cdist(a, b).pow(2))

    off = 1.0 - torch.eye(n, device=z.device)
    same = ((kernel(z, z) + kernel(prior, prior)) * off).sum() / (n * (n - 1))
    return same - 2.0 * kernel(z, prior).mean()


@register_regularizer("mmd", config=MmdConfig)
class MmdPrior(Regularizer):
    """Pulls the distribution of codes towards N(0, scale^2 I), so that decoding prior samples works."""

    def __init__(self, cfg: MmdConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def loss(self, view: StepView) -> dict[str, torch.Tensor]:
        z = view.out["z"].flatten(1).float()
        prior = torch.randn_like(z) * self.cfg.scale
        return {f"{self.name}/prior": self.cfg.weight * imq_mmd(z, prior, self.cfg.scale)}
