"""LTAE: latent transformation autoencoder (arXiv 1901.08479).

The backbone's ``LatentTransform`` maps the raw code z = f(x) to z' = a * (z + b)
(learnable vectors a, b) and decodes z' (plus small noise while training). This
regularizer adds the term that gives z' its meaning:

    ltae/normalize = weight * MSE(norm(z), z')

with norm the per-sample normalisation over the flattened code:

- 'standardize' (LTAE-S): (z - mean(z)) / std(z), the std with Bessel's correction
  (``torch.std``'s default, as in the authors' reference code, which also
  standardises each example over its code dimensions);
- 'minmax' (LTAE-M): (z - min(z)) / (max(z) - min(z)), into [0, 1].

``regularizers.ltae.scope: batch`` takes the statistics over the whole batch
tensor instead (one mean/std or min/max for all examples and dimensions): that is
what the reference code does for min-max. Per-sample statistics degenerate for a
2-D code (a standardised 2-vector is always +-(1, -1)/sqrt(2) and a min-max
scaled one (0, 1) or (1, 0)), so the 2-D latent plots need ``scope: batch``;
a batch-scope target is an affine image of the whole batch, which keeps its
layout, but it depends on which examples share the batch.

Whether norm(z) is a fixed target: the reference code computes norm(z) and z'
from the same encoder output with no ``detach`` anywhere, so the encoder also
receives the gradient through norm(z). We follow it (``detach_target: false``);
``regularizers.ltae.detach_target: true`` treats norm(z) as a constant target,
so the encoder is then moved only through z' = a * (z + b).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nonvae.config import Config, non_negative
from nonvae.errors import ConfigError
from nonvae.registry import register_regularizer
from nonvae.regularizers.base import Regularizer, StepView


@dataclass
class LtaeConfig:
    """``regularizers.ltae``: pull the transformed code z' towards norm(z)."""

    weight: float = non_negative(1.0)
    detach_target: bool = False  # true: norm(z) is a constant target (the reference lets it carry gradient)
    scope: Literal["sample", "batch"] = "sample"  # statistics per example | over the whole batch (ref. min-max)

EPS = 1e-6  # keeps a constant code (zero spread) finite


def _rows(z: torch.Tensor, scope: str) -> torch.Tensor:
    """The groups statistics are taken over: one row per example, or one row for the batch."""
    return z.flatten(1) if scope == "sample" else z.reshape(1, -1)


def standardize(z: torch.Tensor, scope: str = "sample") -> torch.Tensor:
    """Standardisation over all code dimensions per example (LTAE-S target), or over the batch; shape kept."""
    flat = _rows(z, scope)
    mean = flat.mean(1, keepdim=True)
    std = flat.std(1, keepdim=True) if flat.shape[1] > 1 else torch.zeros_like(mean)
    return ((flat - mean) / (std + EPS)).view_as(z)


def minmax(z: torch.Tensor, scope: str = "sample") -> torch.Tensor:
    """Min-max scaling to [0, 1] over all code dimensions per example (LTAE-M target), or over the batch."""
    flat = _rows(z, scope)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo + EPS)).view_as(z)


NORMS = {"standardize": standardize, "minmax": minmax}


@register_regularizer("ltae", config=LtaeConfig)
class LatentNormalization(Regularizer):
    """Pull the transformed code z' towards norm(z_raw)."""

    @classmethod
    def build(cls, cfg: LtaeConfig, backbone: nn.Module, image_shape: tuple[int, int, int],
              run_cfg: Config) -> LatentNormalization:
        if getattr(backbone, "transform", None) is None:
            raise ConfigError(f"regularizers.{cls.name} needs model.transform: standardize or minmax")
        return cls(cfg, backbone.transform.kind)

    def __init__(self, cfg: LtaeConfig, kind: str) -> None:
        super().__init__()
        if kind not in NORMS:
            raise ValueError(f"unknown LTAE normalisation {kind!r} (valid: {', '.join(NORMS)})")
        self.cfg = cfg
        self.kind = kind
        self.norm = NORMS[kind]

    def loss(self, view: StepView) -> dict[str, torch.Tensor]:
        z_raw = view.out["z_raw"].float()
        target = self.norm(z_raw, self.cfg.scope)
        if self.cfg.detach_target:
            target = target.detach()
        z = view.out["z"].float()
        return {f"{self.name}/normalize": self.cfg.weight * (z - target).pow(2).mean()}
