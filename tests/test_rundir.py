"""RunDir: the one place that names a run directory's files."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from nonvae.errors import CheckpointError
from nonvae.rundir import RunDir

SRC = Path(__file__).resolve().parents[1] / "src" / "nonvae"
FILE_NAMES = [RunDir.config.name, RunDir.metrics.name, RunDir.eval.name, RunDir.report.name,
              RunDir.test_images.name, RunDir.model_card.name, RunDir.config_json.name, RunDir.model_weights.name,
              RunDir.sampler.name]


def _strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_but_rundir_spells_a_run_file_name():
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, FILE_NAMES)) + r")(?!\w)")
    found = [f"{path.relative_to(SRC)}:{line}: {text!r}" for path in sorted(SRC.rglob("*.py"))
             if path.name != "rundir.py" for line, text in _strings(path) if pattern.search(text)]
    assert not found, "\n".join(found)


def test_layout_and_lookup(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.config == tmp_path / "run" / "config.yaml" and run.grid("recon", 7).name == "recon_00000007.png"
    with pytest.raises(CheckpointError, match="no such run directory"):
        run.weights_dir()
    run.grids.mkdir(parents=True)
    for step in (3, 12):
        run.grid("interp", step).write_bytes(b"")
    assert run.latest_grid("interp") == run.grid("interp", 12) and run.latest_grid("recon") is None
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        run.weights_dir()
    with pytest.raises(CheckpointError, match="no config.yaml"):
        run.config_file()
    run.config.write_text("{}")
    step = run.checkpoints / "step_00000001"
    step.mkdir(parents=True)
    assert RunDir(step).config_file() == run.config  # a checkpoint step folder finds its run's config
    assert not run.is_export
    model = RunDir(tmp_path / "model")
    model.path.mkdir()
    model.weights().write_bytes(b"")
    assert model.is_export and model.weights_dir() == model.path

