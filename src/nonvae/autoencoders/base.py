"""What every backbone shares: the ``Backbone`` interface, the plain (f, g) autoencoder, LTAE's transform.

A backbone maps images to codes and back. Its ``forward`` does everything one
training step needs from it in a single call (encode the inputs, decode their
codes and any extra codes a regularizer asks for), because under
DistributedDataParallel only calls through the wrapper's ``forward`` keep the
gradients in sync across ranks.

:class:`PlainAutoencoder` is f, g (conv.py or mlp.py build them), optionally
with the LTAE latent transform z' = a * (z + b) whose output is the code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nonvae.config import ModelConfig, non_negative
from nonvae.registry import BACKBONES

CodeFn = Callable[[torch.Tensor], torch.Tensor | None]


class LatentTransform(nn.Module):
    """LTAE's learned transform z' = a * (z + b), with a, b vectors over the flattened code."""

    def __init__(self, numel: int, kind: str, noise: float) -> None:
        super().__init__()
        self.kind = kind
        self.noise = noise
        self.a = nn.Parameter(torch.ones(numel))
        self.b = nn.Parameter(torch.zeros(numel))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(1)
        return (self.a * (flat + self.b)).view_as(z)

    def perturb(self, z: torch.Tensor) -> torch.Tensor:
        """Training-time decoder noise: Gaussian for LTAE-S, uniform for LTAE-M."""
        if self.noise <= 0:
            return z
        if self.kind == "minmax":
            return z + (torch.rand_like(z) * 2 - 1) * self.noise
        return z + torch.randn_like(z) * self.noise


class Backbone(nn.Module):
    """Shared forward logic; subclasses implement ``_encode`` and ``decode``."""

    latent_shape: tuple[int, ...]
    image_shape: tuple[int, int, int]
    # set in __init__ (not as a class attribute: nn.Module only finds registered submodules
    # when normal attribute lookup fails, so a class-level None would shadow the transform)
    transform: LatentTransform | None

    def _encode(self, x: torch.Tensor, domain: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> codes (the space interpolations, probes and sampling use)."""
        return self._encode(x, domain)["z"]

    def forward(
        self,
        x: torch.Tensor,
        domain: torch.Tensor | None = None,
        extra_codes: CodeFn | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode ``x``, decode its codes and ``extra_codes(z)`` in one pass.

        Returns 'z', 'recon' and 'extra' (decoded extra codes, or an empty tensor),
        plus backbone-specific parts ('z_raw', 'content', 'attribute', 'attribute_raw'); when
        ``extra_codes.reencode`` is true also 'extra_codes', the codes of the decoded extra codes.
        """
        out = self._encode(x, domain)
        z = out["z"]
        extra = extra_codes(z) if extra_codes is not None else None
        codes = z if extra is None else torch.cat([z, extra.to(z.dtype)])
        if self.training and self.transform is not None:
            codes = self.transform.perturb(codes)
        decoded = self.decode(codes)
        out["recon"] = decoded[: len(z)]
        out["extra"] = decoded[len(z):]
        if extra is not None and getattr(extra_codes, "reencode", False):
            # codes of the decoded extra codes, unmasked (cycle terms), in this same forward
            out["extra_codes"] = self._reencode(out["extra"], getattr(extra_codes, "reencode_parts", None),
                                                getattr(extra_codes, "reencode_detached", frozenset()))
        return out

    def _reencode(self, x: torch.Tensor, parts: frozenset[str] | None,
                  detached: frozenset[str] = frozenset()) -> torch.Tensor:
        """Codes of decoded images for cycle terms; a backbone with parts may compute only ``parts`` (None: all)
        and read the images detached for the parts in ``detached`` (a plain backbone has no parts: both ignored)."""
        return self._encode(x, None)["z"]


@dataclass
class PlainModel(ModelConfig):
    """``model`` keys of the plain backbones (conv, mlp): the grid keys plus LTAE's latent transform."""

    # LTAE latent transform z' = a * (z + b) (+ noise when decoding)
    transform: Literal["none", "standardize", "minmax"] = "none"  # none | LTAE-S | LTAE-M
    transform_noise: float = non_negative(0.01)


class PlainAutoencoder(Backbone):
    """An encoder f and decoder g (conv or MLP: see conv.py, mlp.py), with an optional LTAE transform."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, image_shape: tuple[int, int, int],
                 latent_shape: tuple[int, ...], cfg: PlainModel) -> None:
        super().__init__()
        self.transform = None
        self.image_shape = image_shape
        self.encoder = encoder
        self.decoder = decoder
        self.latent_shape = latent_shape
        if cfg.transform != "none":
            self.transform = LatentTransform(math.prod(self.latent_shape), cfg.transform, cfg.transform_noise)

    def _encode(self, x: torch.Tensor, domain: torch.Tensor | None) -> dict[str, torch.Tensor]:
        z_raw = self.encoder(x)
        if self.transform is None:
            return {"z": z_raw}
        return {"z": self.transform(z_raw), "z_raw": z_raw}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def build_backbone(cfg: ModelConfig, image_shape: tuple[int, int, int]) -> Backbone:
    """The backbone ``model.backbone`` names (see :mod:`nonvae.registry`)."""
    return BACKBONES.get(cfg.backbone).obj(cfg, image_shape)
