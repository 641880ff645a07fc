"""Using a trained run: load it, encode, decode, interpolate.

A run directory (``nonvae train``: config.yaml + checkpoints/), a model folder (``nonvae export`` /
``save_pretrained``: config.json + model.safetensors, or the older config.yaml +
autoencoder.safetensors) and a shipped model's name are all accepted. ``load`` here returns the
training-side ``Method``; the public ``nonvae.load`` wraps it as :class:`nonvae.model.Autoencoder`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nonvae.checkpoint import find_latest, load_weights, weights_file
from nonvae.config import Config, load_config
from nonvae.errors import CheckpointError, ConfigError
from nonvae.methods import AUTOENCODER, Method, build_method
from nonvae.resources import model_path


def image_shape_of(cfg: Config) -> tuple[int, int, int]:
    return (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)


def checkpoint_dir_of(path: str | Path) -> Path:
    """The folder holding the weights: RUN_DIR/checkpoints/latest, a step folder, or an export."""
    path = model_path(path)
    if weights_file(path, AUTOENCODER).is_file():  # a model folder (Hub layout or older export)
        return path
    latest = find_latest(path / "checkpoints")
    if latest is None:
        raise CheckpointError(f"{path}: no complete checkpoint found (expected {path}/checkpoints/latest/)")
    return latest


def config_of(path: str | Path) -> Config:
    """The resolved config of a run directory, model folder or shipped model name."""
    path = model_path(path)
    if (path / "config.json").is_file() and not (path / "config.yaml").is_file():  # the Hub layout
        from nonvae.model import read_config_json

        return read_config_json(path / "config.json")
    for candidate in (path / "config.yaml", path.parent.parent / "config.yaml"):
        if candidate.is_file():
            return load_config(candidate)
    raise CheckpointError(f"{path}: no config.yaml or config.json (is this a run directory or model folder?)")


def load(path: str | Path, device: str | torch.device = "cpu", with_adversaries: bool = False) -> Method:
    """The trained method in eval mode, ready to ``encode``/``decode``."""
    path = model_path(path)
    cfg = config_of(path)
    method = build_method(cfg, image_shape_of(cfg))
    ckpt = checkpoint_dir_of(path)
    players = method.players() if with_adversaries else {AUTOENCODER: method.autoencoder}
    for name, module in players.items():
        load_weights(module, weights_file(ckpt, name), name)
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


# --------------------------------------------------------------------------- attribute operations (split backbones)
def _split_backbone(method):
    ae = method.autoencoder
    if not hasattr(ae, "encode_parts"):
        raise ConfigError("this model has no attribute code: remove/transfer need a split backbone "
                          "(model.backbone: split, e.g. configs/attributes/disentangle.yaml)")
    return ae


@torch.no_grad()
def split_codes(method, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E1(x), E2(x)), the attribute code not masked by domain."""
    return _split_backbone(method).encode_parts(x, None)


@torch.no_grad()
def remove_code(method, x: torch.Tensor) -> torch.Tensor:
    """[E1(x), 0]: the code of x with its attribute removed."""
    content, attribute = split_codes(method, x)
    return method.autoencoder.combine(content, torch.zeros_like(attribute))


@torch.no_grad()
def add_code(method, content_x: torch.Tensor, donor_x: torch.Tensor) -> torch.Tensor:
    """[E1(content_x), E2(donor_x)]: content_x with the donor's attribute."""
    content, _ = split_codes(method, content_x)
    _, attribute = split_codes(method, donor_x)
    return method.autoencoder.combine(content, attribute)


def _decode(method, content: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
    ae = method.autoencoder
    return method.decode(ae.combine(content, attribute)).float().clamp(-1, 1)


@torch.no_grad()
def remove_attribute(method, x: torch.Tensor) -> torch.Tensor:
    """G(E1(x), 0): the images with their attribute removed (a domain-B image comes back as itself)."""
    return method.decode(remove_code(method, x)).float().clamp(-1, 1)


@torch.no_grad()
def transfer(method, content: torch.Tensor, donors: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every content image with every donor's attribute.

    Returns ``removed`` (M, C, H, W) = G(E1(c), 0), ``added`` (M, N, C, H, W) = G(E1(c), E2(d)) and
    ``donors_removed`` (N, C, H, W) = G(E1(d), 0).
    """
    c_content, c_attr = split_codes(method, content)
    d_content, d_attr = split_codes(method, donors)
    m, n = len(content), len(donors)
    added = _decode(method, c_content.repeat_interleave(n, 0), d_attr.repeat(m, *([1] * (d_attr.ndim - 1))))
    return {"removed": _decode(method, c_content, torch.zeros_like(c_attr)),
            "added": added.view(m, n, *added.shape[1:]),
            "donors_removed": _decode(method, d_content, torch.zeros_like(d_attr))}


@torch.no_grad()
def interpolate_attribute(method, content: torch.Tensor, start: torch.Tensor | None, end: torch.Tensor,
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
    content_code, _ = split_codes(method, content)
    _, a_end = split_codes(method, end)
    a_start = torch.zeros_like(a_end) if start is None else split_codes(method, start)[1]
    a_start, a_end = a_start.expand(m, *a_start.shape[1:]), a_end.expand(m, *a_end.shape[1:])
    t = torch.linspace(0, 1, steps, device=a_end.device).view(1, steps, *([1] * (a_end.ndim - 1)))
    codes = (1 - t) * a_start.unsqueeze(1) + t * a_end.unsqueeze(1)
    decoded = _decode(method, content_code.repeat_interleave(steps, 0), codes.flatten(0, 1))
    return decoded.view(m, steps, *decoded.shape[1:])


def load_samples(path: str | Path) -> dict[str, torch.Tensor]:
    """The test images an exported model folder carries (samples.npz): ``x`` in [-1, 1], ``domain``, ``y``.

    Lets pictures be made from a model folder alone (e.g. the shipped pretrained/ models) without
    the training data on the machine.
    """
    import zipfile

    import numpy as np

    file = model_path(path) / "samples.npz"
    if not file.is_file():
        raise CheckpointError(f"{path}: no samples.npz (export the run with `nonvae export --samples N`)")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{file}: unreadable samples file ({exc})") from None
    if "x" not in arrays or arrays["x"].dtype != torch.uint8 or arrays["x"].ndim != 4:
        raise CheckpointError(f"{file}: expected uint8 images 'x' of shape (N, C, H, W)")
    arrays["x"] = arrays["x"].float().div(127.5).sub(1)
    return arrays


def samples_set(path: str | Path):
    """A model folder's samples.npz as a small test ImageSet (domain and class kept when stored)."""
    from nonvae.data.base import ImageSet

    samples = load_samples(path)
    extras = {"domain": samples["domain"].float()} if "domain" in samples else {}
    labels = samples["y"].long() if "y" in samples else None
    return ImageSet(samples["x"], labels, name=f"{path}/samples.npz", extras=extras)


def test_set_or_samples(path: str | Path, build) -> tuple:
    """(``build()``, None), or for a model folder whose data is not on this machine (samples.npz, note).

    ``build`` makes the run's test set (e.g. ``lambda: build_data(cfg.data, cfg.seed).test``); the note
    says why the stored samples were used instead.
    """
    from nonvae.errors import NonvaeError

    try:
        return build(), None
    except NonvaeError as exc:
        if not (model_path(path) / "samples.npz").is_file():
            raise
        test = samples_set(path)
        return test, (f"using the {len(test)} test images stored with the model (samples.npz): "
                      f"the training data is not on this machine ({exc})")
