"""Images from a folder or a list file (trainA.txt, ...) as uint8 (N, C, H, W) arrays.

Each image is centre-cropped (CelebA: 178 x 178 out of the aligned 178 x 218,
as the official code's ``CenterCrop(178)``) and resized with PIL's
antialiasing bilinear filter (what ``torchvision.transforms.Resize`` does on
PIL images). A corrupt or missing file is a :class:`DataError` naming the path
(and the list-file line it came from), or, with ``policy='skip'``, is left out
and counted.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nonvae.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".gif", ".webp", ".tif", ".tiff")
POLICIES = ("error", "skip")


@dataclass
class ImageSource:
    """Image paths plus where each was listed (for error messages)."""

    name: str  # the folder or list file
    paths: list[Path]
    origins: list[str] = field(default_factory=list)  # e.g. 'trainA.txt line 3'; '' for folder entries

    def __post_init__(self) -> None:
        if not self.origins:
            self.origins = [""] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def slice(self, start: int, stop: int | None) -> ImageSource:
        return ImageSource(self.name, self.paths[start:stop], self.origins[start:stop])

    def __add__(self, other: ImageSource) -> ImageSource:
        return ImageSource(f"{self.name}+{other.name}", self.paths + other.paths, self.origins + other.origins)

    def take(self, index: np.ndarray | list[int]) -> ImageSource:
        return ImageSource(self.name, [self.paths[i] for i in index], [self.origins[i] for i in index])


def _resolve(entry: str, list_file: Path) -> Path:
    """A list-file entry: absolute, else relative to the working directory, else to the list file."""
    path = Path(entry).expanduser()
    if path.is_absolute() or path.exists():
        return path
    beside = list_file.parent / path
    return beside if beside.exists() else path


def list_images(source: str | Path) -> ImageSource:
    """The images of a folder (recursive, sorted) or a list file (one path per line; '#' comments)."""
    source = Path(source).expanduser()
    if source.is_dir():
        paths = sorted(
            Path(root) / f for root, _, files in os.walk(source) for f in files
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not paths:
            raise DataError(f"{source}: no images in this folder (extensions: {', '.join(IMAGE_EXTENSIONS)})")
        return ImageSource(str(source), paths)
    if not source.is_file():
        raise DataError(f"{source}: no such image folder or list file")
    try:
        lines = source.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{source}: not a text list of image paths (and not a folder)") from None
    paths, origins = [], []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        paths.append(_resolve(entry, source))
        origins.append(f"{source} line {number}")
    if not paths:
        raise DataError(f"{source}: the list file names no images")
    return ImageSource(str(source), paths, origins)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# Pillow modes that ``convert`` maps to 8-bit L/RGB faithfully; 16-bit greyscale is rescaled first, and every
# other mode (32-bit integer, floating point, CIELAB, ...) has no agreed range: refused by name.
CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
MODE_NAMES = {"I": "32-bit integer", "F": "32-bit floating point", "LAB": "CIELAB", "La": "premultiplied LA"}


def _to_8bit(im: Image.Image, path: Path) -> Image.Image:
    """An image in a mode whose ``convert`` to L/RGB keeps the pixel range (0..255 = black..white).

    Pillow's own conversion clips 16-bit values to 255 (a 16-bit PNG turns almost white) and truncates
    floats to 0 or 1 (a float TIFF turns black), so 16-bit greyscale is rescaled here (/257) and modes
    without a known range are refused instead of silently read wrong.
    """
    mode = im.mode
    if mode in CONVERTIBLE_MODES:
        return im
    if mode in SIXTEEN_BIT_MODES or (mode == "I" and im.format == "PNG"):  # older Pillow opens 16-bit PNGs as I
        wide = np.asarray(im).astype(np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    name = MODE_NAMES.get(mode, "unsupported")
    raise DataError(f"{path}: {name} images (Pillow mode {mode!r}) are not supported; save it as 8-bit or "
                    "16-bit greyscale, or 8-bit RGB")


def decode_image(path: str | Path, image_size: int, crop: int | None = None, channels: int = 3) -> np.ndarray:
    """One image -> uint8 (channels, image_size, image_size): centre crop, then antialiased resize.

    Without ``crop`` the largest centred square is kept, so non-square images are never stretched.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block (or never end) on open
            raise DataError(f"{path}: not a regular file, cannot be an image")
        with Image.open(path) as im:
            im = _to_8bit(im, path).convert("RGB" if channels == 3 else "L")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({_one_line(exc)})") from None
    w, h = im.size
    cw = ch = min(w, h) if crop is None else crop
    cw, ch = min(cw, w), min(ch, h)
    left, top = int(round((w - cw) / 2.0)), int(round((h - ch) / 2.0))
    if (cw, ch) != (w, h):
        im = im.crop((left, top, left + cw, top + ch))
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.asarray(im, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


@dataclass
class LoadResult:
    """How many images were written and which were skipped (index, path, reason)."""

    count: int
    skipped: list[dict] = field(default_factory=list)


def load_into(source: ImageSource, out: np.ndarray, image_size: int, crop: int | None, channels: int,
              policy: str = "error", progress: bool = True, workers: int | None = None,
              desc: str = "decode images") -> LoadResult:
    """Decode every image of ``source`` into ``out[:count]`` in order, skipping bad ones per ``policy``."""
    if policy not in POLICIES:
        raise DataError(f"unknown bad-image policy {policy!r} (valid: {', '.join(POLICIES)})")
    from tqdm.auto import tqdm

    workers = workers or min(8, os.cpu_count() or 1)
    module = sys.modules[__name__]  # look decode_image up at call time (tests count decodes)
    count, skipped = 0, []

    def work(i: int) -> np.ndarray | DataError:
        try:
            return module.decode_image(source.paths[i], image_size, crop, channels)
        except DataError as exc:
            return exc

    bar = tqdm(total=len(source), desc=desc, unit="img", disable=not progress or len(source) < 256,
               leave=False, file=sys.stderr)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for chunk in _chunks(len(source), 256):
                for i, result in zip(chunk, pool.map(work, chunk), strict=True):
                    if isinstance(result, DataError):
                        origin = f" (listed at {source.origins[i]})" if source.origins[i] else ""
                        if policy == "error":
                            raise DataError(f"{result}{origin}; set data.bad_images=skip to leave such "
                                            "files out") from None
                        skipped.append({"index": i, "path": str(source.paths[i]), "reason": str(result)})
                    else:
                        out[count] = result
                        count += 1
                bar.update(len(chunk))
    finally:
        bar.close()
    if count == 0:
        raise DataError(f"{source.name}: none of its {len(source)} images could be read "
                        f"(first: {skipped[0]['reason'] if skipped else 'none listed'})")
    if skipped:
        logging.getLogger(__name__).warning("warning: %s: skipped %d unreadable image(s), first: %s",
                                            source.name, len(skipped), skipped[0]["reason"])
    return LoadResult(count, skipped)


def load_images(source: ImageSource | str | Path, image_size: int, crop: int | None = None, channels: int = 3,
                policy: str = "error", progress: bool = True) -> tuple[np.ndarray, LoadResult]:
    """All images in memory: (uint8 (count, C, H, W), what was skipped)."""
    if not isinstance(source, ImageSource):
        source = list_images(source)
    out = np.empty((len(source), channels, image_size, image_size), dtype=np.uint8)
    result = load_into(source, out, image_size, crop, channels, policy, progress)
    return out[: result.count], result
