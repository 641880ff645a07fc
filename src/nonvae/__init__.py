"""nonvae: non-variational autoencoders on one core.

``nonvae.load(name_or_path)`` returns a trained model as an ``nn.Module`` (:class:`Autoencoder`):
``model(x)`` reconstructs, ``encode``/``decode``/``interpolate``/``sample``, and ``remove``/``add``/
``transfer`` for a split backbone. It accepts a run directory, a saved or exported model folder, or a
shipped model's name (``"lines_acai"``). ``nonvae.fit(config, train=..., test=...)`` trains on your own
images. ``interpolate``, ``transfer``, ``remove_attribute`` and ``interpolate_attribute`` are the same
operations as functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from nonvae.model import Autoencoder

_PIPELINE = ("interpolate", "transfer", "remove_attribute", "interpolate_attribute", "load_samples",
             "load_test_images")
_LAZY = {"Autoencoder": "nonvae.model", "fit": "nonvae.fitting", "configs": "nonvae.resources",
         "pretrained": "nonvae.resources"}


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """A trained model for inference: a run directory, a model folder or a shipped model's name."""
    from nonvae.model import Autoencoder

    return Autoencoder.from_pretrained(path, device=device)


def from_pretrained(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Same as :func:`load` (the Hugging Face name for it)."""
    return load(path, device)


def __getattr__(name: str):
    # imported lazily so that `import nonvae` stays cheap (the CLI imports only what a command needs)
    if name in _PIPELINE:
        from nonvae import pipeline

        return getattr(pipeline, name)
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        if name == "configs":
            return module.config_names
        if name == "pretrained":
            return module.pretrained_names
        return getattr(module, name)
    raise AttributeError(f"module 'nonvae' has no attribute {name!r}")


__all__ = ["Autoencoder", "configs", "fit", "from_pretrained", "load", "pretrained", "__version__", *_PIPELINE]


def __dir__() -> list[str]:
    return sorted(__all__)
