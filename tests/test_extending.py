"""docs/extending.md's three examples, each one file plus a YAML, dropped in through ``plugins:``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nonvae.cli import main
from nonvae.config import load_config
from nonvae.errors import ConfigError
from nonvae.rundir import RunDir

from .conftest import REPO

EXAMPLES = f"{REPO}/examples/extending"
QUICK = ["train.steps=3", "train.batch_size=8", "train.log_every=1", "train.progress=false",
         "train.tensorboard=false", "train.report=false", "data.train_limit=64", "data.test_limit=32",
         "eval.probe_train_limit=64"]


def _train_and_eval(config: str, run, extra: list[str] = ()) -> dict:
    sets = [arg for s in [*QUICK, *extra] for arg in ("--set", s)]
    assert main(["train", f"{EXAMPLES}/{config}", "--run-dir", str(run), *sets]) == 0
    assert main(["eval", str(run)]) == 0
    return json.loads(RunDir(run).eval.read_text())


def test_mmd_prior_regularizer(tmp_path):
    cfg = load_config(f"{EXAMPLES}/mmd.yaml")
    assert cfg.regularizers.mmd.weight == 1.0 and cfg.plugins[0].endswith("mmd_prior.py")
    run = tmp_path / "run"
    _train_and_eval("mmd.yaml", run)
    rows = [json.loads(line) for line in RunDir(run).metrics.read_text().splitlines()]
    assert all(np.isfinite(r["mmd/prior"]) for r in rows if r.get("kind", "train") == "train")
    with pytest.raises(ConfigError, match="'regularizers.mmd.scale': must be > 0"):
        load_config(f"{EXAMPLES}/mmd.yaml", ["regularizers.mmd.scale=0"])
    # the resolved config names the plugin by its absolute path, so the run loads from anywhere
    assert load_config(RunDir(run).config).regularizers.mmd.scale == 1.0


def test_npy_dataset(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "arrays"
    root.mkdir()
    for split, n in (("train", 80), ("test", 40)):
        np.save(root / f"{split}.npy", rng.integers(0, 256, (n, 16, 16), dtype=np.uint8))
        np.save(root / f"{split}_labels.npy", rng.integers(0, 3, n))
    metrics = _train_and_eval("npy.yaml", tmp_path / "run", [f"data.root={root}"])
    assert metrics["recon/mse"] > 0 and "probe/accuracy" in metrics
    with pytest.raises(ConfigError, match="unknown config key 'data.train_fil'.*'train_file'"):
        load_config(f"{EXAMPLES}/npy.yaml", ["data.train_fil=x.npy"])


def test_code_norm_metric(tmp_path):
    metrics = _train_and_eval("code_norm.yaml", tmp_path / "run")
    assert metrics["code/mean_norm"] > 0
    assert metrics["_meta"]["code/mean_norm"] == {"direction": None, "reference": False,
                                                  "doc": "mean ||z|| over the test codes"}


def test_bad_plugins_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"plugins\[0\].*no such file"):
        load_config(None, ["plugins=[missing.py]"])
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="importing .*broken.py failed: RuntimeError: boom"):
        load_config(None, [f"plugins=[{broken}]"])
