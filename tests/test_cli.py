"""The CLI contract: train, eval, interpolate, export, load."""

import json

import numpy as np
import pytest
import torch

import nonvae
from nonvae.cli import main

from .conftest import REPO, tiny_overrides

LINES = [f"--set={s}" for s in tiny_overrides(**{
    "data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4, "data.test_limit": 64,
    "train.steps": 3})]


@pytest.fixture(scope="module")
def lines_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lines") / "run"
    assert main(["train", f"{REPO}/configs/lines/acai.yaml", "--run-dir", str(run), *LINES]) == 0
    return run


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


def test_export_loads_like_a_run(lines_run, tmp_path):
    out = tmp_path / "model"
    assert main(["export", str(lines_run), "--out", str(out)]) == 0
    a, b = nonvae.load(lines_run), nonvae.load(out)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(a.encode(x), b.encode(x))
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "\n# nonvae model" in card  # Hub metadata front matter, then the card
    # the stored test images are the run's own (lines: synthetic), in [-1, 1]
    samples = nonvae.load_samples(out)
    assert samples["x"].shape == (16, 1, 16, 16) and -1 <= samples["x"].min() < samples["x"].max() <= 1


def test_inference_only_export_has_just_the_autoencoder(lines_run, tmp_path):
    out = tmp_path / "small"
    assert main(["export", str(lines_run), "--out", str(out), "--inference-only", "--samples", "0"]) == 0
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors", "sampler.safetensors"]
    assert not (out / "samples.npz").exists()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(nonvae.load(lines_run).decode(nonvae.load(lines_run).encode(x)),
                       nonvae.load(out).decode(nonvae.load(out).encode(x)))
    with pytest.raises(nonvae.errors.CheckpointError, match="samples.npz"):
        nonvae.load_samples(out)
    (out / "samples.npz").write_bytes(b"PK\x03\x04 not a zip")  # a corrupt file names itself
    with pytest.raises(nonvae.errors.CheckpointError, match="samples.npz: unreadable"):
        nonvae.load_samples(out)


def test_half_export_is_smaller_and_close(lines_run, tmp_path):
    full, half = tmp_path / "full", tmp_path / "half"
    assert main(["export", str(lines_run), "--out", str(full), "--inference-only", "--samples", "0"]) == 0
    assert main(["export", str(lines_run), "--out", str(half), "--inference-only", "--samples", "0", "--half"]) == 0
    size = [(p / "model.safetensors").stat().st_size for p in (full, half)]
    assert size[1] < 0.6 * size[0]
    a, b = nonvae.load(full), nonvae.load(half)
    assert all(p.dtype == torch.float32 for p in b.parameters())
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    ya, yb = a.decode(a.encode(x)), b.decode(b.encode(x))
    assert not torch.equal(ya, yb) and (ya - yb).abs().max() < 1e-2
    assert "float16" in (half / "README.md").read_text()


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
