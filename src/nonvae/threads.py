"""CPU thread policy and native-bf16 detection: the automatic speed choices of the trainer.

Why threads need a policy: torch's intra-op pool is OpenMP, and every parallel region waits for all
of its threads. When another process keeps a core busy, one of our threads runs only when the
scheduler lets it, and each of the hundreds of small parallel regions in a training step waits for
it: on 2 cores, 2 threads with one busy neighbour ran a lines/ACAI step 10-50x slower than 1 thread.
So the default (``train.threads`` unset) is *the cores other processes leave free*, measured from
``/proc/stat`` minus our own CPU time and re-checked every few seconds while training, never more
than torch's thread count at start (``OMP_NUM_THREADS`` / ``torch.set_num_threads`` cap it) nor the
cores this process may run on. ``train.threads=N`` pins N threads.

``prefer_passive_openmp`` additionally makes idle OpenMP threads spin only briefly before they sleep
(libgomp's ``GOMP_SPINCOUNT``, SPIN_COUNT iterations: microseconds instead of torch's default 300,000); it
only works before the OpenMP runtime starts, i.e. before torch is imported, so the ``nonvae`` command calls it
first thing. A short spin keeps the quiet speed of torch's default (lines/ACAI at 2 threads: 755 img/s with
3,000, 733 unset, 593 with ``OMP_WAIT_POLICY=PASSIVE``, i.e. no spin) while a thread that waits for a
descheduled sibling still yields its core within microseconds (with a busy neighbour: 428 / 437 img/s for
3,000 / passive, one thread each by the policy above).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

CHECK_EVERY_S = 2.0  # how often the free cores are measured while training
FIRST_CHECK_S = 0.25  # the first measurement (over start-up: building data and networks) comes sooner
# threads = floor(free cores + SLACK): a neighbour using a quarter of a core already costs a thread
SLACK = 0.25


SPIN_COUNT = 3000  # libgomp's active-wait iterations before an idle OpenMP thread sleeps (torch's default: 300,000)


def prefer_passive_openmp() -> bool:
    """Short OpenMP waits: ``GOMP_SPINCOUNT=SPIN_COUNT`` unless the user chose a wait policy or spin count.

    True when it can take effect: libgomp reads its variables once, when it is loaded (with torch), so this is a
    no-op after ``import torch``. ``OMP_WAIT_POLICY=PASSIVE`` (no spin at all) was the choice before 2026-12-05;
    it cost 20-45% on a quiet machine (docs/benchmarks/throughput.md) for no gain under load.
    """
    if "torch" in sys.modules:
        return False
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True


# glibc mallopt parameters (malloc.h): keep freed memory in the process (train.keep_memory)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse instead of handing it back to the OS; True when set.

    A training step allocates and frees the same activation buffers every time. By default glibc
    serves blocks of more than a few MB with ``mmap`` and returns freed heap tops above 2x that, so
    every step faults the same memory in again page by page: 15,000-27,000 page faults per lines/ACAI
    step on the 2-core test VM, 1.2-1.4x the step's CPU time. Raising the mmap threshold to glibc's
    maximum (32 MB) and the trim threshold to 256 MB makes the buffers stay (~50-90 faults per step);
    the arithmetic is untouched. Process-wide and not undone: the process keeps its peak heap until
    256 MB of its top are free. A no-op (False) without glibc (macOS, Windows, musl).
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    return mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used (every core, summed), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already in user


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ThreadPolicy:
    """Keeps torch's intra-op threads at the number of cores other processes leave free.

    ``update()`` is called once per training step; it costs a clock read except every
    ``CHECK_EVERY_S`` seconds, when it reads /proc/stat and may call ``torch.set_num_threads``.
    Without /proc/stat (not Linux) it uses the 1-minute load average at start and keeps that.
    """

    def __init__(self, pinned: int | None, interval: float = CHECK_EVERY_S) -> None:
        import torch

        self._torch = torch
        self.pinned = pinned
        self.interval = interval
        self.cap = max(1, min(torch.get_num_threads(), usable_cores()))
        self.changes = 0
        self._checked = False
        if pinned:
            torch.set_num_threads(pinned)
            self.threads = pinned
            return
        self._sample = self._read()
        self.threads = self.cap
        if self._sample[0] is None:  # no /proc/stat: the load average, once
            try:
                others = max(0.0, os.getloadavg()[0] - 1.0)
            except OSError:
                others = 0.0
            self._set(self._choose(others))
        else:
            self._set(self.threads)

    @staticmethod
    def _read() -> tuple[float | None, float, float]:
        return _busy_seconds(), _own_seconds(), time.monotonic()

    def _choose(self, others: float) -> int:
        free = usable_cores() - others
        return max(1, min(self.cap, int(free + SLACK)))

    def _set(self, n: int) -> None:
        if n != self._torch.get_num_threads():
            self._torch.set_num_threads(n)
            self.changes += 1
        self.threads = n

    def others(self, before: tuple, after: tuple) -> float | None:
        """Cores other processes used between two samples."""
        if before[0] is None or after[0] is None or after[2] - before[2] <= 0:
            return None
        used = (after[0] - before[0]) - (after[1] - before[1])
        return max(0.0, used / (after[2] - before[2]))

    def update(self) -> int:
        """Re-measure when due; return the thread count in use."""
        if self.pinned or self._sample[0] is None:
            return self.threads
        now = time.monotonic()
        first = not self._checked
        if now - self._sample[2] < (FIRST_CHECK_S if first else self.interval):
            return self.threads
        self._checked = True
        sample = self._read()
        others = self.others(self._sample, sample)
        self._sample = sample
        if others is not None:
            self._set(self._choose(others))
        return self.threads

    def describe(self) -> str:
        if self.pinned:
            return f"{self.pinned} (train.threads)"
        return (f"auto: {self.threads} now, at most {self.cap} (the cores other processes leave free, "
                f"re-measured every {self.interval:g} s)")


def native_bf16(device_type: str) -> bool:
    """Whether bf16 arithmetic is native (fast) here: a CUDA GPU with bf16, or an x86 CPU with
    AVX512-BF16 or AMX. Elsewhere bf16 is emulated or unmeasured and ``precision: auto`` means fp32."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_precision(precision: str, device_type: str) -> str:
    """'auto' -> 'bf16' where bf16 is native (see ``native_bf16``), else 'fp32'."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device_type) else "fp32"
