"""Distributed training on CPU (gloo, 2 processes).

Ranks end every step with identical weights; 2 ranks x (B/2) trains like 1 rank x B; a run
resumes from a checkpoint written by another world size; control-flow decisions (skipping a
non-finite step) are taken by all ranks together; only rank 0 writes files.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nonvae.train import Trainer, train

pytestmark = pytest.mark.slow  # each test starts processes and a process group

WORLD = 2
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flat_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().cpu().contiguous().clone()  # channels_last weights: safetensors wants NCHW
            for name, module in trainer.method.players().items() for k, v in module.state_dict().items()}


class NanOnRank1:
    """A batch source whose rank-1 batch of step 1 is all NaN (the other rank's is fine)."""

    def __init__(self, inner) -> None:
        self.inner, self.shape = inner, inner.shape

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        out = self.inner.batch(step, batch_size, rank, world)
        if rank == 1 and step == 1:
            out["x"] = torch.full_like(out["x"], float("nan"))
        return out


def _worker(rank: int, jobs: list[dict], out_dir: str) -> None:
    """One rank: run the jobs in order (each its own process group) and dump the final weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from nonvae.data import build_data

    for i, job in enumerate(jobs):
        os.environ["MASTER_PORT"] = str(job["port"])
        cfg = job["cfg"]
        data = job.get("data") or build_data(cfg.data, cfg.seed)
        if job.get("nan_on_rank1"):
            data.train = NanOnRank1(data.train)
        trainer = Trainer(cfg, job["run_dir"].format(rank=rank), data=data)
        trainer.fit()
        torch.distributed.destroy_process_group()
        save_file(flat_weights(trainer), os.path.join(out_dir, f"job{i}_rank{rank}.safetensors"),
                  metadata={"step": str(trainer.step)})
    # Everything this rank owes is on disk. Skip the interpreter's finalisation: a CI run once hung there after all
    # four jobs had finished on both ranks (torch's autograd/gloo worker threads racing the GIL's teardown at exit,
    # pytorch/pytorch#190489), which cost the whole spawn's 600 s limit and the test.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(jobs: list[dict], out_dir: Path, timeout_s: float = 600.0) -> list[list[dict[str, torch.Tensor]]]:
    """Run ``jobs`` on WORLD spawned ranks; per job, each rank's final weights. Fails rather than hangs.

    The limit is generous: all of the module's jobs run in this one spawn, and under a load of 5 on 2 cores they
    once ran past an earlier 180 s limit (the failure then said how far each rank got, below).
    """
    for job in jobs:
        job["port"] = free_port()
    ctx = torch.multiprocessing.start_processes(_worker, args=(jobs, str(out_dir)), nprocs=WORLD, join=False,
                                                start_method="spawn")
    deadline = time.time() + timeout_s
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for proc in ctx.processes:
                proc.kill()
            done = {r: sum((out_dir / f"job{i}_rank{r}.safetensors").is_file() for i in range(len(jobs)))
                    for r in range(WORLD)}
            pytest.fail(f"distributed workers still running after {timeout_s:.0f} s; jobs finished per rank "
                        f"(of {len(jobs)}): {done} (unequal counts: a rank waits alone; equal: too slow)")
    return [[load_file(str(out_dir / f"job{i}_rank{r}.safetensors")) for r in range(WORLD)]
            for i in range(len(jobs))]


def assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_close(a: dict, b: dict, atol: float = 2e-5) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < atol, f"largest weight difference {worst:.3g}"


def checkpoint_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = run_dir / "checkpoints" / "latest"
    out = {}
    for f in sorted(latest.glob("*.safetensors")):
        if not f.name.startswith("optim_"):
            out.update({f"{f.stem}.{k}": v for k, v in load_file(str(f)).items()})
    return out


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One intra-op thread: on 2 shared cores, 2 spinning OpenMP threads made these tiny convs up to
    100x slower whenever other processes were running. (No HTML reports either: every config here
    gets train.report=false, from tiny_overrides or --set.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _single_thread):
    """Every 2-rank run of this module in one spawn (process start-up dominates on 2 cores)."""
    from nonvae.config import load_config
    from nonvae.data import build_data
    from tests.conftest import tiny_overrides

    tmp = tmp_path_factory.mktemp("dist")
    lines = {"data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4,
             "data.test_limit": 64, "train.batch_size": 8}
    acai = load_config(REPO / "configs/lines/acai.yaml", tiny_overrides(**lines, **{"train.steps": 2}))
    skip = load_config(REPO / "configs/lines/ae.yaml",
                       tiny_overrides(**lines, **{"train.steps": 3, "train.nonfinite": "skip"}))

    def digits(batch: int, steps: int = 4):
        # fp32: 2 x 8 and 1 x 16 agree to float32 rounding; bf16 autocast rounds each split differently
        return load_config(None, tiny_overrides(**{"train.precision": "fp32",
            "data.name": "digits", "data.image_size": 16, "model.latent_width": 4, "model.latent_channels": 2,
            "train.steps": steps, "train.batch_size": batch, "train.checkpoint_every": 2}))

    train(digits(16), tmp / "one")  # reference: 1 x 16, uninterrupted
    train(digits(16, steps=2), tmp / "one_then_two")  # a 1-rank checkpoint of step 2
    data = build_data(digits(8).data, 0)  # built here: the workers then need not import scikit-learn
    jobs = [{"cfg": acai, "run_dir": str(tmp / "acai{rank}")},
            {"cfg": skip, "run_dir": str(tmp / "skip"), "nan_on_rank1": True},
            {"cfg": digits(8), "run_dir": str(tmp / "two"), "data": data},
            {"cfg": digits(8), "run_dir": str(tmp / "one_then_two"), "data": data}]  # resumes 1-rank ckpt
    weights = dict(zip(["acai", "skip", "two", "one_then_two"], spawn(jobs, tmp), strict=True))
    return {"tmp": tmp, "weights": weights, "one": digits(16)}


def test_ranks_agree_and_only_rank0_writes(runs):
    """ACAI (autoencoder + critic, each in its own DDP) ends with identical weights on both ranks."""
    tmp, (acai0, acai1) = runs["tmp"], runs["weights"]["acai"]
    assert any(k.startswith("critic.") for k in acai0) and any(k.startswith("autoencoder.") for k in acai0)
    assert_equal(acai0, acai1)
    assert_equal(acai0, checkpoint_weights(tmp / "acai0"))
    assert not (tmp / "acai1").exists(), "rank 1 wrote files"
    names = {p.name for p in (tmp / "acai0").iterdir()}
    assert {"config.yaml", "metrics.jsonl", "checkpoints"} <= names


def test_nonfinite_step_skipped_by_every_rank(runs):
    """A NaN batch on rank 1 only: both ranks skip that step together (no hang, no drift)."""
    tmp, (skip0, skip1) = runs["tmp"], runs["weights"]["skip"]
    assert_equal(skip0, skip1)
    rows = (tmp / "skip" / "metrics.jsonl").read_text()
    assert '"kind": "nonfinite"' in rows and "another rank" in rows


def test_two_ranks_match_one_rank(runs):
    """digits, baseline AE: 2 ranks x 8 == 1 rank x 16 to float tolerance."""
    (two0, two1) = runs["weights"]["two"]
    assert_equal(two0, two1)
    assert_close(checkpoint_weights(runs["tmp"] / "one"), two0)


def test_resume_across_world_sizes(runs):
    """A checkpoint written by one world size resumes under the other, matching an uninterrupted run."""
    tmp = runs["tmp"]
    reference = checkpoint_weights(tmp / "one")
    r12_0, r12_1 = runs["weights"]["one_then_two"]  # 1 rank to step 2, then 2 ranks to step 4
    assert_equal(r12_0, r12_1)
    assert_close(reference, r12_0)

    ckpt = tmp / "two_then_one" / "checkpoints"  # 2 ranks to step 2, then 1 rank to step 4
    ckpt.mkdir(parents=True)
    shutil.copytree(tmp / "two" / "checkpoints" / "step_00000002", ckpt / "step_00000002")
    os.symlink("step_00000002", ckpt / "latest")
    trainer = train(runs["one"], tmp / "two_then_one")
    assert trainer.step == 4
    assert_close(reference, flat_weights(trainer))


def test_torchrun_cli_then_resume_on_one_process(tmp_path, tiny_lines, caplog):
    """The documented command line; the run then continues in one process with another global batch."""
    run_dir = tmp_path / "run"
    overrides = ["model.width=4", "data.image_size=16", "model.latent_width=2", "model.latent_channels=4",
                 "data.test_limit=64", "train.batch_size=8", "train.steps=2", "train.log_every=1",
                 "train.progress=false", "train.tensorboard=false", "train.report=false", "eval.lines_pairs=8"]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}",
           f"--master_port={free_port()}", "-m", "nonvae", "train", str(REPO / "configs/lines/acai.yaml"),
           "--run-dir", str(run_dir)]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained acai for 2 steps") == 1  # rank 0 only
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len([r for r in rows if '"kind": "train"' in r]) == 2  # one row per step, not one per rank

    cfg = tiny_lines("configs/lines/acai.yaml", **{"train.steps": 3, "train.batch_size": 8})
    with caplog.at_level("INFO", logger="nonvae"):  # messages go through logging
        trainer = train(cfg, run_dir)
    assert trainer.step == 3
    err = caplog.text
    assert "resuming from" in err and "global batch changes from 16 (2 x 8) to 8 (1 x 8)" in err
