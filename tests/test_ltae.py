"""LTAE: the normalisation targets, the transform's gradients, short runs and the Hausdorff evaluation."""

from __future__ import annotations

import math
import os

import pytest
import torch

from nonvae.config import load_config
from nonvae.data import build_data
from nonvae.errors import ConfigError
from nonvae.evaluate.run import evaluate
from nonvae.methods import build_method
from nonvae.regularizers.base import StepView
from nonvae.regularizers.ltae import minmax, standardize
from nonvae.train import train

from .conftest import REPO


def test_standardize_by_hand():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 10.0, 14.0]])
    s = math.sqrt(5 / 3)  # std of 1, 2, 3, 4 with Bessel's correction
    want0 = torch.tensor([-1.5, -0.5, 0.5, 1.5]) / s
    want1 = torch.tensor([-1.0, -1.0, -1.0, 3.0]) / 2.0  # mean 11, unbiased std 2
    out = standardize(z)
    assert torch.allclose(out[0], want0, atol=1e-5) and torch.allclose(out[1], want1, atol=1e-5)
    # per sample over all code dimensions, shape kept (conv codes)
    conv = z.view(2, 1, 2, 2)
    assert standardize(conv).shape == conv.shape
    assert torch.allclose(standardize(conv).flatten(1), out)
    assert torch.isfinite(standardize(torch.ones(3, 5))).all()  # constant code: finite


def test_minmax_by_hand():
    z = torch.tensor([[1.0, 2.0, 3.0, 5.0], [-2.0, 0.0, 2.0, 2.0]])
    want = torch.tensor([[0.0, 0.25, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0]])
    assert torch.allclose(minmax(z), want, atol=1e-5)  # each sample on its own
    assert torch.allclose(minmax(z.view(2, 4, 1, 1)).flatten(1), want, atol=1e-5)
    assert torch.isfinite(minmax(torch.zeros(2, 3))).all()


def test_batch_scope_by_hand():
    z = torch.tensor([[0.0, 2.0], [4.0, 6.0]])
    assert torch.allclose(minmax(z, "batch"), z / 6.0, atol=1e-5)  # one min and max for the batch
    s = torch.tensor([0.0, 2.0, 4.0, 6.0]).std()
    assert torch.allclose(standardize(z, "batch"), (z - 3.0) / s, atol=1e-5)
    # per example, a 2-D code degenerates: this is why the 2-D plots need the batch scope
    assert torch.allclose(minmax(z), torch.tensor([[0.0, 1.0], [0.0, 1.0]]), atol=1e-5)


def test_bad_scope_is_a_config_error(tiny_digits):
    with pytest.raises(ConfigError, match="regularizers.ltae.scope.*did you mean 'batch'"):
        _tiny_mlp(tiny_digits, "minmax", **{"regularizers.ltae.scope": "batchs"})


def _tiny_mlp(tiny_digits, transform: str, **extra):
    over = {"model.backbone": "mlp", "model.hidden": "[32]", "model.activation": "softplus",
            "model.latent_dim": 4, "model.transform": transform, "regularizers.ltae.weight": 1.0,
            "eval.hausdorff": True, "eval.hausdorff_samples": 64, "eval.hausdorff_repeats": 2,
            "eval.kmeans": False}
    over.update(extra)
    return tiny_digits(**over)


@pytest.mark.parametrize("kind", ["standardize", "minmax"])
def test_transform_parameters_receive_gradients(tiny_digits, kind):
    for detach in (False, True):
        cfg = _tiny_mlp(tiny_digits, kind, **{"regularizers.ltae.detach_target": detach})
        torch.manual_seed(0)
        method = build_method(cfg, (1, 16, 16))
        reg = method.regularizers["ltae"]
        x = build_data(cfg.data).train.batch(0, 16)["x"]
        out = method.autoencoder(x)
        loss = reg.loss(StepView({"x": x}, x, out))["ltae/normalize"]
        loss.backward()
        t = method.autoencoder.transform
        assert t.a.grad is not None and float(t.a.grad.abs().sum()) > 0
        assert t.b.grad is not None and float(t.b.grad.abs().sum()) > 0
        enc = next(method.autoencoder.encoder.parameters()).grad.clone()
        if detach:
            detached_grad = enc
        else:
            attached_grad = enc
    # the reference's default lets norm(z) carry gradient too: the encoder's gradient differs
    assert not torch.allclose(attached_grad, detached_grad)


@pytest.mark.parametrize("kind", ["standardize", "minmax"])
def test_the_code_is_the_transformed_code(tiny_digits, kind):
    method = build_method(_tiny_mlp(tiny_digits, kind), (1, 16, 16))
    t = method.autoencoder.transform
    assert t is not None and t.kind == kind
    with torch.no_grad():
        t.a.fill_(2.0)
        t.b.fill_(0.5)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    out = method.autoencoder.eval()(x)
    assert torch.allclose(out["z"], 2.0 * (out["z_raw"] + 0.5))
    assert torch.allclose(method.encode(x), out["z"])


def test_ltae_needs_the_transform(tiny_digits):
    cfg = tiny_digits(**{"model.backbone": "mlp", "regularizers.ltae.weight": 1.0})
    with pytest.raises(ConfigError, match="model.transform"):
        build_method(cfg, (1, 16, 16))


@pytest.mark.parametrize("kind,scope", [("standardize", "sample"), ("minmax", "sample"), ("minmax", "batch")])
def test_short_ltae_run_and_hausdorff_evaluation(tmp_path, tiny_digits, kind, scope):
    cfg = _tiny_mlp(tiny_digits, kind, **{"train.steps": 40, "regularizers.ltae.scope": scope})
    trainer = train(cfg, tmp_path)
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert '"ltae/normalize"' in rows[-1]
    first, last = (float(r.split('"ltae/normalize": ')[1].split(",")[0]) for r in (rows[0], rows[-1]))
    assert last < first  # z' learns to follow norm(z)
    method = trainer.method.eval()
    metrics = evaluate(method, trainer.data, cfg, trainer.device)
    for key in ("hausdorff/data_to_samples", "hausdorff/samples_to_data", "recon/mse", "probe/accuracy"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["hausdorff/data_to_samples"] > 0 and metrics["hausdorff/samples_to_data"] > 0


@pytest.mark.parametrize("name", ["ltae_s", "ltae_m"])
def test_configs_build(name):
    cfg = load_config(os.path.join(REPO, "configs", "fashion_mnist", f"{name}.yaml"))
    method = build_method(cfg, (1, 32, 32))
    assert method.regularizers["ltae"].kind == {"ltae_s": "standardize", "ltae_m": "minmax"}[name]
    assert cfg.eval.hausdorff and method.autoencoder.latent_shape == (16,)
