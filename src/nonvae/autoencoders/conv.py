"""model.backbone conv: the ACAI conv encoder and decoder (Berthelot et al. 2018), reference init."""

from __future__ import annotations

from dataclasses import dataclass

from nonvae.autoencoders.base import Backbone, PlainAutoencoder, PlainModel
from nonvae.nets import ConvDecoder, ConvEncoder, scales_for
from nonvae.registry import register_backbone


@dataclass
class ConvModel(PlainModel):
    """``model`` keys of backbone conv: the grid (width, latent_width, latent_channels) and the LTAE transform.

    log2(image_size / latent_width) levels of two 3x3 convs and a 2x2 pool, widths width * 2^level.
    """


@register_backbone("conv", config=ConvModel)
def conv_backbone(cfg: ConvModel, image_shape: tuple[int, int, int]) -> Backbone:
    """ACAI convs f and g, with the optional LTAE transform."""
    c, h, w = image_shape
    scales = scales_for(h, cfg.latent_width)
    return PlainAutoencoder(ConvEncoder(c, cfg.width, scales, cfg.latent_channels),
                            ConvDecoder(c, cfg.width, scales, cfg.latent_channels, cfg.out_activation),
                            image_shape, (cfg.latent_channels, h >> scales, w >> scales), cfg)
