"""nonvae: non-variational autoencoders on one core.

``nonvae.load(run_dir)`` returns a trained method ready to ``encode``/``decode``.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(run_dir, device: str = "cpu"):
    """Load a trained run (or exported model folder) for inference."""
    from nonvae.pipeline import load as _load

    return _load(run_dir, device=device)


__all__ = ["load", "__version__"]
