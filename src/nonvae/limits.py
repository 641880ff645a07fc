"""Bounds on what a command may allocate, checked before allocating: one line instead of an OOM kill.

Sizes come from the user (``--pairs``, ``--n``, ``--scale``, ``data.image_size``...). Each command
estimates the bytes its output (or a training step) needs from them and compares the estimate with
what this process may use: the physical memory, or less under ``ulimit -v`` (``RLIMIT_AS``).
"""

from __future__ import annotations

import os
import resource

from nonvae.errors import ConfigError, NonvaeError

GIB = 1 << 30


def memory_budget() -> int:
    """Bytes this process may allocate at most: physical memory, or the address-space limit if lower."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 1 << 62
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
        physical = min(physical, soft)
    return int(physical)


def check_memory(nbytes: float, what: str, hint: str = "ask for less",
                 error: type[NonvaeError] = ConfigError) -> None:
    """Refuse ``what`` when it needs more than this process may allocate (``nbytes`` is a lower bound)."""
    budget = memory_budget()
    if nbytes > budget:
        raise error(f"{what} needs at least {nbytes / GIB:.3g} GiB of memory, more than this process may "
                          f"use ({budget / GIB:.3g} GiB); {hint}")


def training_bytes(cfg) -> int:  # noqa: ANN001 - a nonvae.config.Config (imported lazily by callers)
    """A lower bound on the memory one training step needs: the batch, the first level's activations
    (kept for the backward pass), an MLP's first weight matrix with its gradient and Adam moments, and
    the lines test set (generated in memory)."""
    d, m, t = cfg.data, cfg.model, cfg.train
    pixels = d.channels * d.image_size ** 2
    per_image = 4 * (pixels + 2 * m.width * d.image_size ** 2)
    images = 2 * t.batch_size if d.name in ("domains", "attributes") else t.batch_size
    total = images * per_image
    if m.backbone == "mlp" and m.hidden:
        total += 4 * 4 * pixels * m.hidden[0]
    if d.name == "lines":
        total += 4 * (d.test_limit or 1024) * d.image_size ** 2
    return total


def check_training_memory(cfg) -> None:  # noqa: ANN001
    """Refuse a config whose sizes cannot fit before any data is built or file written."""
    d, t = cfg.data, cfg.train
    check_memory(training_bytes(cfg), f"data.image_size={d.image_size}, train.batch_size={t.batch_size}, "
                 f"model.width={cfg.model.width}", "lower them")
