"""The trainer's speed paths: fused Adam, bf16 autocast + channels_last, batches drawn ahead, the
DDP unused-parameter probe; and (when a GPU is present) the CUDA path with pinned batches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from nonvae.train import Batches, Trainer, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _single_thread():
    """One intra-op thread (2 spinning OpenMP threads crawl on 2 shared cores). No HTML reports either:
    tiny_lines and tiny_digits set train.report=false."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def weights(run_dir, player="autoencoder"):
    return load_file(str(run_dir / "checkpoints" / "latest" / f"{player}.safetensors"))


def fused_flags(trainer: Trainer) -> set:
    return {bool(g.get("fused")) for opt in trainer.optimizers.values() for g in opt.param_groups}


def test_fused_adam_default_and_switching_on_resume(tmp_path, tiny_lines):
    """The config, not the checkpoint, picks the Adam kernel; the step counters follow it."""
    cfg = tiny_lines("configs/lines/acai.yaml", **{"train.steps": 2})
    assert cfg.train.fused_adam
    unfused = {"train.fused_adam": False}
    first = train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 2, **unfused}), tmp_path)
    assert fused_flags(first) == {False}
    second = train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 3}), tmp_path)
    assert second.step == 3 and fused_flags(second) == {True}
    steps = [st["step"] for opt in second.optimizers.values() for st in opt.state.values()]
    assert steps and all(s.dtype == torch.float32 and float(s) == 3 for s in steps)
    third = train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 4, **unfused}), tmp_path)
    assert third.step == 4 and fused_flags(third) == {False}
    assert all(torch.isfinite(v).all() for v in weights(tmp_path).values())


def test_bf16_channels_last_resumes_exactly(tmp_path, tiny_lines):
    over = {"train.precision": "bf16", "train.channels_last": True}
    train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 4, **over}), tmp_path / "full")
    train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 2, **over}), tmp_path / "split")
    train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 4, **over}), tmp_path / "split")
    for player in ("autoencoder", "critic"):
        a, b = weights(tmp_path / "full", player), weights(tmp_path / "split", player)
        assert all(torch.equal(a[k], b[k]) for k in a), player
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert losses and all(loss == loss and abs(loss) < 1e3 for loss in losses)


def test_unused_parameter_probe(tmp_path, tiny_lines):
    """A parameter outside every loss is found (DDP then needs find_unused_parameters); the RNG is kept."""
    trainer = Trainer(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 1}), tmp_path)
    trainer.method.autoencoder.spare = torch.nn.Parameter(torch.zeros(3))
    rng = torch.get_rng_state()
    unused = trainer.unused_parameters()
    assert unused == {"autoencoder": ["spare"], "critic": []}
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in trainer.method.parameters())  # the probe ran on a copy


def test_batches_drawn_ahead_are_the_source_batches(tiny_digits):
    from nonvae.data import build_data

    cfg = tiny_digits()
    source = build_data(cfg.data, cfg.seed).train
    batches = Batches(source, 8, 0, 1, torch.device("cpu"), channels_last=True, total_steps=10, ahead=True)
    try:
        for step in (0, 1, 2, 5, 6, 9):  # in order, then a jump (the queued batch is dropped)
            got, want = batches.get(step), source.batch(step, 8)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
            assert got["x"].is_contiguous(memory_format=torch.channels_last)
    finally:
        batches.close()


@cuda
def test_cuda_bf16_channels_last_fused_and_resume(tmp_path, tiny_lines):
    over = {"train.device": "cuda", "train.precision": "bf16", "train.channels_last": True}
    trainer = train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 3, **over}), tmp_path)
    assert trainer.device.type == "cuda" and fused_flags(trainer) == {True}
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
    resumed = train(tiny_lines("configs/lines/acai.yaml", **{"train.steps": 5, **over}), tmp_path)
    assert resumed.step == 5
    assert all(torch.isfinite(v).all() for v in weights(tmp_path).values())
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["loss"] for r in rows if r["kind"] == "train")


