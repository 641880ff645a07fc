"""Augmentation cross-consistency: a regularizer that composes with every method.

For t ~ P_T drawn per example (see :mod:`nonvae.augment`):

    augment/cross = weight * [ MSE(g(f(x)), t(x)) + MSE(g(f(t(x))), x) ]

t(x) is encoded and decoded in the same backbone forward as the main batch (it is
returned by ``extra_inputs``), so DDP, autocast and the other regularizers see one
pass. The domain of t(x) is the domain of x (split backbone).

Also reported, without gradient: ``augment/dist/<op>``, the mean latent distance
||f(x) - f(t(x))|| over the examples that drew that op this step (how invariant
the code is to each op), logged through ``log_terms`` and never optimised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nonvae.augment import Augmentation
from nonvae.config import Config, non_negative
from nonvae.registry import register_regularizer
from nonvae.regularizers.base import Regularizer, StepView


@dataclass
class AugmentConfig:
    """``regularizers.augment``: augmentation cross-consistency L(g(f(x)), t(x)) + L(g(f(t(x))), x)."""

    weight: float = non_negative(1.0)
    ops: dict[str, Any] = field(default_factory=dict)  # op name -> probability or {p: .., ...}


def cross_loss(recon: torch.Tensor, recon_t: torch.Tensor, x: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
    """MSE(g(f(x)), t(x)) + MSE(g(f(t(x))), x), unweighted, in fp32."""
    return (recon.float() - tx.float()).pow(2).mean() + (recon_t.float() - x.float()).pow(2).mean()


def latent_distance(z: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """||f(x) - f(t(x))|| per example over the flattened code."""
    return (z.flatten(1).float() - z_t.flatten(1).float()).norm(dim=1)


@register_regularizer("augment", config=AugmentConfig)
class CrossAugmentation(Regularizer):
    """Makes the code and the reconstruction consistent across augmentations t ~ P_T."""

    @classmethod
    def build(cls, cfg: AugmentConfig, backbone: nn.Module, image_shape: tuple[int, int, int],
              run_cfg: Config) -> CrossAugmentation:
        return cls(cfg, image_shape)

    def __init__(self, cfg: AugmentConfig, image_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.augmentation = Augmentation(cfg.ops, image_shape)

    def extra_inputs(self, batch: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
        tx, op = self.augmentation(x)
        extra = {"x": tx, "op": op}
        if batch.get("domain") is not None:
            extra["domain"] = batch["domain"]
        return extra

    def loss(self, view: StepView) -> dict[str, torch.Tensor]:
        tx = view.extra_in[self.name]["x"]
        recon_t = view.extra_out[self.name]["recon"]
        terms = {f"{self.name}/cross": self.cfg.weight * cross_loss(view.out["recon"], recon_t, view.x, tx)}
        return terms

    @torch.no_grad()
    def log_terms(self, view: StepView) -> dict[str, torch.Tensor]:
        """Mean ||f(x) - f(t(x))|| per op drawn this step, keyed 'augment/dist/<op>' (no gradient)."""
        op = view.extra_in[self.name]["op"]
        dist = latent_distance(view.out["z"].detach(), view.extra_out[self.name]["z"].detach())
        out = {}
        for i, name in enumerate(self.augmentation.names):
            mask = op == i
            if bool(mask.any()):
                out[f"{self.name}/dist/{name}"] = dist[mask].mean()
        return out


@torch.no_grad()
def measure_op(autoencoder, x: torch.Tensor, augmentation: Augmentation, name: str,
               domain: torch.Tensor | None = None) -> dict[str, float]:
    """Cross loss and mean latent distance of one op on images ``x`` (eval mode, no noise)."""
    tx = augmentation.apply_op(x, name)
    z, z_t = autoencoder.encode(x, domain), autoencoder.encode(tx, domain)
    recon, recon_t = autoencoder.decode(z), autoencoder.decode(z_t)
    return {"cross": float(cross_loss(recon, recon_t, x, tx)), "dist": float(latent_distance(z, z_t).mean())}
