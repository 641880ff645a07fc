"""Pure functions on a trained backbone: batched encoding, interpolation and the split-code operations.

The CLI, the report, evaluation, training-time pictures and the Python API all call these, so each
operation is written once. ``model`` is a backbone (``encode(x, domain)``, ``decode(z)``; a split
backbone also ``encode_parts`` and ``combine``) or anything exposing one as ``.backbone`` (the
inference model ``nonvae.load`` returns, a training ``Method``). Nothing here trains: every function
runs without gradients.

Split codes (content disentanglement): a code is [E1(x), E2(x)], content and attribute; the
attribute-free domain's attribute code is zero. Removing the attribute decodes [E1(x), 0], adding
one decodes [E1(c), E2(donor)].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nonvae.data.base import ImageSet
from nonvae.errors import ConfigError


def backbone_of(model: Any) -> nn.Module:
    """The backbone of an inference model or method (``.backbone``), or the backbone itself."""
    return getattr(model, "backbone", model)


# --------------------------------------------------------------------------- any backbone
@torch.no_grad()
def reconstruct(model: Any, x: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
    """g(f(x)), clipped to the image range [-1, 1]."""
    ae = backbone_of(model)
    return ae.decode(ae.encode(x, domain)).float().clamp(-1, 1)


@torch.no_grad()
def encode_all(model: Any, ds: ImageSet, device: torch.device | str, batch_size: int = 256,
               desc: str | None = None, recon: bool = True, precision: str = "fp32",
               limit: int | None = None) -> tuple[np.ndarray, float]:
    """Flattened codes of the first ``limit`` (default: all) images of ``ds`` and their mean reconstruction MSE.

    ``recon=False`` skips decoding (the MSE is then NaN): a third of the work for a conv AE, which
    matters when encoding a whole training set for the probe. ``precision='bf16'`` runs the networks
    under bf16 autocast (codes and errors are read back in float32); 'auto' does so where bf16 is native
    (``nonvae.threads.native_bf16``). ``desc`` shows a progress bar.
    """
    from tqdm.auto import tqdm

    from nonvae.threads import resolve_precision

    ae, device = backbone_of(model), torch.device(device)
    precision = resolve_precision(precision, device.type)
    n = len(ds) if limit is None else min(limit, len(ds))
    codes, sq, count = [], 0.0, 0
    starts = range(0, n, batch_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for start in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 20, leave=False):
        batch = ds.batch(torch.arange(start, min(start + batch_size, n)))
        x = batch["x"].to(device)
        domain = batch.get("domain")
        with autocast:
            z = ae.encode(x, None if domain is None else domain.to(device))
            if recon:
                decoded = ae.decode(z)
        if recon:
            sq += float((decoded.float() - x.float()).pow(2).sum())
            count += x.numel()
        codes.append(z.flatten(1).float().cpu().numpy())
    return np.concatenate(codes), sq / count if count else float("nan")


@torch.no_grad()
def interpolate(model: Any, x_a: torch.Tensor, x_b: torch.Tensor, steps: int,
                domain_a: torch.Tensor | None = None, domain_b: torch.Tensor | None = None) -> torch.Tensor:
    """Decoded linear interpolations between the codes of x_a and x_b: (N, steps, C, H, W) in [-1, 1].

    t = k / (steps - 1), so the decoded endpoints are included.
    """
    ae = backbone_of(model)
    za = ae.encode(x_a, domain_a)
    zb = ae.encode(x_b, domain_b)
    t = torch.linspace(0, 1, steps, device=za.device).view(1, steps, *([1] * (za.ndim - 1)))
    codes = (1 - t) * za.unsqueeze(1) + t * zb.unsqueeze(1)
    decoded = ae.decode(codes.flatten(0, 1))
    return decoded.view(len(za), steps, *decoded.shape[1:]).clamp(-1, 1)


def pick_pairs(n_items: int, n_pairs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded endpoint indices (a, b) of ``n_pairs`` interpolation pairs among ``n_items`` test images.

    Fixed by the seed, so the CLI and reports of different runs on the same data show the same pairs;
    distinct images when there are enough, else drawn with replacement.
    """
    g = torch.Generator().manual_seed(seed)
    if n_items >= 2 * n_pairs:
        idx = torch.randperm(n_items, generator=g)[: 2 * n_pairs]
    else:
        idx = torch.randint(n_items, (2 * n_pairs,), generator=g)
    return idx[:n_pairs], idx[n_pairs:]


