"""Comparing runs fairly in a report: only runs on the same data are ranked against each other, and
their interpolation grids are shown side by side on the same test pairs.

A lines MSE and a Fashion-MNIST MSE are different quantities; marking one "best" across both
says nothing. ``data_key`` names what a run was evaluated on (dataset, its files, image shape);
``best_by_data`` ranks a metric within each group of equal keys only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def data_key(cfg: Any) -> str:
    """What a run's metrics are measured on: dataset name, its files (when the dataset has any) and shape."""
    d = cfg.data
    root = getattr(d, "root", None) or ""
    extra = [str(getattr(d, k)) for k in ("domain_a", "domain_b", "test", "base") if getattr(d, k, None)]
    return "|".join([d.name, str(root), *extra, f"{d.channels}x{d.image_size}x{d.image_size}"])


def data_label(cfg: Any) -> str:
    """A short human name for a data group (for headings)."""
    d = cfg.data
    root = getattr(d, "root", None)
    where = f" ({root})" if root and d.name in ("images", "domains") else ""
    return f"{d.name}{where}, {d.channels}×{d.image_size}×{d.image_size}"


def groups(keys: Mapping[str, str]) -> dict[str, list[str]]:
    """data key -> the run names sharing it, in the order given."""
    out: dict[str, list[str]] = {}
    for name, key in keys.items():
        out.setdefault(key, []).append(name)
    return out


def best_by_data(values: Mapping[str, float | None], keys: Mapping[str, str], direction: str | None,
                 best_of: Callable[[Mapping[str, float | None], str | None], set[str]]) -> set[str]:
    """The best runs of one metric, ranked only among runs on the same data (a group of one ranks nothing)."""
    best: set[str] = set()
    for names in groups({n: keys.get(n, n) for n in values}).values():
        if len(names) < 2:
            continue
        best |= best_of({n: values[n] for n in names}, direction)
    return best


def side_by_side_layout(widths: Sequence[int], page: int = 1150, cap: int = 6) -> tuple[int, bool]:
    """(integer upscale, in one row?) for grids compared on one page: in a row when they fit it at 2x or
    more, else one above the other (the same pair on the same row of each grid) at the largest integer
    scale that fits the page, never below 2x."""
    total, widest = sum(widths) or 1, max(widths, default=1) or 1
    if 2 * total <= page:
        return min(cap, page // total), True
    return max(2, min(cap, page // widest)), False


__all__ = ["best_by_data", "data_key", "data_label", "groups", "side_by_side_layout"]
