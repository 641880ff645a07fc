"""Training throughput: nonvae's defaults against a straightforward port, alone and next to a busy process.

The default command (one command, a few minutes on 2 cores) prints and writes to --out:

- per config (lines/acai and attributes/disentangle at 32 px, celeba/disentangle at 128 px): images/s
  of the default config on the real trainer path (``Trainer`` + ``Method.train_step``: thread policy,
  precision auto, channels_last, fused Adam, kept memory) against ``benchmarks/port.py`` (a plain
  eager fp32 loop of the same networks and losses, no nonvae code, in a process of its own with the
  allocator's defaults), alternating windows of about 3 s (--window-seconds) on the same synthetic batch and at the
  same thread count; the ratio also in CPU seconds (robust to other processes' load); model GFLOP per
  image (``torch.utils.flop_counter``; the same for both) and the achieved FLOP/s as a share of the
  2048x2048 matmul rate in the dtype in use, measured right after;
- lines/acai with one busy neighbour process (started and stopped by the benchmark), for the
  default thread policy and for torch's default (all cores, spinning OpenMP waits).

The 1-minute load average is recorded next to every row: on a shared machine only ratios measured
in the same run, alternating, are comparable.

    python benchmarks/throughput.py --out results/throughput.json
    python benchmarks/throughput.py --table --threads 1 --out results/throughput_table.json  # per setting
    python benchmarks/throughput.py --table --configs none --no-data --eval-scale 200  # 60k probe, fp32/bf16
    python benchmarks/throughput.py --table --quality-steps 2000 --configs none --threads 1  # bf16 quality

``--table`` is the older per-setting table (each speed setting switched on alone from plain eager
fp32, every config, 32 and 128 px, memory, the data pipeline, evaluation at scale, optionally a
fp32-vs-bf16 lines run): best of several windows, one subprocess per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "src" / "nonvae" / "configs"  # the built-in configs ship inside the package
# the user's own OpenMP wait settings, read before a child sets nonvae's (the port runs with the user's, like a script)
OMP_WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
USER_OMP_WAIT = {k: os.environ[k] for k in OMP_WAIT_KEYS if k in os.environ}
ALL_CONFIGS = [
    "lines/ae", "lines/acai", "fashion_mnist/ae", "fashion_mnist/ltae_s", "fashion_mnist/ae_augment",
    "attributes/disentangle", "celeba/disentangle",
]
QUICK_CONFIGS = ["lines/ae", "lines/acai", "fashion_mnist/ae", "celeba/disentangle"]
PLAIN = {"train.fused_adam": False, "train.precision": "fp32", "train.channels_last": False,
         "train.compile": False, "train.keep_memory": False}
# name -> (config overrides on top of PLAIN, extra environment); "cores" = every usable core
SPINNING = {"torch default threads"}  # run without the short OpenMP waits the nonvae command sets
VARIANTS: dict[str, tuple[dict, dict]] = {
    "eager fp32": ({}, {}),
    "channels_last": ({"train.channels_last": True}, {}),
    "bf16": ({"train.precision": "bf16"}, {}),
    "bf16 + channels_last": ({"train.precision": "bf16", "train.channels_last": True}, {}),
    "fused Adam": ({"train.fused_adam": True}, {}),
    "keep memory": ({"train.keep_memory": True}, {}),
    "fused + bf16 + channels_last": ({"train.fused_adam": True, "train.precision": "bf16",
                                      "train.channels_last": True}, {}),
    "torch default threads": ({"train.threads": "cores"}, {}),  # every core, spinning OpenMP waits
    "default threads + OMP_WAIT_POLICY=PASSIVE": ({"train.threads": "cores"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "auto threads (the default policy)": ({"train.threads": None}, {}),
    "threads=1": ({"train.threads": 1}, {}),
    "torch.compile": ({"train.compile": True}, {}),
}
QUICK_VARIANTS = ["eager fp32", "channels_last", "bf16 + channels_last", "fused Adam",
                  "fused + bf16 + channels_last", "torch default threads"]
FULL_128 = ["eager fp32", "channels_last", "bf16", "bf16 + channels_last", "fused Adam",
            "fused + bf16 + channels_last"]
COMPILE_CONFIGS = ["lines/acai"]  # torch.compile costs minutes per model on 2 cores: one config, 32 px


# --------------------------------------------------------------------------- helpers (child side)
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype_name: str, device_name: str, seconds: float = 1.0, n: int = 2048) -> float:
    """FLOP/s of an n x n matmul loop in ``dtype`` (best of 3 windows)."""
    import torch

    device = torch.device(device_name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # what the trainer uses for fp32
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while True:
            a @ b
            count += 1
            if count % 4 == 0:
                _sync(device)
                if time.perf_counter() - start > seconds / 3:
                    break
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best


def _kv(key: str, value) -> str:
    """A --set override; None is YAML's null."""
    return f"{key}={'null' if value is None else value}"


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class FixedBatch:
    """The same synthetic batch every step: the model's speed, not the data pipeline's."""

    def __init__(self, batch: dict) -> None:
        self._batch = batch
        self.shape = tuple(batch["x"].shape[1:])

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict:
        return self._batch