@cuda
def test_cuda_batches_are_pinned_and_drawn_ahead(tiny_digits):
    from nonvae.data import build_data

    cfg = tiny_digits()
    source = build_data(cfg.data, cfg.seed).train
    batches = Batches(source, 8, 0, 1, torch.device("cuda"), channels_last=False, total_steps=4)
    try:
        assert batches._pool is not None and batches._draw(0)["x"].is_pinned()
        for step in range(4):
            got = batches.get(step)
            assert got["x"].is_cuda and torch.equal(got["x"].cpu(), source.batch(step, 8)["x"])
    finally:
        batches.close()


@pytest.mark.parametrize("critic_precision", ["train", "bf16"])
def test_acai_critic_precision(tmp_path, tiny_lines, critic_precision):
    """regularizers.acai.critic_precision=bf16 runs only the critic's forwards (both of a step) under bf16
    autocast; the autoencoder stays in train.precision (fp32 here)."""
    cfg = tiny_lines("configs/lines/acai.yaml", **{"train.steps": 2, "train.precision": "fp32",
                                                    "regularizers.acai.critic_precision": critic_precision})
    trainer = Trainer(cfg, tmp_path)
    seen: dict[str, list] = {"critic": [], "encoder": []}
    critic = trainer.method.regularizers["acai"].critic
    first = {"critic": next(m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)),
             "encoder": next(m for m in trainer.method.backbone.encoder.modules() if isinstance(m, torch.nn.Conv2d))}
    for name, conv in first.items():
        conv.register_forward_hook(lambda m, i, out, name=name: seen[name].append(out.dtype))
    trainer.fit()
    expected = torch.bfloat16 if critic_precision == "bf16" else torch.float32
    assert seen["critic"] == [expected] * 4  # the fooling term and the critic's own update, 2 steps
    assert set(seen["encoder"]) == {torch.float32}
    assert all(torch.isfinite(p).all() for p in critic.parameters())


@pytest.mark.parametrize("precision,critic_precision", [("fp32", "train"), ("bf16", "train"), ("fp32", "bf16")])
def test_acai_shared_critic_forward_gives_the_same_step(tmp_path, tiny_lines, precision, critic_precision):
    """regularizers.acai.share_forward (the critic update reuses the critic's forward and input-gradient pass on the
    interpolants from the autoencoder step) gives the same losses and gradients of both players as separate
    passes, also with only the critic under bf16 (regularizers.acai.critic_precision=bf16)."""
    grads, logs = {}, {}
    low = precision == "bf16" or critic_precision == "bf16"
    for share in (True, False):
        cfg = tiny_lines("configs/lines/acai.yaml", **{"train.precision": precision,
                                                        "regularizers.acai.critic_precision": critic_precision,
                                                        "regularizers.acai.share_forward": share})
        torch.manual_seed(0)
        trainer = Trainer(cfg, tmp_path / str(share))
        method = trainer.method.train()
        with torch.no_grad():  # the reference init's critic answers ~1e-8: make the fooling term's gradient count
            method.regularizers["acai"].critic.encoder.net[-1].bias.fill_(0.3)
        batch = {"x": torch.rand(16, 1, 16, 16) * 2 - 1}
        torch.manual_seed(1)
        for step in range(2):  # the first step's gradients, the second step's losses (after both updates)
            logs[share] = method.train_step(batch, step, trainer.optimizers, trainer.call)
            if step == 0:
                grads[share] = {f"{player}.{k}": p.grad.clone() for player, module in method.players().items()
                                for k, p in module.named_parameters()}
    assert logs[True].keys() == logs[False].keys()
    for k in logs[True]:
        assert logs[True][k] == pytest.approx(logs[False][k], rel=1e-3 if low else 1e-5, abs=1e-7), k
    assert grads[True].keys() == grads[False].keys()
    assert any(k.startswith("critic.") for k in grads[True])
    tol = 2e-2 if low else 1e-4
    for k, g in grads[True].items():
        scale = float(grads[False][k].abs().max()) + 1e-12
        assert float((g - grads[False][k]).abs().max()) <= tol * scale, k


@pytest.mark.parametrize("halves,e1_calls,e2_calls", [({"attribute_cycle": 1.0}, 1, 2), ({"content_cycle": 1.0}, 2, 1),
                                                      ({"cycle": 1.0}, 2, 2)])
