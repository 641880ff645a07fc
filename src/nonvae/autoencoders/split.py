"""model.backbone split: content encoder E1, attribute encoder E2, one decoder G (Press et al., ICLR 2019).

The code is [E1(x), E2(x)] for the domain with the attribute and [E1(x), 0] for the domain without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nonvae.autoencoders.base import Backbone
from nonvae.config import ModelConfig, non_negative
from nonvae.errors import ConfigError
from nonvae.nets import (
    ConvDecoder,
    ConvEncoder,
    PressDecoder,
    PressEncoder,
    press_attribute_widths,
    press_content_widths,
    press_decoder_widths,
    scales_for,
)
from nonvae.registry import register_backbone

PARTIAL_REENCODE = True  # re-encode decoded codes with only the encoders the terms read (False: both; for A/B)


@dataclass
class SplitModel(ModelConfig):
    """``model`` keys of backbone split (content disentanglement); latent_channels: E1's default width."""

    backbone: str = "split"
    content_dim: int = non_negative(0)  # E1's channels (0: latent_channels)
    attribute_dim: int = non_negative(0)  # E2's channels (0: latent_channels // 4, at least 1)
    # spatial: E2 is a map on the latent grid (attribute_dim channels, room for the donor's shape);
    # global: E2 is averaged over the grid to an attribute_dim vector, which a learned linear map
    # (no bias: a zero code stays zero) spreads back over the grid's attribute_dim channels
    attribute_code: Literal["spatial", "global"] = "spatial"
    # global only: how E2's grid output becomes the vector: 'mean' over the grid (position-blind: a patch in a
    # corner and in the opposite corner give nearly the same vector) or 'linear', a learned linear map of the
    # flattened grid (knows where things are), or 'mlp': a hidden layer of 16 x dim units and a leaky ReLU between
    # two bias-free linear maps (a thin band's angle is not a linear function of where on the grid it was seen)
    attribute_pool: Literal["mean", "linear", "mlp"] = "mean"
    # global only: how the vector is spread over the grid: 'linear' (W v) or 'mlp' (a hidden layer of 16 x dim
    # units and a leaky ReLU between two bias-free linear maps: still zero for a zero vector, and still dim numbers
    # per image, but the grid can depend on them non-linearly, e.g. a thin band's angle and offset)
    attribute_spread: Literal["linear", "mlp"] = "linear"
    arch: Literal["acai", "press"] = "acai"  # acai (ACAI convs) | press (4x4 stride-2 convs, Press et al. 2019)
    norm: Literal["none", "instance"] = "none"  # press arch
    # acai arch: every decoder conv also sees each pixel's coordinates (CoordConv), so a global attribute code
    # can say where to draw (see docs/benchmarks/disentangle.md)
    coord_channels: bool = False
    # acai arch, global E2: the attribute code also scales and shifts every hidden decoder conv's channels (FiLM, as
    # MUNIT's AdaIN does with its global style code), instead of entering at the decoder's input only
    attribute_film: bool = False
    # acai arch, global E2: hidden units of a renderer that also draws the attribute code at full resolution from each
    # pixel's coordinates (nets.AttributeRenderer), for thin shapes the 4x4 grid places poorly (0: off)
    attribute_render: int = non_negative(0)