def synthetic_bundle(cfg, batch_size: int):
    """A DataBundle of random images shaped as the config's data (two-domain: batch_size of each)."""
    import torch

    from nonvae.data import DataBundle, ImageSet

    c, s = cfg.data.channels, cfg.data.image_size
    two_domain = cfg.data.name in ("attributes", "domains")
    n = 2 * batch_size if two_domain else batch_size
    g = torch.Generator().manual_seed(0)
    batch = {"x": torch.rand(n, c, s, s, generator=g) * 2 - 1}
    if two_domain:
        batch["domain"] = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)])
    test = ImageSet(torch.zeros(4, c, s, s, dtype=torch.uint8), name="synthetic")
    return DataBundle("synthetic", FixedBatch(batch), test, None, (c, s, s)), n


def child_train(spec: dict) -> dict:
    """Time one (config, size, variant) in this fresh process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nonvae.config import load_config
    from nonvae.train import Batches, Trainer

    overrides = {**PLAIN, **spec["overrides"], "data.image_size": spec["size"],
                 "train.batch_size": spec["batch"], "train.device": spec["device"],
                 "train.progress": False, "train.tensorboard": False, "train.report": False}
    cfg = load_config(CONFIGS / f"{spec['config']}.yaml", [_kv(k, v) for k, v in overrides.items()])
    bundle, images = synthetic_bundle(cfg, spec["batch"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, data=bundle)
    device = trainer.device
    batch = Batches(bundle.train, spec["batch"], 0, 1, device, cfg.train.channels_last, 1, ahead=False).get(0)
    method = trainer.method.train()
    dtype = "bf16" if cfg.train.precision == "bf16" else "fp32"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_built = _maxrss_mb()

    step = 0

    def run(n: int) -> float:
        nonlocal step
        _sync(device)
        start = time.perf_counter()
        for _ in range(n):
            trainer.threads.update()
            method.train_step(batch, step, trainer.optimizers, trainer.call)
            step += 1
        _sync(device)
        return time.perf_counter() - start

    warm_seconds = run(spec["warmup"])
    windows = [run(spec["steps"]) / spec["steps"] for _ in range(spec["windows"])]
    with FlopCounterMode(display=False) as counter:  # eager modules: compiled graphs hide their ops
        method.train_step(batch, step, trainer.optimizers)
    flops = counter.get_total_flops()
    peak_rss = _maxrss_mb()
    matmul = matmul_rate(dtype, str(device))  # same process and threads, right after the steps
    out = {
        "images_per_step": images,
        "step_seconds_best": min(windows),
        "step_seconds_median": statistics.median(windows),
        "images_per_s": images / min(windows),
        "images_per_s_median": images / statistics.median(windows),
        "warmup_seconds": warm_seconds,
        "gflop_per_image": flops / images / 1e9,
        "achieved_gflop_per_s": flops / min(windows) / 1e9,
        "threads": torch.get_num_threads(),
        "dtype": dtype,
        "matmul_gflop_per_s": matmul / 1e9,
        "utilization": flops / min(windows) / matmul,
    }
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        out["peak_mb"] = peak_rss
        out["step_mb"] = peak_rss - rss_built
    return out


def _setup_default(spec: dict):
    """The real trainer path at the config's defaults on a synthetic batch: (trainer, batch, images)."""
    from nonvae.config import load_config
    from nonvae.train import Batches, Trainer

    overrides = {"data.image_size": spec["size"], "train.batch_size": spec["batch"],
                 "train.device": spec["device"], "train.progress": False, "train.tensorboard": False,
                 "train.report": False, **spec.get("overrides", {})}
    cfg = load_config(CONFIGS / f"{spec['config']}.yaml", [_kv(k, v) for k, v in overrides.items()])
    bundle, images = synthetic_bundle(cfg, spec["batch"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, data=bundle)
    batch = Batches(bundle.train, spec["batch"], 0, 1, trainer.device, cfg.train.channels_last, 1,
                    ahead=False).get(0)
    trainer.method.train()
    return trainer, batch, images, bundle


class DefaultSteps:
    """The real trainer's step on one batch as a callable (thread policy updated first); ``step`` counts calls."""

    def __init__(self, trainer, batch: dict) -> None:
        self.trainer, self.batch, self.step = trainer, batch, 0

    def __call__(self) -> None:
        trainer = self.trainer
        trainer.threads.update()
        trainer.method.train_step(self.batch, self.step, trainer.optimizers, trainer.call)
        self.step += 1


def _window(step_fn, max_steps: int, max_seconds: float, device) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds of up to ``max_steps`` steps, stopping after ``max_seconds`` (at least one).

    CPU seconds (all our threads) barely move with other processes' load: at one thread they are what
    the step costs on a quiet core, which makes them the load-robust number on a shared machine.
    """
    times: list[tuple[float, float]] = []
    start = time.perf_counter()
    while len(times) < max_steps and (not times or time.perf_counter() - start < max_seconds):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        step_fn()
        _sync(device)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def _median(windows: list, index: int) -> float:
    return statistics.median(t[index] for w in windows for t in w)


def child_port(spec: dict) -> dict:
    """The port in a process of its own, timing windows on request (one JSON line per command on stdin).

    Its own process, because nonvae's trainer changes process-wide state that a user's script would
    not have (``train.keep_memory``: glibc malloc keeps freed memory); the port runs with the
    allocator's defaults, as an afternoon's script does.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nonvae.config import load_config

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from port import build_port

    device = torch.device(spec["device"])
    cfg = load_config(CONFIGS / f"{spec['config']}.yaml", [f"data.image_size={spec['size']}"])
    bundle, _ = synthetic_bundle(cfg, spec["batch"])
    torch.manual_seed(0)
    port = build_port(spec["config"], spec["size"], spec.get("recipe", "shipped"))
    for m in vars(port).values():
        if isinstance(m, torch.nn.Module):
            m.to(device)
    raw = {k: v.to(device) for k, v in bundle.train.batch(0, spec["batch"]).items()}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        torch.set_num_threads(cmd.get("threads", torch.get_num_threads()))
        if cmd["do"] == "window":
            answer: object = _window(lambda: port.step(raw), cmd["steps"], cmd["max_seconds"], device)
        elif cmd["do"] == "flops":
            with FlopCounterMode(display=False) as counter:
                port.step(raw)
            answer = counter.get_total_flops()
        else:
            break
        print(json.dumps(answer), flush=True)
    return {}


class PortProcess:
    """``child_port`` in a subprocess; ``window`` runs there while this process waits."""

    def __init__(self, spec: dict) -> None:
        # torch's defaults, as an afternoon's script runs: not the OpenMP waits nonvae's child set for itself
        env = {k: v for k, v in os.environ.items() if k not in OMP_WAIT_KEYS}
        env.update(USER_OMP_WAIT, PYTHONPATH=str(REPO / "src"))
        spec = {**spec, "spin": True}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "port", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._answer()

    def _answer(self):
        for line in self.proc.stdout:
            if line.startswith(("{", "[")) or line.strip().lstrip("-").isdigit():
                return json.loads(line)
        raise RuntimeError("the port process ended early")

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def cpu_seconds(self) -> float:
        """The port process's CPU time so far (Linux; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        try:
            self.ask(do="quit")
        except (OSError, RuntimeError, ValueError):
            pass
        self.proc.kill()
        self.proc.wait()


def child_headline(spec: dict) -> dict:
    """nonvae's default config against the straightforward port (benchmarks/port.py), interleaved.

    The default runs here (the real trainer path), the port in a subprocess of its own (see
    ``child_port``) on the same synthetic batch; they alternate windows of a few seconds, so a change of
    load hits both, and the port always runs at the thread count the default's policy picks at that
    moment (the policy's own effect is the "under load" measurement; it counts the port process's CPU
    as ours, not as a neighbour's).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    trainer, batch, images, bundle = _setup_default(spec)
    device, method, policy = trainer.device, trainer.method, trainer.threads
    port = PortProcess({k: spec[k] for k in ("config", "size", "batch", "device", "recipe") if k in spec})
    read = policy._read
    policy._read = lambda: (lambda s: (s[0], s[1] + port.cpu_seconds(), s[2]))(read())
    policy._sample = policy._read()
    default_step = DefaultSteps(trainer, batch)

    def port_window(steps: int, seconds: float) -> list:
        policy.update()
        return [tuple(t) for t in port.ask(do="window", steps=steps, max_seconds=seconds,
                                           threads=torch.get_num_threads())]

    try:
        port_window(spec["warmup"], 1e9)
        for _ in range(spec["warmup"]):
            default_step()
        rounds = []
        for _ in range(spec["rounds"]):
            p = port_window(spec["steps"], spec["max_seconds"])
            d = _window(default_step, spec["steps"], spec["max_seconds"], device)
            rounds.append({"port": p, "default": d, "threads": torch.get_num_threads()})
        flops_port = port.ask(do="flops", threads=torch.get_num_threads())
    finally:
        port.close()
    with FlopCounterMode(display=False) as counter:
        method.train_step(batch, default_step.step, trainer.optimizers)
    flops_default = counter.get_total_flops()
    policy.update()
    port_s, default_s = _median([r["port"] for r in rounds], 0), _median([r["default"] for r in rounds], 0)
    port_cpu, default_cpu = _median([r["port"] for r in rounds], 1), _median([r["default"] for r in rounds], 1)
    dtype = trainer.precision
    rates = {d: matmul_rate(d, str(device), seconds=0.6) for d in ("fp32", "bf16")}
    return {
        "images_per_step": images, "precision": dtype, "channels_last": trainer.cfg.train.channels_last,
        "keep_memory": trainer.keeps_memory, "threads": [r["threads"] for r in rounds], "rounds": rounds,
        "port_images_per_s": images / port_s, "default_images_per_s": images / default_s,
        "ratio": port_s / default_s,
        "ratio_per_round": [_median([r["port"]], 0) / _median([r["default"]], 0) for r in rounds],
        "port_images_per_cpu_s": images / port_cpu, "default_images_per_cpu_s": images / default_cpu,
        "ratio_cpu": port_cpu / default_cpu,
        "gflop_per_image_default": flops_default / images / 1e9, "gflop_per_image_port": flops_port / images / 1e9,
        "matmul_gflop_per_s": {d: r / 1e9 for d, r in rates.items()},
        "utilization_default": flops_default / default_s / rates[dtype],
        "utilization_port": flops_port / port_s / rates["fp32"],
    }


def _busy() -> subprocess.Popen:
    """A CPU-bound neighbour: one core's worth of pure Python spinning."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def child_load(spec: dict) -> dict:
    """Training speed with and without one busy neighbour process, alternating (default config unless
    ``overrides`` pin something). Before each timed window the steps run for ``settle`` seconds, so the
    thread policy has seen the new load, as it would a few seconds into a real run."""
    import torch

    trainer, batch, images, _ = _setup_default(spec)
    device, policy = trainer.device, trainer.threads
    default_step = DefaultSteps(trainer, batch)

    for _ in range(spec["warmup"]):
        default_step()
    out: dict = {"quiet": [], "busy": [], "threads_quiet": [], "threads_busy": []}
    for _ in range(spec["rounds"]):
        for phase in ("quiet", "busy"):
            busy = _busy() if phase == "busy" else None
            try:
                _window(default_step, 10**6, spec["settle"], device)
                out[phase] += _window(default_step, spec["steps"], spec["max_seconds"], device)
                out[f"threads_{phase}"].append(torch.get_num_threads())
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    quiet, loaded = _median([out["quiet"]], 0), _median([out["busy"]], 0)
    return {**out, "images_per_step": images, "quiet_images_per_s": images / quiet,
            "busy_images_per_s": images / loaded, "busy_over_quiet": quiet / loaded,
            "policy": policy.describe(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def child_data(spec: dict) -> dict:
    """Images/s of the data pipeline alone (one batch of 64 per call, step-indexed as in training)."""
    import torch

    from nonvae.data import ArrayStream, ImageSet

    sources = {}
    from nonvae.data.lines import LinesStream

    sources["lines 32 px (LinesStream, rendered)"] = (LinesStream(32, 0), 64)
    try:
        from nonvae.data.idx import load_fashion_mnist

        fashion = ArrayStream(load_fashion_mnist(split="train"), 0)
        sources["Fashion-MNIST 32 px (ArrayStream, uint8)"] = (fashion, 64)
    except Exception as exc:  # noqa: BLE001 - dataset not installed here
        print(f"skipping Fashion-MNIST: {exc}", file=sys.stderr)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2048, 3, 128, 128), dtype=torch.uint8, generator=g)
    sources["synthetic 128 px RGB (ArrayStream, uint8)"] = (ArrayStream(ImageSet(images), 0), 64)
    try:
        from nonvae.data import build_data
        from nonvae.data.attributes import AttributesData

        bundle = build_data(AttributesData(name="attributes", image_size=32, channels=1, train_limit=4096), 0)
        sources["attributes 32 px two-domain (32 + 32)"] = (bundle.train, 32)
    except Exception as exc:  # noqa: BLE001
        print(f"skipping attributes: {exc}", file=sys.stderr)
    out = {}
    for name, (source, batch) in sources.items():
        source.batch(0, batch)
        best, step = float("inf"), 1
        for _ in range(spec["windows"]):
            start = time.perf_counter()
            for _ in range(spec["calls"]):
                n = len(source.batch(step, batch)["x"])
                step += 1
            best = min(best, (time.perf_counter() - start) / spec["calls"])
        out[name] = {"images_per_s": n / best, "batch_images": n}
    return out


def child_quality(spec: dict) -> dict:
    """Train lines for a fixed budget at the given precision and score it like ``nonvae eval``."""
    import torch

    from nonvae.config import load_config
    from nonvae.data import build_data
    from nonvae.evaluate.run import evaluate
    from nonvae.train import train

    steps = spec["steps"]
    overrides = [f"train.precision={spec['precision']}", f"train.channels_last={spec['channels_last']}",
                 f"train.steps={steps}", "train.lr=1e-3", "train.log_every=100",
                 f"train.eval_every={steps + 1}", f"train.checkpoint_every={steps}",
                 "train.sample_every=100000000", "train.progress=false", "train.tensorboard=false",
                 "train.report=false", "train.device=cpu", _kv("train.threads", spec.get("threads")),
                 *spec.get("set", [])]
    cfg = load_config(CONFIGS / f"{spec['config']}.yaml", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        trainer = train(cfg, Path(tmp) / "run")
        seconds = time.time() - start
        method = trainer.method.eval()
        with torch.no_grad():
            metrics = evaluate(method, build_data(cfg.data, cfg.seed), cfg, trainer.device)
    return {"train_seconds": seconds, **metrics}


def child_eval(spec: dict) -> dict:
    """Evaluation at scale: encode the 60,000 Fashion-MNIST training images and fit the linear probe."""
    import torch

    from nonvae.config import load_config
    from nonvae.data import build_data
    from nonvae.evaluate.probe import linear_probe
    from nonvae.evaluate.run import encode_all
    from nonvae.train import train

    steps = spec["train_steps"]
    cfg = load_config(CONFIGS / "fashion_mnist" / "ae.yaml", [
        f"train.steps={steps}", "train.lr=1e-3", f"train.eval_every={steps + 1}",
        f"train.checkpoint_every={steps}", "train.sample_every=100000000", "train.progress=false",
        "train.tensorboard=false", "train.report=false", "train.device=cpu",
        _kv("train.threads", spec.get("threads"))])
    data = build_data(cfg.data, cfg.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = train(cfg, Path(tmp) / "run") if steps else None
    train_seconds = time.perf_counter() - start
    method = trainer.method if trainer else None
    if method is None:
        from nonvae.methods import build_method

        method = build_method(cfg, data.shape)
    method.eval()
    device = torch.device("cpu")
    out = {"train_steps": steps, "train_seconds": train_seconds, "threads": torch.get_num_threads(),
           "by_precision": {}}
    for precision in ("fp32", "bf16"):  # eval.precision: the same model, encoded both ways
        start = time.perf_counter()
        z_train, _ = encode_all(method, data.train_set, device, cfg.eval.batch_size, recon=False,
                                precision=precision)  # as evaluate()
        encode_train = time.perf_counter() - start
        start = time.perf_counter()
        z_test, mse = encode_all(method, data.test, device, cfg.eval.batch_size, precision=precision)
        encode_test = time.perf_counter() - start
        start = time.perf_counter()
        probe = linear_probe(z_train, data.train_set.labels.numpy(), z_test, data.test.labels.numpy())
        probe_seconds = time.perf_counter() - start
        out["latents"] = list(z_train.shape)
        out["by_precision"][precision] = {
            "encode_train_seconds": encode_train, "encode_test_seconds": encode_test,
            "probe_seconds": probe_seconds, "total_seconds": encode_train + encode_test + probe_seconds,
            "recon/mse": mse, **probe}
    return out


# --------------------------------------------------------------------------- parent side
def run_child(kind: str, spec: dict, env_extra: dict, timeout: float) -> dict:
    env = {**os.environ, **env_extra, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:300]}
    return json.loads(lines[-1])


def machine(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def fmt(v, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(result: dict) -> str:
    m, rates = result["machine"], result["matmul_gflop_per_s"]
    lines = [f"Machine: {m.get('gpu') or m['cpu']}, {m['cores']} cores, torch {m['torch']} "
             f"(default {m['torch_threads']} threads); load average {result['loadavg_before'][0]:.1f} "
             f"before, {result['loadavg_after'][0]:.1f} after.",
             f"Matmul 2048x2048 in this run: fp32 {rates['fp32']:.0f} GFLOP/s, "
             f"bf16 {rates['bf16']:.0f} GFLOP/s.",
             f"Variants run with {result['threads_label']}; utilisation = achieved model FLOP/s / the "
             "2048x2048 matmul rate in the dtype in use, measured in the same process right after.",
             "", "| config | px | images/step | variant | images/s | × eager fp32 | GFLOP/image "
             "| % of matmul rate (dtype) | peak MB (step +MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        r = row["result"]
        images = r.get("images_per_step", row["batch"])
        head = f"| {row['config']} | {row['size']} | {images} | {row['variant']} |"
        if "error" in r:
            lines.append(f"{head} error: {r['error'][:90]} | | | | |")
            continue
        util = 100 * r["utilization"]
        mem = f"{r['peak_mb']:.0f}" + (f" (+{r['step_mb']:.0f})" if "step_mb" in r else "")
        lines.append(f"{head} {r['images_per_s']:.0f} | {fmt(row.get('ratio'), '.2f')} | "
                     f"{r['gflop_per_image']:.3f} | {util:.0f}% ({r['dtype']}) | {mem} |")
    if result.get("data"):
        lines += ["", "| data pipeline alone | images/s |", "|---|---|"]
        for name, r in result["data"].items():
            lines.append(f"| {name} | {r['images_per_s']:.0f} |")
    ev = result.get("eval_scale")
    if ev and "error" not in ev:
        lines += ["", f"Evaluation at scale (Fashion-MNIST AE after {ev['train_steps']} steps, "
                  f"{ev['latents'][0]} x {ev['latents'][1]} training latents, {ev['threads']} thread(s)):", "",
                  "| eval.precision | encode 60k train (s) | encode + decode 10k test (s) | linear probe (s) "
                  "| total (s) | probe accuracy | recon MSE |", "|---|---|---|---|---|---|---|"]
        for precision, r in ev["by_precision"].items():
            lines.append(f"| {precision} | {r['encode_train_seconds']:.1f} | {r['encode_test_seconds']:.1f} | "
                         f"{r['probe_seconds']:.1f} | {r['total_seconds']:.1f} | {r['probe/accuracy']:.3f} | "
                         f"{r['recon/mse']:.4f} |")
    if result.get("quality"):
        lines += ["", f"bf16 quality check: {result['quality_steps']} steps, batch 64, lr 1e-3 (per seed, "
                  "the same data and initialisation for both precisions):", "",
                  "| config | seed | precision | recon MSE | Mean Distance (×10⁻³) | Smoothness | train s |",
                  "|---|---|---|---|---|---|---|"]
        for row in result["quality"]:
            q = row["result"]
            if "error" in q:
                lines.append(f"| {row['config']} | {row.get('seed', 0)} | {row['precision']} | "
                             f"error: {q['error'][:80]} | | | |")
                continue
            md = q.get("lines/mean_distance")
            lines.append(f"| {row['config']} | {row.get('seed', 0)} | {row['precision']} | "
                         f"{q['recon/mse']:.4f} | "
                         f"{fmt(None if md is None else md * 1e3, '.2f')} | "
                         f"{fmt(q.get('lines/smoothness'), '.3f')} | {q['train_seconds']:.0f} |")
    return "\n".join(lines)


# The shipped attributes config does more work per step than Press et al.'s loss (5 discriminator updates,
# zero_b, the attribute cycle, the image critic); the port trains the same recipe as the row's nonvae side
# (port.RECIPES, checked term by term in tests/test_port.py with these very overrides): as shipped, and both with
# Press et al.'s loss alone.
ATTRIBUTES_PORT_LOSS = {"regularizers.domain.disc_steps": 1, "regularizers.domain.zero_b": 0.0,
                        "regularizers.domain.attribute_cycle": 0.0, "regularizers.domain.image_gan": 0.0}
# (config, px, batch per domain, overrides, the port's recipe): the defaults, and lines/acai with bf16 switched
# on (its config keeps fp32 for quality, see configs/lines/acai.yaml) to show what bf16 would buy
HEADLINE = [("lines/acai", 32, 64, {}, "shipped"), ("lines/acai", 32, 64, {"train.precision": "bf16"}, "shipped"),
            ("attributes/disentangle", 32, 32, ATTRIBUTES_PORT_LOSS, "official"),
            ("attributes/disentangle", 32, 32, {}, "shipped"), ("celeba/disentangle", 128, 8, {}, "shipped")]
HEADLINE_GPU_BATCH_128 = 32


def _uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def headline(args: argparse.Namespace, device: str) -> int:
    """The default command: port vs default per config, then the busy-neighbour rows; < 5 min on 2 cores."""
    started = time.time()
    argv = sys.argv[1:]
    result: dict = {"command": " ".join(["python benchmarks/throughput.py", *argv]), "machine": machine(device),
                    "loadavg_before": list(os.getloadavg()), "rows": [], "load": []}
    for config, size, batch, overrides, recipe in HEADLINE:
        if size > 32 and args.no_128:
            continue
        if args.only and config not in args.only:
            continue
        if size > 32 and device.startswith("cuda"):
            batch = HEADLINE_GPU_BATCH_128
        # windows of a few seconds: with windows of 2-3 steps the port ran up to 30% slower than alone (the cost of
        # switching processes, not of training), which put lines/acai at 2.16x instead of the 1.5-1.6x of
        # continuous runs (README, throughput)
        steps = args.steps or 10**6
        spec = {"config": config, "size": size, "batch": batch, "device": device, "warmup": args.warmup,
                "rounds": args.rounds, "steps": steps, "max_seconds": args.window_seconds, "overrides": overrides,
                "recipe": recipe}
        before = _uptime()
        r = run_child("headline", spec, {}, args.timeout)
        row = {"config": config, "size": size, "batch": batch, "overrides": overrides, "port_recipe": recipe,
               "uptime_before": before, "uptime_after": _uptime(), "result": r}
        result["rows"].append(row)
        shown = r.get("error") or (f"port {r['port_images_per_s']:.0f} img/s, default "
                                   f"{r['default_images_per_s']:.0f} img/s, x{r['ratio']:.2f}")
        print(f"{config:24s} {size:4d} px {overrides or ''} {shown}  ({before})", file=sys.stderr)
    if not args.no_load and not device.startswith("cuda"):
        from nonvae.threads import usable_cores

        cores = usable_cores()
        # (name, overrides, spinning OpenMP, rounds, settle s): the default needs a few seconds to see a
        # new neighbour (its policy re-measures every 2 s); pinned threads do not, and crawl when loaded
        variants = [("default (threads: auto, short OpenMP waits)", {}, False, 2, 3.0),
                    (f"train.threads={cores}, OpenMP spinning (torch's default)", {"train.threads": cores}, True,
                     1, 0.5)]
        for name, overrides, spin, rounds, settle in variants:
            spec = {"config": "lines/acai", "size": 32, "batch": 64, "device": device, "warmup": 2,
                    "rounds": rounds, "steps": 4, "max_seconds": 3.0, "settle": settle, "overrides": overrides,
                    "spin": spin}
            before = _uptime()
            r = run_child("load", spec, {}, args.timeout)
            result["load"].append({"variant": name, "uptime_before": before, "uptime_after": _uptime(),
                                   "result": r})
            shown = r.get("error") or (f"quiet {r['quiet_images_per_s']:.0f}, busy {r['busy_images_per_s']:.0f}"
                                       f" img/s, x{r['busy_over_quiet']:.2f}")
            print(f"under load: {name}: {shown}  ({before})", file=sys.stderr)
    return write_result(result, started, args.out, headline_markdown)


def write_result(result: dict, started: float, out_path: str, render) -> int:
    """Stamp the load and duration, write the JSON and its Markdown table, print the table."""
    result["loadavg_after"] = list(os.getloadavg())
    result["seconds"] = time.time() - started
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    md = render(result)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    print(f"\nwrote {out} and {out.with_suffix('.md')} in {result['seconds']:.0f} s")
    return 0


def headline_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"Machine: {m.get('gpu') or m['cpu']}, {m['cores']} cores, torch {m['torch']}; "
             f"1-min load average {result['loadavg_before'][0]:.1f} before, {result['loadavg_after'][0]:.1f} "
             f"after ({result['seconds']:.0f} s).", "",
             "nonvae's default config against a straightforward eager fp32 port (benchmarks/port.py), "
             "alternating windows (the port in its own process, with glibc's default malloc), same batch, "
             "same threads; medians:", "",
             "| config | px | images/step | default precision | threads | port img/s | default img/s "
             "| × port (per round) | × port in CPU time | GFLOP/image | % of matmul rate: default (port) "
             "| load average |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        r = row["result"]
        label = row["config"] + "".join(f" ({k}={v})" for k, v in row.get("overrides", {}).items())
        if "disentangle" in row["config"]:
            label += f" [port: {row.get('port_recipe', 'shipped')} recipe]"
        head = f"| {label} | {row['size']} | {r.get('images_per_step', row['batch'])} |"
        if "error" in r:
            lines.append(f"{head} error: {r['error'][:90]} | | | | | | | | |")
            continue
        prec = r["precision"] + (" + channels_last" if r["channels_last"] else "")
        per = ", ".join(f"{x:.2f}" for x in r["ratio_per_round"])
        threads = "/".join(str(t) for t in sorted(set(r["threads"])))
        rate = r["matmul_gflop_per_s"]
        lines.append(f"{head} {prec} | {threads} | {r['port_images_per_s']:.0f} | {r['default_images_per_s']:.0f} "
                     f"| **{r['ratio']:.2f}** ({per}) | {r['ratio_cpu']:.2f} | {r['gflop_per_image_default']:.3f} | "
                     f"{100 * r['utilization_default']:.0f}% of {rate[r['precision']]:.0f} "
                     f"({100 * r['utilization_port']:.0f}% of {rate['fp32']:.0f}) | "
                     f"{row['uptime_before'].split()[-3].rstrip(',')} |")
    if result["load"]:
        lines += ["", "lines/acai with one busy neighbour process (`python -c 'while True: pass'`), "
                  "alternating quiet and busy phases, each timed after a few seconds of training:", "",
                  "| threads | quiet img/s (threads) | with the busy process img/s (threads) | busy / quiet "
                  "| busy / the default's quiet | load average |", "|---|---|---|---|---|---|"]
        reference = result["load"][0]["result"].get("quiet_images_per_s")
        for row in result["load"]:
            r = row["result"]
            if "error" in r:
                lines.append(f"| {row['variant']} | error: {r['error'][:90]} | | | | |")
                continue
            vs_default = f"{r['busy_images_per_s'] / reference:.2f}" if reference else "-"
            tq = "/".join(str(t) for t in sorted(set(r["threads_quiet"])))
            tb = "/".join(str(t) for t in sorted(set(r["threads_busy"])))
            lines.append(f"| {row['variant']} | {r['quiet_images_per_s']:.0f} ({tq}) | "
                         f"{r['busy_images_per_s']:.0f} ({tb}) | **{r['busy_over_quiet']:.2f}** | {vs_default} | "
                         f"{row['uptime_before'].split()[-3].rstrip(',')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="store_true",
                   help="the per-setting variant table (and the options below) instead of the headline rows")
    p.add_argument("--rounds", type=int, default=3, help="headline: interleaved port/default windows")
    p.add_argument("--no-128", action="store_true", help="headline: skip celeba/disentangle at 128 px")
    p.add_argument("--no-load", action="store_true", help="headline: skip the busy-neighbour rows")
    p.add_argument("--only", nargs="*", help="headline: only these configs (dataset/method)")
    p.add_argument("--steps", type=int, default=None,
                   help="headline: at most this many steps per window (default: as many as --window-seconds allows)")
    p.add_argument("--window-seconds", type=float, default=3.0,
                   help="headline: each side's window lasts about this long (at least one step)")
    p.add_argument("--warmup", type=int, default=2, help="headline: warm-up steps of each side")
    p.add_argument("--smoke", action="store_true",
                   help="headline: one round of one-step windows, no busy-neighbour rows (checks it runs; no numbers)")
    p.add_argument("--quick", action="store_true", help="--table: fewer configs, variants and steps")
    p.add_argument("--out", default="results/throughput.json")
    p.add_argument("--configs", nargs="*", help="configs as dataset/method (default: all present); 'none'")
    p.add_argument("--variants", nargs="*", help=f"from: {', '.join(VARIANTS)}")
    p.add_argument("--sizes", nargs="*", type=int, default=[32, 128])
    p.add_argument("--batch", type=int, default=64, help="batch at 32 px (per domain for two-domain data)")
    p.add_argument("--batch-128", type=int, default=None, help="batch at 128 px (default: 16 CPU, 64 GPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of every variant (default: torch's)")
    p.add_argument("--quality-configs", nargs="*", default=["lines/ae"], help="configs of the bf16 check")
    p.add_argument("--quality-seeds", nargs="*", type=int, default=[0], help="seeds of the bf16 check")
    p.add_argument("--compile", choices=["none", "one", "all"], default=None,
                   help="torch.compile variant: none, one (lines/acai at 32 px; full default), all")
    p.add_argument("--quality-steps", type=int, default=0, help="also run the fp32-vs-bf16 lines check")
    p.add_argument("--no-data", action="store_true", help="skip the data pipeline measurement")
    p.add_argument("--eval-scale", type=int, default=None, metavar="STEPS",
                   help="encode 60k Fashion-MNIST images + linear probe after STEPS training steps "
                        "(full default 200; -1 skips)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        if not spec.get("spin"):  # as the nonvae command does before torch starts (nonvae/threads.py)
            from nonvae.threads import prefer_passive_openmp

            prefer_passive_openmp()
        jobs = {"train": child_train, "data": child_data, "quality": child_quality, "eval": child_eval,
                "headline": child_headline, "load": child_load, "port": child_port}
        out = jobs[kind](spec)
        print(json.dumps(out))
        return 0

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if not args.table:
        if args.smoke:
            args.rounds, args.steps, args.warmup, args.no_load = 1, 1, 1, True
        return headline(args, device)
    gpu = device.startswith("cuda")
    configs = args.configs if args.configs is not None else (QUICK_CONFIGS if args.quick else ALL_CONFIGS)
    configs = [c for c in configs if c != "none" and (CONFIGS / f"{c}.yaml").is_file()]
    compile_mode = args.compile or ("none" if args.quick else "one")
    timing = {32: {"warmup": 1, "steps": 2, "windows": 2}, 128: {"warmup": 1, "steps": 1, "windows": 2}}
    if not args.quick:
        timing = {32: {"warmup": 2, "steps": 4, "windows": 3}, 128: {"warmup": 1, "steps": 2, "windows": 2}}
    default_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base_threads = {"train.threads": args.threads}
    # OMP_NUM_THREADS also caps OpenBLAS (numpy, scikit-learn's probe), whose threads spin the same way
    base_env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    batch_128 = args.batch_128 or (64 if gpu else (8 if args.quick else 16))

    started = time.time()
    command = " ".join(["python benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])])
    result: dict = {"command": command, "machine": machine(device), "loadavg_before": list(os.getloadavg()),
                    "timing": timing, "rows": [],
                    "threads_label": f"{args.threads} thread(s)" if args.threads else "torch's threads"}
    result["machine"]["torch_threads"] = default_threads
    result["matmul_gflop_per_s"] = {d: matmul_rate(d, device) / 1e9 for d in ("fp32", "bf16")}
    print(f"matmul GFLOP/s: {result['matmul_gflop_per_s']}", file=sys.stderr)

    for config in configs:
        for size in args.sizes:
            default = QUICK_VARIANTS if args.quick else (FULL_128 if size > 32 else list(VARIANTS))
            names = args.variants or default
            if args.variants is None:
                names = [n for n in names if n != "torch.compile"
                         and not (n == "threads=1" and args.threads == 1)]
                one = compile_mode == "one" and config in COMPILE_CONFIGS and size == 32
                if compile_mode == "all" or one:
                    names.append("torch.compile")
            batch = args.batch if size <= 32 else batch_128
            base = None
            for name in names:
                overrides, env = VARIANTS[name]
                if overrides.get("train.threads") == "cores":
                    from nonvae.threads import usable_cores

                    overrides = {**overrides, "train.threads": usable_cores()}
                spec = {"config": config, "size": size, "batch": batch, "device": device,
                        "overrides": {**base_threads, **overrides}, **timing[32 if size <= 32 else 128],
                        "spin": name in SPINNING}
                if name == "torch.compile":
                    spec["warmup"] = 3
                own_threads = overrides.get("train.threads", args.threads) is not None
                r = run_child("train", spec, {**(base_env if own_threads else {}), **env}, args.timeout)
                row = {"config": config, "size": size, "batch": batch, "variant": name, "result": r}
                if name == "eager fp32" and "error" not in r:
                    base = r["images_per_s"]
                if base and "error" not in r:
                    row["ratio"] = r["images_per_s"] / base
                result["rows"].append(row)
                shown = r.get("error") or f"{r['images_per_s']:.1f} img/s"
                print(f"{config:26s} {size:4d} px  {name:30s} {shown}", file=sys.stderr)

    if not args.no_data:
        result["data"] = run_child("data", {"windows": 3, "calls": 5 if args.quick else 20}, base_env,
                                   args.timeout)
    eval_steps = args.eval_scale if args.eval_scale is not None else (-1 if args.quick else 200)
    if eval_steps >= 0:
        spec = {"train_steps": eval_steps, "threads": args.threads}
        result["eval_scale"] = run_child("eval", spec, base_env, args.timeout)
        print(f"evaluation at scale: {result['eval_scale']}", file=sys.stderr)
    if args.quality_steps:
        result["quality_steps"] = args.quality_steps
        result["quality"] = []
        for config in args.quality_configs:
            for seed in args.quality_seeds:
                for precision, cl in (("fp32", False), ("bf16", True)):
                    extra = ["regularizers.acai.warmup_steps=500"] if config == "lines/acai" else []
                    spec = {"config": config, "precision": precision, "channels_last": cl,
                            "threads": args.threads, "steps": args.quality_steps,
                            "set": [*extra, f"seed={seed}"]}
                    r = run_child("quality", spec, base_env, 3600)
                    label = "bf16 + channels_last" if cl else precision
                    row = {"config": config, "seed": seed, "precision": label, "result": r}
                    result["quality"].append(row)
                    print(f"quality {config} seed {seed} {label}: {r}", file=sys.stderr)

    return write_result(result, started, args.out, markdown)


if __name__ == "__main__":
    sys.exit(main())
