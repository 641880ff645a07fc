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
With ``content_cycle_detach`` E1 reads the translations detached: the content half then only teaches E1 to give
b + attribute the code of b (to read past the attribute, which the discriminator on E1 asks for and does not get:
a fresh probe still reads the domain from E1), and no longer lets the decoder meet it by drawing less attribute.

``removal_zero`` x mean E2(G(E1(a), 0))^2 over domain-A images re-encodes the removals beside the translations:
a removal must show no attribute to E2 (a cheap stand-in for Benaim et al.'s image discriminator; screened, not
in the shipped config).

``image_gan`` adds Benaim et al.'s image discriminator (nets.ImageCritic, player 'image_discriminator'): a conv net
with one logit per domain learns the batch's reconstructions as real and the decoded translations G(E1(b), E2(a))
(judged as domain A) and removals G(E1(a), 0) (judged as domain B) as fake; the autoencoder gets ``image_gan`` x
the non-saturating GAN loss of those. Reconstructions stand in for the inputs so the critic learns the attribute,
not the decoder's blur. It is updated once per step, on the first of the ``disc_steps`` updates. With
``image_gan_adaptive`` the term weighs ``image_gan`` x min(1, |grad recon| / |grad critic|) on the decoder's output
conv (VQGAN's adaptive weight, capped), so on data the autoencoder reconstructs well it shrinks with the error.

``edit_match`` x mean ((G(E1(b), E2(a)) - G(E1(b), 0)) - sg(G(E1(a), E2(a)) - G(E1(a), 0)))^2 over the translation
pairs: a translation must add what a's code adds to a's own reconstruction, which the decoder may draw from what
E1(a) kept of the attribute but a translation cannot (screened on the band and the patch, not shipped).

``standardize`` feeds the discriminator E1's codes standardised per feature over the batch (statistics detached).
Without it the encoders have a way out that removes no information: shrink the codes until the discriminator's
logits are near 0 whatever the domain, which is exactly what 'confuse' asks for (with the shipped config E1's rms
fell 15-25x against the lambda = 0 ablations, and the discriminator's term sat at lambda x ln 2 while a fresh
probe, on standardised codes, read the domain at 0.66-0.94).

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
from nonvae.nets import Discriminator, ImageCritic
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
    # true: E1 re-encodes the translations detached, so the content half of the cycle (content_cycle, cycle) trains
    # E1 to read b's content past the attribute drawn on it, and cannot ask the decoder to draw less of the attribute;
    # the half is then divided by the variance of E1(b) over the pairs (a fraction of the codes' spread: as a raw
    # squared error it grew from 4.5 to 380 in 300 steps on the band, E1's codes being unnormalised)
    content_cycle_detach: bool = False
    # the attribute half alone: x mean (E2(G(E1(b), E2(a))) - E2(a))^2 (the translation must show a's attribute
    # to E2: the decoder has to draw it on any content), on top of ``cycle``
    attribute_cycle: float = non_negative(0.0)
    # x mean E2(G(E1(a), 0))^2 over the batch's domain-A images: the removal of a's attribute must show no
    # attribute to E2 (which zero_b makes answer zero on domain-B images), so the decoder cannot redraw the attribute
    # from what E1 kept of it (Benaim et al. ask the same of the removal with an image GAN; E2 stands in for it)
    removal_zero: float = non_negative(0.0)
    # Benaim et al.'s image discriminator, x the non-saturating GAN loss of the decoded translations and removals:
    # a conv net with two logits judges translations G(E1(b), E2(a)) against reconstructions of domain-A images
    # and removals G(E1(a), 0) against reconstructions of domain-B images (reconstructions, not the inputs, so it
    # learns the attribute rather than the blur); updated once per step, lr as the domain discriminator's
    image_gan: float = non_negative(0.0)
    image_gan_width: int | None = positive(None)  # its conv width (None: model.width)
    # true: image_gan becomes a ceiling and a ratio of gradient norms (after VQGAN's adaptive weight, Esser et al.
    # 2021): each step the critic term weighs image_gan x min(1, |grad rec| / |grad gan|), the norms taken on the
    # decoder's last weight, so its pull never exceeds image_gan x the reconstruction's and shrinks with the
    # reconstruction error (on the digits base 4-10x less than on Fashion-MNIST) instead of outgrowing it
    image_gan_adaptive: bool = False
    # x mean ((G(E1(b), E2(a)) - G(E1(b), 0)) - sg(G(E1(a), E2(a)) - G(E1(a), 0)))^2 over the translation pairs: a
    # translation must add to b what a's attribute code adds to a's own reconstruction (the target detached). The
    # reconstruction's edit may draw on what E1(a) kept of the attribute; a translation has only E2(a) for it, so
    # E2 has to carry it. Assumes an attribute whose look does not depend on the content (an overlay, glasses)
    edit_match: float = non_negative(0.0)
    # x MMD^2 between the flattened E1 codes of the batch's two domains (Gaussian kernels at 3 bandwidths around
    # the batch's mean squared distance): a non-adversarial pull of the two content-code distributions together
    match: float = non_negative(0.0)
    # true: the discriminator sees E1's flattened codes standardised per feature with the batch's mean and standard
    # deviation (both domains, detached), so the encoders cannot fool it by shrinking their codes: under the shipped
    # 'confuse' target E1's rms fell from 0.76 (lambda = 0) to 0.046, the discriminator's logits near 0 on any input
    standardize: bool = False
    # discriminator updates per autoencoder step (on the same detached codes)
    disc_steps: int = positive(1)
    # the discriminator's updates with the MLP's backward written out (the same operations and dtypes as autograd's,
    # without building a graph; attributes/disentangle step 1.05-1.06x); off under DDP, or with a module hook on it
    direct_update: bool = True

PLAYER = "discriminator"
IMAGE_PLAYER = "image_discriminator"
# the discriminator's loss as one BCE weighted per domain (1 / its count) on the codes flattened once per step,
# instead of boolean-indexed per-domain means recomputed at each of its ``disc_steps`` updates (False: those; for A/B)
WEIGHTED_BCE = True
# the discriminator's update (an MLP of Linear and LeakyReLU layers) with its backward written out: the same
# operations in the same precision (autocast's, when on) without an autograd graph, where
# regularizers.domain.direct_update is on (the default; off under DDP) and WEIGHTED_BCE too (False: autograd; for A/B)
DIRECT_BACKWARD = True
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
        if cfg.content_cycle_detach and cfg.content_cycle <= 0 and cfg.cycle <= 0:
            raise ConfigError(f"regularizers.{cls.name}.content_cycle_detach does nothing without "
                              f"regularizers.{cls.name}.content_cycle (or cycle) > 0")
        image_critic = None
        if cfg.image_gan > 0:
            width = cfg.image_gan_width or int(getattr(run_cfg.model, "width", 8))
            image_critic = ImageCritic(image_shape[0], image_shape[1], width)
        reg = cls(cfg, backbone, image_critic)
        if cfg.image_gan_adaptive and reg.image_gan:
            reg.last_layer = [_last_weight(backbone)]  # a list: a reference, not a second registration
        return reg

    def __init__(self, cfg: DomainConfig, backbone: nn.Module, image_critic: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_critic = image_critic
        channels = int(backbone.content_channels)
        spatial = tuple(backbone.latent_shape[1:])
        features = channels
        for s in spatial:
            features *= int(s)
        self.discriminator = Discriminator(features, list(cfg.hidden))
        self.content_channels = channels
        self.image_gan = cfg.image_gan > 0 and image_critic is not None
        self.translate = (cfg.cycle > 0 or cfg.content_cycle > 0 or cfg.attribute_cycle > 0 or self.image_gan
                          or cfg.edit_match > 0)
        self.removals = cfg.removal_zero > 0 or self.image_gan or cfg.edit_match > 0
        self.reencode = cfg.cycle > 0 or cfg.content_cycle > 0 or cfg.attribute_cycle > 0 or cfg.removal_zero > 0
        # one half of the cycle alone: the translations need only that encoder (the other half is not computed)
        self.reencode_parts = None if cfg.cycle > 0 else frozenset(
            part for part, w in (("content", cfg.content_cycle), ("attribute", cfg.attribute_cycle + cfg.removal_zero))
            if w > 0)
        self.reencode_detached = frozenset({"content"}) if cfg.content_cycle_detach else frozenset()
        self.adversary_steps = int(cfg.disc_steps)
        self.last_layer: list[torch.Tensor] = []  # the decoder's last weight, with image_gan_adaptive
        self.direct_grads = cfg.direct_update and _mlp_layers(self.discriminator) is not None

    def extra_codes(self, z: torch.Tensor, state: dict, batch: dict | None = None) -> torch.Tensor | None:
        """Translations (E1(b), E2(a)) for min(#A, #B) pairs of the batch (with a cycle term), then removals
        (E1(a), 0) of every domain-A example (with ``removal_zero`` or ``image_gan``)."""
        if not (self.translate or self.removals) or batch is None or batch.get("domain") is None:
            return None
        is_a = batch["domain"].view(-1)[: len(z)] > 0.5
        ia, ib = torch.nonzero(is_a).view(-1), torch.nonzero(~is_a).view(-1)
        c = self.content_channels
        rows = []
        n = min(len(ia), len(ib)) if self.translate else 0
        if n:
            rows.append(torch.cat([z[ib[:n], :c], z[ia[:n], c:]], 1))
        if self.removals and len(ia):
            rows.append(torch.cat([z[ia, :c], torch.zeros_like(z[ia, c:])], 1))
        if not rows:
            return None
        target = torch.cat(rows)
        state["target"], state["translations"], state["is_a"] = target.detach(), n, is_a
        return target

    def loss(self, view: StepView) -> dict[str, torch.Tensor]:
        _domains(view)  # fail early on one-domain data
        # the discriminator is frozen here (the method turns its grads off); call the raw module
        logits = self.discriminator(self._discriminator_input(view.out["content"])).float()
        fool = F.binary_cross_entropy_with_logits(logits, self._fool_targets(view, logits))
        terms = {f"{self.name}/adv": self.cfg.weight * fool}
        if self.cfg.zero_b > 0 and "attribute_raw" in view.out:
            is_b = _domains(view) <= 0.5
            if is_b.any():
                terms[f"{self.name}/zero_b"] = self.cfg.zero_b * view.out["attribute_raw"][is_b].float().pow(2).mean()
        if self.reencode and self.name in view.reencoded:
            back, target = view.reencoded[self.name].float(), view.state[self.name]["target"].float()
            c, n = self.content_channels, view.state[self.name]["translations"]
            if self.cfg.removal_zero > 0 and len(back) > n:
                terms[f"{self.name}/removal_zero"] = self.cfg.removal_zero * back[n:, c:].pow(2).mean()
            back, target = back[:n], target[:n]
        if self.translate and self.name in view.reencoded and len(back):
            content = (back[:, :c] - target[:, :c]).pow(2).mean()
            if self.cfg.content_cycle_detach and n > 1:  # as a fraction of the content codes' spread over the pairs
                content = content / target[:, :c].var(0).mean().clamp_min(1e-8)
            attribute = (back[:, c:] - target[:, c:]).pow(2).mean()
            if self.cfg.cycle > 0:
                terms[f"{self.name}/cycle"] = self.cfg.cycle * (content + attribute)
            if self.cfg.content_cycle > 0:
                terms[f"{self.name}/content_cycle"] = self.cfg.content_cycle * content
            if self.cfg.attribute_cycle > 0:
                terms[f"{self.name}/attribute_cycle"] = self.cfg.attribute_cycle * attribute
        if self.image_gan and self.name in view.decoded:
            fakes = self._image_fakes(view)
            if fakes is not None:
                images, column = fakes
                # non-saturating: the critic should call translations real domain-A and removals real domain-B images
                logits = self.image_critic(images).float().gather(1, column[:, None]).squeeze(1)
                gan = F.softplus(-logits).mean()
                terms[f"{self.name}/image_gan"] = self.cfg.image_gan * self._adaptive_scale(view, gan) * gan
        if self.cfg.edit_match > 0 and self.name in view.decoded:
            edit = self._edit_mismatch(view)
            if edit is not None:
                terms[f"{self.name}/edit_match"] = self.cfg.edit_match * edit
        if self.cfg.match > 0:
            is_a = _domains(view) > 0.5
            if is_a.sum() > 1 and (~is_a).sum() > 1:
                flat = view.out["content"].float().flatten(1)
                terms[f"{self.name}/match"] = self.cfg.match * mmd2(flat[is_a], flat[~is_a])
        return terms

    def _discriminator_input(self, content: torch.Tensor) -> torch.Tensor:
        """The flattened content codes, standardised per feature over the batch (statistics detached) with
        ``standardize``: what the discriminator reads, in its updates and in the encoders' term alike."""
        flat = content.flatten(1)
        if not self.cfg.standardize or len(flat) < 2:
            return flat
        stats = flat.detach().float()
        mean, std = stats.mean(0), stats.std(0).clamp_min(1e-6)
        return ((flat.float() - mean) / std).to(flat.dtype)

    def _edit_mismatch(self, view: StepView) -> torch.Tensor | None:
        """mean ((t - G(E1(b), 0)) - sg(G(E1(a), E2(a)) - G(E1(a), 0)))^2 over the translation pairs (edit_match)."""
        state = view.state[self.name]
        n, is_a = state.get("translations", 0), state["is_a"]
        images = view.decoded[self.name]
        if not n or len(images) < 2 * n:  # the removals of the pairs' donors follow the translations
            return None
        ia, ib = torch.nonzero(is_a).view(-1)[:n], torch.nonzero(~is_a).view(-1)[:n]
        recon = view.out["recon"].float()
        added = images[:n].float() - recon[ib]
        target = (recon[ia] - images[n: 2 * n].float()).detach()
        return (added - target).pow(2).mean()

    def _adaptive_scale(self, view: StepView, gan: torch.Tensor) -> torch.Tensor | float:
        """min(1, |grad rec| / |grad gan|) on the decoder's last weight (detached; 1 without image_gan_adaptive)."""
        if not self.last_layer or not torch.is_grad_enabled():
            return 1.0
        weight = self.last_layer[0]
        rec = (view.out["recon"].float() - view.x.float()).pow(2).mean()
        g_rec = torch.autograd.grad(rec, weight, retain_graph=True)[0]
        g_gan = torch.autograd.grad(gan, weight, retain_graph=True)[0]
        scale = (g_rec.float().norm() / (g_gan.float().norm() + 1e-4)).clamp(max=1.0).detach()
        view.state.setdefault(self.name, {})["image_gan_scale"] = scale
        return scale

    def log_terms(self, view: StepView) -> dict[str, torch.Tensor]:
        scale = view.state.get(self.name, {}).get("image_gan_scale")
        return {} if scale is None else {f"{self.name}/image_gan_scale": scale}

    def _image_fakes(self, view: StepView) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(translations then removals, the critic's column judging each: 0 domain A, 1 domain B), or None."""
        state = view.state[self.name]
        n = state.get("translations", 0)
        images = view.decoded[self.name]
        if not len(images):
            return None
        column = torch.ones(len(images), dtype=torch.long, device=images.device)
        column[:n] = 0
        return images, column

    def _image_reals(self, view: StepView) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstructions of the batch, and the critic's column judging each (0 domain A, 1 domain B)."""
        is_a = _domains(view) > 0.5
        return view.out["recon"], (~is_a).long()

    def _image_adversary_step(self, view: StepView, call: Call) -> dict[str, torch.Tensor]:
        """One update of the image critic: reconstructions of each domain real, translations and removals fake."""
        fakes = self._image_fakes(view) if self.name in view.decoded else None
        if fakes is None:
            return {}
        reals, real_col = self._image_reals(view)
        images = torch.cat([reals, fakes[0]])
        column = torch.cat([real_col, fakes[1]])
        target = torch.cat([torch.ones(len(reals)), torch.zeros(len(fakes[0]))]).to(images.device)
        logits = call(IMAGE_PLAYER, images).float().gather(1, column[:, None]).squeeze(1)
        # the mean BCE of the reals plus that of the fakes (each set counts the same, whatever its size)
        weight = torch.where(target > 0.5, 1.0 / len(reals), 1.0 / len(fakes[0]))
        loss = F.binary_cross_entropy_with_logits(logits, target, weight, reduction="sum")
        accuracy = ((logits > 0) == (target > 0.5)).float().mean()
        return {IMAGE_PLAYER: loss, f"{IMAGE_PLAYER}/accuracy": accuracy.detach()}

    def _fool_targets(self, view: StepView, logits: torch.Tensor) -> torch.Tensor:
        """The labels the encoders want the discriminator to output (see DomainConfig.fool)."""
        if self.cfg.fool == "confuse":
            return torch.full_like(logits, 0.5)
        if self.cfg.fool == "flip":
            return 1.0 - _domains(view).to(logits.dtype)
        return torch.full_like(logits, FOOL_LABEL)

    def players(self) -> dict[str, nn.Module]:
        if self.image_gan:
            return {PLAYER: self.discriminator, IMAGE_PLAYER: self.image_critic}
        return {PLAYER: self.discriminator}

    def optimizer_settings(self) -> dict[str, dict]:
        if self.cfg.lr is None:
            return {}
        return {name: {"lr": self.cfg.lr} for name in self.players()}

    def adversary_step(self, view: StepView, call: Call, optimizers: dict) -> dict[str, torch.Tensor]:
        logs = self._code_adversary_step(view, call)
        done = view.state.setdefault(self.name, {})
        if self.image_gan and not done.get("image_updated"):  # once per step, whatever disc_steps says
            done["image_updated"] = True
            logs.update(self._image_adversary_step(view, call))
        return logs

    def _code_adversary_step(self, view: StepView, call: Call) -> dict[str, torch.Tensor]:
        if WEIGHTED_BCE:
            return self._adversary_step_weighted(view, call)
        domain = _domains(view)
        logits = call(PLAYER, self._discriminator_input(view.out["content"])).float()
        is_a = domain > 0.5
        loss = logits.new_zeros(())
        for mask in (is_a, ~is_a):  # the official sum of the per-domain mean BCEs
            if mask.any():
                loss = loss + F.binary_cross_entropy_with_logits(logits[mask], domain[mask])
        accuracy = ((logits > 0) == is_a).float().mean()
        return {PLAYER: loss, f"{PLAYER}/accuracy": accuracy.detach()}

    def _adversary_step_weighted(self, view: StepView, call: Call) -> dict[str, torch.Tensor]:
        """The same loss, sum over domains of the mean BCE over that domain's codes, as one weighted sum.

        What does not change between the ``disc_steps`` updates of a step (the flattened codes, the labels, the
        per-example weights 1 / #domain) is computed once and kept in the step's state.
        """
        cache = view.state.setdefault(self.name, {}).get("adversary")
        if cache is None:
            domain = _domains(view)
            is_a = domain > 0.5
            count_a = is_a.sum()
            weight = torch.where(is_a, 1.0 / count_a.clamp_min(1), 1.0 / (len(domain) - count_a).clamp_min(1))
            cache = (self._discriminator_input(view.out["content"]).contiguous(), domain, is_a, weight)
            view.state[self.name]["adversary"] = cache
        codes, domain, is_a, weight = cache
        if DIRECT_BACKWARD and self.direct_grads and not _hooked(self.discriminator):
            loss, logits = _direct_bce_step(self.discriminator, codes, domain, weight)
            accuracy = ((logits > 0) == is_a).float().mean()
            return {PLAYER: loss, f"{PLAYER}/accuracy": accuracy}
        logits = call(PLAYER, codes).float()
        loss = F.binary_cross_entropy_with_logits(logits, domain, weight, reduction="sum")
        accuracy = ((logits > 0) == is_a).float().mean()
        return {PLAYER: loss, f"{PLAYER}/accuracy": accuracy.detach()}


def _last_weight(backbone: nn.Module) -> torch.Tensor:
    """The weight of the decoder's last conv or linear layer (where VQGAN balances its two gradients)."""
    modules = list(backbone.decoder.modules())
    layers = [m for m in modules if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)] or \
        [m for m in modules if isinstance(m, nn.Linear)]  # the output conv (not a FiLM map), else an MLP's last
    if not layers:
        raise ConfigError("regularizers.domain.image_gan_adaptive needs a decoder with a conv or linear layer")
    return layers[-1].weight


def _mlp_layers(discriminator: nn.Module) -> list[tuple[nn.Linear, float | None]] | None:
    """[(linear, slope of the LeakyReLU after it, None for the last)] when ``discriminator`` is such an MLP."""
    net = getattr(discriminator, "net", None)
    if type(discriminator) is not Discriminator or not isinstance(net, nn.Sequential):
        return None
    mods = list(net)
    if len(mods) % 2 != 1 or not all(type(m) is nn.Linear for m in mods[::2]) or \
            not all(type(m) is nn.LeakyReLU for m in mods[1::2]) or mods[-1].out_features != 1:
        return None
    return [(lin, mods[2 * i + 1].negative_slope if 2 * i + 1 < len(mods) else None)
            for i, lin in enumerate(mods[::2])]


def _hooked(module: nn.Module) -> bool:
    """Whether a module hook would see the discriminator's forward or backward (then autograd runs it)."""
    from torch.nn.modules import module as base

    if base._global_forward_hooks or base._global_forward_pre_hooks or base._global_backward_hooks or \
            base._global_backward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in module.modules())


def _direct_bce_step(discriminator: nn.Module, codes: torch.Tensor, target: torch.Tensor,
                     weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sets the discriminator's gradients of sum_i weight_i BCE(logit_i, target_i); returns (loss, logits).

    The forward and backward that autograd would run for ``discriminator(codes).float()`` under the current
    autocast (linear layers in its dtype, LeakyReLU in that dtype, the loss in fp32), written out: the same kernels
    (addmm / mm, leaky_relu(_backward)) on the same dtypes, without building a graph.
    """
    layers = _mlp_layers(discriminator)
    assert layers is not None
    device = codes.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    with torch.no_grad(), torch.autocast(device, enabled=False):
        h = codes if dtype is None else codes.to(dtype)
        inputs, pre, weights = [], [], []
        for lin, slope in layers:
            w = lin.weight if dtype is None else lin.weight.to(dtype)
            b = lin.bias if dtype is None or lin.bias is None else lin.bias.to(dtype)
            inputs.append(h)
            weights.append(w)
            a = h @ w.t() if b is None else torch.addmm(b, h, w.t())
            pre.append(a)
            h = a if slope is None else F.leaky_relu(a, slope)
        logits = h.squeeze(1).float()
        loss = F.binary_cross_entropy_with_logits(logits, target, weight, reduction="sum")
        grad = ((torch.sigmoid(logits) - target) * weight).to(h.dtype).unsqueeze(1)  # d loss / d logits
        for i in range(len(layers) - 1, -1, -1):
            lin, _ = layers[i]
            lin.weight.grad = (grad.t() @ inputs[i]).to(lin.weight.dtype)
            if lin.bias is not None:
                lin.bias.grad = grad.sum(0).to(lin.bias.dtype)
            if i:
                grad = torch.ops.aten.leaky_relu_backward(grad @ weights[i], pre[i - 1], layers[i - 1][1], False)
    return loss, logits
