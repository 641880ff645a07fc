"""The augmentation set T and its distribution P_T (augmentation cross-consistency).

Config format (``regularizers.augment.ops``): op name -> probability, or op name ->
``{p: probability, <op parameters>}``::

    ops: {hflip: 0.3, vflip: 0.1, rot90: 0.2, channel_reverse: 0.2, color_noise: {p: 0.2, sigma: 0.05}}

Probabilities are normalised into one categorical distribution; every example of a
batch gets exactly one op per step, drawn with torch's global RNG on the batch's
device (the trainer reseeds it every step, so resumed runs stay exact). An empty
mapping means P_T = U(T) over the perturbations (every op except ``identity``,
which is a control that leaves images unchanged; ``rot90`` is left out of that
default for non-square images).

Ops (images in [-1, 1], shape (N, C, H, W) kept, output clipped to [-1, 1]):

- ``identity``: t(x) = x (control: the cross loss becomes twice the reconstruction loss).
- ``hflip`` / ``vflip``: mirror left-right / top-bottom.
- ``rot90``: rotate by k quarter turns, k drawn per example from {1, 2, 3}
  (``k: random``, the default) or fixed (``k: 1`` is a fixed 90°); square images only.
- ``channel_reverse``: reverse the channel order (RGB -> BGR). A 1-channel image
  would be left unchanged, so there it inverts intensities, x -> -x: the seed
  description's "inverting the values of one dimension".
- ``color_noise``: add i.i.d. Gaussian noise of std ``sigma`` (default 0.05) per pixel and channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from nonvae.errors import ConfigError, did_you_mean

OPS: tuple[str, ...] = ("identity", "hflip", "vflip", "rot90", "channel_reverse", "color_noise")
# per-op parameters (besides p) and their defaults
PARAMS: dict[str, dict[str, Any]] = {
    "identity": {},
    "hflip": {},
    "vflip": {},
    "rot90": {"k": "random"},
    "channel_reverse": {},
    "color_noise": {"sigma": 0.05},
}


def _rot90(x: torch.Tensor, k: Any) -> torch.Tensor:
    if k != "random":
        return torch.rot90(x, int(k), dims=(-2, -1))
    ks = torch.randint(1, 4, (len(x),), device=x.device)
    out = torch.empty_like(x)
    for kk in (1, 2, 3):
        idx = (ks == kk).nonzero().flatten()
        if len(idx):
            out[idx] = torch.rot90(x[idx], kk, dims=(-2, -1))
    return out


def _channel_reverse(x: torch.Tensor) -> torch.Tensor:
    return -x if x.shape[1] == 1 else x.flip(1)


def _color_noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return x + torch.randn(x.shape, device=x.device, dtype=x.dtype) * sigma


_APPLY: dict[str, Callable[..., torch.Tensor]] = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": _rot90,
    "channel_reverse": _channel_reverse,
    "color_noise": _color_noise,
}


def _finite(x: float) -> float:
    """float(x), with an integer too large for a float as inf (refused by the callers)."""
    try:
        return float(x)
    except OverflowError:
        return math.inf


def _parse_op(name: str, spec: Any, where: str) -> tuple[float, dict[str, Any]]:
    """(probability, parameters) from a number or a {p: .., param: ..} mapping."""
    params = dict(PARAMS[name])
    if isinstance(spec, Mapping):
        spec = dict(spec)
        p = spec.pop("p", 1.0)
        for key, value in spec.items():
            if key not in params:
                raise ConfigError(f"{where}.{name}: unknown parameter '{key}'"
                                  + did_you_mean(str(key), ["p", *params]))
            params[key] = value
    else:
        p = spec
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= _finite(p) < math.inf:
        raise ConfigError(f"{where}.{name}: probability must be a finite number >= 0, got {str(p)[:40]!r}")
    if name == "rot90" and params["k"] != "random":
        k = params["k"]
        if isinstance(k, bool) or not isinstance(k, int) or k not in (1, 2, 3):
            raise ConfigError(f"{where}.rot90.k: expected 'random' or 1, 2, 3 (quarter turns), got {str(k)[:40]!r}")
    if name == "color_noise":
        sigma = params["sigma"]
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 <= _finite(sigma) < math.inf:
            raise ConfigError(f"{where}.color_noise.sigma: expected a finite number >= 0, got {str(sigma)[:40]!r}")
        params["sigma"] = float(sigma)
    return float(p), params


class Augmentation:
    """T with P_T: draws one op per example and applies it.

    ``names[i]`` is the op with index i (the op index returned per example).
    """

    def __init__(self, ops: Mapping[str, Any] | None, image_shape: tuple[int, ...],
                 where: str = "regularizers.augment.ops") -> None:
        square = len(image_shape) == 3 and image_shape[1] == image_shape[2]
        if not ops:
            ops = {name: 1.0 for name in OPS if name != "identity" and (square or name != "rot90")}
        names, probs, params = [], [], []
        for name, spec in ops.items():
            if name not in PARAMS:
                raise ConfigError(f"{where}: unknown augmentation '{name}'" + did_you_mean(str(name), OPS))
            p, prm = _parse_op(name, spec, where)
            if p == 0:
                continue
            if name == "rot90" and not square:
                raise ConfigError(f"{where}.rot90: needs square images, got {image_shape}")
            names.append(name)
            probs.append(p)
            params.append(prm)
        if not names:
            raise ConfigError(f"{where}: every probability is 0; give at least one op a positive probability")
        self.names: list[str] = names
        self.params: list[dict[str, Any]] = params
        total = sum(probs)
        self.probs = torch.tensor([p / total for p in probs], dtype=torch.float64)

    def __repr__(self) -> str:
        ops = ", ".join(f"{n}: {float(p):.3g}" for n, p in zip(self.names, self.probs, strict=True))
        return f"Augmentation({{{ops}}})"

    def sample(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Op index per example, drawn from P_T with torch's global RNG on ``device``."""
        u = torch.rand(n, device=device)
        cdf = self.probs.cumsum(0).to(device=device, dtype=u.dtype)
        return torch.searchsorted(cdf, u, right=True).clamp_(max=len(self.names) - 1)

    def apply(self, x: torch.Tensor, op: torch.Tensor) -> torch.Tensor:
        """t_{op[i]}(x[i]) for every example, clipped to [-1, 1]."""
        if len(op) != len(x):
            raise ValueError(f"{len(op)} op indices for {len(x)} images")
        out = torch.empty_like(x)
        for i in range(len(self.names)):
            idx = (op == i).nonzero().flatten()
            if len(idx):
                out[idx] = self._apply_one(i, x[idx]).to(out.dtype)
        return out.clamp_(-1, 1)

    def apply_op(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """One named op on every example (measurement: latent distance per op)."""
        if name not in self.names:
            raise ValueError(f"op {name!r} is not in this augmentation set {self.names}")
        return self._apply_one(self.names.index(name), x).clamp(-1, 1)

    def _apply_one(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return _APPLY[self.names[i]](x, **self.params[i])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(t(x), op index per example) with t ~ P_T drawn independently per example."""
        op = self.sample(len(x), x.device)
        return self.apply(x, op), op
