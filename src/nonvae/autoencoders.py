"""Backbones: the autoencoders every method trains.

A backbone maps images to codes and back. Its ``forward`` does everything one
training step needs from it in a single call (encode the inputs, decode their
codes and any extra codes a regularizer asks for), because under
DistributedDataParallel only calls through the wrapper's ``forward`` keep the
gradients in sync across ranks.

- :class:`PlainAutoencoder`: f, g (conv or MLP), optionally with the LTAE latent
  transform z' = a * (z + b) whose output is the code.
- :class:`SplitAutoencoder`: content encoder E1, attribute encoder E2 and one
  decoder G; the code is [E1(x), E2(x)] for the domain with the attribute and
  [E1(x), 0] for the domain without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from nonvae.config import ModelConfig
from nonvae.nets import (
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    PressDecoder,
    PressEncoder,
    press_attribute_widths,
    press_content_widths,
    press_decoder_widths,
    scales_for,
)
from nonvae.registry import BACKBONES, register_backbone

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
            out["extra_codes"] = self._encode(out["extra"], None)["z"]
        return out


class PlainAutoencoder(Backbone):
    """Conv (ACAI architecture) or MLP encoder f and decoder g, with an optional LTAE transform."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.transform = None
        c, h, w = image_shape
        self.image_shape = image_shape
        if cfg.backbone == "conv":
            scales = scales_for(h, cfg.latent_width)
            self.encoder: nn.Module = ConvEncoder(c, cfg.width, scales, cfg.latent_channels)
            self.decoder: nn.Module = ConvDecoder(c, cfg.width, scales, cfg.latent_channels, cfg.out_activation)
            side = h >> scales
            self.latent_shape = (cfg.latent_channels, side, w >> scales)
        else:
            self.encoder = MLPEncoder(c * h * w, list(cfg.hidden), cfg.latent_dim, cfg.activation)
            self.decoder = MLPDecoder(image_shape, list(cfg.hidden), cfg.latent_dim, cfg.activation,
                                      cfg.out_activation)
            self.latent_shape = (cfg.latent_dim,)
        if cfg.transform != "none":
            self.transform = LatentTransform(math.prod(self.latent_shape), cfg.transform, cfg.transform_noise)

    def _encode(self, x: torch.Tensor, domain: torch.Tensor | None) -> dict[str, torch.Tensor]:
        z_raw = self.encoder(x)
        if self.transform is None:
            return {"z": z_raw}
        return {"z": self.transform(z_raw), "z_raw": z_raw}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class GlobalAttribute(nn.Module):
    """E2 as a global vector: a grid encoder's output averaged over the grid, spread back by a linear map.

    The grid code the decoder sees is W v (no bias), so it carries at most ``dim`` numbers per image
    (the official E2 is about 5% of the code) and no per-position shape; a zero vector is a zero map.
    """

    def __init__(self, encoder: nn.Module, dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim, self.grid = dim, grid
        self.spread = nn.Linear(dim, dim * grid[0] * grid[1], bias=False)
        nn.init.normal_(self.spread.weight, 0.0, 1.0 / math.sqrt(dim))

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        """The attribute vector (N, dim)."""
        return self.encoder(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spread(self.vector(x)).view(len(x), self.dim, *self.grid)


class SplitAutoencoder(Backbone):
    """E1 (content) + E2 (attribute, zeroed for the domain without it) + one decoder.

    ``domain`` is 1 for examples of the domain with the attribute (A), 0 otherwise.
    The code concatenates content and attribute channels on the latent grid.
    """

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.transform = None
        c, h, w = image_shape
        self.image_shape = image_shape
        scales = scales_for(h, cfg.latent_width)
        content = cfg.content_dim or cfg.latent_channels
        attribute = cfg.attribute_dim or max(1, cfg.latent_channels // 4)
        self.content_channels, self.attribute_channels = content, attribute
        self.content_encoder: nn.Module
        self.attribute_encoder: nn.Module
        self.decoder: nn.Module
        if cfg.arch == "press":  # Press et al.'s 4x4 stride-2 convs (the CelebA configuration)
            self.content_encoder = PressEncoder(c, press_content_widths(cfg.width, scales, content), cfg.norm)
            self.attribute_encoder = PressEncoder(c, press_attribute_widths(cfg.width, scales, attribute),
                                                  cfg.norm)
            self.decoder = PressDecoder(c, content + attribute, press_decoder_widths(cfg.width, scales),
                                        cfg.norm, cfg.out_activation)
        else:  # ACAI convs (small CPU configurations)
            self.content_encoder = ConvEncoder(c, cfg.width, scales, content)
            self.attribute_encoder = ConvEncoder(c, cfg.width, scales, attribute)
            self.decoder = ConvDecoder(c, cfg.width, scales, content + attribute, cfg.out_activation)
        self.latent_shape = (content + attribute, h >> scales, w >> scales)
        if cfg.attribute_code == "global":
            self.attribute_encoder = GlobalAttribute(self.attribute_encoder, attribute, self.latent_shape[1:])

    def encode_parts(self, x: torch.Tensor, domain: torch.Tensor | None = None):
        """(content, attribute) codes; the attribute is zero where ``domain`` is 0."""
        content, attribute = self._parts(x)
        if domain is not None:
            attribute = _mask(attribute, domain)
        return content, attribute

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.content_encoder(x), self.attribute_encoder(x)

    def combine(self, content: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
        return torch.cat([content, attribute], 1)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z[:, : self.content_channels], z[:, self.content_channels:]

    def _encode(self, x: torch.Tensor, domain: torch.Tensor | None) -> dict[str, torch.Tensor]:
        content, raw = self._parts(x)
        attribute = raw if domain is None else _mask(raw, domain)
        # 'attribute_raw': E2 before zeroing domain B's (what regularizers.domain.zero_b pushes to zero)
        return {"z": self.combine(content, attribute), "content": content, "attribute": attribute,
                "attribute_raw": raw}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _mask(attribute: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    return attribute * domain.to(attribute.dtype).view(-1, *([1] * (attribute.ndim - 1)))


@register_backbone("conv")
@register_backbone("mlp")
def plain_backbone(cfg: ModelConfig, image_shape: tuple[int, int, int]) -> Backbone:
    """model.backbone conv (ACAI convs) or mlp, each with the optional LTAE transform."""
    return PlainAutoencoder(cfg, image_shape)


@register_backbone("split")
def split_backbone(cfg: ModelConfig, image_shape: tuple[int, int, int]) -> Backbone:
    """model.backbone split: E1, E2 and one decoder (content disentanglement)."""
    return SplitAutoencoder(cfg, image_shape)


def build_backbone(cfg: ModelConfig, image_shape: tuple[int, int, int]) -> Backbone:
    """The backbone ``model.backbone`` names (see :mod:`nonvae.registry`)."""
    return BACKBONES.get(cfg.backbone).obj(cfg, image_shape)
