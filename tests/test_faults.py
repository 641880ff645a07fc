"""Fault injection: kills, signals and full disks lose nothing and never leave a torn checkpoint.

A tiny run is SIGKILLed at seeded random moments (checkpoint_every=1, so many kills land while
a checkpoint is being written) and re-run until it finishes; its final weights must equal an
uninterrupted run's bit for bit, and after every kill ``checkpoints/latest`` must be absent or a
complete, loadable checkpoint.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import nonvae.checkpoint as checkpoint
from nonvae.checkpoint import STEP_RE, find_latest, load_checkpoint, read_state
from nonvae.config import load_config
from nonvae.errors import TrainingError
from nonvae.methods import build_method
from nonvae.train import Trainer, train

from .conftest import REPO, tiny_overrides

STEPS = 24
KILLS = 3
CONFIG = f"{REPO}/configs/lines/ae.yaml"
SETTINGS = tiny_overrides(**{
    "data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4, "data.test_limit": 64,
    "train.steps": STEPS, "train.checkpoint_every": 1, "train.keep_checkpoints": 2, "train.threads": 1,
    "train.log_every": 1,
})
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # SETTINGS: train.report=false


def command(run_dir: Path, *extra: str) -> list[str]:
    sets = [f"--set={s}" for s in [*SETTINGS, *extra]]
    return [sys.executable, "-m", "nonvae", "train", CONFIG, "--run-dir", str(run_dir), *sets]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / "latest" / "autoencoder.safetensors"))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


REFERENCE_SECONDS: list[float] = []  # how long the uninterrupted run trained (scales the kill delays)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """Final weights of the same run, never interrupted (in-process: same settings, one thread)."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(load_config(CONFIG, SETTINGS), run_dir)  # train.threads=1: one torch thread
        started = time.monotonic()
        trainer.fit()
        REFERENCE_SECONDS.append(time.monotonic() - started)
    finally:
        torch.set_num_threads(threads)
    return final_weights(run_dir)


def fresh_players():
    cfg = load_config(CONFIG, SETTINGS)
    method = build_method(cfg, (1, 16, 16))
    return method.players(), method.build_optimizers()


def check_latest(run_dir: Path) -> int:
    """``latest`` is absent or a complete checkpoint that loads; returns its step (0 if absent)."""
    latest = run_dir / "checkpoints" / "latest"
    if not latest.is_symlink() and not latest.exists():
        return 0
    assert latest.is_dir(), f"dangling latest -> {os.readlink(latest)}"
    players, optimizers = fresh_players()
    return int(load_checkpoint(latest, players, optimizers)["step"])


