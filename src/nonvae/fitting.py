"""``nonvae.fit``: train from Python on your own images, with the CLI's run directory, checkpoints and resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from nonvae.config import Config, from_dict, load_config, to_dict
from nonvae.errors import ConfigError
from nonvae.rundir import RunDir

SAMPLES_KEPT = 16  # test images stored in the run directory when the data lives only in memory


def _config(config: Config | str | Path | dict | None, overrides: list[str] | None) -> Config:
    if isinstance(config, Config):
        if not overrides:
            return config
        from nonvae.config import apply_overrides

        return from_dict(Config, apply_overrides(to_dict(config), overrides))
    if isinstance(config, dict):
        from nonvae.config import apply_overrides

        return from_dict(Config, apply_overrides(dict(config), overrides or []))
    return load_config(config, overrides)


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _with_data(cfg: Config, data: dict) -> Config:
    """``cfg`` with another ``data`` section, validated like a config file's."""
    return from_dict(Config, {**to_dict(cfg), "data": data})


def fit(config: Config | str | Path | dict | None = None, train: Any = None, test: Any = None,
        run_dir: str | Path | None = None, overrides: list[str] | None = None):
    """Train (or resume) a run and return the trained :class:`nonvae.Autoencoder`.

    ``config``: a built-in name (``"lines/acai"``), a YAML path, a dict or a :class:`Config`;
    ``overrides`` are ``--set`` strings (``["train.steps=2000"]``). ``train``/``test``: a float tensor
    (N, C, H, W) in [-1, 1], a uint8 tensor, a ``torch.utils.data.Dataset`` yielding images (or
    (image, label) pairs), or a folder / list file of image files; without ``train`` the config's own
    data is used (exactly like ``nonvae train``). Without ``test`` a tenth of ``train`` (at most 256)
    is held out. ``run_dir`` (default ``runs/<data>_<method>``) gets config.yaml, checkpoints/,
    metrics.jsonl as with the CLI; calling ``fit`` again on it resumes.
    """
    from nonvae.data.images import ImagesData, memory_bundle
    from nonvae.model import Autoencoder
    from nonvae.train import Trainer

    cfg = _config(config, overrides)
    bundle = None
    if isinstance(train, str | Path):  # image files: the 'images' dataset, rebuilt from disk like the CLI's
        own = to_dict(cfg.data)
        data = {k: v for k, v in own.items() if k in _fields(ImagesData)}
        data.update(name="images", root=str(train), test=None if test is None else str(test))
        cfg = _with_data(cfg, data)
    elif train is not None:
        bundle = memory_bundle(cfg.data, train, test, cfg.seed)
        c, h, w = bundle.shape
        if h != w:
            raise ConfigError(f"train: images must be square (got {h}x{w}); crop or resize them first")
        cfg = _with_data(cfg, {"name": "memory", "image_size": h, "channels": c,
                               "train_limit": cfg.data.train_limit, "test_limit": cfg.data.test_limit})
    elif test is not None:
        raise ConfigError("fit: test=... needs train=... too")
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / f"{cfg.data.name}_{cfg.method}"
    trainer = Trainer(cfg, run_dir, data=bundle)
    try:
        trainer.fit()
    finally:
        if trainer.dist.active:
            trainer.callers = dict(trainer.method.players())
            torch.distributed.destroy_process_group()
    # back to the standard layout (training may run channels_last): the returned model then computes
    # exactly what ``nonvae.load(run_dir)`` does
    trainer.method.to(memory_format=torch.contiguous_format)
    sampler = None
    if bundle is not None and trainer.dist.is_main:
        sampler = _keep_memory_data(trainer, run_dir)
    method = trainer.method.eval()
    return Autoencoder.from_method(method, sampler, source=run_dir).eval()


def _keep_memory_data(trainer, run_dir: Path):
    """What a run needs from data that exists only in memory: test images (samples.npz, so pictures
    and ``nonvae interpolate`` work later) and the sampler fitted to its training codes."""
    from nonvae.export import _save_samples
    from nonvae.sampling import SAMPLER_FILE, fit_sampler, training_images

    test = trainer.data.test
    _save_samples(test.batch(torch.arange(min(SAMPLES_KEPT, len(test)))), RunDir(run_dir).test_images)
    method = trainer.method.eval()
    sampler = fit_sampler(method, training_images(trainer.cfg, trainer.data), seed=trainer.cfg.seed)
    sampler.info["step"] = trainer.step
    sampler.save(run_dir / SAMPLER_FILE)
    return sampler


__all__ = ["fit"]
