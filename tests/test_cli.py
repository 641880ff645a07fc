"""The CLI contract: train, eval, interpolate, load (export: test_export.py)."""

import json

import numpy as np
import torch

import nonvae
from nonvae.cli import main

from .conftest import REPO


def test_eval_writes_flat_json(lines_run, capsys):
    assert main(["eval", str(lines_run)]) == 0
    metrics = json.loads((lines_run / "eval.json").read_text())
    meta = metrics.pop("_meta")  # what each key means, declared by its evaluator
    assert meta["recon/mse"]["direction"] == "lower" and not meta["lines/smoothness"]["reference"]
    assert "recon/mse" in metrics and "lines/mean_distance" in metrics
    # Smoothness is undefined (written as null) when every path's matched endpoints coincide, as for
    # this 3-step model whose decoder ignores the code; everything else is a number.
    assert all(isinstance(v, float) or (k == "lines/smoothness" and v is None) for k, v in metrics.items())
    assert isinstance(metrics["lines/mean_distance"], float)
    assert "recon/mse" in capsys.readouterr().out


def test_interpolate_npz_and_png(lines_run, tmp_path):
    out, png = tmp_path / "i.npz", tmp_path / "i.png"
    assert main(["interpolate", str(lines_run), "--pairs", "3", "--steps", "5", "--out", str(out),
                 "--png", str(png)]) == 0
    data = np.load(out)
    assert data["images"].shape == (3, 5, 1, 16, 16) and data["inputs"].shape == (3, 2, 1, 16, 16)
    assert data["images"].min() >= -1 and data["images"].max() <= 1
    assert png.stat().st_size > 0
    # endpoints are the decoded inputs
    model = nonvae.load(lines_run)
    first = model.decode(model.encode(torch.from_numpy(data["inputs"][:, 0]))).clamp(-1, 1)
    assert torch.allclose(first, torch.from_numpy(data["images"][:, 0]), atol=1e-5)


def test_digits_eval_has_probe_and_kmeans(tmp_path, tiny_digits):
    from nonvae.config import dump_config

    cfg = tiny_digits()
    cfg_path = tmp_path / "digits.yaml"
    dump_config(cfg, cfg_path)
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--run-dir", str(run)]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval.json").read_text())
    assert 0 <= metrics["probe/accuracy"] <= 1 and 0 <= metrics["kmeans/accuracy"] <= 1
    assert metrics["probe/accuracy"] > 0.3  # even a barely trained conv code beats chance (0.1)


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.yaml" in err[0]
    assert main(["train", f"{REPO}/configs/lines/ae.yaml", "--set", "train.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "train.stepz" in err and "'steps'" in err
    assert main(["eval", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_missing_dataset_names_files(capsys):
    assert main(["train", f"{REPO}/configs/mnist/ae.yaml", "--set", "data.root=/nonexistent/mnist"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "/nonexistent/mnist" in err


def test_reader_leaving_the_pipe_is_not_an_error():
    """`nonvae configs | head -1`: the reader closes early; no 'error' line, no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "nonvae", "configs"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader leaves after one line
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "error" not in err and "Traceback" not in err, err
