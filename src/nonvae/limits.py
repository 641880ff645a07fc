"""Bounds on what a command may allocate, checked before allocating: one line instead of an OOM kill.

Sizes come from the user (``--pairs``, ``--n``, ``--scale``, ``data.image_size``...). Each command
estimates the bytes its output (or a training step) needs from them and compares the estimate with
what this process may use: the physical memory, or less under ``ulimit -v`` (``RLIMIT_AS``).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

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


def parameter_count(cfg) -> int | None:  # noqa: ANN001
    """The number of parameters the config builds, counted on the meta device (nothing is allocated);
    None when building fails (the real build then raises its own error)."""
    import torch

    from nonvae.methods import build_method

    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    try:
        with torch.device("meta"):
            method = build_method(cfg, shape)
    except RuntimeError as exc:
        return 1 << 62 if "overflow" in str(exc).lower() else None
    except (NonvaeError, ValueError, TypeError, OverflowError):
        return None
    return sum(p.numel() for p in method.parameters())


def check_training_memory(cfg) -> None:  # noqa: ANN001
    """Refuse a config whose sizes cannot fit before any data is built or file written."""
    d, t = cfg.data, cfg.train
    params = parameter_count(cfg)
    if params is not None:  # weights, gradients and two Adam moments, float32
        check_memory(16 * params, f"a model of {params:.3g} parameters (model.* and the regularizers' widths)",
                     "make it smaller")
    check_memory(training_bytes(cfg), f"data.image_size={d.image_size}, train.batch_size={t.batch_size}, "
                 f"model.width={cfg.model.width}", "lower them")


def _named_path(path: str | os.PathLike, flag: str, kind: str) -> Path:
    """A non-empty, UTF-8 path (model cards and logs quote it), or one line saying what is wrong."""
    text = os.fspath(path)
    if not text:
        raise ConfigError(f"{flag}: empty path")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{flag} {text.encode('utf-8', 'surrogateescape')!r}: the {kind} name is not valid UTF-8; "
                          "use a UTF-8 name") from None
    return Path(text)


def output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Check an output file path before any work: one line instead of a traceback (or a hang) at the end.

    Refused: an empty path, a name that is not valid UTF-8 (model cards and logs quote it), an existing
    folder, a FIFO or device (writing would block), and a folder that cannot be created (under a file,
    a read-only file system, a symlink loop, no permission). The folder is created.
    """
    out = _named_path(path, flag, "file")
    try:
        if out.is_dir():
            raise ConfigError(f"{flag} {out}: is a folder; give a file name")
        if out.exists() and not out.is_file():
            raise ConfigError(f"{flag} {out}: exists and is not a regular file (a FIFO or device?)")
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {out}: cannot create its folder ({exc.strerror or exc})") from None
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"{flag} {out}: its folder is not writable")
    return out


def output_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Check an output folder path (as :func:`output_file`, but it must be, or become, a folder)."""
    out = _named_path(path, flag, "folder")
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{flag} {out}: exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"{flag} {out}: the folder is not writable")
    return out
