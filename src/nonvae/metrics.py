"""Metrics declare themselves: what each evaluation key means, and the registry of evaluators.

An evaluator is a function ``(ctx: EvalContext) -> {key: value}`` registered with the keys it
emits and what each means: its direction (higher or lower is better, or neither) and whether
it is a *reference* row (a baseline, floor or ceiling measured beside the model, e.g. the
accuracy of a classifier on clean pixels), which a comparison must not rank as a result::

    @register_metric("code_norm", keys={"code/norm": Info(None, doc="mean ||z|| on the test set")})
    def code_norm(ctx: EvalContext) -> dict[str, float]: ...

``nonvae eval`` runs every registered evaluator whose ``applies(ctx)`` holds and writes the keys'
meaning into eval.json's ``_meta`` section, so the report ranks from data, not from key names.
A new evaluator is one new module in ``nonvae/evaluate/`` (or a ``plugins:`` file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from nonvae.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from nonvae.config import Config
    from nonvae.data.base import DataBundle, ImageSet

META = "_meta"  # the eval.json section holding each key's Info

METRICS = Registry("metric", "eval", "nonvae.evaluate")


@dataclass(frozen=True)
class Info:
    """What one evaluation key means."""

    direction: Literal["higher", "lower"] | None  # which way is better; None: no notion of better
    reference: bool = False  # a baseline / floor / ceiling measured beside the model, not a result
    doc: str = ""


def higher(doc: str = "") -> Info:
    return Info("higher", doc=doc)


def lower(doc: str = "") -> Info:
    return Info("lower", doc=doc)


def reference(doc: str = "", direction: Literal["higher", "lower"] | None = None) -> Info:
    return Info(direction, reference=True, doc=doc)


@dataclass
class EvalContext:
    """What an evaluator gets: the trained method, its data and config, and shared intermediate results."""

    method: Any
    data: DataBundle
    cfg: Config
    device: torch.device
    quick: bool = False  # periodic evaluation during training: smaller samples
    sampler: Any = None  # what generated samples are drawn from (nonvae.sampling.Sampler; None: fit one)

    @cached_property
    def test(self) -> ImageSet:
        """The test set (its first 2,000 images when ``quick``)."""
        return self.data.test if not self.quick else self.data.test.subset(2000)

    @cached_property
    def test_codes(self) -> tuple[np.ndarray, float]:
        """(flattened codes of ``test``, their mean reconstruction MSE), computed once for all evaluators."""
        from nonvae.latent import encode_all

        e = self.cfg.eval
        return encode_all(self.method, self.test, self.device, e.batch_size, desc="encode test",
                          precision=e.precision)


Evaluator = Callable[[EvalContext], dict[str, float]]


def register_metric(name: str, keys: dict[str, Info],
                    applies: Callable[[EvalContext], bool] = lambda ctx: True) -> Callable[[Evaluator], Evaluator]:
    """Register an evaluator with the keys it emits; ``applies(ctx)`` says whether it runs for this run."""

    def decorate(fn: Evaluator) -> Evaluator:
        fn.keys = dict(keys)  # type: ignore[attr-defined]
        fn.applies = applies  # type: ignore[attr-defined]
        return METRICS.register(name)(fn)

    return decorate


def declared() -> dict[str, Info]:
    """Every key any registered evaluator emits, with its Info."""
    out: dict[str, Info] = {}
    for name in METRICS.names():
        out.update(METRICS.get(name).obj.keys)
    return out


def meta_for(keys: Iterable[str]) -> dict[str, dict]:
    """The ``_meta`` section for these keys (keys no evaluator declares are left out)."""
    known = declared()
    return {k: asdict(known[k]) for k in keys if k in known}


def run_all(ctx: EvalContext) -> dict[str, float]:
    """Every registered evaluator that applies, in registry order."""
    metrics: dict[str, float] = {}
    for name in METRICS.names():
        evaluator = METRICS.get(name).obj
        if evaluator.applies(ctx):
            metrics.update(evaluator(ctx))
    return metrics
