"""ACAI: adversarially constrained autoencoder interpolation (Berthelot et al. 2018).

A critic regresses the mixing coefficient alpha in [0, 0.5] of decoded latent
interpolations; the autoencoder is rewarded when the critic answers 0.

- alpha ~ U[0, 1] folded to [0, 0.5]; z_mix = alpha z_i + (1 - alpha) z_j with j
  the mirrored position in the batch.
- critic loss: mean (d(g(z_mix)) - alpha)^2 + mean d(gamma x + (1 - gamma) g(f(x)))^2
- autoencoder term: weight * mean d(g(z_mix))^2
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nonvae.config import Config, non_negative, positive, setting
from nonvae.errors import ConfigError
from nonvae.nets import ConvCritic, scales_for
from nonvae.registry import register_regularizer
from nonvae.regularizers.base import Call, Regularizer, StepView


@dataclass
class AcaiConfig:
    """``regularizers.acai``: adversarially constrained interpolation (Berthelot et al. 2018)."""

    weight: float = non_negative(0.5)  # lambda: weight of the critic-fooling term in the autoencoder loss
    gamma: float = setting(0.2, ge=0, le=1)  # critic regularizer mix of real and reconstructed images
    lr: float | None = positive(None)  # critic learning rate (None: train.lr)
    width: int | None = positive(None)  # critic width d (None: model.width)
    warmup_steps: int = non_negative(0)  # linear ramp of ``weight`` from 0 over this many steps
    # the critic's forwards: 'train' as train.precision; 'bf16' under bf16 autocast whatever train.precision
    # (an fp32 lines/ACAI step 1.26x faster in CPU time on AVX512-BF16; opt-in: its quality is unmeasured)
    critic_precision: Literal["train", "bf16"] = "train"
    # the critic update reuses the critic's forward on the decoded interpolants from the autoencoder step (same
    # critic weights, same images: the same scores) instead of running it again; off under DDP (the trainer)
    share_forward: bool = True


def fold_alpha(u: torch.Tensor) -> torch.Tensor:
    """U[0, 1] -> [0, 0.5] by folding at 0.5, as in the paper."""
    return 0.5 - (u - 0.5).abs()


@register_regularizer("acai", config=AcaiConfig)
class AdversarialInterpolation(Regularizer):
    """Makes decoded interpolations look real to a critic that regresses the mixing coefficient."""

    @classmethod
    def build(cls, cfg: AcaiConfig, backbone: nn.Module, image_shape: tuple[int, int, int],
              run_cfg: Config) -> AdversarialInterpolation:
        if len(image_shape) != 3 or image_shape[1] != image_shape[2]:
            raise ConfigError(f"regularizers.{cls.name} needs square images")
        m = run_cfg.model
        return cls(cfg, image_shape, m.width, scales_for(image_shape[1], m.latent_width), m.latent_channels)

    def __init__(self, cfg: AcaiConfig, image_shape: tuple[int, int, int], width: int, scales: int,
                 latent: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.critic = ConvCritic(image_shape[0], cfg.width or width, scales, latent)
        self.shares_forward = bool(cfg.share_forward)

    def weight_at(self, step: int) -> float:
        if self.cfg.warmup_steps <= 0:
            return self.cfg.weight
        return self.cfg.weight * min(1.0, step / self.cfg.warmup_steps)

    def extra_codes(self, z: torch.Tensor, state: dict, batch: dict | None = None) -> torch.Tensor:
        alpha = fold_alpha(torch.rand(len(z), device=z.device))
        state["alpha"] = alpha
        a = alpha.view(-1, *([1] * (z.ndim - 1))).to(z.dtype)
        return a * z + (1 - a) * z.flip(0)

    def loss(self, view: StepView) -> dict[str, torch.Tensor]:
        # the raw module: frozen here unless shares_forward (then the method backpropagates this loss into the
        # autoencoder only, and adversary_step reuses the scores with their graph into the critic's weights)
        with self._critic_precision(view.x):
            score = self.critic(view.decoded[self.name])
        if self.name in view.shared:  # the method keeps the critic trainable here (shares_forward)
            view.shared[self.name]["mixed_scores"] = score
        return {f"{self.name}/fool": self.weight_at(view.step) * score.float().pow(2).mean()}

    def _critic_precision(self, x: torch.Tensor) -> contextlib.AbstractContextManager:
        if self.cfg.critic_precision == "bf16":
            return torch.autocast(x.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def players(self) -> dict[str, nn.Module]:
        return {"critic": self.critic}

    def optimizer_settings(self) -> dict[str, dict]:
        return {"critic": {"lr": self.cfg.lr}} if self.cfg.lr is not None else {}

    def adversary_step(self, view: StepView, call: Call, optimizers: dict) -> dict[str, torch.Tensor]:
        mixed = view.decoded[self.name]
        alpha = view.state[self.name]["alpha"]
        real_mix = self.cfg.gamma * view.x + (1 - self.cfg.gamma) * view.out["recon"]
        shared = view.shared.get(self.name)
        with self._critic_precision(view.x):
            if shared:  # the scores of `mixed` from the autoencoder step, graph into the critic
                mixed_scores = shared["mixed_scores"].float()
                real_scores = call("critic", real_mix.to(mixed.dtype)).float()
            else:  # one critic forward over both inputs (cheaper than two)
                scores = call("critic", torch.cat([mixed, real_mix.to(mixed.dtype)])).float()
                mixed_scores, real_scores = scores[: len(mixed)], scores[len(mixed):]
        loss_alpha = (mixed_scores - alpha).pow(2).mean()
        loss_real = real_scores.pow(2).mean()
        loss = loss_alpha + loss_real
        return {"critic": loss, "critic/alpha": loss_alpha.detach(), "critic/real": loss_real.detach()}
