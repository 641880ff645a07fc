"""The one training loop, for every method.

Owns devices, ranks, files and time: builds data and method from the config,
resumes from ``RUN_DIR/checkpoints/latest`` when it exists, runs
``Method.train_step`` for each step, and logs, samples, evaluates and
checkpoints on schedule. Every step reseeds the RNG from (seed, step, rank), so a
resumed run reproduces an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

from nonvae.checkpoint import find_latest, load_checkpoint, read_state, save_checkpoint
from nonvae.config import Config, dump_config, read_yaml, to_dict
from nonvae.data import DataBundle, build_data
from nonvae.errors import NonvaeError, TrainingError
from nonvae.methods import AUTOENCODER, Method, NonFiniteError, build_method


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


# --------------------------------------------------------------------------- environment
class Dist:
    """Rank/world info from torchrun's environment variables."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device, timeout_s: float = 600.0) -> None:
        if not self.enabled or torch.distributed.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))

    def barrier(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.barrier()


def pick_device(name: str, dist: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"train.device={name!r} but CUDA is not available; use train.device=cpu")
        if dist.enabled and name == "cuda":
            name = f"cuda:{dist.local_rank}"
    return torch.device(name)


def autocast_for(cfg: Config, device: torch.device):
    if cfg.train.precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def check_writable(run_dir: Path) -> None:
    """Fail before training when the run directory cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"run directory {run_dir} is not writable: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- logging
class MetricsLog:
    """RUN_DIR/metrics.jsonl (+ TensorBoard when available); rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception as exc:  # tensorboard missing or broken: keep training, say so
                print(f"warning: TensorBoard logging disabled ({exc})", file=sys.stderr)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (they will be logged again)."""
        if not (self.enabled and self.path.exists()):
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def write(self, step: int, values: dict, kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **values}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self.tb.add_scalar(key if kind == "train" else f"{kind}/{key}", value, step)

    def image(self, tag: str, grid, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Build everything for one run directory and train it."""

    def __init__(self, cfg: Config, run_dir: str | Path, data: DataBundle | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = Dist()
        self.device = pick_device(cfg.train.device, self.dist)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.dist.init(self.device)
        if self.dist.is_main:
            check_writable(self.run_dir)
        torch.manual_seed(cfg.seed)
        self.data = data or build_data(cfg.data, cfg.seed)
        self.method: Method = build_method(cfg, self.data.shape).to(self.device)
        if cfg.train.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.method.autocast = autocast_for(cfg, self.device)
        self.optimizers = self.method.build_optimizers()
        self.callers = self._wrap_players()
        self.step = 0
        self.log = MetricsLog(self.run_dir, self.dist.is_main, cfg.train.tensorboard)
        self._stop_signal: int | None = None

    # -- players and DDP --------------------------------------------------------------------
    def _wrap_players(self) -> dict[str, torch.nn.Module]:
        players = self.method.players()
        wrapped: dict[str, torch.nn.Module] = {}
        for name, module in players.items():
            m = module
            if self.dist.enabled:
                ids = [self.device.index] if self.device.type == "cuda" else None
                m = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
            if self.cfg.train.compile:
                m = torch.compile(m)
            wrapped[name] = m
        return wrapped

    def call(self, name: str, *args, **kwargs):
        return self.callers[name](*args, **kwargs)

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def save(self) -> Path | None:
        if not self.dist.is_main:
            return None
        return save_checkpoint(
            self.ckpt_dir, self.step, self.method.players(), self.optimizers,
            {"seed": self.cfg.seed, "world_size": self.dist.world}, keep=self.cfg.train.keep_checkpoints,
        )

    def resume_or_init(self) -> None:
        latest = find_latest(self.ckpt_dir)
        if latest is not None:
            configured = {n: [g["lr"] for g in o.param_groups] for n, o in self.optimizers.items()}
            state = load_checkpoint(latest, self.method.players(), self.optimizers)
            for name, opt in self.optimizers.items():  # the config, not the checkpoint, sets the lr
                for group, lr in zip(opt.param_groups, configured[name], strict=True):
                    group["lr"] = lr
            self.step = int(state["step"])
            self.log.truncate_after(self.step)
            if self.dist.is_main:
                print(f"resuming from {latest} (step {self.step})", file=sys.stderr)
        elif self.cfg.init.from_:
            from nonvae.pipeline import checkpoint_dir_of

            src = checkpoint_dir_of(self.cfg.init.from_)
            players = self.method.players()
            available = set(read_state(src).get("players", []))
            load_checkpoint(src, {n: m for n, m in players.items() if n in available})
            if self.dist.is_main:
                print(f"initialised {sorted(available & set(players))} from {src}", file=sys.stderr)

    def write_config(self) -> None:
        if not self.dist.is_main:
            return
        path = self.run_dir / "config.yaml"
        if path.exists():
            old = read_yaml(path)
            new = to_dict(self.cfg)
            changed = sorted(_diff_keys(old, new))
            if changed:
                print(f"note: config changed since this run started: {', '.join(changed)}", file=sys.stderr)
        dump_config(self.cfg, path)

    # -- signals ----------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_signal = signum

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        self.write_config()
        self.resume_or_init()
        old_handlers = {}
        if self.dist.is_main or True:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    old_handlers[sig] = signal.signal(sig, self._on_signal)
                except ValueError:  # not the main thread
                    pass
        bar = None
        if t.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc=f"train {cfg.method}", unit="step",
                       dynamic_ncols=True, file=sys.stderr)
        self.method.train()
        last_logs: dict[str, float] = {}
        anomaly = torch.autograd.detect_anomaly() if t.detect_anomaly else contextlib.nullcontext()
        started, started_step = time.time(), self.step
        try:
            with anomaly:
                while self.step < t.steps:
                    if self._stop_signal is not None:
                        self._interrupted()
                    step = self.step
                    torch.manual_seed(step_seed(cfg.seed, step, self.dist.rank))
                    batch = self.data.train.batch(step, t.batch_size, self.dist.rank, self.dist.world)
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                    if t.channels_last and batch["x"].ndim == 4:
                        batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last)
                    try:
                        logs = self.method.train_step(batch, step, self.optimizers, self.call)
                    except NonFiniteError as exc:
                        if t.nonfinite == "skip":
                            self.log.write(step, {"skipped": 1.0, "reason": str(exc)}, kind="nonfinite")
                            self.step += 1
                            continue
                        latest = find_latest(self.ckpt_dir)
                        where = f"; the last good checkpoint is {latest}" if latest else "; no checkpoint was written"
                        raise TrainingError(
                            f"{exc}{where}. Lower train.lr, set train.grad_clip, or train.nonfinite=skip"
                        ) from None
                    self.step += 1
                    last_logs = logs
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
                    if self.step % t.log_every == 0 or self.step == t.steps:
                        elapsed = time.time() - started
                        rate = (self.step - started_step) / max(elapsed, 1e-9)
                        self.log.write(self.step, {**logs, "steps_per_s": rate,
                                                   "images_per_s": rate * t.batch_size * self.dist.world})
                    if self.step % t.checkpoint_every == 0 or self.step == t.steps:
                        self.save()
                    if self.step % t.sample_every == 0 or self.step == t.steps:
                        self.samples()
                    if self.step % t.eval_every == 0 and self.step < t.steps:
                        self.periodic_eval()
        finally:
            if bar is not None:
                bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            self.log.close()
        self.dist.barrier()
        return last_logs

    def _interrupted(self) -> None:
        self.save()
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "signal"
        raise KeyboardInterrupt(
            f"{name}: saved step {self.step} to {self.ckpt_dir / 'latest'}; run the same command again to resume"
        )

    # -- pictures and evaluation --------------------------------------------------------------
    @torch.no_grad()
    def samples(self) -> None:
        if not self.dist.is_main:
            return
        from nonvae.pictures import sample_grids

        self.method.eval()
        try:
            grids = sample_grids(self.method, self.data.test, self.run_dir / "samples", self.step, self.device)
            for tag, grid in grids.items():
                self.log.image(tag, grid, self.step)
        finally:
            self.method.train()

    @torch.no_grad()
    def periodic_eval(self) -> None:
        if not self.dist.is_main:
            return
        from nonvae.evaluate.run import evaluate

        self.method.eval()
        try:
            metrics = evaluate(self.method, self.data, self.cfg, self.device, quick=True)
            self.log.write(self.step, metrics, kind="eval")
        finally:
            self.method.train()


def _diff_keys(old, new, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(old, dict) and isinstance(new, dict):
        for key in set(old) | set(new):
            out |= _diff_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
    elif old != new:
        out.add(prefix)
    return out


def train(cfg: Config, run_dir: str | Path) -> Trainer:
    """Train (or resume) the run in ``run_dir``; returns the trainer with the trained method."""
    trainer = Trainer(cfg, run_dir)
    trainer.fit()
    if trainer.dist.enabled:
        torch.distributed.destroy_process_group()
    return trainer


__all__ = ["Trainer", "train", "step_seed", "AUTOENCODER", "NonvaeError"]
