"""Augmentation set T / P_T and the cross-consistency regularizer."""

from __future__ import annotations

import os

import pytest
import torch

from nonvae.augment import OPS, Augmentation
from nonvae.config import load_config
from nonvae.data import build_data
from nonvae.errors import ConfigError
from nonvae.methods import build_method
from nonvae.regularizers.augment import measure_op
from nonvae.train import Trainer, train

from .conftest import REPO

NEW_CONFIGS = ["fashion_mnist/ae_augment.yaml", "fashion_mnist/acai_augment.yaml",
               "fashion_mnist/augment_finetune.yaml", "lines/acai_augment.yaml"]


def images(n: int = 12, c: int = 1, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand((n, c, size, size), generator=g) * 2 - 1


# --------------------------------------------------------------------------- the ops
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", OPS)
def test_op_keeps_shape_and_range_and_is_reproducible(name, channels):
    x = images(c=channels)
    aug = Augmentation({name: 1}, tuple(x.shape[1:]))
    torch.manual_seed(0)
    y1, op1 = aug(x)
    torch.manual_seed(0)
    y2, op2 = aug(x)
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert float(y1.min()) >= -1 and float(y1.max()) <= 1
    assert torch.equal(y1, y2) and torch.equal(op1, op2)
    assert op1.tolist() == [0] * len(x)


def test_op_semantics():
    x = images(c=1)
    rgb = images(c=3)
    shape = tuple(x.shape[1:])
    assert torch.equal(Augmentation({"identity": 1}, shape)(x)[0], x)
    assert torch.equal(Augmentation({"hflip": 1}, shape)(x)[0], x.flip(-1))
    assert torch.equal(Augmentation({"vflip": 1}, shape)(x)[0], x.flip(-2))
    assert torch.equal(Augmentation({"rot90": {"p": 1, "k": 1}}, shape)(x)[0], torch.rot90(x, 1, (-2, -1)))
    # 1 channel: intensity inversion; several channels: reversed channel order
    assert torch.equal(Augmentation({"channel_reverse": 1}, shape)(x)[0], -x)
    assert torch.equal(Augmentation({"channel_reverse": 1}, tuple(rgb.shape[1:]))(rgb)[0], rgb.flip(1))
    # random quarter turns: every example is one of its three non-trivial rotations
    y = Augmentation({"rot90": 1}, shape)(x)[0]
    for xi, yi in zip(x, y, strict=True):
        assert any(torch.equal(yi, torch.rot90(xi, k, (-2, -1))) for k in (1, 2, 3))
    # colour noise: std sigma before clipping, clipped to [-1, 1]
    zeros = torch.zeros(64, 1, 16, 16)
    noisy = Augmentation({"color_noise": {"p": 1, "sigma": 0.1}}, (1, 16, 16))(zeros)[0]
    assert abs(float(noisy.std()) - 0.1) < 0.005
    ones = torch.ones(8, 1, 8, 8)
    assert float(Augmentation({"color_noise": {"sigma": 0.5}}, (1, 8, 8))(ones)[0].max()) <= 1.0


def test_distribution_and_defaults():
    aug = Augmentation({"hflip": 3, "vflip": 1, "color_noise": {"p": 0}}, (1, 8, 8))
    assert aug.names == ["hflip", "vflip"]  # p = 0 drops the op
    torch.manual_seed(0)
    op = aug.sample(20000)
    assert abs(float((op == 0).float().mean()) - 0.75) < 0.02
    # each example gets its own op: a mixed batch applies each op to its examples only
    x = images(n=64)
    torch.manual_seed(3)
    y, op = aug(x)
    assert 0 < int(op.sum()) < len(op)
    assert torch.equal(y[op == 0], x[op == 0].flip(-1)) and torch.equal(y[op == 1], x[op == 1].flip(-2))
    # empty ops: uniform over the perturbations (identity is a control, not a perturbation)
    default = Augmentation({}, (1, 8, 8))
    assert default.names == ["hflip", "vflip", "rot90", "channel_reverse", "color_noise"]
    assert torch.allclose(default.probs, torch.full((5,), 0.2, dtype=torch.float64))
    assert "rot90" not in Augmentation({}, (1, 8, 6)).names


def test_config_errors_name_the_closest_op():
    with pytest.raises(ConfigError, match="unknown augmentation 'hflp'.*did you mean 'hflip'"):
        Augmentation({"hflp": 0.5}, (1, 8, 8))
    with pytest.raises(ConfigError, match="did you mean 'sigma'"):
        Augmentation({"color_noise": {"p": 1, "sigm": 0.1}}, (1, 8, 8))
    with pytest.raises(ConfigError, match="probability"):
        Augmentation({"hflip": -1}, (1, 8, 8))
    with pytest.raises(ConfigError, match="every probability is 0"):
        Augmentation({"hflip": 0}, (1, 8, 8))
    with pytest.raises(ConfigError, match="rot90.k"):
        Augmentation({"rot90": {"k": 4}}, (1, 8, 8))
    with pytest.raises(ConfigError, match="square"):
        Augmentation({"rot90": 1}, (1, 8, 6))
    # through the config, as a user meets it
    cfg = load_config(os.path.join(REPO, "configs/lines/acai_augment.yaml"),
                      ["regularizers.augment.ops={vfilp: 1}"])
    with pytest.raises(ConfigError, match="did you mean 'vflip'"):
        build_method(cfg, (1, 32, 32))


# --------------------------------------------------------------------------- the regularizer
def _digits(tiny_digits, **extra):
    cfg = tiny_digits(**extra)
    return cfg, build_data(cfg.data, cfg.seed)


def test_identity_cross_loss_is_twice_the_reconstruction_loss(tiny_digits):
    cfg, data = _digits(tiny_digits, **{"regularizers.augment.ops": "{identity: 1}"})
    method = build_method(cfg, data.shape)
    opts = method.build_optimizers()
    for step in range(3):
        torch.manual_seed(step)
        logs = method.train_step(data.train.batch(step, 16), step, opts)
        assert logs["augment/cross"] == 2 * logs["recon"]
        assert logs["augment/dist/identity"] == 0.0


def test_cross_loss_of_a_real_op_exceeds_identity_after_training(tmp_path, tiny_digits):
    cfg = tiny_digits(**{"train.steps": 60, "model.width": 8, "model.latent_channels": 4})
    trainer = train(cfg, tmp_path)
    ae = trainer.method.eval().autoencoder
    x = trainer.data.test.batch(torch.arange(128))["x"]
    aug = Augmentation({"identity": 1, "hflip": 1, "rot90": {"k": 2}}, trainer.data.shape)
    ident = measure_op(ae, x, aug, "identity")
    with torch.no_grad():
        recon_mse = float((ae.decode(ae.encode(x)) - x).pow(2).mean())
    assert ident["dist"] == 0.0 and ident["cross"] == pytest.approx(2 * recon_mse, rel=1e-5)
    for name in ("hflip", "rot90"):
        other = measure_op(ae, x, aug, name)
        assert other["cross"] > 1.5 * ident["cross"], name
        assert other["dist"] > 0


def test_acai_and_augment_compose(tiny_lines):
    cfg = tiny_lines("configs/lines/acai_augment.yaml")
    method = build_method(cfg, (1, 16, 16))
    assert list(method.regularizers) == ["acai", "augment"]
    opts = method.build_optimizers()
    data = build_data(cfg.data, cfg.seed)
    before = {k: v.clone() for k, v in method.autoencoder.state_dict().items()}
    torch.manual_seed(0)
    logs = method.train_step(data.train.batch(0, 16), 0, opts)
    assert {"recon", "acai/fool", "augment/cross", "critic", "loss"} <= set(logs)
    assert any(k.startswith("augment/dist/") for k in logs)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    after = method.autoencoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_acai_augment_resumes_exactly(tmp_path, tiny_lines):
    """Augmentations come from the per-step reseeded global RNG, so resume stays exact."""
    cfg = "configs/lines/acai_augment.yaml"
    train(tiny_lines(cfg, **{"train.steps": 4}), tmp_path / "full")
    train(tiny_lines(cfg, **{"train.steps": 2}), tmp_path / "split")
    train(tiny_lines(cfg, **{"train.steps": 4}), tmp_path / "split")
    from safetensors.torch import load_file

    for player in ("autoencoder", "critic"):
        a = load_file(str(tmp_path / "full/checkpoints/latest" / f"{player}.safetensors"))
        b = load_file(str(tmp_path / "split/checkpoints/latest" / f"{player}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), player


def test_split_backbone_passes_the_domain_through(tiny_digits):
    cfg, data = _digits(tiny_digits, **{"model.backbone": "split", "regularizers.augment.ops": "{hflip: 1}"})
    method = build_method(cfg, data.shape)
    batch = data.train.batch(0, 8)
    batch["domain"] = torch.tensor([1, 0] * 4)
    extra = method.regularizers["augment"].extra_inputs(batch, batch["x"])
    assert torch.equal(extra["domain"], batch["domain"])
    torch.manual_seed(0)
    logs = method.train_step(batch, 0, method.build_optimizers())
    assert "augment/cross" in logs and logs["augment/dist/hflip"] > 0


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_configs_build(name):
    cfg = load_config(os.path.join(REPO, "configs", name))
    method = build_method(cfg, (1, 32, 32))
    assert "augment" in method.regularizers
    assert ("acai" in method.regularizers) == ("acai" in name)


@pytest.mark.slow
def test_augment_finetune_starts_from_a_trained_run(tmp_path, tiny_digits, caplog):
    base = tiny_digits(**{"train.steps": 2})
    train(base, tmp_path / "base")
    cfg = load_config(os.path.join(REPO, "configs/fashion_mnist/augment_finetune.yaml"), [
        f"{k}={v}" for k, v in {
            "data.name": "digits", "data.image_size": 16, "model.width": 4, "model.latent_width": 4,
            "model.latent_channels": 2, "train.steps": 2, "train.batch_size": 16, "train.progress": False,
            "train.tensorboard": False, "train.sample_every": 1000, "init.from": tmp_path / "base",
        }.items()
    ])
    trainer = Trainer(cfg, tmp_path / "ft")
    with caplog.at_level("INFO", logger="nonvae"):
        trainer.resume_or_init()
    assert "initialised ['autoencoder']" in caplog.text
    from safetensors.torch import load_file

    base_w = load_file(str(tmp_path / "base/checkpoints/latest/autoencoder.safetensors"))
    assert all(torch.equal(base_w[k], v) for k, v in trainer.method.autoencoder.state_dict().items())
    trainer.fit()
    assert trainer.step == 2
