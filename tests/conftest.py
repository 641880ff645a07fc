"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# the suite's models are tiny: one thread is faster, and far faster when other jobs share the cores
torch.set_num_threads(1)


def tiny_overrides(**extra: object) -> list[str]:
    """--set overrides that make any lines/digits config train in a second or two."""
    base = {
        "model.width": 4,
        "train.batch_size": 16,
        "train.lr": 1e-3,
        "train.log_every": 2,
        "train.sample_every": 1000,
        "train.eval_every": 1000,
        "train.checkpoint_every": 1000,
        "train.progress": False,
        "train.tensorboard": False,
        "train.report": False,
        "eval.lines_pairs": 8,
        "eval.batch_size": 64,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def tiny_lines():
    from nonvae.config import load_config

    def make(config: str = "configs/lines/ae.yaml", **extra):
        root = os.path.dirname(os.path.dirname(__file__))
        over = {"data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4, "data.test_limit": 64}
        over.update(extra)
        return load_config(os.path.join(root, config), tiny_overrides(**over))

    return make


@pytest.fixture
def tiny_digits():
    from nonvae.config import load_config

    def make(**extra):
        over = {"data.name": "digits", "data.image_size": 16, "model.latent_width": 4,
                "model.latent_channels": 2, "train.steps": 4}
        over.update(extra)
        return load_config(None, tiny_overrides(**over))

    return make


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def lines_run(tmp_path_factory):
    """A 3-step lines/acai run made by the CLI, shared by the CLI and export tests (they add files to it,
    never change its weights)."""
    from nonvae.cli import main

    run = tmp_path_factory.mktemp("lines") / "run"
    over = tiny_overrides(**{"data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4,
                             "data.test_limit": 64, "train.steps": 3})
    assert main(["train", f"{REPO}/configs/lines/acai.yaml", "--run-dir", str(run),
                 *[f"--set={s}" for s in over]]) == 0
    return run


def fails(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    """Run the CLI, expect exit 2 and exactly one 'nonvae: error:' line containing every needle."""
    from nonvae.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1, lines
    assert lines[0].startswith("nonvae: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
