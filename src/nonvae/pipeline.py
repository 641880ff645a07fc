"""Using a trained run: find and load it, and the test images a model folder stores.

A run directory (``nonvae train``: config.yaml + checkpoints/), a model folder (``nonvae export`` /
``save_pretrained``: config.json + model.safetensors, or the older config.yaml +
autoencoder.safetensors) and a shipped model's name are all accepted. ``load`` here returns the
training-side ``Method``; the public ``nonvae.load`` wraps it as :class:`nonvae.model.Autoencoder`.
:class:`nonvae.rundir.RunDir` knows the files. The operations on a loaded model (interpolate,
transfer, remove_attribute, ...) live in :mod:`nonvae.latent` and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nonvae.checkpoint import load_weights, weights_file
from nonvae.config import Config, load_config
from nonvae.errors import CheckpointError
from nonvae.latent import (  # noqa: F401  (the Python API: nonvae.interpolate, ...)
    add_code,
    interpolate,
    interpolate_attribute,
    remove_attribute,
    remove_code,
    split_codes,
    transfer,
)
from nonvae.methods import AUTOENCODER, Method, build_method
from nonvae.resources import model_path
from nonvae.rundir import AUTOENCODER_EMA, RunDir, weights_name


def image_shape_of(cfg: Config) -> tuple[int, int, int]:
    return (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)


def checkpoint_dir_of(path: str | Path) -> Path:
    """The folder holding the weights: RUN_DIR/checkpoints/latest, a step folder, or an export."""
    return RunDir(model_path(path)).weights_dir()


def config_of(path: str | Path) -> Config:
    """The resolved config of a run directory, model folder, checkpoint step folder or shipped model name."""
    file = RunDir(model_path(path)).config_file()
    if file.name == RunDir.config_json.name:  # the Hub layout
        from nonvae.model import read_config_json

        return read_config_json(file)
    return load_config(file, stored=True)


def load(path: str | Path, device: str | torch.device = "cpu", with_adversaries: bool = False) -> Method:
    """The trained method in eval mode, ready to ``encode``/``decode``."""
    path = model_path(path)
    cfg = config_of(path)
    method = build_method(cfg, image_shape_of(cfg))
    ckpt = checkpoint_dir_of(path)
    players = method.players() if with_adversaries else {AUTOENCODER: method.backbone}
    for name, module in players.items():
        load_weights(module, weights_file(ckpt, name), name)
    if cfg.train.ema is not None and (ckpt / weights_name(AUTOENCODER_EMA)).is_file():
        # a run trained with train.ema: the model is the weight average (what its evaluations measured)
        load_weights(method.backbone, weights_file(ckpt, AUTOENCODER_EMA), AUTOENCODER_EMA)
    method.run_dir = Path(path)  # type: ignore[attr-defined]
    return method.to(device).eval()


def load_test_images(path: str | Path) -> dict[str, torch.Tensor]:
    """The test images an exported model folder stores (samples.npz): ``x`` in [-1, 1], ``domain``, ``y``.

    (Not the training-time sample grids of RUN_DIR/samples/.)
    Lets pictures be made from a model folder alone (e.g. the shipped pretrained/ models) without
    the training data on the machine.
    """
    import zipfile

    import numpy as np

    from nonvae.data.base import to_float

    file = RunDir(model_path(path)).test_images
    if not file.is_file():
        raise CheckpointError(f"{path}: no {file.name} (export the run with `nonvae export --samples N`)")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{file}: unreadable samples file ({exc})") from None
    if "x" not in arrays or arrays["x"].dtype != torch.uint8 or arrays["x"].ndim != 4:
        raise CheckpointError(f"{file}: expected uint8 images 'x' of shape (N, C, H, W)")
    arrays["x"] = to_float(arrays["x"])
    return arrays


load_samples = load_test_images  # the name the API has had (nonvae.load_samples)


def samples_set(path: str | Path):
    """A model folder's samples.npz as a small test ImageSet (domain and class kept when stored)."""
    from nonvae.data.base import ImageSet

    stored = load_test_images(path)
    extras = {"domain": stored["domain"].float()} if "domain" in stored else {}
    labels = stored["y"].long() if "y" in stored else None
    return ImageSet(stored["x"], labels, name=str(RunDir(path).test_images), extras=extras)


def test_set_or_samples(path: str | Path, build) -> tuple:
    """(``build()``, None), or for a model folder whose data is not on this machine (samples.npz, note).

    ``build`` makes the run's test set (e.g. ``lambda: build_data(cfg.data, cfg.seed).test``); the note
    says why the stored samples were used instead.
    """
    from nonvae.errors import NonvaeError

    try:
        return build(), None
    except NonvaeError as exc:
        stored = RunDir(model_path(path)).test_images
        if not stored.is_file():
            raise
        test = samples_set(path)
        return test, (f"using the {len(test)} test images stored with the model ({stored.name}): "
                      f"the training data is not on this machine ({exc})")
