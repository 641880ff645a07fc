"""The training loop: runs, resumes exactly, checkpoints safely, stops on NaN."""

import json

import pytest
import torch
from safetensors.torch import load_file

from nonvae.errors import TrainingError
from nonvae.train import Trainer, train


def weights(run_dir, player="autoencoder"):
    return load_file(str(run_dir / "checkpoints" / "latest" / f"{player}.safetensors"))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# the press arch: Press et al.'s 4x4 stride-2 convs, whose small grids run as matmuls on the CPU (nets.GridConv2d)
PRESS = {"model.arch": "press", "model.latent_width": 2, "data.image_size": 16, "model.content_dim": 8,
         "model.attribute_dim": 2, "model.norm": "instance", "train.batch_size": 4}


@pytest.mark.parametrize("config", ["configs/lines/ae.yaml", "configs/lines/acai.yaml",
                                    "configs/attributes/disentangle.yaml"])
def test_resume_matches_uninterrupted(tmp_path, tiny_lines, config):
    extra = PRESS if "disentangle" in config else {}
    full = tiny_lines(config, **{"train.steps": 6}, **extra)
    train(full, tmp_path / "full")

    part = tiny_lines(config, **{"train.steps": 3}, **extra)
    train(part, tmp_path / "split")
    resumed = tiny_lines(config, **{"train.steps": 6}, **extra)
    trainer = train(resumed, tmp_path / "split")
    assert trainer.step == 6
    for player in ["autoencoder"] + (["critic"] if "acai" in config else []) + \
            (["discriminator"] if "disentangle" in config else []):
        assert_same(weights(tmp_path / "full", player), weights(tmp_path / "split", player))
    # metrics rows are not duplicated by the resume
    rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == sorted(set(steps))


def test_run_directory_layout(tmp_path, tiny_lines):
    cfg = tiny_lines("configs/lines/acai.yaml", **{"train.steps": 2, "train.sample_every": 2})
    train(cfg, tmp_path)
    assert (tmp_path / "config.yaml").is_file()
    latest = tmp_path / "checkpoints" / "latest"
    assert (latest / "autoencoder.safetensors").is_file() and (latest / "critic.safetensors").is_file()
    assert (latest / "state.json").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir())  # recon + interpolation grids
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and "recon" in rows[-1] and "critic" in rows[-1]


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, tiny_lines):
    cfg = tiny_lines(**{"train.steps": 2, "train.checkpoint_every": 2})
    train(cfg, tmp_path)
    before = weights(tmp_path)
    bad = tiny_lines(**{"train.steps": 4, "train.lr": 1e30})  # explodes to inf/nan
    with pytest.raises(TrainingError, match=r"non-finite .* at step \d+.*last good checkpoint"):
        Trainer(bad, tmp_path).fit()
    assert_same(before, weights(tmp_path))


def test_nan_skip_policy(tmp_path, tiny_lines):
    cfg = tiny_lines(**{"train.steps": 3, "train.lr": 1e30, "train.nonfinite": "skip"})
    trainer = Trainer(cfg, tmp_path)
    trainer.fit()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "nonfinite" for r in rows)


def test_unwritable_run_dir_fails_before_training(tmp_path, tiny_lines):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TrainingError, match="not writable"):
        Trainer(tiny_lines(**{"train.steps": 1}), blocker / "run")


@pytest.mark.slow
def test_acai_critic_learns_alpha():
    """The critic regresses alpha from pixel mixes better than the best constant guess.

    A broken critic (wrong target, no update, alpha not folded) stays at or above the
    constant predictor's loss Var(alpha) = 1/48 for alpha ~ U[0, 1] folded to [0, 0.5].
    """
    import torch

    from nonvae.data.lines import render
    from nonvae.regularizers.acai import AcaiConfig, AdversarialInterpolation
    from nonvae.regularizers.base import StepView

    torch.manual_seed(0)
    reg = AdversarialInterpolation(AcaiConfig(), (1, 16, 16), width=8, scales=3, latent=4)
    opt = torch.optim.Adam(reg.critic.parameters(), lr=1e-3)
    losses = []
    for step in range(300):
        x = render(torch.rand(32) * 6.2832, 16)
        state: dict = {}
        mixed = reg.extra_codes(x, state)  # mixes "codes": here the pixels themselves
        view = StepView({"x": x}, x, {"recon": x}, decoded={"acai": mixed}, state={"acai": state}, step=step)
        out = reg.adversary_step(view, lambda name, inp: reg.critic(inp), {})
        opt.zero_grad()
        out["critic"].backward()
        opt.step()
        losses.append(float(out["critic/alpha"]))
    assert sum(losses[-50:]) / 50 < 0.6 / 48
    alphas = state["alpha"]
    assert float(alphas.min()) >= 0 and float(alphas.max()) <= 0.5


