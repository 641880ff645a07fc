"""The one training loop, for every method.

Owns devices, ranks, files and time: builds data and method from the config,
resumes from ``RUN_DIR/checkpoints/latest`` when it exists, runs
``Method.train_step`` for each step, and logs, samples, evaluates and
checkpoints on schedule. Every step reseeds the RNG from (seed, step, rank), so a
resumed run reproduces an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from nonvae.checkpoint import find_latest, load_checkpoint, read_state, save_checkpoint
from nonvae.config import Config, dump_config, from_dict, read_yaml, to_dict
from nonvae.data import DataBundle, build_data
from nonvae.errors import ConfigError, NonvaeError, TrainingError
from nonvae.hooks import Hook, default_hooks
from nonvae.limits import check_training_memory
from nonvae.methods import AUTOENCODER, Method, NonFiniteError, build_method
from nonvae.rundir import AUTOENCODER_EMA, RunDir
from nonvae.threads import ThreadPolicy, keep_freed_memory, resolve_precision

log = logging.getLogger(__name__)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


def lr_factor(step: int, steps: int, schedule: str = "constant", warmup: int = 0) -> float:
    """The multiplier of every player's configured learning rate for the update made at ``step`` (0-based).

    A linear warm-up from 0 over ``warmup`` steps, then constant, or a cosine / linear decay that reaches 0 at
    ``steps`` (the update at step ``steps - 1`` still gets a small positive rate).
    """
    factor = 1.0
    if warmup > 0 and step < warmup:
        factor = (step + 1) / warmup
    if schedule != "constant" and steps > warmup:
        frac = min(1.0, max(0.0, (step - warmup) / (steps - warmup)))
        factor *= 0.5 * (1.0 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac
    return factor


# --------------------------------------------------------------------------- environment
class Dist:
    """Rank/world info from torchrun's environment variables, and the few collectives the loop needs.

    Every decision that changes control flow (stop on a signal, skip a non-finite step, a failed
    checkpoint write, the step to resume from) is agreed across ranks: a rank that branches alone
    leaves the others waiting in, or worse pairing up the wrong, gradient all-reduces.
    """

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.comm_device = torch.device("cpu")  # where collective tensors live (nccl needs CUDA ones)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device, timeout_s: float = 600.0) -> None:
        """Join the process group. ``timeout_s`` (``train.dist_timeout_s``) bounds every collective:
        when a rank dies, the others fail with a timeout error after that long instead of hanging forever.
        """
        if not self.enabled:
            return
        self.comm_device = device if device.type == "cuda" else torch.device("cpu")
        if torch.distributed.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))

    @property
    def active(self) -> bool:
        return self.enabled and torch.distributed.is_initialized()

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """``flag`` OR-ed over all ranks (itself when not distributed); also a barrier."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int64, device=self.comm_device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def spread(self, value: int) -> tuple[int, int]:
        """(min, max) of an integer over all ranks."""
        if not self.active:
            return value, value
        t = torch.tensor([-value, value], dtype=torch.int64, device=self.comm_device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return -int(t[0]), int(t[1])


def pick_device(name: str, dist: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"train.device={name!r} but CUDA is not available; use train.device=cpu")
        if dist.enabled and name == "cuda":
            name = f"cuda:{dist.local_rank}"
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config key 'train.device': {name!r} is not a device (auto, cpu, cuda:N)") \
            from None


def autocast_for(precision: str, device: torch.device):
    """A context-manager factory for the training step: bf16 autocast, or nothing (fp32)."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


class Batches:
    """Training batches on the trainer's device.

    On CUDA the next step's batch is drawn and pinned in a background thread while the GPU
    works, so the host-to-device copy is asynchronous and the data pipeline overlaps the step. A
    batch depends only on (step, rank, world) and every source draws from its own seeded
    generators (never torch's global RNG), so drawing ahead changes nothing but the wait. On CPU
    it draws synchronously: a second thread would only compete with the step for the cores.
    """

    def __init__(self, source, batch_size: int, rank: int, world: int, device: torch.device,
                 channels_last: bool, total_steps: int, ahead: bool | None = None) -> None:
        self.source, self.batch_size, self.rank, self.world = source, batch_size, rank, world
        self.device, self.channels_last, self.total_steps = device, channels_last, total_steps
        self.pin = device.type == "cuda"
        ahead = self.pin if ahead is None else ahead
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="nonvae-batches") if ahead else None
        self._next: tuple[int, Future] | None = None

    def _draw(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.source.batch(step, self.batch_size, self.rank, self.world)
        if self.pin:
            batch = {k: v.pin_memory() if v.device.type == "cpu" else v for k, v in batch.items()}
        return batch

    def get(self, step: int) -> dict[str, torch.Tensor]:
        if self._next is not None and self._next[0] == step:
            batch = self._next[1].result()
        else:
            batch = self._draw(step)
        self._next = None
        if self._pool is not None and step + 1 < self.total_steps:
            self._next = (step + 1, self._pool.submit(self._draw, step + 1))
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.channels_last and out["x"].ndim == 4:
            out["x"] = out["x"].contiguous(memory_format=torch.channels_last)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def what_to_do(error: BaseException | None) -> str:
    """The advice after a failed write, by its cause: free space only when space is what ran out."""
    import errno

    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(error):
        return "Free space and run the same command to resume"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "Make the run directory writable and run the same command to resume"
    if code == errno.ELOOP:
        return "A symbolic link in the path points to itself; fix it and run the same command to resume"
    return "Fix the cause and run the same command to resume"


def check_writable(run_dir: Path) -> None:
    """Fail before training when the run directory cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"run directory {run_dir} is not writable: {exc.strerror or exc}") from None


class RunLock:
    """An exclusive ``fcntl.flock`` on RUN_DIR/.lock, held while one process trains the run.

    The kernel drops the lock when its process dies (SIGKILL included), so a lock left by a killed
    run never blocks a resume; the file only holds the holder's PID for the error message.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = RunDir(run_dir).lock
        self._fh = None

    def acquire(self) -> None:
        import fcntl

        try:
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole run
        except OSError as exc:
            raise TrainingError(f"run directory {self.path.parent} is not writable: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read(64).strip() or "unknown"
            fh.close()
            raise TrainingError(
                f"run directory {self.path.parent} is in use by another nonvae train (PID {holder}); "
                "wait for it to finish or stop it, or use another --run-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the descriptor drops the flock
            self._fh = None


# Keys that may differ between the run's config.yaml and the config a resume is started with.
# Everything else (method, regularizer set, model, dataset identity, seed) defines what the
# checkpoints are: changing it would silently train (and prune towards) another model.
RESUMABLE_PREFIXES = ("train.", "eval.", "init.", "regularizers.")  # the set of regularizers is checked apart
RESUMABLE_KEYS = ("data.root", "data.num_workers", "data.cache_dir", "data.bad_images", "data.train_limit",
                  "data.test_limit", "data.hflip")


def resumable(key: str) -> bool:
    """May config key ``key`` change when a run resumes?"""
    return key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_resume_compatible(cfg: Config, run_dir: Path) -> None:
    """Refuse to resume a run with another method, regularizer set, model or dataset (one line, nothing touched).

    Only runs with a checkpoint are checked; an unreadable config.yaml falls back to the checkpoint's own
    shape checks. Keys in :data:`RESUMABLE_KEYS` / :data:`RESUMABLE_PREFIXES` may change (with a note).
    """
    path = RunDir(run_dir).config
    if find_latest(RunDir(run_dir).checkpoints) is None or not path.is_file():
        return
    try:
        old = read_yaml(path)
    except ConfigError:
        return
    new = to_dict(cfg)
    old_regs = sorted(k for k, v in (old.get("regularizers") or {}).items() if v is not None) \
        if isinstance(old.get("regularizers"), dict) else None
    new_regs = sorted(k for k, v in new["regularizers"].items() if v is not None)
    problems = []
    if "method" in old and old["method"] != new["method"]:
        problems.append(f"method {_short(old['method'])} -> {new['method']!r}")
    if old_regs is not None and old_regs != new_regs:
        problems.append(f"regularizers {old_regs} -> {new_regs}")
    if not problems:
        changed = sorted(k for k in _diff_keys(old, new, present_only=True) if not resumable(k))
        problems = [f"{k} {_short(_get(old, k))} -> {_short(_get(new, k))}" for k in changed[:3]]
        if len(changed) > 3:
            problems.append(f"and {len(changed) - 3} more")
    if problems:
        raise ConfigError(
            f"{run_dir}: cannot resume this run with another method or model ({'; '.join(problems)}); "
            "only train.*, eval.*, init.*, the regularizers' settings and data.root/num_workers/cache_dir/"
            "bad_images/train_limit/test_limit/hflip may change on resume. Use another --run-dir"
        )


def _get(tree: object, key: str) -> object:
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


# --------------------------------------------------------------------------- logging
class MetricsLog:
    """RUN_DIR/metrics.jsonl (+ TensorBoard when available); rank 0 only."""

    def __init__(self, run: RunDir, enabled: bool, tensorboard: bool) -> None:
        self.path = run.metrics
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run.tensorboard))
            except Exception as exc:  # tensorboard missing or broken: keep training, say so
                hint = " (pip install 'nonvae[tensorboard]')" if isinstance(exc, ImportError) else ""
                log.warning("warning: TensorBoard logging disabled (%s)%s", exc, hint)

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

    def __init__(self, cfg: Config, run_dir: str | Path, data: DataBundle | None = None,
                 hooks: Sequence[Hook] | None = None) -> None:
        self.cfg = cfg
        self.hooks = list(default_hooks() if hooks is None else hooks)
        self.run_dir = Path(run_dir)
        self.run = RunDir(self.run_dir)
        self.dist = Dist()
        self.device = pick_device(cfg.train.device, self.dist)
        self.threads = ThreadPolicy(cfg.train.threads)  # re-checked every few seconds in fit()
        self.keeps_memory = cfg.train.keep_memory and keep_freed_memory()
        self.precision = resolve_precision(cfg.train.precision, self.device.type)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for fp32 matmuls and convs (Ampere+)
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True  # the same shapes every step: pick the fastest conv kernels
        self.dist.init(self.device, cfg.train.dist_timeout_s)
        self.lock: RunLock | None = None
        check_training_memory(cfg)  # sizes that cannot fit: one line before anything is created
        if self.dist.is_main:
            check_writable(self.run_dir)
        check_resume_compatible(cfg, self.run_dir)  # before anything is written or pruned
        if self.dist.is_main:
            self.lock = RunLock(self.run_dir)  # released at the end of fit(), or when this process dies
            self.lock.acquire()
        torch.manual_seed(cfg.seed)
        self.data = data or build_data(cfg.data, cfg.seed)
        self.method: Method = build_method(cfg, self.data.shape).to(self.device)
        if self.dist.enabled:  # a forward shared between two players' updates would bypass their DDP wrappers
            for reg in self.method.regularizers.values():
                reg.shares_forward = False
                reg.direct_grads = False
        if cfg.train.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.method.autocast = autocast_for(self.precision, self.device)
        self.method.any_rank = self.dist.any
        self.optimizers = self.method.build_optimizers()
        # each group's configured lr, which train.lr_schedule scales step by step
        self.base_lrs = {n: [g["lr"] for g in o.param_groups] for n, o in self.optimizers.items()}
        # train.ema: the autoencoder's weight average (not a player: no optimizer, no DDP; rank 0 saves it)
        self.ema: torch.nn.Module | None = None
        if cfg.train.ema is not None:
            self.ema = copy.deepcopy(self.method.backbone).requires_grad_(False)
        self.callers = self._wrap_players()
        self.step = 0
        self.log = MetricsLog(self.run, self.dist.is_main, cfg.train.tensorboard)
        self._stop_signal: int | None = None

    # -- players and DDP --------------------------------------------------------------------
    def _wrap_players(self) -> dict[str, torch.nn.Module]:
        """Each player in its own DDP: the autoencoder and every adversary sync separately."""
        players = self.method.players()
        unused = self.unused_parameters() if self.dist.enabled else {}
        wrapped: dict[str, torch.nn.Module] = {}
        for name, module in players.items():
            m = module
            if self.dist.enabled:
                ids = [self.device.index] if self.device.type == "cuda" else None
                find_unused = self.dist.any(bool(unused.get(name)))
                m = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                              find_unused_parameters=find_unused)
            if self.cfg.train.compile:
                m = torch.compile(m)
            wrapped[name] = m
        return wrapped

    def call(self, name: str, *args, **kwargs):
        return self.callers[name](*args, **kwargs)

    def unused_parameters(self) -> dict[str, list[str]]:
        """Per player, the parameters one local training step leaves without a gradient.

        DDP's reducer waits for a gradient of every parameter unless built with
        ``find_unused_parameters`` (a graph walk per forward), so only players that need it get
        it. One step on a throwaway copy of the method finds them without a config switch; the
        global RNG is restored afterwards.
        """
        probe = copy.deepcopy(self.method)
        probe.any_rank = lambda flag: flag
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            torch.manual_seed(step_seed(self.cfg.seed, 0, self.dist.rank))
            batches = Batches(self.data.train, self.cfg.train.batch_size, self.dist.rank, self.dist.world,
                              self.device, self.cfg.train.channels_last, 1, ahead=False)
            probe.train_step(batches.get(0), 0, probe.build_optimizers())
        except NonFiniteError:
            pass  # the gradients computed so far still tell which parameters are used
        finally:
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        return {name: [k for k, p in module.named_parameters() if p.requires_grad and p.grad is None]
                for name, module in probe.players().items()}

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.run.checkpoints

    def _saved_modules(self) -> dict[str, torch.nn.Module]:
        """What a checkpoint holds: every player, and the weight average under train.ema."""
        players = self.method.players()
        return players if self.ema is None else {**players, AUTOENCODER_EMA: self.ema}

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        """ema <- d ema + (1 - d) weights, d = min(train.ema, (1 + step) / (10 + step)) (a short average early on)."""
        decay = min(self.cfg.train.ema, (1 + step) / (10 + step))
        avg, live = self.ema.state_dict(), self.method.backbone.state_dict()
        floats = [k for k, v in avg.items() if v.is_floating_point()]
        torch._foreach_lerp_([avg[k] for k in floats], [live[k] for k in floats], 1.0 - decay)
        for k, v in avg.items():
            if not v.is_floating_point():
                v.copy_(live[k])

    @contextlib.contextmanager
    def averaged_weights(self):
        """Within: the autoencoder holds the train.ema average (nothing changes without train.ema)."""
        if self.ema is None:
            yield
            return
        live = {k: v.clone() for k, v in self.method.backbone.state_dict().items()}
        self.method.backbone.load_state_dict(self.ema.state_dict())
        try:
            yield
        finally:
            self.method.backbone.load_state_dict(live)

    def save(self) -> Path | None:
        """Checkpoint this step; a write failure (disk full...) leaves ``latest`` on the previous one.

        Rank 0 writes; every rank calls this at the same step and returns only once the files are
        complete (or every rank raises, when rank 0 could not write them).
        """
        path, error = None, None
        if self.dist.is_main:
            try:
                path = save_checkpoint(
                    self.ckpt_dir, self.step, self._saved_modules(), self.optimizers,
                    {"seed": self.cfg.seed, "world_size": self.dist.world,
                     "batch_size": self.cfg.train.batch_size},
                    keep=self.cfg.train.keep_checkpoints,
                )
            except OSError as exc:
                error = exc
        if self.dist.any(error is not None):
            reason = (error.strerror or str(error)) if error is not None else "rank 0 could not write it"
            raise TrainingError(
                f"could not write the checkpoint of step {self.step} in {self.ckpt_dir}: "
                f"{reason}; {self._last_good()}. {what_to_do(error)}"
            ) from None
        return path

    def _last_good(self) -> str:
        latest = find_latest(self.ckpt_dir)
        return f"the last good checkpoint is {latest}" if latest else "no checkpoint was written"

    def resume_or_init(self) -> None:
        latest = find_latest(self.ckpt_dir)
        if latest is not None:
            keys = ("lr", "fused", "foreach")
            configured = {n: [{k: g.get(k) for k in keys} for g in o.param_groups]
                          for n, o in self.optimizers.items()}
            saved = read_state(latest).get("optimizers", {})
            for name, opt in self.optimizers.items():  # load with the saved kernel flags, then switch
                for group, old in zip(opt.param_groups, (saved.get(name) or {}).get("param_groups") or [],
                                      strict=False):
                    group.update({k: old[k] for k in keys[1:] if k in old and k in group})
            state = load_checkpoint(latest, self._saved_modules(), self.optimizers,
                                    self.method.updates_per_step())
            for name, opt in self.optimizers.items():  # the config, not the checkpoint, sets lr and kernel
                for group, conf in zip(opt.param_groups, configured[name], strict=True):
                    group.update(conf)
                    for p in group["params"]:
                        st = opt.state.get(p, {})
                        for key, value in st.items():
                            if not isinstance(value, torch.Tensor):
                                continue
                            if key == "step":  # fused Adam keeps its step counter beside the parameter
                                st[key] = (value.to(p.device, torch.float32) if conf["fused"]
                                           else value.to("cpu"))
                            elif value.shape == p.shape and value.stride() != p.stride():
                                # checkpoints store NCHW; fused Adam walks memory linearly, so moments must
                                # share the parameter's layout (channels_last) or updates silently go wrong
                                st[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
            self.step = int(state["step"])
            self.log.truncate_after(self.step)
            if self.dist.is_main:
                log.info("resuming from %s (step %d)", latest, self.step)
                old_world = int(state.get("world_size", 1))
                old_batch = int(state.get("batch_size", self.cfg.train.batch_size))
                old, new = old_world * old_batch, self.dist.world * self.cfg.train.batch_size
                if old != new:
                    log.warning(f"note: the global batch changes from {old} ({old_world} x {old_batch}) to {new} "
                                f"({self.dist.world} x {self.cfg.train.batch_size}) at step {self.step}; "
                                f"train.batch_size={old // self.dist.world} keeps it")
        elif self.cfg.init.required and not self.cfg.init.from_:
            raise ConfigError("config key 'init.from': this config fine-tunes a trained run; "
                              "pass --set init.from=RUN_DIR")
        elif self.cfg.init.from_:
            from nonvae.pipeline import checkpoint_dir_of

            src = checkpoint_dir_of(self.cfg.init.from_)
            players = self.method.players()
            available = set(read_state(src).get("players", []))
            load_checkpoint(src, {n: m for n, m in players.items() if n in available})
            if self.dist.is_main:
                log.info("initialised %s from %s", sorted(available & set(players)), src)
            if self.ema is not None:  # the average starts from the initial weights
                self.ema.load_state_dict(self.method.backbone.state_dict())

    def write_config(self) -> None:
        if not self.dist.is_main:
            return
        path = self.run.config
        if path.exists():
            try:
                # normalised (stored: older files carry more keys)
                old = to_dict(from_dict(Config, read_yaml(path), stored=True))
            except ConfigError as exc:  # e.g. written by an older version: the new config replaces it
                log.warning("note: replacing unreadable %s (%s)", path, exc)
                old = {}
            new = to_dict(self.cfg)
            changed = sorted(_diff_keys(old, new))
            if changed:
                log.warning("note: config changed since this run started: %s", ", ".join(changed))
        dump_config(self.cfg, path)

    # -- signals ----------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_signal = signum

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``train.steps``; the run directory's lock is released on every exit path."""
        try:
            return self._fit()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _set_lr(self, step: int) -> None:
        t = self.cfg.train
        if t.lr_schedule == "constant" and t.lr_warmup_steps == 0:
            return
        factor = lr_factor(step, t.steps, t.lr_schedule, t.lr_warmup_steps)
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self.base_lrs[name], strict=True):
                group["lr"] = base * factor

    def _fit(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        self.resume_or_init()  # first: a checkpoint that does not fit must not overwrite config.yaml
        low, high = self.dist.spread(self.step)
        if low != high:
            raise TrainingError(
                f"ranks resumed from different steps ({low} .. {high}): the run directory {self.run_dir} "
                "must be one folder that every node sees (shared storage)"
            )
        self.write_config()
        if self.dist.is_main:  # the automatic choices, said once, after a resume has been accepted
            # (docs/distributed.md, "Speed settings"); before it, a refused resume stays one line
            log.info("precision %s%s, channels_last %s, threads %s", self.precision,
                     " (auto)" if t.precision == "auto" else "", t.channels_last, self.threads.describe())
        batches = Batches(self.data.train, t.batch_size, self.dist.rank, self.dist.world, self.device,
                          t.channels_last, t.steps)
        old_handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):  # on every rank: all stop at the same step
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
                    if self.dist.any(self._stop_signal is not None):  # every rank stops at the same step
                        self._interrupted()
                    step = self.step
                    self.threads.update()
                    torch.manual_seed(step_seed(cfg.seed, step, self.dist.rank))
                    batch = batches.get(step)
                    self._set_lr(step)
                    images = len(batch["x"]) * self.dist.world  # two-domain batches hold 2 x batch_size
                    logs: dict | None = None
                    try:
                        logs = self.method.train_step(batch, step, self.optimizers, self.call)
                    except NonFiniteError as exc:
                        if t.nonfinite != "skip":
                            raise TrainingError(
                                f"{exc}; {self._last_good()}. "
                                "Lower train.lr, set train.grad_clip, or train.nonfinite=skip"
                            ) from None
                        self.log.write(step, {"skipped": 1.0, "reason": str(exc)}, kind="nonfinite")
                    if self.ema is not None and logs is not None:
                        self._update_ema(step)
                    self.step += 1
                    if bar is not None:
                        bar.update(1)
                    if logs is not None:
                        last_logs = logs
                        if bar is not None:
                            bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
                    # a skipped step still saves, samples and evaluates on schedule: skipping the update
                    # must never skip a due (or the final) checkpoint
                    if logs is not None and (self.step % t.log_every == 0 or self.step == t.steps):
                        elapsed = time.time() - started
                        rate = (self.step - started_step) / max(elapsed, 1e-9)
                        self.log.write(self.step, {**logs, "steps_per_s": rate,
                                                   "images_per_s": rate * images,
                                                   "threads": self.threads.threads})
                    if self.step % t.checkpoint_every == 0 or self.step == t.steps:
                        self.save()
                    if self.step % t.sample_every == 0 or self.step == t.steps:
                        with self.averaged_weights():
                            self.emit("sample")
                    if self.step % t.eval_every == 0 and self.step < t.steps:
                        with self.averaged_weights():
                            self.emit("eval")
        except OSError as exc:  # disk full / I/O error writing metrics or samples: one clear line
            raise TrainingError(
                f"{exc.filename or self.run_dir}: {exc.strerror or exc}; {self._last_good()}. {what_to_do(exc)}"
            ) from None
        finally:
            batches.close()
            if bar is not None:
                bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            failing = sys.exc_info()[1] is not None
            try:
                self.log.close()
            except OSError as exc:  # flushing TensorBoard on a full disk: never mask the error already raised
                if not failing:
                    raise TrainingError(f"{exc.filename or self.run_dir / 'tensorboard'}: {exc.strerror or exc}; "
                                        f"{self._last_good()}. {what_to_do(exc)}") from None
        if self.ema is not None:  # from here on the method is the averaged model (as nonvae.load gives it)
            self.method.backbone.load_state_dict(self.ema.state_dict())
        self.emit("end")
        self.dist.barrier()
        return last_logs

    def _interrupted(self) -> None:
        latest = find_latest(self.ckpt_dir) if self.dist.is_main else None
        unsaved = self.dist.is_main and (latest is None or read_state(latest).get("step") != self.step)
        if self.dist.any(unsaved):  # not saved by the schedule already; rank 0 decides for all
            self.save()
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "signal"
        raise KeyboardInterrupt(
            f"{name}: saved step {self.step} to {self.ckpt_dir / 'latest'}; run the same command again to resume"
        )

    # -- hooks: pictures, evaluation, report --------------------------------------------------
    def emit(self, event: str) -> None:
        """Call every hook with ``event`` ('sample', 'eval', 'end'; see nonvae.hooks), on rank 0 only."""
        if not self.dist.is_main:
            return
        for hook in self.hooks:
            hook(self, event)


def _diff_keys(old, new, prefix: str = "", present_only: bool = False) -> set[str]:
    """Dotted keys whose values differ; ``present_only``: ignore keys missing on either side."""
    out: set[str] = set()
    if isinstance(old, dict) and isinstance(new, dict):
        for key in (set(old) & set(new)) if present_only else (set(old) | set(new)):
            out |= _diff_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key), present_only)
    elif old != new:
        out.add(prefix)
    return out


def train(cfg: Config, run_dir: str | Path) -> Trainer:
    """Train (or resume) the run in ``run_dir``; returns the trainer with the trained method."""
    trainer = Trainer(cfg, run_dir)
    try:
        trainer.fit()
    finally:
        if trainer.lock is not None:
            trainer.lock.release()
        if trainer.dist.active:
            # DDP wrappers hold the process group: release them first, then leave the group on every
            # exit path (a process that exits with gloo work alive can abort at interpreter shutdown)
            trainer.callers = {name: module for name, module in trainer.method.players().items()}
            torch.distributed.destroy_process_group()
    return trainer


__all__ = ["Trainer", "train", "step_seed", "AUTOENCODER", "NonvaeError"]
