"""Bad input, end to end through the CLI: exit status 2 and one line on stderr naming the key or file.

Every case runs ``nonvae.cli.main`` in-process; ``--debug`` turns the one line back into a traceback.
"""

from __future__ import annotations

import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from nonvae.cli import main
from nonvae.errors import CheckpointError, ConfigError

from .conftest import REPO, fails, tiny_overrides

AE = f"{REPO}/configs/lines/ae.yaml"
TINY = [f"--set={s}" for s in tiny_overrides(**{
    "data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4, "data.test_limit": 64,
    "train.steps": 2, "eval.lines_pairs": 4})]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained ae run (latent_channels 4) to copy and damage."""
    path = tmp_path_factory.mktemp("bad") / "run"
    assert main(["train", AE, "--run-dir", str(path), *TINY]) == 0  # TINY: train.report=false
    return path


def damaged(run: Path, tmp_path: Path, name: str = "copy") -> tuple[Path, Path]:
    """A copy of the run and its latest checkpoint folder."""
    copy = tmp_path / name
    shutil.copytree(run, copy, symlinks=True)
    return copy, (copy / "checkpoints" / "latest").resolve()


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("setting, needles", [
    ("train.stepz=3", ["'train.stepz'", "did you mean 'steps'"]),
    ("trian.steps=3", ["'trian'", "'train'"]),
    ("model.latent_chanels=8", ["model.latent_chanels", "'latent_channels'"]),
    ("train.steps=abc", ["train.steps", "integer", "'abc'"]),
    ("train.progress=maybe", ["train.progress", "true/false"]),
    ("train.betas=3", ["train.betas", "list"]),
    ("train.lr=fast", ["train.lr", "number"]),
    ("train.steps=-1", ["train.steps", "> 0"]),
    ("train.lr=0", ["train.lr", "> 0"]),
    ("train.lr=.nan", ["train.lr", "finite"]),
    ("train.weight_decay=-1", ["train.weight_decay", ">= 0"]),
    ("train.betas=[2, 3]", ["train.betas", "[0, 1)"]),
    ("train.threads=-1", ["train.threads", "> 0"]),
    ("train.grad_clip=0", ["train.grad_clip", "> 0"]),
    ("train.keep_checkpoints=0", ["train.keep_checkpoints", "> 0"]),
    ("seed=-1", ["seed", ">= 0"]),
    ("regularizers.acai.gamma=5", ["regularizers.acai.gamma", "[0, 1]"]),
    ("regularizers.acai.lr=-1", ["regularizers.acai.lr", "> 0"]),
    ("train.precision=fp8", ["train.precision", "fp32, bf16"]),
    ("train.device=tpu", ["train.device", "'tpu'"]),
    ("data.name=mnsit", ["data.name", "did you mean 'mnist'"]),
    ("data.image_size=20", ["data.image_size", "model.latent_width", "power of 2"]),
    ("model.latent_width=3", ["model.latent_width=3", "data.image_size=16"]),
    ("data.image_size=8", ["lines images need size >= 10"]),  # the official renderer overruns below
    ("train.steps", ["--set 'train.steps'", "KEY=VALUE"]),
    ("train.steps.max=3", ["'steps' is not a section"]),
])
def test_bad_settings(capsys, tmp_path: Path, setting: str, needles: list[str]) -> None:
    fails(capsys, ["train", AE, "--run-dir", str(tmp_path / "r"), *TINY, "--set", setting], *needles)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_bad_config_files(capsys, tmp_path: Path) -> None:
    fails(capsys, ["train", str(tmp_path / "nope.yaml")], "config file not found", "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\ntrain:\n  steps: [1, 2\n  lr: 3\n")
    fails(capsys, ["train", str(bad)], "bad.yaml", "line 4", "invalid YAML")
    bad.write_text("seed: 0\ntrain:\n\tsteps: 3\n")
    fails(capsys, ["train", str(bad)], "bad.yaml", "line 3")
    bad.write_text("seed: 0\ntrain:\n  lr: 1e-3\n  bach_size: 3\n")
    fails(capsys, ["train", str(bad)], "bad.yaml", "'train.bach_size'", "'batch_size'")
    bad.write_text("- just\n- a list\n")
    fails(capsys, ["train", str(bad)], "bad.yaml", "mapping")
    bad.write_bytes(b"seed: \xff\xfe\n")
    fails(capsys, ["train", str(bad)], "bad.yaml")
    fails(capsys, ["train", str(tmp_path)], str(tmp_path))  # a folder, not a file


def test_python_tags_are_not_executed(capsys, tmp_path: Path) -> None:
    """yaml.safe_load: a !!python tag is a YAML error, never a constructor call."""
    bad = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    bad.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    fails(capsys, ["train", str(bad)], "evil.yaml", "invalid YAML")
    assert not marker.exists()


# --------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("dataset, expected", [
    ("mnist", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
    ("cifar10", ["data_batch_1.bin", "data_batch_5.bin"]),
    ("svhn", ["train_32x32.mat"]),
])
def test_missing_dataset_folder_names_the_files(capsys, tmp_path: Path, dataset: str,
                                                expected: list[str]) -> None:
    root = tmp_path / f"my_{dataset}"
    fails(capsys, ["train", f"{REPO}/configs/{dataset}/ae.yaml", "--run-dir", str(tmp_path / "r"),
                   "--set", f"data.root={root}"], str(root), *expected)
    root.mkdir()  # an existing but empty folder
    fails(capsys, ["train", f"{REPO}/configs/{dataset}/ae.yaml", "--run-dir", str(tmp_path / "r"),
                   "--set", f"data.root={root}"], str(root), *expected)


def test_truncated_idx_file(capsys, tmp_path: Path) -> None:
    def idx(a: np.ndarray) -> bytes:
        return struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()

    root = tmp_path / "mnist"
    root.mkdir()
    for prefix in ("train", "t10k"):
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(idx(np.zeros((20, 28, 28), np.uint8))[:-100])
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.zeros(20, np.uint8)))
    fails(capsys, ["train", f"{REPO}/configs/mnist/ae.yaml", "--run-dir", str(tmp_path / "r"),
                   "--set", f"data.root={root}"], str(root / "train-images-idx3-ubyte"), "truncated")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist")
def test_image_size_too_small_for_the_dataset(capsys, tmp_path: Path) -> None:
    fails(capsys, ["train", f"{REPO}/configs/fashion_mnist/ae.yaml", "--run-dir", str(tmp_path / "r"),
                   "--set", "data.image_size=16"], "train-images-idx3-ubyte", "do not fit in image_size 16")


# --------------------------------------------------------------------------- run directories and checkpoints
def test_unwritable_run_dir(capsys, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run_dir = blocker / "run"
    fails(capsys, ["train", AE, "--run-dir", str(run_dir), *TINY], str(run_dir), "not writable")


def test_checkpoint_of_another_shape(capsys, run: Path, tmp_path: Path) -> None:
    copy, latest = damaged(run, tmp_path)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["model"]["latent_channels"] = 8
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    fails(capsys, ["eval", str(copy)], str(latest / "autoencoder.safetensors"), "shape")
    # resuming with the changed config: refused by the config check, config.yaml of the run is not overwritten
    copy2, latest2 = damaged(run, tmp_path, "copy2")
    before = (copy2 / "config.yaml").read_text()
    resume = ["train", AE, "--run-dir", str(copy2), *TINY, "--set", "model.latent_channels=8", "--set", "train.steps=4"]
    fails(capsys, resume, str(copy2), "model.latent_channels 4 -> 8")
    assert (copy2 / "config.yaml").read_text() == before
    # without a readable config.yaml, the checkpoint's own shape check still refuses it
    (copy2 / "config.yaml").write_text("{")
    fails(capsys, resume, str(latest2 / "autoencoder.safetensors"), "shape")
    assert (copy2 / "config.yaml").read_text() == "{"


def test_checkpoint_of_another_method(capsys, run: Path, tmp_path: Path) -> None:
    copy, latest = damaged(run, tmp_path)
    resume = ["train", f"{REPO}/configs/lines/acai.yaml", "--run-dir", str(copy), *TINY, "--set", "train.steps=4"]
    fails(capsys, resume, str(copy), "method 'ae' -> 'acai'")
    (copy / "config.yaml").unlink()  # without the run's config, the checkpoint's players still tell
    fails(capsys, resume, str(latest), "'critic'", "another method")


def test_pickle_named_safetensors_is_refused(capsys, run: Path, tmp_path: Path) -> None:
    import torch

    copy, latest = damaged(run, tmp_path)
    target = latest / "autoencoder.safetensors"
    target.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    fails(capsys, ["eval", str(copy)], str(target), "pickle", "only safetensors")
    torch.save({"weight": torch.zeros(2)}, target)  # torch.save's zip container
    fails(capsys, ["eval", str(copy)], str(target), "pickle")


@pytest.mark.parametrize("keep", [0, 5, 100, -100])
def test_torn_safetensors(capsys, run: Path, tmp_path: Path, keep: int) -> None:
    copy, latest = damaged(run, tmp_path)
    target = latest / "autoencoder.safetensors"
    data = target.read_bytes()
    target.write_bytes(data[:keep])
    fails(capsys, ["eval", str(copy)], str(target), "safetensors")


def test_torn_state_json_on_resume(capsys, run: Path, tmp_path: Path) -> None:
    copy, latest = damaged(run, tmp_path)
    (latest / "state.json").write_text('{"step": ')
    fails(capsys, ["train", AE, "--run-dir", str(copy), *TINY, "--set", "train.steps=4"],
          str(latest / "state.json"))


def test_eval_without_checkpoints(capsys, run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no_checkpoints"
    folder.mkdir()
    shutil.copy(run / "config.yaml", folder / "config.yaml")
    fails(capsys, ["eval", str(folder)], str(folder), "no complete checkpoint")
    fails(capsys, ["interpolate", str(folder), "--out", str(tmp_path / "i.npz")], "no complete checkpoint")
    fails(capsys, ["eval", str(tmp_path / "missing")], str(tmp_path / "missing"), "no such run directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(capsys, ["eval", str(empty)], str(empty), "no config.yaml")


# --------------------------------------------------------------------------- --debug
def test_debug_reraises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.stepz"):
        main(["--debug", "train", AE, "--set", "train.stepz=3"])
    with pytest.raises(CheckpointError):
        main(["--debug", "eval", str(tmp_path)])


@pytest.mark.slow
def test_debug_prints_a_traceback(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "nonvae", "--debug", "train", str(tmp_path / "missing.yaml")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "ConfigError" in done.stderr
    plain = subprocess.run(cmd[:3] + cmd[4:], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stderr.strip().count("\n") == 0 and "Traceback" not in plain.stderr