class GlobalAttribute(nn.Module):
    """E2 as a global vector: a grid encoder's output averaged over the grid, spread back by a linear map.

    The grid code the decoder sees is W v (no bias), so it carries at most ``dim`` numbers per image
    (the official E2 is about 5% of the code) and no per-position shape; a zero vector is a zero map.
    ``pool`` 'mean' averages the grid (blind to where the attribute is), 'linear' maps the flattened grid to
    the vector (no bias either), so a corner patch's corner or a band's offset can reach the vector; 'mlp' does
    that through a bias-free hidden layer. ``spread`` 'mlp' likewise replaces W v by a bias-free MLP of v.
    """

    def __init__(self, encoder: nn.Module, dim: int, grid: tuple[int, int], pool: str = "mean",
                 spread: str = "linear") -> None:
        super().__init__()
        self.encoder = encoder
        self.dim, self.grid = dim, grid
        cells = dim * grid[0] * grid[1]
        self.pool = (nn.Linear(cells, dim, bias=False) if pool == "linear" else
                     _bias_free_mlp(cells, 16 * dim, dim) if pool == "mlp" else None)
        if spread == "mlp":
            self.spread: nn.Module = _bias_free_mlp(dim, 16 * dim, cells)
        else:
            self.spread = nn.Linear(dim, cells, bias=False)
            nn.init.normal_(self.spread.weight, 0.0, 1.0 / math.sqrt(dim))

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        """The attribute vector (N, dim)."""
        grid = self.encoder(x)
        return grid.mean((2, 3)) if self.pool is None else self.pool(grid.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spread(self.vector(x)).view(len(x), self.dim, *self.grid)


def _bias_free_mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two bias-free linear maps with a leaky ReLU between them: still zero for a zero input."""
    first, last = nn.Linear(inputs, hidden, bias=False), nn.Linear(hidden, outputs, bias=False)
    nn.init.normal_(first.weight, 0.0, 1.0 / math.sqrt(inputs))
    nn.init.normal_(last.weight, 0.0, 1.0 / math.sqrt(hidden))
    return nn.Sequential(first, nn.LeakyReLU(0.2), last)


class SplitAutoencoder(Backbone):
    """E1 (content) + E2 (attribute, zeroed for the domain without it) + one decoder.

    ``domain`` is 1 for examples of the domain with the attribute (A), 0 otherwise.
    The code concatenates content and attribute channels on the latent grid.
    """

    def __init__(self, cfg: SplitModel, image_shape: tuple[int, int, int]) -> None:
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
        if cfg.coord_channels and cfg.arch != "acai":
            raise ConfigError("model.coord_channels applies to model.arch: acai only (the press decoder has no "
                              "coordinate inputs); drop it or set model.arch=acai")
        if cfg.attribute_spread != "linear" and cfg.attribute_code != "global":
            raise ConfigError(f"model.attribute_spread: {cfg.attribute_spread} applies to model.attribute_code: global "
                              "only (a spatial E2 is not spread); drop it or set model.attribute_code=global")
        if cfg.attribute_film and (cfg.arch != "acai" or cfg.attribute_code != "global"):
            raise ConfigError("model.attribute_film applies to model.arch: acai with model.attribute_code: global "
                              "only; drop it or set both")
        if cfg.attribute_render and (cfg.arch != "acai" or cfg.attribute_code != "global"):
            raise ConfigError("model.attribute_render applies to model.arch: acai with model.attribute_code: global "
                              "only; drop it or set both")
        if cfg.arch == "press":  # Press et al.'s 4x4 stride-2 convs (the CelebA configuration)
            self.content_encoder = PressEncoder(c, press_content_widths(cfg.width, scales, content), cfg.norm)
            self.attribute_encoder = PressEncoder(c, press_attribute_widths(cfg.width, scales, attribute),
                                                  cfg.norm)
            self.decoder = PressDecoder(c, content + attribute, press_decoder_widths(cfg.width, scales),
                                        cfg.norm, cfg.out_activation)
        else:  # ACAI convs (small CPU configurations)
            self.content_encoder = ConvEncoder(c, cfg.width, scales, content)
            self.attribute_encoder = ConvEncoder(c, cfg.width, scales, attribute)
            self.decoder = ConvDecoder(c, cfg.width, scales, content + attribute, cfg.out_activation,
                                       coords=cfg.coord_channels, film=attribute if cfg.attribute_film else 0,
                                       grid=(h >> scales, w >> scales), render=cfg.attribute_render,
                                       attribute=attribute)
        self.latent_shape = (content + attribute, h >> scales, w >> scales)
        if cfg.attribute_code == "global":
            self.attribute_encoder = GlobalAttribute(self.attribute_encoder, attribute, self.latent_shape[1:],
                                                     cfg.attribute_pool, cfg.attribute_spread)

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

    def _reencode(self, x: torch.Tensor, parts: frozenset[str] | None,
                  detached: frozenset[str] = frozenset()) -> torch.Tensor:
        """Only the encoders of ``parts`` run; the channels of the other part are zero. The encoders of
        ``detached`` read ``x`` detached: their terms reach that encoder and not the decoder that drew ``x``."""
        if not PARTIAL_REENCODE or parts is None:
            parts = frozenset({"content", "attribute"})
        if not detached and parts >= {"content", "attribute"}:
            return super()._reencode(x, parts)

        def encode(part: str, encoder: nn.Module) -> torch.Tensor | None:
            return encoder(x.detach() if part in detached else x) if part in parts else None

        content = encode("content", self.content_encoder)
        attribute = encode("attribute", self.attribute_encoder)
        if content is None:
            content = attribute.new_zeros(len(x), self.content_channels, *attribute.shape[2:])
        if attribute is None:
            attribute = content.new_zeros(len(x), self.attribute_channels, *content.shape[2:])
        return self.combine(content, attribute)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _mask(attribute: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    return attribute * domain.to(attribute.dtype).view(-1, *([1] * (attribute.ndim - 1)))


@register_backbone("split", config=SplitModel)
def split_backbone(cfg: SplitModel, image_shape: tuple[int, int, int]) -> Backbone:
    """E1, E2 and one decoder (content disentanglement)."""
    return SplitAutoencoder(cfg, image_shape)
