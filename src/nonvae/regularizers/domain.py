"""Domain discriminator on the content code (Press et al., ICLR 2019).

An MLP sees only the flattened E1 content code (never images, never E2) and
learns to tell the domains apart: BCE with logits, domain A (with the
attribute) -> 1, domain B -> 0. The encoders get ``weight`` x BCE pushing the
content codes of BOTH domains to the same label (B's, 0), as the official code
(oripress/ContentDisentanglement, train.py) does: ``bce(disc(A_common), B_label)
+ bce(disc(B_common), B_label)``. Whatever the attribute looks like must then
live in E2, which is zero for domain B.

Scale: the official autoencoder loss is ``mse_A + mse_B + w (bce_A + bce_B)``;
ours is the mean MSE over the concatenated batch plus ``w`` x the mean BCE over
it, i.e. exactly half of it, so the ratio of the terms (and Adam's steps) are
the same. The discriminator loss is the official sum ``bce_A + bce_B``.
The discriminator learns from the detached codes of the autoencoder's forward
(the official code re-encodes after the autoencoder update; one forward is
cheaper and the difference is one optimizer step of E1).

``fool`` picks other encoder targets: 'confuse' (0.5 for both domains, the cross-entropy against the
uniform label of Tzeng et al. 2015, minimal when the discriminator cannot tell) or 'flip' (each
domain to the other's label, as GAN generators are trained). With the official target the encoders
keep pushing domain B's codes further towards "B" even when the domains are indistinguishable.

Two optional terms of the follow-up by the same group (Benaim et al., ICCV 2019, "Domain Intersection and
Domain Difference"): ``zero_b`` x mean E2(b)^2 over domain-B images (E2 must answer zero where there is no
attribute, so it cannot simply copy the image), and ``cycle`` x the codes of a translation t = G(E1(b),
E2(a)) encoding back to the codes that made it: mean (E1(t) - E1(b))^2 + mean (E2(t) - E2(a))^2, targets
detached. A donor's shape carried by E2 shows up in E1(t) and is penalised there. Its halves are separate
options: ``content_cycle`` (E1 only) and ``attribute_cycle`` (E2 only: the translation must show a's attribute
to E2, so the decoder has to draw it on b's content; the shipped synthetic config uses it with ``zero_b``).

``disc_steps`` updates the discriminator several times per autoencoder step (on the same detached codes), so
it keeps up with the encoders instead of being fooled while E1 still carries the attribute. ``match`` adds an
unbiased MMD^2 between the two domains' E1 codes (a non-adversarial pull of the distributions together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nonvae.config import Config, non_negative, positive
from nonvae.errors import ConfigError
from nonvae.nets import Discriminator
from nonvae.registry import register_regularizer
from nonvae.regularizers.base import Call, Regularizer, StepView


@dataclass
class DomainConfig:
    """``regularizers.domain``: domain discriminator on the content code (Press et al. 2019)."""

    weight: float = non_negative(0.001)
    lr: float | None = positive(None)
    hidden: list[int] = positive(factory=lambda: [512, 256])
    grad_clip: float | None = positive(5.0)
    # what the encoders are trained towards: 'b_label' (official: both domains' codes -> domain B's label),
    # 'confuse' (both -> 0.5, the discriminator's maximum uncertainty) or 'flip' (A -> B's label, B -> A's)
    fool: Literal["b_label", "confuse", "flip"] = "b_label"
    # Benaim et al. (ICCV 2019) terms: zero_b x mean E2(b)^2 for domain-B images (the attribute code of an
    # image without the attribute is zero); cycle x the codes of a translation G(E1(b), E2(a)) encoding back
    # to (E1(b), E2(a)) (mean squared error against the detached codes that made it)
    zero_b: float = non_negative(0.0)
    cycle: float = non_negative(0.0)
    # the content half of the cycle alone: x mean (E1(G(E1(b), E2(a))) - E1(b))^2 (adding a's attribute must not
    # change the content code), on top of ``cycle``
    content_cycle: float = non_negative(0.0)
    # the attribute half alone: x mean (E2(G(E1(b), E2(a))) - E2(a))^2 (the translation must show a's attribute
    # to E2: the decoder has to draw it on any content), on top of ``cycle``
    attribute_cycle: float = non_negative(0.0)
    # x MMD^2 between the flattened E1 codes of the batch's two domains (Gaussian kernels at 3 bandwidths around
    # the batch's mean squared distance): a non-adversarial pull of the two content-code distributions together
    match: float = non_negative(0.0)
    # discriminator updates per autoencoder step (on the same detached codes)
    disc_steps: int = positive(1)

PLAYER = "discriminator"
FOOL_LABEL = 0.0  # the label both domains' content codes are pushed to (domain B's, as officially)


def _domains(view: StepView) -> torch.Tensor:
    domain = view.batch.get("domain")
    if domain is None:
        raise ConfigError("regularizers.domain needs two-domain data (a batch with 'domain' labels, e.g. "
                          "data.name: attributes or domains)")
    return domain.float().view(-1)


def mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between samples x (n, d) and y (m, d) (n, m >= 2), summed over Gaussian kernels whose
    bandwidths are 0.25, 1 and 4 x the (detached) mean squared distance of the pooled samples.

    Unbiased: the within-sample means leave out the diagonal. The biased estimate (diagonal included) is
    smallest when every code is the same, and at weight 1 it collapsed E1 to a constant.
    """
    z = torch.cat([x, y])
    sq = (z * z).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * z @ z.t()).clamp_min(0)
    scale = d2.detach().mean().clamp_min(1e-8)
    k = sum(torch.exp(-d2 / (scale * s)) for s in (0.25, 1.0, 4.0))
    n, m = len(x), len(y)

    def within(block: torch.Tensor, size: int) -> torch.Tensor:
        return (block.sum() - block.diagonal().sum()) / (size * (size - 1))

    return within(k[:n, :n], n) + within(k[n:, n:], m) - 2 * k[:n, n:].mean()


