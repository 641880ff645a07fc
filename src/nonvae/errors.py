"""User-facing error types.

Anything the user can fix (a bad config key, a missing or malformed file, an
incompatible checkpoint) raises a subclass of :class:`NonvaeError`. The CLI turns
these into one line on stderr and a non-zero exit code; everything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NonvaeError(Exception):
    """An error the user can fix; its message is shown without a traceback."""


class ConfigError(NonvaeError):
    """Invalid configuration: unknown key, wrong type, value out of range."""


class DataError(NonvaeError):
    """A dataset file or folder is missing, truncated or malformed."""


class CheckpointError(NonvaeError):
    """A checkpoint is missing, torn, of another method or shape, or not safetensors."""


class TrainingError(NonvaeError):
    """Training cannot continue (non-finite loss, unwritable run directory)."""


def closest(name: str, options: Iterable[str], n: int = 3) -> list[str]:
    """The options most similar to ``name`` (for 'did you mean' messages)."""
    options = list(options)
    hits = difflib.get_close_matches(name, options, n=n, cutoff=0.5)
    if not hits:
        lowered = {o.lower(): o for o in options}
        hits = [lowered[h] for h in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.4)]
    return hits


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' or a list of valid options when nothing is close."""
    options = sorted(options)
    hits = closest(name, options)
    if hits:
        return " (did you mean " + " or ".join(repr(h) for h in hits) + "?)"
    return " (valid: " + ", ".join(options) + ")"
