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
    # the critic's forwards: 'train' as train.precision; 'bf16' under bf16 autocast whatever train.precision.
    # Opt-in: with share_forward an fp32 lines/ACAI step is 1.17-1.18x faster in CPU time on AVX512-BF16 (one
    # thread; not enough for 2x the port), and 3 seeds of 1,500 steps cannot tell its quality from fp32's (Mean
    # Distance worse on 2 of 3 seeds, Smoothness better on all 3; README, "Critic precision on lines/ACAI")
    critic_precision: Literal["train", "bf16"] = "train"
    # the critic update reuses the critic's forward on the decoded interpolants and its input-gradient pass from
    # the autoencoder step (same critic weights, same images: the same scores and, per image, gradients that differ
    # only by a factor) instead of running them again; off under DDP (the trainer)
    share_forward: bool = True


class _Upstream:
    """Per-sample gradients of the autoencoder's loss at the critic's scores, handed from its output to its input."""

    u: torch.Tensor | None = None


class _UnitScores(torch.autograd.Function):
    """Identity on the critic's scores; backward sends ones into the critic and keeps the real gradient.

    Each score depends on its own image only (no normalisation across the batch), so the gradient of any
    per-sample weighting of the scores is that weighting times the gradient of the unit one at every layer.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, up: _Upstream) -> torch.Tensor:
        ctx.up = up
        return scores.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ctx.up.u = grad
        return torch.ones_like(grad), None


class _ScaleInput(torch.autograd.Function):
    """Identity on the critic's input; backward scales each image's unit gradient by its score's real gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, up: _Upstream) -> torch.Tensor:
        ctx.up = up
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u = ctx.up.u
        return grad * u.view(-1, *([1] * (grad.ndim - 1))).to(grad.dtype), None


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
        # the critic is frozen here (the method turns its grads off); call the raw module
        mixed = view.decoded[self.name]
        shared = view.shared.get(self.name)
        if shared is None:
            with self._critic_precision(view.x):
                score = self.critic(mixed)
        else:  # shares_forward: keep what the critic's own update needs from this forward and its backward
            score = self._shared_forward(mixed, view.x, shared)
        return {f"{self.name}/fool": self.weight_at(view.step) * score.float().pow(2).mean()}

    def _shared_forward(self, mixed: torch.Tensor, x: torch.Tensor, shared: dict) -> torch.Tensor:
        """The critic on the interpolants, recording each conv's input and (in the autoencoder's backward) the
        gradient of the unit scores at its output: the critic's update then needs only the weight gradients.

        The autoencoder's backward runs the critic's input-gradient pass with ones at the scores
        (``_UnitScores``) and scales the result per image at the critic's input (``_ScaleInput``): the same
        gradient for the autoencoder, and per layer the unit gradient that any per-image weighting of the
        scores (the critic's own loss) multiplies.
        """
        up = _Upstream()
        records: list[list] = []

        def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            record = [module, inputs[0], None]
            records.append(record)
            if output.requires_grad:
                output.register_hook(lambda g, record=record: record.__setitem__(2, g))

        convs = [m for m in self.critic.modules() if isinstance(m, nn.Conv2d)]
        handles = [m.register_forward_hook(keep) for m in convs]
        try:
            with self._critic_precision(x):
                score = _UnitScores.apply(self.critic(_ScaleInput.apply(mixed, up)), up)
        finally:
            for h in handles:
                h.remove()
        shared["mixed_scores"] = score.detach()
        shared["convs"] = records
        return score

    def _shared_weight_grads(self, shared: dict, weights: torch.Tensor) -> torch.Tensor:
        """A surrogate whose gradient for the critic's weights is that of sum_i weights_i x score_i over the
        interpolants, from the recorded conv inputs and unit output gradients (one weight-gradient pass)."""
        surrogate = weights.new_zeros(())
        for module, inp, unit in shared["convs"]:
            bias = module.bias
            with torch.no_grad():  # constants of the surrogate (no path back into the critic's forward)
                grad_out = unit * weights.view(-1, *([1] * (unit.ndim - 1))).to(unit.dtype)
                _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                    grad_out, inp.to(grad_out.dtype), module.weight.to(grad_out.dtype),
                    None if bias is None else [bias.shape[0]], module.stride, module.padding, module.dilation,
                    False, [0, 0], module.groups, [False, True, bias is not None])
            surrogate = surrogate + (module.weight * grad_w.to(module.weight.dtype)).sum()
            if bias is not None:
                surrogate = surrogate + (bias * grad_b.to(bias.dtype)).sum()
        return surrogate

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
        if shared and any(unit is None for _, _, unit in shared["convs"]):
            shared = None  # the autoencoder's backward did not run through the critic: compute it here
        with self._critic_precision(view.x):
            if shared:  # the interpolants' scores and unit gradients from the autoencoder step
                mixed_scores = shared["mixed_scores"].float()
                real_scores = call("critic", real_mix.to(mixed.dtype)).float()
            else:  # one critic forward over both inputs (cheaper than two)
                scores = call("critic", torch.cat([mixed, real_mix.to(mixed.dtype)])).float()
                mixed_scores, real_scores = scores[: len(mixed)], scores[len(mixed):]
        loss_alpha = (mixed_scores - alpha).pow(2).mean()
        loss_real = real_scores.pow(2).mean()
        loss = loss_alpha + loss_real
        if shared:  # d loss_alpha / d score_i = 2 (score_i - alpha_i) / n, applied through the recorded layers
            surrogate = self._shared_weight_grads(shared, 2 * (mixed_scores - alpha) / len(mixed_scores))
            loss = loss + (surrogate - surrogate.detach())
        return {"critic": loss, "critic/alpha": loss_alpha.detach(), "critic/real": loss_real.detach()}
