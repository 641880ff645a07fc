"""nonvae: non-variational autoencoders on one core.

``nonvae.load(run_dir)`` returns a trained method ready to ``encode``/``decode``; ``interpolate``,
``transfer``, ``remove_attribute`` and ``interpolate_attribute`` work on what it returns (a run
directory, an exported model folder or a shipped ``pretrained/`` model alike).
"""

from __future__ import annotations

__version__ = "0.1.0"

_PIPELINE = ("interpolate", "transfer", "remove_attribute", "interpolate_attribute", "load_samples")


def load(run_dir, device: str = "cpu"):
    """Load a trained run (or exported model folder) for inference."""
    from nonvae.pipeline import load as _load

    return _load(run_dir, device=device)


def __getattr__(name: str):
    # imported lazily so that `import nonvae` stays cheap (the CLI imports only what a command needs)
    if name in _PIPELINE:
        from nonvae import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'nonvae' has no attribute {name!r}")


__all__ = ["load", "__version__", *_PIPELINE]