@register_regularizer("domain", config=DomainConfig)
class DomainInvariance(Regularizer):
    """Makes the content code domain-invariant against a discriminator (player 'discriminator')."""

    @classmethod
    def build(cls, cfg: DomainConfig, backbone: nn.Module, image_shape: tuple[int, int, int],
              run_cfg: Config) -> DomainInvariance:
        if not hasattr(backbone, "encode_parts"):
            raise ConfigError(f"regularizers.{cls.name} needs model.backbone: split")
        return cls(cfg, backbone)

    def __init__(self, cfg: DomainConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        channels = int(backbone.content_channels)
        spatial = tuple(backbone.latent_shape[1:])
        features = channels
        for s in spatial:
            features *= int(s)
        self.discriminator = Discriminator(features, list(cfg.hidden))
        self.content_channels = channels
        self.reencode = cfg.cycle > 0 or cfg.content_cycle > 0 or cfg.attribute_cycle > 0
        # one half of the cycle alone: the translations need only that encoder (the other half is not computed)
        self.reencode_parts = None if cfg.cycle > 0 else frozenset(
            part for part, w in (("content", cfg.content_cycle), ("attribute", cfg.attribute_cycle)) if w > 0)
        self.adversary_steps = int(cfg.disc_steps)

    def extra_codes(self, z: torch.Tensor, state: dict, batch: dict | None = None) -> torch.Tensor | None:
        """Translations (E1(b), E2(a)) for min(#A, #B) pairs of the batch (only with ``cycle``)."""
        if not self.reencode or batch is None or batch.get("domain") is None:
            return None
        is_a = batch["domain"].view(-1)[: len(z)] > 0.5
        ia, ib = torch.nonzero(is_a).view(-1), torch.nonzero(~is_a).view(-1)
        n = min(len(ia), len(ib))
        if n == 0:
            return None
        ia, ib = ia[:n], ib[:n]
        c = self.content_channels
        target = torch.cat([z[ib, :c], z[ia, c:]], 1)
        state["target"] = target.detach()
        return target

    def loss(self, view: StepView) -> dict[str, torch.Tensor]:
        _domains(view)  # fail early on one-domain data
        # the discriminator is frozen here (the method turns its grads off); call the raw module
        logits = self.discriminator(view.out["content"]).float()
        fool = F.binary_cross_entropy_with_logits(logits, self._fool_targets(view, logits))
        terms = {f"{self.name}/adv": self.cfg.weight * fool}
        if self.cfg.zero_b > 0 and "attribute_raw" in view.out:
            is_b = _domains(view) <= 0.5
            if is_b.any():
                terms[f"{self.name}/zero_b"] = self.cfg.zero_b * view.out["attribute_raw"][is_b].float().pow(2).mean()
        if self.reencode and self.name in view.reencoded:
            back, target = view.reencoded[self.name].float(), view.state[self.name]["target"].float()
            c = self.content_channels
            content = (back[:, :c] - target[:, :c]).pow(2).mean()
            attribute = (back[:, c:] - target[:, c:]).pow(2).mean()
            if self.cfg.cycle > 0:
                terms[f"{self.name}/cycle"] = self.cfg.cycle * (content + attribute)
            if self.cfg.content_cycle > 0:
                terms[f"{self.name}/content_cycle"] = self.cfg.content_cycle * content
            if self.cfg.attribute_cycle > 0:
                terms[f"{self.name}/attribute_cycle"] = self.cfg.attribute_cycle * attribute
        if self.cfg.match > 0:
            is_a = _domains(view) > 0.5
            if is_a.sum() > 1 and (~is_a).sum() > 1:
                flat = view.out["content"].float().flatten(1)
                terms[f"{self.name}/match"] = self.cfg.match * mmd2(flat[is_a], flat[~is_a])
        return terms

    def _fool_targets(self, view: StepView, logits: torch.Tensor) -> torch.Tensor:
        """The labels the encoders want the discriminator to output (see DomainConfig.fool)."""
        if self.cfg.fool == "confuse":
            return torch.full_like(logits, 0.5)
        if self.cfg.fool == "flip":
            return 1.0 - _domains(view).to(logits.dtype)
        return torch.full_like(logits, FOOL_LABEL)

    def players(self) -> dict[str, nn.Module]:
        return {PLAYER: self.discriminator}

    def optimizer_settings(self) -> dict[str, dict]:
        return {PLAYER: {"lr": self.cfg.lr}} if self.cfg.lr is not None else {}

    def adversary_step(self, view: StepView, call: Call, optimizers: dict) -> dict[str, torch.Tensor]:
        domain = _domains(view)
        logits = call(PLAYER, view.out["content"]).float()
        is_a = domain > 0.5
        loss = logits.new_zeros(())
        for mask in (is_a, ~is_a):  # the official sum of the per-domain mean BCEs
            if mask.any():
                loss = loss + F.binary_cross_entropy_with_logits(logits[mask], domain[mask])
        accuracy = ((logits > 0) == is_a).float().mean()
        return {PLAYER: loss, f"{PLAYER}/accuracy": accuracy.detach()}
