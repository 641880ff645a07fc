"""The in-memory dataset every loader returns.

Images are kept as uint8 (N, C, H, W) so that a whole dataset sits in memory
cheaply and batches are converted to float in [-1, 1] only when drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nonvae.errors import DataError


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]; float input is returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images.float()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clipped)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (N, C, h, w) images symmetrically to (size, size); pad value is black (0 in uint8)."""
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise DataError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return torch.nn.functional.pad(images, (left, size - w - left, top, size - h - top))


@dataclass
class ImageSet:
    """A labelled (or unlabelled) image dataset held in memory.

    images: uint8 (N, C, H, W) or float (N, C, H, W) in [-1, 1].
    labels: int64 (N,) class labels, or None.
    extras: further per-example tensors (attributes, domains, clean images, factors).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    name: str = ""
    num_classes: int | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"{self.name or 'dataset'}: images must be (N, C, H, W), got {tuple(self.images.shape)}")
        if len(self.images) == 0:
            raise DataError(f"{self.name or 'dataset'}: no images")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(
                f"{self.name or 'dataset'}: {len(self.images)} images but {len(self.labels)} labels"
            )
        if self.labels is not None and self.num_classes is None:
            self.num_classes = int(self.labels.max()) + 1

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """A training batch: {'x': float [-1, 1], 'y': labels (if any), extras...}."""
        out = {"x": to_float(self.images[index])}
        if self.labels is not None:
            out["y"] = self.labels[index]
        for key, value in self.extras.items():
            out[key] = to_float(value[index]) if value.dtype == torch.uint8 and value.ndim == 4 else value[index]
        return out

    def subset(self, n: int) -> ImageSet:
        """The first n examples (for quick evaluation)."""
        n = min(n, len(self))
        return ImageSet(
            self.images[:n],
            None if self.labels is None else self.labels[:n],
            self.name,
            self.num_classes,
            {k: v[:n] for k, v in self.extras.items()},
        )
