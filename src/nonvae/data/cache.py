"""Decode + crop + resize a list of images once, into a uint8 memory-mapped array reused by later runs.

Decoding 200k CelebA JPEGs takes minutes; a run (and every rank of it) then
reads the (N, C, H, W) array through the page cache instead. The cache file is
keyed by a hash of the file list (paths, sizes, modification and status-change times,
inodes, and the bytes of a sample of the files), the output size, the crop and the
channel count, so a changed list, file or setting gets a new file and never a stale one.
Temporary files of killed builds are removed by the next call. ``KEY.u8`` is the raw array, ``KEY.json`` a small sidecar
(shape, skipped files, settings); both are written to temporary names and
renamed, sidecar last, so a crashed build leaves nothing that looks complete.
A lock file makes concurrent builders (ranks, parallel runs) wait for one
build instead of decoding twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nonvae.data.folders import ImageSource, load_into
from nonvae.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: the key sees file stamps and sampled bytes, not only sizes
LOCK_POLL_S = 2.0


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nonvae" / "images"


SAMPLED_FILES = 64  # files whose bytes enter the key (evenly spaced over the list)
SAMPLED_BYTES = 4096  # from the start and from the end of each


def _file_stamp(path: Path) -> str:
    """Size, modification time, inode and status-change time: a replaced file changes at least one of
    them (rewriting in place bumps mtime and ctime; ``cp -p``/``rsync -a`` restore mtime but not ctime,
    and a rename-over gives a new inode)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def _sample_bytes(path: Path) -> bytes:
    """The first and last SAMPLED_BYTES of a regular file (never opens a FIFO or device: it could block)."""
    import stat

    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return b"not a regular file"
        with open(path, "rb") as fh:
            head = fh.read(SAMPLED_BYTES)
            if st.st_size > 2 * SAMPLED_BYTES:
                fh.seek(-SAMPLED_BYTES, os.SEEK_END)
            return head + fh.read(SAMPLED_BYTES)
    except OSError:
        return b"unreadable"


