"""Datasets by config name (``data.name``), and the step-indexed batch streams the trainer draws from.

Each dataset module registers a builder ``(cfg, seed) -> DataBundle`` with ``@register_dataset``
(and, when it has keys of its own, its config dataclass); a new module in this folder is found
without further edits. A batch depends only on (seed, step, rank, world size), never on what was
drawn before, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from nonvae.config import DataConfig
from nonvae.data.base import ArrayStream, BatchSource, DataBundle, ImageSet, array_bundle, to_float
from nonvae.registry import DATASETS

__all__ = ["ImageSet", "ArrayStream", "BatchSource", "DataBundle", "array_bundle", "build_data", "to_float"]


def build_data(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """Load (or generate) the configured dataset."""
    return DATASETS.get(cfg.name).obj(cfg, seed)