def test_lr_factor_schedules():
    from nonvae.train import lr_factor

    assert [lr_factor(s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert lr_factor(0, 10, "cosine") == 1.0 and lr_factor(5, 10, "cosine") == pytest.approx(0.5)
    assert 0 < lr_factor(9, 10, "cosine") < 0.03
    assert lr_factor(5, 10, "linear") == pytest.approx(0.5) and lr_factor(9, 10, "linear") == pytest.approx(0.1)
    # warm-up first, then the decay runs over the remaining steps
    assert [lr_factor(s, 10, "constant", 4) for s in (0, 3, 4)] == [0.25, 1.0, 1.0]
    assert lr_factor(2, 10, "cosine", 2) == 1.0 and lr_factor(6, 10, "cosine", 2) == pytest.approx(0.5)


def test_lr_schedule_resumes_exactly(tmp_path, tiny_lines, monkeypatch):
    """A run with a learning-rate schedule, interrupted and resumed, matches the uninterrupted one."""
    sched = {"train.steps": 6, "train.lr_schedule": "cosine", "train.lr_warmup_steps": 2}
    train(tiny_lines("configs/lines/acai.yaml", **sched), tmp_path / "full")
    train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 6}), tmp_path / "constant")

    original = Trainer._set_lr

    def interrupt_at_3(self, step):
        if step == 3:
            self._stop_signal = 2  # SIGINT: the loop saves and stops before the next step
        original(self, step)

    monkeypatch.setattr(Trainer, "_set_lr", interrupt_at_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_lines("configs/lines/acai.yaml", **sched), tmp_path / "split")
    monkeypatch.setattr(Trainer, "_set_lr", original)
    trainer = train(tiny_lines("configs/lines/acai.yaml", **sched), tmp_path / "split")
    assert trainer.step == 6
    for player in ("autoencoder", "critic"):
        assert_same(weights(tmp_path / "full", player), weights(tmp_path / "split", player))
    # the schedule changed the training (this test could not pass with the schedule ignored)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "constant")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_ema_resumes_exactly_and_is_the_evaluated_model(tmp_path, tiny_lines, monkeypatch):
    """train.ema: the average is checkpointed, resumes bit-identically, and is what load() and the trainer give."""
    from nonvae.pipeline import load

    ema = {"train.steps": 6, "train.ema": 0.9}
    full = train(tiny_lines("configs/lines/acai.yaml", **ema), tmp_path / "full")
    latest = tmp_path / "full" / "checkpoints" / "latest"
    assert (latest / "autoencoder_ema.safetensors").is_file()
    raw, avg = weights(tmp_path / "full"), weights(tmp_path / "full", "autoencoder_ema")
    assert any(not torch.equal(raw[k], avg[k]) for k in raw)  # the average is not the last weights
    # after fit() the trainer's model and nonvae.load hold the average, not the raw weights
    for model in (full.method.backbone, load(tmp_path / "full").backbone):
        got = {k: v.contiguous() for k, v in model.state_dict().items()}
        assert_same({k: v.contiguous() for k, v in avg.items()}, got)

    from nonvae.export import export

    export(tmp_path / "full", tmp_path / "exported", inference_only=True, samples=0)
    assert_same(avg, load_file(str(tmp_path / "exported" / "model.safetensors")))

    original = Trainer._set_lr

    def interrupt_at_3(self, step):
        if step == 3:
            self._stop_signal = 2
        original(self, step)

    monkeypatch.setattr(Trainer, "_set_lr", interrupt_at_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_lines("configs/lines/acai.yaml", **ema), tmp_path / "split")
    monkeypatch.setattr(Trainer, "_set_lr", original)
    train(tiny_lines("configs/lines/acai.yaml", **ema), tmp_path / "split")
    for player in ("autoencoder", "critic", "autoencoder_ema"):
        assert_same(weights(tmp_path / "full", player), weights(tmp_path / "split", player))
    # the training itself is untouched by the average
    train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 6}), tmp_path / "plain")
    assert_same(weights(tmp_path / "plain"), raw)