def test_cycle_reencodes_only_the_parts_its_terms_read(tiny_lines, halves, e1_calls, e2_calls):
    """One half of regularizers.domain's cycle re-encodes the translations with that half's encoder only (the
    other half's channels are zero and unread); the terms equal those of a full re-encode."""
    from nonvae.methods import build_method

    sets = {f"regularizers.domain.{k}": v for k, v in halves.items()}
    cfg = tiny_lines("configs/attributes/disentangle.yaml", **{"data.image_size": 16, "model.latent_width": 4,
                                                                "regularizers.domain.attribute_cycle": 0.0, **sets})
    torch.manual_seed(0)
    method = build_method(cfg, (1, 16, 16)).train()
    calls = {"e1": 0, "e2": 0}
    method.autoencoder.content_encoder.register_forward_hook(lambda *a: calls.__setitem__("e1", calls["e1"] + 1))
    method.autoencoder.attribute_encoder.register_forward_hook(lambda *a: calls.__setitem__("e2", calls["e2"] + 1))
    batch = {"x": torch.rand(8, 1, 16, 16) * 2 - 1, "domain": torch.cat([torch.ones(4), torch.zeros(4)])}
    state = {k: v.clone() for k, v in method.state_dict().items()}
    logs = method.train_step(batch, 0, method.build_optimizers())
    assert (calls["e1"], calls["e2"]) == (e1_calls, e2_calls)
    method.load_state_dict(state)
    for reg in method.regularizers.values():
        reg.reencode_parts = None  # the full re-encode
    full = method.train_step(batch, 0, method.build_optimizers())
    terms = [k for k in logs if "cycle" in k]
    assert terms and all(logs[k] == pytest.approx(full[k], rel=1e-5) for k in terms)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("direct", [False, True])
def test_discriminator_fast_update_gives_the_same_updates(tiny_lines, precision, direct):
    """regularizers.domain's discriminator update as one per-domain weighted BCE on codes flattened once per step
    (``WEIGHTED_BCE``), and with its backward written out (``DIRECT_BACKWARD``), equals the autograd update of the
    boolean-indexed sum of per-domain means: the same logged losses and, after a step of 3 discriminator updates,
    the same discriminator weights (unequal domain sizes, and a batch of one domain), fp32 and bf16 autocast."""
    from nonvae.methods import build_method
    from nonvae.regularizers import domain as dom

    cfg = tiny_lines("configs/attributes/disentangle.yaml", **{"data.image_size": 16, "model.latent_width": 4,
                                                                "regularizers.domain.disc_steps": 3,
                                                                "regularizers.domain.hidden": [16, 8],
                                                                "train.precision": precision})
    torch.manual_seed(0)
    method = build_method(cfg, (1, 16, 16)).train()
    assert method.regularizers["domain"].direct_grads
    off = tiny_lines("configs/attributes/disentangle.yaml", **{"data.image_size": 16, "model.latent_width": 4,
                                                                "regularizers.domain.direct_update": False})
    assert not build_method(off, (1, 16, 16)).regularizers["domain"].direct_grads
    if precision == "bf16":
        method.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    state = {k: v.clone() for k, v in method.state_dict().items()}
    x = torch.rand(10, 1, 16, 16) * 2 - 1
    for domain in (torch.tensor([1.0, 0, 1, 0, 0, 1, 0, 0, 0, 1]), torch.ones(10)):
        results = {}
        for fast in (False, True):
            dom.WEIGHTED_BCE, dom.DIRECT_BACKWARD = fast, fast and direct
            try:
                method.load_state_dict(state)
                logs = method.train_step({"x": x, "domain": domain}, 0, method.build_optimizers())
            finally:
                dom.WEIGHTED_BCE = dom.DIRECT_BACKWARD = True
            disc = {k: v.clone() for k, v in method.regularizers["domain"].discriminator.state_dict().items()}
            results[fast] = (logs, disc)
        (old_logs, old_disc), (new_logs, new_disc) = results[False], results[True]
        assert old_logs.keys() == new_logs.keys()
        for k in old_logs:
            assert new_logs[k] == pytest.approx(old_logs[k], rel=1e-5, abs=1e-7), k
        tol = 2e-2 if precision == "bf16" else 1e-4  # relative to how far 3 Adam updates moved the weights
        for k in old_disc:
            moved = float((old_disc[k] - state[f"regularizers.domain.discriminator.{k}"]).abs().max()) + 1e-12
            assert float((new_disc[k] - old_disc[k]).abs().max()) <= tol * moved, k