def wait_for_start(proc: subprocess.Popen, config: Path, old_inode: int | None, limit: float = 60.0) -> None:
    """Until this process has resumed and rewritten config.yaml (just before its first step), or exited."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if os.stat(config).st_ino != old_inode:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, reference: dict[str, torch.Tensor]) -> None:
    run_dir, rng = tmp_path / "run", random.Random(20240611)
    config = run_dir / "config.yaml"
    kills, torn_writes, last_step = 0, 0, 0
    for _ in range(12):
        inode = os.stat(config).st_ino if config.exists() else None
        proc = subprocess.Popen(command(run_dir), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < KILLS:
            wait_for_start(proc, config, inode)
            time.sleep(rng.uniform(0.0, REFERENCE_SECONDS[0] / (KILLS + 1)))  # mostly inside the loop
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        kills += 1
        torn_writes += any((run_dir / "checkpoints").glob(".tmp-*"))
        step = check_latest(run_dir)
        assert step >= last_step  # progress is never lost
        last_step = step
    else:
        pytest.fail("the run never finished")
    assert kills >= KILLS - 1  # a run on a suddenly faster machine may finish before the last kill
    print(f"{kills} kills, {torn_writes} during a checkpoint write, last kill at step {last_step}")
    assert_same(final_weights(run_dir), reference)
    assert int(read_state(find_latest(run_dir / "checkpoints"))["step"]) == STEPS
    left = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert all(STEP_RE.match(n) or n == "latest" for n in left), left  # junk of killed saves is gone
    assert len([n for n in left if n != "latest"]) == 2  # keep_checkpoints


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_resumes(tmp_path: Path, reference: dict) -> None:
    run_dir = tmp_path / "run"
    cmd = command(run_dir, "train.checkpoint_every=1000")  # only the final step is scheduled
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_start(proc, run_dir / "config.yaml", None)
    time.sleep(REFERENCE_SECONDS[0] / 10)  # a few steps in
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 130, lines
    assert lines and lines[-1].startswith("nonvae: SIGTERM: saved step ")
    assert "run the same command" in lines[-1]
    saved = int(lines[-1].split("saved step ")[1].split()[0])
    assert 0 <= saved < STEPS
    assert check_latest(run_dir) == saved
    done = subprocess.run(cmd, env=ENV, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert f"(step {saved})" in done.stderr.decode()  # "resuming from ... (step N)"
    assert_same(final_weights(run_dir), reference)


# --------------------------------------------------------------------------- in-process faults
@pytest.fixture
def tiny(tiny_lines):
    def make(**extra):
        return tiny_lines(**{"train.tensorboard": False, **extra})

    return make


def test_sigint_checkpoints_and_raises_keyboard_interrupt(tmp_path: Path, tiny, monkeypatch) -> None:
    trainer = Trainer(tiny(**{"train.steps": 6}), tmp_path)
    step_fn = trainer.method.train_step

    def interrupting(batch, step, *args, **kwargs):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler only sets a flag
        return step_fn(batch, step, *args, **kwargs)

    monkeypatch.setattr(trainer.method, "train_step", interrupting)
    with pytest.raises(KeyboardInterrupt, match=r"SIGINT: saved step 3 .*run the same command again"):
        trainer.fit()
    assert read_state(find_latest(tmp_path / "checkpoints"))["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   SafetensorError("Error while serializing: I/O error: No space left on "
                                                   "device (os error 28)")])
def test_disk_full_during_checkpoint_keeps_latest(tmp_path: Path, tiny, monkeypatch, error) -> None:
    train(tiny(**{"train.steps": 2, "train.checkpoint_every": 2}), tmp_path)
    before = final_weights(tmp_path)
    good = (tmp_path / "checkpoints" / "latest").resolve()

    calls = []

    def failing_save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the first file of the new checkpoint is written, the second fails
            raise error
        return real_save_file(tensors, path, metadata=metadata)

    real_save_file = checkpoint.save_file
    monkeypatch.setattr(checkpoint, "save_file", failing_save_file)
    message = r"could not write the checkpoint of step 4 .*No space left on device.*last good .*step_00000002"
    with pytest.raises(TrainingError, match=message):
        Trainer(tiny(**{"train.steps": 4, "train.checkpoint_every": 2}), tmp_path).fit()
    assert (tmp_path / "checkpoints" / "latest").resolve() == good
    assert_same(before, final_weights(tmp_path))
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # the partial folder is removed
    assert not (tmp_path / "checkpoints" / "step_00000004").exists()


def test_disk_full_writing_metrics_is_a_training_error(tmp_path: Path, tiny, monkeypatch) -> None:
    trainer = Trainer(tiny(**{"train.steps": 4}), tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.jsonl"))

    monkeypatch.setattr(trainer.log, "write", full)
    with pytest.raises(TrainingError, match=r"metrics.jsonl: No space left on device; no checkpoint was"):
        trainer.fit()


def test_resaving_a_step_never_deletes_it_first(tmp_path: Path) -> None:
    """Saving a step that exists (a SIGTERM right after a scheduled save) swaps folders by renaming."""
    net = torch.nn.Linear(2, 2)
    checkpoint.save_checkpoint(tmp_path, 5, {"autoencoder": net})
    removed = []
    real_rmtree = checkpoint.shutil.rmtree

    def spy(path, *args, **kwargs):
        removed.append(Path(path).name)
        return real_rmtree(path, *args, **kwargs)

    checkpoint.shutil.rmtree = spy
    try:
        checkpoint.save_checkpoint(tmp_path, 5, {"autoencoder": net})
    finally:
        checkpoint.shutil.rmtree = real_rmtree
    assert "step_00000005" not in removed and any(n.startswith(".old-step_00000005") for n in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000005"]


class Crash(BaseException):
    """Stands in for SIGKILL at an exact point of a checkpoint write (nothing after it runs)."""


def _crash_on(n: int, real):
    calls = []

    def fn(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Crash
        return real(*args, **kwargs)

    return fn


@pytest.mark.parametrize("point", ["second tensor file", "state.json", "step folder rename",
                                   "symlink created", "latest swapped", "pruning"])
def test_crash_at_each_point_of_a_checkpoint_write(tmp_path: Path, monkeypatch, point: str) -> None:
    """Wherever a save dies, ``latest`` is the old or the new complete checkpoint, and the next save
    clears the debris."""
    players, optimizers = fresh_players()
    checkpoint.save_checkpoint(tmp_path, 1, players, optimizers, keep=1)
    patches = {
        "second tensor file": ("_save_tensors", 2),
        "state.json": ("_write_json", 1),
        "step folder rename": ("os.replace", 1),
        "symlink created": ("os.replace", 2),
        "latest swapped": ("_fsync_dir", 3),
        "pruning": ("_prune", 1),
    }
    name, n = patches[point]
    target = checkpoint.os if name.startswith("os.") else checkpoint
    attr = name.removeprefix("os.")
    with monkeypatch.context() as m:
        m.setattr(target, attr, _crash_on(n, getattr(target, attr)))
        with pytest.raises(Crash):
            checkpoint.save_checkpoint(tmp_path, 2, players, optimizers, keep=1)
    latest = tmp_path / "latest"
    assert latest.is_dir()
    fresh, fresh_opt = fresh_players()
    step = load_checkpoint(latest, fresh, fresh_opt)["step"]
    assert step == (2 if point in ("latest swapped", "pruning") else 1)
    assert load_checkpoint(find_latest(tmp_path), fresh, fresh_opt)["step"] == step
    checkpoint.save_checkpoint(tmp_path, 3, players, optimizers, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000003"]


def test_dist_timeout_round_trips_and_is_validated(tmp_path: Path) -> None:
    from nonvae.config import dump_config
    from nonvae.errors import ConfigError

    cfg = load_config(None, ["train.dist_timeout_s=30"])
    assert cfg.train.dist_timeout_s == 30.0
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").train.dist_timeout_s == 30.0
    assert load_config(None).train.dist_timeout_s == 600.0
    with pytest.raises(ConfigError, match="dist_timeout_s"):
        load_config(None, ["train.dist_timeout_s=0"])