def cache_key(source: ImageSource, image_size: int, crop: int | None, channels: int) -> str:
    """Hash of the settings, of every file's (path, size, mtime, inode, ctime) in order, and of the bytes
    of a sample of the files.

    The stamps see a replaced file even when its size is unchanged; the sampled bytes also catch a
    copy that preserves every time stamp on a file system without stable inodes/ctimes. One ``stat``
    per file (``benchmarks/cache_key.py``: 200k files in 1.9 s, 8.6 us a file, on 2 shared cores).
    """
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "size": image_size, "crop": crop, "channels": channels}).encode())
    for path in source.paths:
        h.update(f"{os.path.abspath(path)}\0{_file_stamp(path)}\n".encode(errors="surrogateescape"))
    n = len(source.paths)
    for i in sorted({k * n // SAMPLED_FILES for k in range(min(n, SAMPLED_FILES))}):
        h.update(_sample_bytes(source.paths[i]))
    return h.hexdigest()[:24]


_TMP_RE = re.compile(r"^\.(?P<key>[0-9a-f]{24})\.(u8|json)\.(?P<pid>\d+)\.tmp$")


def clean_stale_builds(folder: Path) -> list[Path]:
    """Remove temporary files of cache builds that were killed (their lock is gone or stale).

    A build holds ``KEY.lock`` from before its temporary file exists until after it is renamed, so a
    temporary file without a live lock can only be a leftover (~10 GB on CelebA).
    """
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _TMP_RE.match(path.name)
        if not match:
            continue
        lock = _Lock(folder / f"{match['key']}.lock")
        if lock.path.exists() and not lock._stale():
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    if removed:
        log.warning("note: removed %d temporary file(s) of interrupted image-cache builds in %s", len(removed), folder)
    return removed


@dataclass
class CachedImages:
    """The cached array (read through a copy-on-write memory map) and what was left out."""

    images: np.ndarray  # uint8 (count, C, H, W)
    kept: np.ndarray  # int64 indices into the source of the images kept, in order
    skipped: list[dict]
    path: Path
    built: bool  # True when this call decoded the images


def _open(data: Path, meta: dict) -> np.ndarray:
    shape = tuple(int(s) for s in meta["shape"])
    expected = int(np.prod(shape))
    if data.stat().st_size < expected:
        raise ValueError("cache file shorter than its sidecar says")
    return np.memmap(data, dtype=np.uint8, mode="c", shape=shape)


def _read_meta(meta_path: Path) -> dict | None:
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _result(data: Path, meta: dict, n_listed: int, built: bool) -> CachedImages:
    skipped = meta.get("skipped", [])
    gone = {int(s["index"]) for s in skipped}
    kept = np.array([i for i in range(n_listed) if i not in gone], dtype=np.int64)
    return CachedImages(_open(data, meta), kept, skipped, data, built)


class _Lock:
    """An O_EXCL lock file holding host:pid; a lock of a dead process on this host is stale."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False

    def acquire(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if self._stale():
                self.path.unlink(missing_ok=True)
                return self.acquire()
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{socket.gethostname()}:{os.getpid()}")
        self.held = True
        return True

    def _stale(self) -> bool:
        try:
            host, pid = self.path.read_text().rsplit(":", 1)
            if host != socket.gethostname():
                return False
            os.kill(int(pid), 0)
            return False
        except ProcessLookupError:
            return True
        except (OSError, ValueError):
            return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def cached_images(source: ImageSource, image_size: int, crop: int | None, channels: int,
                  cache_dir: str | Path | None = None, policy: str = "error", progress: bool = True,
                  workers: int | None = None, wait_s: float = 6 * 3600) -> CachedImages:
    """The decoded images of ``source``: from the cache when present, else decoded once and stored."""
    if len(source) == 0:
        raise DataError(f"{source.name}: no images listed")
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the image cache folder ({exc.strerror or exc}); "
                        "set data.cache_dir") from None
    clean_stale_builds(folder)
    key = cache_key(source, image_size, crop, channels)
    data, meta_path = folder / f"{key}.u8", folder / f"{key}.json"
    lock = _Lock(folder / f"{key}.lock")
    deadline = time.monotonic() + wait_s
    try:
        while True:
            meta = _read_meta(meta_path)
            if meta is not None and data.is_file():
                try:
                    found = _result(data, meta, len(source), built=False)
                except (OSError, ValueError, KeyError):
                    meta = None  # torn or foreign: rebuild below
                else:
                    _check_policy(found, policy)
                    return found
            if lock.acquire():
                break
            if time.monotonic() > deadline:
                raise DataError(f"{lock.path}: another process has been building this image cache for too "
                                "long; delete the lock file if it is stale")
            time.sleep(LOCK_POLL_S)
        return _build(source, image_size, crop, channels, data, meta_path, key, policy, progress, workers)
    finally:
        lock.release()


def _check_policy(found: CachedImages, policy: str) -> None:
    if found.skipped and policy == "error":
        first = found.skipped[0]
        raise DataError(f"{first['reason']} (cached as skipped in {found.path.with_suffix('.json')}); "
                        "set data.bad_images=skip to leave such files out")


def _build(source: ImageSource, image_size: int, crop: int | None, channels: int, data: Path, meta_path: Path,
           key: str, policy: str, progress: bool, workers: int | None) -> CachedImages:
    shape = (len(source), channels, image_size, image_size)
    tmp = data.with_name(f".{data.name}.{os.getpid()}.tmp")
    try:
        out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
        result = load_into(source, out, image_size, crop, channels, policy, progress, workers,
                           desc=f"cache {Path(source.name).name}")
        out.flush()
        del out
        item = channels * image_size * image_size
        os.truncate(tmp, result.count * item)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {
        "version": CACHE_VERSION, "key": key, "source": source.name, "shape": [result.count, *shape[1:]],
        "dtype": "uint8", "listed": len(source), "image_size": image_size, "crop": crop, "channels": channels,
        "skipped": result.skipped, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_meta, meta_path)
    log.info("cached %d images (%d skipped) in %s", result.count, len(result.skipped), data)
    return _result(data, meta, len(source), built=True)
