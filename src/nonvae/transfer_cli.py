"""``nonvae transfer RUN_DIR``: remove, add and transfer the attribute of a trained split backbone.

Content images (default: domain B test images) form the rows, donors (default: domain A test images)
the columns::

                      donor 1      donor 2    ...
    content | recon | G(E1(c), E2(d1)) ...        <- the content with each donor's attribute (add)
    ...
                      G(E1(d1), 0) ...            <- each donor with its attribute removed (remove)

``--content`` / ``--donor`` take test-set indices (into that domain's test images) or image files
(decoded with the run's crop and size). Writes the grid as PNG and every image as .npz beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from nonvae.errors import ConfigError, DataError

PAD = 2
BLANK = 0.5  # grey for empty cells, in [0, 1]


def _pick(items: list[str] | None, pool: torch.Tensor, n: int, g: torch.Generator, cfg, what: str):
    """Images for --content/--donor: indices into ``pool`` (one domain's test images) or files."""
    from nonvae.data.folders import decode_image

    if not items:
        order = torch.randperm(len(pool), generator=g)[: min(n, len(pool))]
        return pool[order]
    out = []
    for item in items:
        if item.lstrip("-").isdigit():
            i = int(item)
            if not -len(pool) <= i < len(pool):
                raise ConfigError(f"--{what} {i}: the run's test set has {len(pool)} {what} images")
            out.append(pool[i])
        else:
            array = decode_image(item, cfg.data.image_size, cfg.data.crop, cfg.data.channels)
            out.append(torch.from_numpy(array).float().div(127.5).sub(1))
    return torch.stack(out)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) in [-1, 1] -> (..., H, W, C) uint8."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def save_grid_png(cells: list[list[torch.Tensor | None]], path: Path) -> None:
    """A grid of (C, H, W) images in [-1, 1] (None = grey), PAD pixels apart."""
    from PIL import Image

    first = next(c for row in cells for c in row if c is not None)
    ch, h, w = first.shape
    rows, cols = len(cells), max(len(r) for r in cells)
    canvas = np.full((rows * (h + PAD) + PAD, cols * (w + PAD) + PAD, ch), 255, dtype=np.uint8)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            y, x = PAD + r * (h + PAD), PAD + c * (w + PAD)
            canvas[y: y + h, x: x + w] = int(BLANK * 255) if cell is None else _to_uint8(cell)
    image = Image.fromarray(canvas[..., 0] if ch == 1 else canvas)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@torch.no_grad()
def transfer_grid(method, content: torch.Tensor, donors: torch.Tensor, device: torch.device) -> dict:
    """The decoded images: recon (M), added (M, N), removed donors (N)."""
    from nonvae.evaluate.transfer import add_code, remove_code

    ae = method.autoencoder
    c, d = content.to(device), donors.to(device)
    zeros_domain = torch.zeros(len(c), device=device)
    recon = method.decode(method.encode(c, zeros_domain)).clamp(-1, 1)
    m, n = len(c), len(d)
    added = method.decode(add_code(method, c.repeat_interleave(n, 0), d.repeat(m, 1, 1, 1))).clamp(-1, 1)
    removed = ae.decode(remove_code(method, d)).clamp(-1, 1)
    return {"content": c.cpu(), "donors": d.cpu(), "recon": recon.cpu(),
            "added": added.view(m, n, *added.shape[1:]).cpu(), "removed": removed.cpu()}


def cmd_transfer(args: argparse.Namespace) -> int:
    from nonvae.data.domains import domain_test_set
    from nonvae.pipeline import config_of, load

    if args.n <= 0:
        raise ConfigError("--n must be > 0")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"--out {out}: expected a .png (or .jpg) file name")
    cfg = config_of(args.run_dir)
    if cfg.model.backbone != "split":
        raise ConfigError(f"{args.run_dir}: transfer needs a split backbone (model.backbone: split), "
                          f"this run has {cfg.model.backbone!r}")
    device = torch.device(args.device)
    method = load(args.run_dir, device)
    needs_test = not (args.content and args.donor and all(not s.lstrip("-").isdigit()
                                                          for s in args.content + args.donor))
    g = torch.Generator().manual_seed(args.seed)
    if needs_test:
        test = domain_test_set(cfg.data)
        domain = test.extras["domain"]
        pool_a = test.batch(torch.nonzero(domain > 0.5).view(-1))["x"]
        pool_b = test.batch(torch.nonzero(domain <= 0.5).view(-1))["x"]
        if len(pool_a) == 0 or len(pool_b) == 0:
            raise DataError(f"{test.name}: the test set needs images of both domains")
    else:
        pool_a = pool_b = torch.zeros(0)
    content = _pick(args.content, pool_b, args.n, g, cfg, "content")
    donors = _pick(args.donor, pool_a, args.n, g, cfg, "donor")
    images = transfer_grid(method, content, donors, device)
    cells: list[list[torch.Tensor | None]] = [[None, None, *images["donors"]]]
    for i in range(len(content)):
        cells.append([images["content"][i], images["recon"][i], *images["added"][i]])
    cells.append([None, None, *images["removed"]])
    save_grid_png(cells, out)
    npz = out.with_suffix(".npz")
    np.savez_compressed(npz, **{k: v.numpy() for k, v in images.items()})
    print(f"wrote {out} (rows: content + recon + with each donor's attribute; first row donors, last row donors "
          f"with the attribute removed) and {npz}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer", help="remove / add / transfer the attribute (split backbone runs)",
                       description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory or exported model folder")
    p.add_argument("--content", nargs="+", metavar="IMG_OR_INDEX",
                   help="content images: indices into the domain-B test images, or image files")
    p.add_argument("--donor", nargs="+", metavar="IMG_OR_INDEX",
                   help="attribute donors: indices into the domain-A test images, or image files")
    p.add_argument("--n", type=int, default=6, help="images drawn per side when not given (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .png; the images also go to the .npz beside it")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_transfer)
