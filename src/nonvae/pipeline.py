"""Using a trained run: load it, encode, decode, interpolate.

A run directory (``nonvae train``) and an exported model folder (``nonvae
export``) both hold config.yaml and safetensors weights; ``load`` accepts either.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nonvae.checkpoint import find_latest, load_weights
from nonvae.config import Config, load_config
from nonvae.errors import CheckpointError
from nonvae.methods import AUTOENCODER, Method, build_method


def image_shape_of(cfg: Config) -> tuple[int, int, int]:
    return (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)


def checkpoint_dir_of(path: str | Path) -> Path:
    """The folder holding the weights: RUN_DIR/checkpoints/latest, a step folder, or an export."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or model folder")
    if (path / f"{AUTOENCODER}.safetensors").is_file():
        return path
    latest = find_latest(path / "checkpoints")
    if latest is None:
        raise CheckpointError(f"{path}: no complete checkpoint found (expected {path}/checkpoints/latest/)")
    return latest


def config_of(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or model folder")
    for candidate in (path / "config.yaml", path.parent.parent / "config.yaml"):
        if candidate.is_file():
            return load_config(candidate)
    raise CheckpointError(f"{path}: no config.yaml (is this a run directory or exported model?)")


def load(path: str | Path, device: str | torch.device = "cpu", with_adversaries: bool = False) -> Method:
    """The trained method in eval mode, ready to ``encode``/``decode``."""
    cfg = config_of(path)
    method = build_method(cfg, image_shape_of(cfg))
    ckpt = checkpoint_dir_of(path)
    players = method.players() if with_adversaries else {AUTOENCODER: method.autoencoder}
    for name, module in players.items():
        load_weights(module, ckpt / f"{name}.safetensors", name)
    method.run_dir = Path(path)  # type: ignore[attr-defined]
    return method.to(device).eval()


@torch.no_grad()
def interpolate(method, x_a: torch.Tensor, x_b: torch.Tensor, steps: int,
                domain_a: torch.Tensor | None = None, domain_b: torch.Tensor | None = None) -> torch.Tensor:
    """Decoded linear interpolations between the codes of x_a and x_b: (N, steps, C, H, W).

    t = k / (steps - 1), so the decoded endpoints are included.
    """
    za = method.encode(x_a, domain_a)
    zb = method.encode(x_b, domain_b)
    t = torch.linspace(0, 1, steps, device=za.device).view(1, steps, *([1] * (za.ndim - 1)))
    codes = (1 - t) * za.unsqueeze(1) + t * zb.unsqueeze(1)
    decoded = method.decode(codes.flatten(0, 1))
    return decoded.view(len(za), steps, *decoded.shape[1:]).clamp(-1, 1)
