"""Sample pictures of a model during training: reconstructions and interpolations.

Talks only to the backbone interface (encode/decode), never to a method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nonvae.data.base import ImageSet


@torch.no_grad()
def sample_grids(method, test: ImageSet, out_dir: Path, step: int, device: torch.device,
                 n: int = 8, steps: int = 8) -> dict[str, np.ndarray]:
    """Write samples/recon_<step>.png and samples/interp_<step>.png; return the grids (HWC uint8)."""
    from nonvae.pipeline import interpolate
    from nonvae.viz import image_grid, save_grid

    out_dir.mkdir(parents=True, exist_ok=True)
    batch = test.batch(torch.arange(min(2 * n, len(test))))
    x = batch["x"].to(device)
    domain = batch.get("domain")
    domain = domain.to(device) if domain is not None else None
    recon = method.decode(method.encode(x, domain)).clamp(-1, 1)
    pairs = torch.stack([x[:n], recon[:n]])  # (2, n, C, H, W): inputs above, reconstructions below
    half = len(x) // 2
    interp = interpolate(method, x[:half], x[half: 2 * half], steps,
                         None if domain is None else domain[:half],
                         None if domain is None else domain[half: 2 * half])
    grids = {"samples/reconstructions": pairs.cpu(), "samples/interpolations": interp.cpu()}
    save_grid(grids["samples/reconstructions"], out_dir / f"recon_{step:08d}.png")
    save_grid(grids["samples/interpolations"], out_dir / f"interp_{step:08d}.png")
    return {k: image_grid(v) for k, v in grids.items()}
