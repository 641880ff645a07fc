"""Sample pictures of a model during training: reconstructions and interpolations.

Talks only to the backbone (see :mod:`nonvae.latent`), never to a method's regularizers.
"""

from __future__ import annotations

import numpy as np
import torch

from nonvae.data.base import ImageSet
from nonvae.rundir import RunDir


@torch.no_grad()
def sample_grids(model, test: ImageSet, run: RunDir, step: int, device: torch.device,
                 n: int = 8, steps: int = 8) -> dict[str, np.ndarray]:
    """Write the run's recon and interp grids for ``step``; return the grids (HWC uint8)."""
    from nonvae.latent import interpolate, reconstruct
    from nonvae.viz import image_grid, save_grid

    batch = test.batch(torch.arange(min(2 * n, len(test))))
    x = batch["x"].to(device)
    domain = batch.get("domain")
    domain = domain.to(device) if domain is not None else None
    recon = reconstruct(model, x, domain)
    pairs = torch.stack([x[:n], recon[:n]])  # (2, n, C, H, W): inputs above, reconstructions below
    half = len(x) // 2
    grids = {"samples/reconstructions": pairs.cpu()}
    if half:  # a test set of one image has no pair to interpolate between
        interp = interpolate(model, x[:half], x[half: 2 * half], steps,
                             None if domain is None else domain[:half],
                             None if domain is None else domain[half: 2 * half])
        grids["samples/interpolations"] = interp.cpu()
    save_grid(grids["samples/reconstructions"], run.grid("recon", step))
    if "samples/interpolations" in grids:
        save_grid(grids["samples/interpolations"], run.grid("interp", step))
    return {k: image_grid(v) for k, v in grids.items()}
