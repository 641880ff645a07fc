"""``nonvae transfer RUN_DIR``: remove, add, transfer and interpolate the attribute of a split backbone.

``--mode grid`` (default): rows are the content images (default: domain-B test images), columns the
attribute donors (default: domain-A test images)::

                                donor 1              donor 2   ...     <- the donors
    content 1 | G(E1(c1), 0) | G(E1(c1), E2(d1)) | G(E1(c1), E2(d2)) ...
    ...
                                G(E1(d1), 0)         ...                 <- the donors, attribute removed

so the first column after each input is that image with its attribute removed.
``--mode remove``: columns are the images; rows: input, reconstruction G(E1(x), E2(x)), G(E1(x), 0).
``--mode interpolate --steps K``: for each content image one row with the attribute code going from zero
to the first donor's, and one row from the first donor's to the second donor's (when given).

``--content`` / ``--attribute`` take test-set indices (into that domain's test images), image files,
folders or list files (one path per line, like trainA.txt); files are decoded with the run's crop and
size. Writes the grid as PNG and every image as .npz beside it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from nonvae.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD = 2
BLANK = 0.5  # grey for empty cells, in [0, 1]
LIST_SUFFIXES = (".txt", ".lst", ".list")


def _expand(items: list[str]) -> list[tuple[str, str]]:
    """(item, where it was listed): folders and list files -> their image paths (with the list-file line);
    indices and image files unchanged."""
    from nonvae.data.folders import list_images

    out: list[tuple[str, str]] = []
    for item in items:
        path = Path(item).expanduser()
        if not item.lstrip("-").isdigit() and (path.is_dir() or path.suffix.lower() in LIST_SUFFIXES):
            if not path.exists():
                raise DataError(f"{path}: no such list file")
            source = list_images(path)
            out += [(str(p), origin) for p, origin in zip(source.paths, source.origins, strict=True)]
        else:
            out.append((item, ""))
    return out


def _pick(items: list[tuple[str, str]] | None, pool: torch.Tensor, n: int, g: torch.Generator, cfg, what: str):
    """Images for --content/--attribute: indices into ``pool`` (one domain's test images) or files."""
    from nonvae.data.base import to_float
    from nonvae.data.folders import decode_image

    if not items:
        order = torch.randperm(len(pool), generator=g)[: min(n, len(pool))]
        return pool[order]
    out = []
    for item, origin in items:
        if item.lstrip("-").isdigit():
            i = int(item)
            if not -len(pool) <= i < len(pool):
                raise ConfigError(f"--{what} {i}: the run's test set has {len(pool)} {what} images")
            out.append(pool[i])
        else:
            try:
                array = decode_image(item, cfg.data.image_size, getattr(cfg.data, "crop", None), cfg.data.channels)
            except DataError as exc:
                raise DataError(f"{exc} ({origin})" if origin else str(exc)) from None
            out.append(to_float(torch.tensor(array)))
    return torch.stack(out)


def save_grid_png(cells: list[list[torch.Tensor | None]], path: Path, scale: int = 1) -> None:
    """A grid of (C, H, W) images in [-1, 1] (None = grey), PAD pixels apart, upscaled ``scale`` times
    with nearest neighbour (small images stay crisp)."""
    from nonvae.viz import save_grid

    first = next(c for row in cells for c in row if c is not None)
    cols = max(len(r) for r in cells)
    grid = torch.full((len(cells), cols, *first.shape), BLANK * 2 - 1)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            if cell is not None:
                grid[r, c] = cell
    save_grid(grid, path, scale=scale, pad=PAD)


def _grid_cells(content: torch.Tensor, donors: torch.Tensor, images: dict) -> list[list]:
    cells: list[list[torch.Tensor | None]] = [[None, None, *donors]]
    for i in range(len(content)):
        cells.append([content[i], images["removed"][i], *images["added"][i]])
    cells.append([None, None, *images["donors_removed"]])
    return cells


def cmd_transfer(args: argparse.Namespace) -> int:
    from nonvae.data.domains import domain_test_set
    from nonvae.latent import interpolate_attribute, reconstruct, remove_attribute, transfer
    from nonvae.pipeline import config_of, load, test_set_or_samples

    if args.n <= 0:
        raise ConfigError("--n must be > 0")
    if args.steps < 2:
        raise ConfigError(f"--steps must be >= 2 (got {args.steps})")
    if args.scale < 1:
        raise ConfigError(f"--scale must be >= 1 (got {args.scale})")
    from nonvae.limits import output_file

    out = output_file(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"--out {out}: expected a .png (or .jpg) file name")
    cfg = config_of(args.run_dir)
    from nonvae.limits import check_memory

    c, size = cfg.data.channels, cfg.data.image_size
    cells = max((args.n + 2) ** 2, 2 * args.n * (args.steps + 1), 3 * args.n)
    # float32 images and their numpy copy, then the uint8 canvas and its upscaled copy
    check_memory(cells * c * (8 * size * size + 2 * (size + 2) ** 2 * args.scale ** 2),
                 f"--n {args.n}, --steps {args.steps}, --scale {args.scale}")
    if cfg.model.backbone != "split":
        raise ConfigError(f"{args.run_dir}: transfer needs a split backbone (model.backbone: split), "
                          f"this run has {cfg.model.backbone!r}")
    content_items = _expand(args.content) if args.content else None
    donor_items = _expand(args.attribute) if args.attribute else None
    device = torch.device(args.device)
    method = load(args.run_dir, device)
    given = (content_items or []) + (donor_items or [])
    needs_test = not (content_items and (donor_items or args.mode == "remove")) or any(
        item.lstrip("-").isdigit() for item, _ in given)
    g = torch.Generator().manual_seed(args.seed)
    if needs_test:
        test, note = test_set_or_samples(args.run_dir, lambda: domain_test_set(cfg.data))
        if note:
            log.warning("note: %s", note)
        domain = test.extras["domain"]
        pool_a = test.batch(torch.nonzero(domain > 0.5).view(-1))["x"]
        pool_b = test.batch(torch.nonzero(domain <= 0.5).view(-1))["x"]
        if len(pool_a) == 0 or len(pool_b) == 0:
            raise DataError(f"{test.name}: the test set needs images of both domains")
    else:
        pool_a = pool_b = torch.zeros(0)
    if args.mode == "remove":  # default: domain-A images, the ones that have the attribute
        content = _pick(content_items, pool_a, args.n, g, cfg, "content").to(device)
        removed = remove_attribute(method, content)
        recon = reconstruct(method, content, torch.ones(len(content), device=device))
        images = {"content": content, "recon": recon, "removed": removed}
        cells = [list(images["content"]), list(images["recon"]), list(images["removed"])]
        what = "rows: input, reconstruction, attribute removed"
    else:
        content = _pick(content_items, pool_b, args.n, g, cfg, "content").to(device)
        n_donors = 2 if args.mode == "interpolate" else args.n
        donors = _pick(donor_items, pool_a, n_donors, g, cfg, "attribute").to(device)
        if args.mode == "grid":
            images = {"content": content, "donors": donors, **transfer(method, content, donors)}
            cells = _grid_cells(content, donors, images)
            what = ("first row: donors; each row: content, attribute removed, then with each donor's attribute; "
                    "last row: donors with the attribute removed")
        else:
            rows = {"from_zero": interpolate_attribute(method, content, None, donors[:1], args.steps)}
            if len(donors) > 1:
                rows["between_donors"] = interpolate_attribute(method, content, donors[:1], donors[1:2], args.steps)
            images = {"content": content, "donors": donors, **rows}
            cells = [[None, *donors[:2]]]
            for i in range(len(content)):
                for frames in rows.values():
                    cells.append([content[i], *frames[i]])
            what = (f"per content image: attribute code from zero to donor 1 in {args.steps} steps"
                    + (", then from donor 1 to donor 2" if len(donors) > 1 else ""))
    save_grid_png([[c.cpu() if c is not None else None for c in row] for row in cells], out, args.scale)
    npz = out.with_suffix(".npz")
    np.savez_compressed(npz, **{k: v.float().cpu().numpy() for k, v in images.items()})
    log.info("wrote %s (%s) and %s", out, what, npz)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer", help="remove / add / transfer / interpolate the attribute (split backbones)",
                       description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory, exported model folder or pretrained/ model")
    p.add_argument("--mode", choices=["grid", "remove", "interpolate"], default="grid")
    p.add_argument("--content", nargs="+", metavar="IMG_OR_LIST",
                   help="content images: indices into the test images (domain B; domain A with --mode remove), "
                        "image files, folders or list files")
    p.add_argument("--attribute", "--donor", dest="attribute", nargs="+", metavar="IMG_OR_LIST",
                   help="attribute donors: indices into the domain-A test images, image files, folders or list files")
    p.add_argument("--n", type=int, default=6, help="images drawn per side when not given (default 6)")
    p.add_argument("--steps", type=int, default=8, help="interpolation steps with --mode interpolate (default 8)")
    p.add_argument("--scale", type=int, default=1, help="upscale the PNG this many times (nearest neighbour)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .png; the images also go to the .npz beside it")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_transfer)
