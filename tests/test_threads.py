"""The automatic speed choices: the thread policy, short OpenMP waits, precision 'auto'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nonvae.threads import SPIN_COUNT, ThreadPolicy, native_bf16, resolve_precision, usable_cores

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_pinned_threads_are_set_and_kept(restore_threads):
    policy = ThreadPolicy(1, interval=0.0)
    assert torch.get_num_threads() == 1
    time.sleep(0.01)
    assert policy.update() == 1 and policy.changes == 0
    assert "train.threads" in policy.describe()


def test_auto_never_exceeds_the_thread_count_at_start(restore_threads):
    """OMP_NUM_THREADS / torch.set_num_threads cap the policy: the suite's one thread stays one."""
    torch.set_num_threads(1)
    policy = ThreadPolicy(None, interval=0.0)
    for _ in range(3):
        time.sleep(0.3)
        assert policy.update() == 1
    assert torch.get_num_threads() == 1


def test_choice_is_the_free_cores(restore_threads):
    torch.set_num_threads(usable_cores())
    policy = ThreadPolicy(None)
    cores = usable_cores()
    assert policy._choose(0.0) == cores  # nothing else running: every core
    assert policy._choose(float(cores)) == 1  # everything busy: still one thread
    assert policy._choose(cores + 5.0) == 1
    if cores >= 2:
        assert policy._choose(1.0) == cores - 1  # one busy neighbour costs one thread
        assert policy._choose(0.5) == cores - 1  # half a core of load already costs one


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs /proc/stat (Linux)")
def test_measures_a_busy_neighbour(restore_threads):
    """A process spinning on a core between two samples shows up as (about) one core of others' use."""
    policy = ThreadPolicy(None)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        before = policy._read()
        time.sleep(1.0)
        after = policy._read()
    finally:
        busy.kill()
        busy.wait()
    others = policy.others(before, after)
    assert others is not None and others >= 0.5  # at least half a core (it shares the machine with others)


def test_short_openmp_waits_are_set_before_torch_and_respect_the_user():
    code = ("import os, sys; import nonvae.cli; "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = SRC
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(SPIN_COUNT), "None", "False"]
    for key, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "77")):  # the user's choice stays
        out = subprocess.run([sys.executable, "-c", code], env={**env, key: value}, capture_output=True, text=True,
                             check=True)
        got = dict(zip(("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"), out.stdout.split()[:2], strict=True))
        assert got[key] == value and got["GOMP_SPINCOUNT" if key == "OMP_WAIT_POLICY" else "OMP_WAIT_POLICY"] == "None"


def test_precision_auto():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    assert resolve_precision("auto", "mps") == "fp32"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "avx512_bf16" in cpuinfo.read_text().split():
        assert native_bf16("cpu")


def test_trainer_resolves_auto_and_logs_threads(tmp_path, tiny_lines):
    from nonvae.train import train

    trainer = train(tiny_lines("configs/lines/ae.yaml", **{"train.steps": 2, "train.log_every": 1}), tmp_path)
    assert trainer.cfg.train.precision == "auto"  # the resolved config keeps 'auto'; the trainer resolves it
    assert trainer.precision == resolve_precision("auto", "cpu")
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["threads"] for r in rows if r["kind"] == "train"] == [1, 1]


FAULTS_SCRIPT = """
import resource, sys, torch
from nonvae.threads import keep_freed_memory
if sys.argv[1] == 'keep':
    assert keep_freed_memory()
torch.manual_seed(0)
layers = [torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.LeakyReLU(0.2)]
net = torch.nn.Sequential(*layers, *layers, *layers)
x = torch.randn(128, 16, 32, 32)  # the size of ACAI's critic batch at 32 px: 8 MB activations
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(x).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults[4:])[4])  # the median of the last 8 steps
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "confstr")
                    or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""), reason="glibc malloc only")
def test_keep_memory_stops_refaulting_the_step_buffers():
    """train.keep_memory: a training step's freed buffers stay in the process, so the next step does not
    fault them in again page by page (glibc's defaults: thousands of page faults per step)."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    faults = {mode: float(subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], env=env, check=True,
                                         capture_output=True, text=True).stdout.split()[-1])
              for mode in ("default", "keep")}
    assert faults["keep"] < 500, faults
    assert faults["default"] > 4000, faults  # what the setting is for: glibc's defaults refault every step


def test_trainer_keeps_memory_by_default_and_can_be_told_not_to(tmp_path, tiny_lines):
    from nonvae.train import Trainer

    assert Trainer(tiny_lines(), tmp_path / "on").keeps_memory
    assert not Trainer(tiny_lines(**{"train.keep_memory": False}), tmp_path / "off").keeps_memory
