"""The trainer's hooks: it calls them at its events and knows nothing of pictures, metrics or HTML."""

from __future__ import annotations

import json
import subprocess
import sys

from nonvae.rundir import RunDir
from nonvae.train import Trainer


def test_trainer_calls_its_hooks_in_order(tiny_digits, tmp_path):
    events = []
    cfg = tiny_digits(**{"train.steps": 4, "train.sample_every": 2, "train.eval_every": 3, "train.report": True})
    run = RunDir(tmp_path / "run")
    Trainer(cfg, run.path, hooks=[lambda trainer, event: events.append((event, trainer.step))]).fit()
    assert events == [("sample", 2), ("eval", 3), ("sample", 4), ("end", 4)]
    # the given hooks replace the defaults: no grids, no periodic evaluation, no report
    assert not run.grids.exists() and not run.report.exists()
    assert all(json.loads(line).get("kind") != "eval" for line in run.metrics.read_text().splitlines())


def test_default_hooks_write_grids_evaluation_and_report(tiny_digits, tmp_path):
    cfg = tiny_digits(**{"train.steps": 2, "train.sample_every": 2, "train.eval_every": 1, "train.report": True})
    run = RunDir(tmp_path / "run")
    Trainer(cfg, run.path).fit()
    assert run.latest_grid("recon") == run.grid("recon", 2) and run.report.is_file()
    assert any(json.loads(line).get("kind") == "eval" for line in run.metrics.read_text().splitlines())


def test_the_trainer_does_not_import_the_report():
    code = "import sys, nonvae.train; print(sorted(m for m in ('nonvae.report', 'nonvae.evaluate.run', " \
           "'nonvae.pictures') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
