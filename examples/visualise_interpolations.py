"""Visualise a trained run's latent interpolations: a grid picture and an animated GIF.

    python examples/visualise_interpolations.py runs/acai --pairs 8 --steps 16 --out interp

writes interp.png (one pair per row, alpha from 0 to 1 left to right) and interp.gif (all pairs
morphing together, forth and back). Works for run directories and exported model folders; the
pairs come from the run's own test set, so pictures of different runs on the same data compare.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a run directory or exported model folder")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscaling of the pictures")
    p.add_argument("--out", type=Path, default=Path("interpolations"), help="output path without suffix")
    args = p.parse_args(argv)

    from PIL import Image

    import nonvae
    from nonvae.data import build_data
    from nonvae.latent import pick_pairs
    from nonvae.pipeline import config_of, interpolate
    from nonvae.viz import image_grid, save_grid

    method = nonvae.load(args.run_dir)
    cfg = config_of(args.run_dir)
    test = build_data(cfg.data, cfg.seed).test
    ia, ib = pick_pairs(len(test), args.pairs)  # the same pairs `nonvae report` shows
    a, b = test.batch(ia), test.batch(ib)
    with torch.no_grad():
        frames = interpolate(method, a["x"], b["x"], args.steps, a.get("domain"), b.get("domain")).float()

    png = save_grid(frames, args.out.with_suffix(".png"), scale=args.scale)
    # GIF: frame k shows every pair at alpha = k / (steps - 1), as one column
    pictures = []
    for k in list(range(args.steps)) + list(range(args.steps - 2, 0, -1)):
        grid = image_grid(frames[:, k], nrow=1)
        grid = np.repeat(np.repeat(grid, args.scale, axis=0), args.scale, axis=1)
        pictures.append(Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid))
    gif = args.out.with_suffix(".gif")
    pictures[0].save(gif, save_all=True, append_images=pictures[1:], duration=80, loop=0)
    print(f"wrote {png} and {gif} ({len(ia)} pairs x {args.steps} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
