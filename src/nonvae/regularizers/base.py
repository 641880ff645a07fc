"""The regularizer interface: terms added to the autoencoder loss.

A regularizer may ask the backbone to encode extra inputs and to decode extra
codes in the same forward (see ``Backbone.forward``); it then adds its loss
terms. One with an adversary (ACAI's critic, the domain discriminator) owns that
network under ``players()`` and updates it in ``adversary_step`` from detached
tensors only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from nonvae.config import Config

Call = Callable[..., torch.Tensor]  # call(player_name, *args): run a (possibly DDP-wrapped) player


@dataclass
class StepView:
    """What one training step computed, as regularizers see it."""

    batch: dict[str, torch.Tensor]
    x: torch.Tensor  # the main inputs
    out: dict[str, torch.Tensor]  # backbone outputs for the main inputs: z, recon, ...
    extra_in: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # per regularizer
    extra_out: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # outputs for extra inputs
    decoded: dict[str, torch.Tensor] = field(default_factory=dict)  # per regularizer: decoded extra codes
    state: dict[str, dict] = field(default_factory=dict)  # per regularizer: what extra_codes drew
    step: int = 0
    reencoded: dict[str, torch.Tensor] = field(default_factory=dict)  # per regularizer: codes of `decoded`
    # per regularizer with ``shares_forward``: what its adversary's forward (and backward) in the autoencoder step
    # left for the adversary's own update, so it need not run them again; ``detached()`` passes it through as is
    shared: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def detached(self) -> StepView:
        def d(v):
            if isinstance(v, torch.Tensor):
                return v.detach()
            if isinstance(v, dict):
                return {k: d(u) for k, u in v.items()}
            return v

        return StepView(d(self.batch), self.x.detach(), d(self.out), d(self.extra_in), d(self.extra_out),
                        d(self.decoded), d(self.state), self.step, d(self.reencoded), self.shared)


class Regularizer(nn.Module):
    """Base class; every hook is optional."""

    name: str = "regularizer"  # set by @register_regularizer: the config section's name
    reencode: bool = False  # true: the backbone also encodes what extra_codes decoded (view.reencoded)
    # with reencode, on a split backbone: the parts of those codes the terms read ({'content'}, {'attribute'}); the
    # encoders of the others are not run and their channels are zero (None: all)
    reencode_parts: frozenset[str] | None = None
    # with reencode, on a split backbone: the parts whose encoder reads the decoded images detached, so their terms
    # train that encoder only, not the decoder that drew the images ({'content'}: see regularizers.domain)
    reencode_detached: frozenset[str] = frozenset()
    # true: when the method gives it an entry in view.shared (one adversary update per step), ``loss`` leaves
    # there what ``adversary_step`` can reuse from its adversary's forward and backward (ACAI's critic); the
    # trainer turns it off under DDP
    shares_forward: bool = False
    # true: ``adversary_step`` may set its players' gradients itself (a backward written out, without an autograd
    # graph) and return their losses detached; the method then steps those players without ``backward()``. The
    # trainer turns it off under DDP (the gradients would bypass the players' wrappers)
    direct_grads: bool = False

    @classmethod
    def build(cls, cfg: Any, backbone: nn.Module, image_shape: tuple[int, int, int],
              run_cfg: Config) -> Regularizer:
        """Construct from this regularizer's config section; override to check what it needs.

        ``backbone`` is the autoencoder it will regularize, ``run_cfg`` the whole run's config.
        """
        return cls(cfg)  # type: ignore[call-arg]

    def extra_inputs(self, batch: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """Further images to encode in the same forward: {'x': ..., optional 'domain': ..., aux...}."""
        return None

    def extra_codes(self, z: torch.Tensor, state: dict, batch: dict[str, torch.Tensor] | None = None,
                    ) -> torch.Tensor | None:
        """Further codes to decode in the same forward, computed from the main inputs' codes.

        ``state`` is this regularizer's scratch space for the step (e.g. the drawn alphas); ``batch``
        the step's batch (e.g. its domains).
        """
        return None

    def loss(self, view: StepView) -> dict[str, torch.Tensor]:
        """Weighted terms to add to the autoencoder loss, keyed '<name>/<term>'."""
        return {}

    def log_terms(self, view: StepView) -> dict[str, torch.Tensor]:
        """Diagnostics logged each step but not added to the loss (e.g. latent distances)."""
        return {}

    def players(self) -> dict[str, nn.Module]:
        """Adversary networks trained by this regularizer, by name."""
        return {}

    def optimizer_settings(self) -> dict[str, dict]:
        """Per-player optimizer overrides (e.g. {'critic': {'lr': 1e-4}})."""
        return {}

    def adversary_step(self, view: StepView, call: Call, optimizers: dict) -> dict[str, torch.Tensor]:
        """Update this regularizer's adversaries from ``view`` (detached); return logged losses."""
        return {}
