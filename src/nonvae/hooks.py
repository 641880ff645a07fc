"""What the trainer does besides training, at its events: sample grids, periodic evaluation, the report.

The trainer knows nothing of pictures, metrics or HTML: it calls each hook as ``hook(trainer, event)``
on rank 0 with event ``"sample"`` (every ``train.sample_every`` steps and at the last step),
``"eval"`` (every ``train.eval_every`` steps before the last) and ``"end"`` (after training).
``Trainer(cfg, run_dir, hooks=[...])`` replaces the default list.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nonvae.train import Trainer

log = logging.getLogger(__name__)

Hook = Callable[["Trainer", str], None]


@contextlib.contextmanager
def _eval_mode(trainer: Trainer) -> Iterator[None]:
    """The method in eval mode (no decoder noise, no dropout) for the duration; back to training after."""
    trainer.method.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        trainer.method.train()


def sample_grids(trainer: Trainer, event: str) -> None:
    """Reconstruction and interpolation grids into the run's samples/ and TensorBoard."""
    if event != "sample":
        return
    from nonvae.pictures import sample_grids as write_grids

    with _eval_mode(trainer):
        grids = write_grids(trainer.method, trainer.data.test, trainer.run, trainer.step, trainer.device)
    for tag, grid in grids.items():
        trainer.log.image(tag, grid, trainer.step)


def periodic_eval(trainer: Trainer, event: str) -> None:
    """The quick evaluation (test subset) into metrics.jsonl."""
    if event != "eval":
        return
    from nonvae.evaluate.run import evaluate

    with _eval_mode(trainer):
        metrics = evaluate(trainer.method, trainer.data, trainer.cfg, trainer.device, quick=True)
    trainer.log.write(trainer.step, metrics, kind="eval")


def report(trainer: Trainer, event: str) -> None:
    """Refresh the run's report.html after each evaluation and at the end (``train.report``); a failing
    report only warns: it is never worth a failed run."""
    if event not in ("eval", "end") or not trainer.cfg.train.report:
        return
    out = trainer.run.report
    try:
        from nonvae.report import write_report

        write_report([trainer.run_dir], out, device=trainer.device,
                     preloaded={trainer.run_dir: (trainer.method, trainer.data)})
    except Exception as exc:  # noqa: BLE001
        log.warning("warning: could not write %s: %s: %s", out, type(exc).__name__, exc)


def default_hooks() -> list[Hook]:
    """Samples, then evaluation, then the report (which shows that evaluation)."""
    return [sample_grids, periodic_eval, report]
