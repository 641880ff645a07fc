"""docs/extending.md's three examples, each one file plus a YAML, dropped in through ``plugins:``, and its
backbone example (run as the doc shows it)."""

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


def _doc_backbone() -> str:
    """The backbone example of docs/extending.md, with its imports: the test runs what the doc shows."""
    import re
    from pathlib import Path

    section = (Path(REPO) / "docs" / "extending.md").read_text(encoding="utf-8").split("## A backbone", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return ("from dataclasses import dataclass\n\nfrom torch import nn\n\nfrom nonvae.autoencoders import Backbone\n"
            "from nonvae.config import ModelConfig, positive\nfrom nonvae.registry import register_backbone\n\n\n"
            + code)


def test_a_backbone_is_one_file_with_its_own_section(tmp_path):
    """docs/extending.md, "A backbone": one plugin file declares its model section and registers both."""
    import nonvae

    (tmp_path / "linear_backbone.py").write_text(_doc_backbone())
    (tmp_path / "linear.yaml").write_text("plugins: [linear_backbone.py]\ndata: {name: digits, image_size: 8}\n"
                                          "model: {backbone: linear, code: 3}\n")
    config = str(tmp_path / "linear.yaml")
    sets = [arg for s in QUICK if not s.startswith("eval.") for arg in ("--set", s)]
    assert main(["train", config, "--run-dir", str(tmp_path / "run"), *sets]) == 0
    assert nonvae.load(tmp_path / "run").latent_shape == (3,)
    with pytest.raises(ConfigError, match=r"unknown config key 'model.cod'.*'code'"):
        load_config(config, ["model.cod=4"])
    with pytest.raises(ConfigError, match=r"'model.hidden' is a key of model.backbone mlp, not of 'linear'"):
        load_config(config, ["model.hidden=[8]"])