# --------------------------------------------------------------------------- split backbones
def split_backbone(model: Any) -> nn.Module:
    """The backbone, which must have an attribute code (``encode_parts``)."""
    ae = backbone_of(model)
    if not hasattr(ae, "encode_parts"):
        raise ConfigError("this model has no attribute code: remove/transfer need a split backbone "
                          "(model.backbone: split, e.g. configs/attributes/disentangle.yaml)")
    return ae


@torch.no_grad()
def split_codes(model: Any, x: torch.Tensor, domain: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(E1(x), E2(x)); the attribute code is zeroed where ``domain`` is 0 (not masked without ``domain``)."""
    return split_backbone(model).encode_parts(x, domain)


@torch.no_grad()
def decode_parts(model: Any, content: torch.Tensor, attribute: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """G([content, attribute]) in float32, clipped to [-1, 1] (``clamp=False``: as decoded, for errors)."""
    ae = split_backbone(model)
    decoded = ae.decode(ae.combine(content, attribute)).float()
    return decoded.clamp(-1, 1) if clamp else decoded


@torch.no_grad()
def remove_code(model: Any, x: torch.Tensor) -> torch.Tensor:
    """[E1(x), 0]: the code of x with its attribute removed."""
    content, attribute = split_codes(model, x)
    return split_backbone(model).combine(content, torch.zeros_like(attribute))


@torch.no_grad()
def add_code(model: Any, content_x: torch.Tensor, donor_x: torch.Tensor) -> torch.Tensor:
    """[E1(content_x), E2(donor_x)]: content_x with the donor's attribute."""
    content, _ = split_codes(model, content_x)
    _, attribute = split_codes(model, donor_x)
    return split_backbone(model).combine(content, attribute)


@torch.no_grad()
def remove_attribute(model: Any, x: torch.Tensor) -> torch.Tensor:
    """G(E1(x), 0): the images with their attribute removed (a domain-B image comes back as itself)."""
    content, attribute = split_codes(model, x)
    return decode_parts(model, content, torch.zeros_like(attribute))


@torch.no_grad()
def transfer(model: Any, content: torch.Tensor, donors: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every content image with every donor's attribute.

    Returns ``removed`` (M, C, H, W) = G(E1(c), 0), ``added`` (M, N, C, H, W) = G(E1(c), E2(d)) and
    ``donors_removed`` (N, C, H, W) = G(E1(d), 0).
    """
    c_content, c_attr = split_codes(model, content)
    d_content, d_attr = split_codes(model, donors)
    m, n = len(content), len(donors)
    added = decode_parts(model, c_content.repeat_interleave(n, 0), d_attr.repeat(m, *([1] * (d_attr.ndim - 1))))
    return {"removed": decode_parts(model, c_content, torch.zeros_like(c_attr)),
            "added": added.view(m, n, *added.shape[1:]),
            "donors_removed": decode_parts(model, d_content, torch.zeros_like(d_attr))}


@torch.no_grad()
def interpolate_attribute(model: Any, content: torch.Tensor, start: torch.Tensor | None, end: torch.Tensor,
                          steps: int) -> torch.Tensor:
    """G(E1(c), (1 - t) E2(start) + t E2(end)) for t = 0 .. 1 in ``steps`` steps: (M, steps, C, H, W).

    ``start=None`` starts from the zero attribute code (no attribute); ``start``/``end`` are one donor
    image each (1, C, H, W) or one per content image (M, C, H, W).
    """
    if steps < 2:
        raise ConfigError(f"steps must be >= 2 (got {steps})")
    m = len(content)
    for name, donor in (("start", start), ("end", end)):
        if donor is not None and len(donor) not in (1, m):
            raise ConfigError(f"interpolate_attribute: {name} has {len(donor)} images; give 1 or one per "
                              f"content image ({m})")
    content_code, _ = split_codes(model, content)
    _, a_end = split_codes(model, end)
    a_start = torch.zeros_like(a_end) if start is None else split_codes(model, start)[1]
    a_start, a_end = a_start.expand(m, *a_start.shape[1:]), a_end.expand(m, *a_end.shape[1:])
    t = torch.linspace(0, 1, steps, device=a_end.device).view(1, steps, *([1] * (a_end.ndim - 1)))
    codes = (1 - t) * a_start.unsqueeze(1) + t * a_end.unsqueeze(1)
    decoded = decode_parts(model, content_code.repeat_interleave(steps, 0), codes.flatten(0, 1))
    return decoded.view(m, steps, *decoded.shape[1:])
