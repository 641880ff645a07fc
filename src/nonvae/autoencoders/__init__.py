"""Backbones: the autoencoders every method trains, one file each (``model.backbone`` picks one).

- ``conv``  (conv.py): the ACAI conv encoder f and decoder g, optionally with LTAE's latent transform.
- ``mlp``   (mlp.py): an MLP f and g, optionally with LTAE's latent transform.
- ``split`` (split.py): content encoder E1, attribute encoder E2 and one decoder G; the code is
  [E1(x), E2(x)] for the domain with the attribute and [E1(x), 0] for the domain without it.

Each file declares its ``model`` section (a dataclass extending :class:`nonvae.config.ModelConfig`)
and registers both with ``@register_backbone``; the registry imports every module of this package,
so a new backbone is one new file (docs/extending.md). ``base.py`` holds the shared interface.
"""

from nonvae.autoencoders.base import Backbone, CodeFn, LatentTransform, PlainAutoencoder, PlainModel, build_backbone
from nonvae.autoencoders.conv import ConvModel
from nonvae.autoencoders.mlp import MLPModel
from nonvae.autoencoders.split import GlobalAttribute, SplitAutoencoder, SplitModel

__all__ = ["Backbone", "CodeFn", "ConvModel", "GlobalAttribute", "LatentTransform", "MLPModel", "PlainAutoencoder",
           "PlainModel", "SplitAutoencoder", "SplitModel", "build_backbone"]
