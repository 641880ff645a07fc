"""The public model: nonvae.load -> nn.Module, save_pretrained/from_pretrained (Hub layout), export,
sampling, TorchScript/ONNX export of the halves, and the CLI around them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import nonvae
from nonvae.cli import main
from nonvae.resources import PRETRAINED, pretrained_names

from .conftest import tiny_overrides

TINY = [f"--set={s}" for s in tiny_overrides(**{
    "data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4, "data.test_limit": 32,
    "train.steps": 2, "eval.hausdorff_repeats": 2})]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "run"
    assert main(["train", "lines/ae", "--run-dir", str(path), *TINY]) == 0
    return path


def test_load_is_an_inference_module():
    model = nonvae.load("lines_acai")
    x = nonvae.load_samples("lines_acai")["x"][:4]
    assert isinstance(model, nn.Module) and isinstance(model, nonvae.Autoencoder) and not model.training
    with torch.no_grad():
        recon = model(x)
        z = model.encode(x)
        raw = model.backbone.decode(z)
    assert z.shape == (4, *model.latent_shape)
    assert torch.equal(recon, model.decode(z))
    assert recon.min() >= -1 and recon.max() <= 1 and torch.equal(recon, raw.clamp(-1, 1))
    frames = model.interpolate(x[:2], x[2:4], steps=5)
    assert frames.shape == (2, 5, 1, 32, 32)
    assert torch.allclose(frames[:, 0], model(x[:2]), atol=1e-5)  # endpoints included, same clamp
    assert model.to("cpu") is model and model.device.type == "cpu"
    for name in ("load", "from_pretrained", "fit", "Autoencoder", "interpolate", "transfer", "configs"):
        assert name in dir(nonvae)
    assert "lines/acai" in nonvae.configs() and "lines_acai" in nonvae.pretrained()


def test_split_backbone_remove_add_transfer():
    model = nonvae.load("attributes_disentangle")
    samples = nonvae.load_samples("attributes_disentangle")
    x = samples["x"]
    a = x[samples["domain"].view(-1) > 0.5][:2]
    b = x[samples["domain"].view(-1) <= 0.5][:3]
    removed = model.remove(a)
    added = model.add(b, a[:1])
    grid = model.transfer(b, a)
    assert removed.shape == a.shape and added.shape == b.shape and grid["added"].shape == (3, 2, *a.shape[1:])
    # adding donor 0's attribute is the transfer grid's first column
    assert torch.allclose(added, grid["added"][:, 0], atol=1e-5)
    assert not torch.allclose(removed, model(a))  # removing the attribute changes the images
    with pytest.raises(nonvae.errors.ConfigError if hasattr(nonvae, "errors") else Exception):
        nonvae.load("lines_ae").remove(a)


def test_save_pretrained_roundtrip_hub_layout(tmp_path):
    model = nonvae.load("lines_ae")
    x = nonvae.load_samples("lines_ae")["x"][:3]
    folder = model.save_pretrained(tmp_path / "hub", metrics={"recon/mse": 0.01}, step=7)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "mit" and front["library_name"] == "nonvae"
    assert front["datasets"] == ["lines"] and "recon" in front["metrics"] and "ae" in front["tags"]
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "nonvae" and config["latent_shape"] == list(model.latent_shape)
    again = nonvae.from_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
        assert torch.equal(again.sample(5, seed=3), model.sample(5, seed=3))  # the sampler travels too


@pytest.mark.parametrize("name", pretrained_names())
def test_every_shipped_model_samples_deterministically(name):
    model = nonvae.load(name)
    first, second, other = model.sample(6, seed=1), model.sample(6, seed=1), model.sample(6, seed=2)
    assert first.shape == (6, *model.image_shape) and first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert model.sampler.kind == "gmm" and (PRETRAINED / name / "sampler.safetensors").is_file()


@pytest.mark.parametrize("name", pretrained_names())
def test_every_shipped_model_is_in_the_hub_layout(name):
    files = {p.name for p in (PRETRAINED / name).iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "eval.json", "samples.npz"} <= files
    assert not files & {"config.yaml", "autoencoder.safetensors"}  # the earlier layout, still readable elsewhere


def test_shipped_fashion_mnist_pair_is_one_budget_and_recipe():
    """fashion_mnist_ae is the baseline of fashion_mnist_acai: same steps, schedule and latent, only ACAI differs."""
    ae, acai = (json.loads((PRETRAINED / name / "config.json").read_text()) for name in
                ("fashion_mnist_ae", "fashion_mnist_acai"))
    assert ae["method"] == "ae" and acai["method"] == "acai" and ae["step"] == acai["step"]
    ae, acai = ae["config"], acai["config"]
    assert ae["train"] == acai["train"] and ae["model"] == acai["model"] and ae["seed"] == acai["seed"]
    assert ae["data"] == acai["data"] and ae["data"]["name"] == "fashion_mnist"
    assert not any(ae["regularizers"].values()) and acai["regularizers"]["acai"]["weight"] > 0
    for name in ("fashion_mnist_ae", "fashion_mnist_acai"):
        metrics = json.loads((PRETRAINED / name / "eval.json").read_text())
        assert 0.5 < metrics["probe/accuracy"] <= 1 and 0 < metrics["kmeans/accuracy"] <= 1


def test_run_export_eval_sample_cli(run, tmp_path, capsys):
    # eval fits the mixture to the training codes, stores it beside the run and reports Hausdorff distances
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval.json").read_text())
    assert {"hausdorff/data_to_samples", "hausdorff/samples_to_data"} <= set(metrics)
    assert (run / "sampler.safetensors").is_file()
    png = tmp_path / "s.png"
    assert main(["sample", str(run), "--n", "10", "--out", str(png)]) == 0
    from PIL import Image

    assert Image.open(png).size[0] > 16
    npz = tmp_path / "s.npz"
    assert main(["sample", str(run), "--n", "4", "--out", str(npz), "--seed", "1"]) == 0
    assert torch.equal(torch.from_numpy(np.load(npz)["images"]), nonvae.load(run).sample(4, seed=1))
    # export writes the Hub layout, carries the sampler and loads to the same model
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "sampler.safetensors", "eval.json"} <= names
    assert "config.yaml" not in names and "autoencoder.safetensors" not in names
    x = nonvae.load_samples(out)["x"][:3]
    with torch.no_grad():
        assert torch.equal(nonvae.load(out)(x), nonvae.load(run)(x))
    # a model folder's shipped eval.json is kept; the new numbers go beside it, and the command says where
    shipped = (out / "eval.json").read_text()
    capsys.readouterr()
    assert main(["eval", str(out), "--set", "eval.hausdorff=false"]) == 0
    assert (out / "eval.json").read_text() == shipped and (out / "eval.local.json").is_file()
    assert "eval.local.json" in capsys.readouterr().err
    assert main(["eval", str(out), "--out", str(tmp_path / "e.json"), "--set", "eval.hausdorff=false"]) == 0
    assert (tmp_path / "e.json").is_file()
    # fine-tuning starts from an exported Hub-layout folder
    assert main(["train", "lines/ae", "--run-dir", str(tmp_path / "ft"), *TINY, f"--set=init.from={out}"]) == 0


def test_halves_export_torchscript_and_onnx(tmp_path):
    model = nonvae.load("lines_acai")
    x = nonvae.load_samples("lines_acai")["x"][:2]
    enc, dec = model.encoder_module(), model.decoder_module()
    with torch.no_grad():
        z = enc(x)
        # torch.export (what the ONNX exporter builds on) captures each half as a standalone graph
        exported_enc, exported_dec = torch.export.export(enc, (x,)), torch.export.export(dec, (z,))
        assert torch.allclose(exported_dec.module()(exported_enc.module()(x)), model(x), atol=1e-5)
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    torch.onnx.export(enc, (x,), str(tmp_path / "encoder.onnx"))
    torch.onnx.export(dec, (z,), str(tmp_path / "decoder.onnx"))
    assert (tmp_path / "encoder.onnx").stat().st_size > 0 and (tmp_path / "decoder.onnx").stat().st_size > 0


def test_cli_flags_after_subcommand_and_devices(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and nonvae.__version__ in capsys.readouterr().out
    out = tmp_path / "i.npz"
    assert main(["interpolate", "lines_ae", "--out", str(out), "--pairs", "1", "--steps", "2", "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q after the sub-command: no info messages
    assert main(["interpolate", "lines_ae", "--out", str(out), "--pairs", "1", "--steps", "2", "-v"]) == 0
    assert "wrote" in capsys.readouterr().err
    with pytest.raises(nonvae.errors.ConfigError):  # --debug after the sub-command: the traceback, not one line
        main(["sample", "lines_ae", "--out", str(tmp_path / "s.txt"), "--debug"])
    for device in ("bogus", "cuda:99"):
        assert main(["sample", "lines_ae", "--out", str(tmp_path / "s.png"), "--device", device]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nonvae: error: --device") and err.count("\n") == 1
        assert main(["train", "lines/ae", "--run-dir", str(tmp_path / "r"), "--device", device]) == 2
        assert capsys.readouterr().err.startswith("nonvae: error: --device")


def test_every_option_has_help_showing_its_default():
    from nonvae.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, p in sub.choices.items():
        text = p.format_help()
        for action in p._actions:
            if action.help is None:
                pytest.fail(f"nonvae {name} {action.option_strings or action.dest}: no help text")
        if any(a.dest == "device" for a in p._actions):
            assert "(default: auto)" in text, name


def test_shipped_model_eval_and_report_never_write_into_the_package(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shipped = (PRETRAINED / "lines_ae" / "eval.json").read_text()
    assert main(["eval", "lines_ae", "--set", "eval.hausdorff=false", "--set", "eval.lines_pairs=8"]) == 0
    assert (PRETRAINED / "lines_ae" / "eval.json").read_text() == shipped
    assert (tmp_path / "eval_lines_ae.json").is_file() and "eval_lines_ae.json" in capsys.readouterr().err
    # its stored config says eval.hausdorff: false (the old default); eval still compares the samplers
    assert main(["eval", "lines_ae", "--set", "eval.lines_pairs=8", "--set", "eval.hausdorff_repeats=1",
                 "--out", str(tmp_path / "h.json")]) == 0
    assert "hausdorff/data_to_samples" in json.loads((tmp_path / "h.json").read_text())
    assert not (PRETRAINED / "lines_ae" / "eval.local.json").exists()


def test_report_defaults_into_the_first_run_dir(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run), "--pairs", "1", "--steps", "2"]) == 0
    assert (run / "report.html").is_file() and not (tmp_path / "report.html").exists()


def test_only_the_training_side_reaches_into_a_method():
    """Inference, sampling, export and the rest use the public ``backbone`` accessor, never ``.autoencoder``."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "nonvae"
    training_side = {"methods.py", "train.py"}
    offenders = [f"{path.relative_to(src)}:{i}" for path in sorted(src.rglob("*.py")) if path.name not in training_side
                 for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"\.autoencoder\b", line)]
    assert offenders == []
