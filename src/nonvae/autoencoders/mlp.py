"""model.backbone mlp: fully connected f and g on flattened images (the LTAE paper's experiments)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nonvae.autoencoders.base import Backbone, PlainAutoencoder, PlainModel
from nonvae.config import positive
from nonvae.nets import MLPDecoder, MLPEncoder
from nonvae.registry import register_backbone


@dataclass
class MLPModel(PlainModel):
    """``model`` keys of backbone mlp (width, latent_width, latent_channels only shape an ACAI critic here)."""

    backbone: str = "mlp"
    latent_dim: int = positive(32)  # size of the latent vector
    hidden: list[int] = positive(factory=lambda: [500, 500])  # hidden layer sizes of f (g mirrors them)
    activation: Literal["leaky_relu", "softplus", "relu"] = "leaky_relu"


@register_backbone("mlp", config=MLPModel)
def mlp_backbone(cfg: MLPModel, image_shape: tuple[int, int, int]) -> Backbone:
    """MLP f and g, with the optional LTAE transform."""
    c, h, w = image_shape
    return PlainAutoencoder(MLPEncoder(c * h * w, list(cfg.hidden), cfg.latent_dim, cfg.activation),
                            MLPDecoder(image_shape, list(cfg.hidden), cfg.latent_dim, cfg.activation,
                                       cfg.out_activation),
                            image_shape, (cfg.latent_dim,), cfg)
