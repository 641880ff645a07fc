"""``nonvae export``: a model folder in the Hugging Face Hub layout that ``load``, ``from_pretrained``,
``interpolate``, ``transfer``, ``sample`` and ``report`` accept.

The folder holds config.json (the full run config), model.safetensors (the autoencoder), a README.md
model card with metadata front matter, the adversaries' weights (``<name>.safetensors``; not with
``inference_only``), eval.json when the run was evaluated, the sampler when one was fitted, and
samples.npz: a few test images (uint8, with their domain and class when the data has them) so that
pictures can be made from the folder alone, without the training data. Older exports (config.yaml +
autoencoder.safetensors) are still read everywhere.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from nonvae.checkpoint import STATE_FILE, load_tensors, read_state
from nonvae.data.base import to_uint8
from nonvae.errors import ConfigError, NonvaeError
from nonvae.methods import AUTOENCODER
from nonvae.pipeline import checkpoint_dir_of, config_of
from nonvae.rundir import AUTOENCODER_EMA, RunDir, weights_name

log = logging.getLogger(__name__)


def _settings(section) -> str:
    """A regularizer's scalar settings as 'key value, ...' for the model card."""
    return ", ".join(f"{k} {v}" for k, v in vars(section).items() if isinstance(v, int | float | str))


def _pin_attribute_base(cfg):
    """data.base 'auto' -> the base images this machine resolves it to (as the run saw them), so that the
    folder elsewhere does not silently fall back to other base images."""
    import copy

    if cfg.data.name != "attributes" or cfg.data.base != "auto":
        return cfg
    from nonvae.data.attributes import load_base

    try:
        _, _, base = load_base(cfg.data, "test")
    except NonvaeError:
        return cfg
    pinned = copy.deepcopy(cfg)
    pinned.data.base = base
    return pinned


def _save_samples(batch: dict, path: Path) -> None:
    """A batch's images as uint8 (+ its domain and class when present) -> samples.npz."""
    import numpy as np

    arrays = {"x": to_uint8(batch["x"]).numpy()}
    for key in ("domain", "y"):
        if key in batch:
            arrays[key] = batch[key].numpy()
    np.savez_compressed(path, **arrays)


def _write_samples(cfg, path: Path, n: int, run_dir: Path | None = None) -> int:
    """Up to n test images (half from each domain for two-domain data) -> samples.npz; returns the count."""
    import torch

    from nonvae.data import build_data

    try:
        test = build_data(cfg.data, cfg.seed).test
    except NonvaeError as exc:  # e.g. the data is not on this machine: the export is still usable
        kept_file = RunDir(run_dir).test_images if run_dir is not None else None
        if kept_file is not None and kept_file.is_file():  # the run kept some (nonvae.fit)
            from nonvae.pipeline import load_test_images

            kept = load_test_images(run_dir)
            shutil.copyfile(kept_file, path)
            return len(kept["x"])
        log.warning("warning: no %s (%s)", path.name, exc)
        return 0
    if "domain" in test.extras:
        domain = test.extras["domain"].reshape(-1) > 0.5
        ia, ib = torch.nonzero(domain).view(-1), torch.nonzero(~domain).view(-1)
        index = torch.cat([ia[: n - n // 2], ib[: n // 2]])
    else:
        index = torch.arange(min(n, len(test)))
    _save_samples(test.batch(index), path)
    return len(index)


def describe(cfg, out: Path, step: int | None, half: bool, n_samples: int) -> list[str]:
    """The model card's prose: what was trained, how to load it (shared with ``save_pretrained``)."""
    trained = f"Trained for {step} steps" if step is not None else "Trained"
    return [
        f"# nonvae model: {cfg.method} on {cfg.data.name}",
        "",
        f"{trained} (batch {cfg.train.batch_size}, lr {cfg.train.lr}, seed {cfg.seed}).",
        f"Backbone: {cfg.model.backbone}; regularizers: "
        + (", ".join(f"{k} ({_settings(v)})" for k, v in cfg.regularizers.items() if v is not None)
           or "none") + f". The full config is in {RunDir.config_json.name}.",
        "",
        "Load it with `nonvae.from_pretrained(\"" + str(out) + "\")` (an `nn.Module`: `model(x)`, `encode`, "
        "`decode`, `sample`)"
        + (f"; `nonvae.load_samples(\"{out}\")` gives the {n_samples} test images stored beside it."
           if n_samples else "."),
        *(["", "Weights are stored as float16 (half the size; loading casts them back to float32). "
            "The metrics below were measured with the float32 weights before export."] if half else []),
        "",
    ]


def _check_out(run_dir: Path, out: Path, force: bool) -> None:
    """Refuse an output folder inside the run (or the run itself), and a non-empty one without ``force``.

    Exporting into the run would overwrite its state and eval.json and freeze later evaluations on the
    exported step; a non-empty folder may hold someone's files.
    """
    try:
        run_real, out_real = run_dir.resolve(), out.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise ConfigError(f"--out {out}: not a usable path ({getattr(exc, 'strerror', None) or exc})") from None
    if out_real == run_real or run_real in out_real.parents:
        raise ConfigError(f"--out {out}: is inside the run directory {run_dir}; export to a folder outside it")
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"--out {out}: a broken symbolic link")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and not force:
        try:
            entries = next(os.scandir(out), None)
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot read the folder ({exc.strerror or exc})") from None
        if entries is not None:
            raise ConfigError(f"--out {out}: the folder is not empty; pass --force to overwrite the files "
                              "an export writes there, or choose an empty or new folder")


def _remove_stale(out: Path, keep: set[str]) -> None:
    """With --force over an earlier export: drop its files this export will not rewrite (another player's
    weights, an old eval.json, sampler or samples, the older config.yaml layout), so the folder never mixes two."""
    if not (out / STATE_FILE).is_file():
        return
    names = (RunDir.eval.name, RunDir.test_images.name, RunDir.sampler.name, RunDir.config.name)
    for path in out.iterdir():
        stale = path.suffix == ".safetensors" or path.name in names
        if stale and path.name not in keep and path.is_file():
            path.unlink()


def export(run_dir: str | Path, out: str | Path, inference_only: bool = False, samples: int = 16,
           half: bool = False, force: bool = False) -> Path:
    """Write the Hub layout (config.json, model.safetensors, README.md) plus eval.json, samples.npz,
    state.json, the stored sampler and, unless ``inference_only``, the adversaries' weights.

    ``out`` must be new or empty (or ``force``), and outside the run; a write that fails (disk full)
    is one error line, and the run is never touched.
    """
    from safetensors import SafetensorError

    from nonvae.limits import output_folder
    from nonvae.resources import model_path

    run_dir, out = model_path(run_dir), Path(out)
    cfg = config_of(run_dir)
    ckpt = checkpoint_dir_of(run_dir)
    state = read_state(ckpt)
    players = [p for p in state.get("players", []) if not inference_only or p == AUTOENCODER]
    _check_out(run_dir, out, force)
    output_folder(out)
    try:
        _remove_stale(out, {RunDir.model_weights.name if p == AUTOENCODER else weights_name(p) for p in players})
        return _write(run_dir, out, cfg, ckpt, state, players, samples, half)
    except (OSError, SafetensorError) as exc:
        where = getattr(exc, "filename", None) or out
        why = getattr(exc, "strerror", None) or " ".join(str(exc).split())
        raise NonvaeError(f"{where}: could not write the export ({why}); the run {run_dir} is untouched") from None


def _write(run_dir: Path, out: Path, cfg, ckpt: Path, state: dict, players: list[str], samples: int,
           half: bool) -> Path:
    from nonvae.checkpoint import weights_file
    from nonvae.model import write_config_json, write_model_card, write_weights

    src, dst = RunDir(run_dir), RunDir(out)
    cfg = _pin_attribute_base(cfg)
    for name in players:
        target = dst.model_weights if name == AUTOENCODER else out / weights_name(name)
        source = name
        if name == AUTOENCODER and cfg.train.ema is not None and AUTOENCODER_EMA in state.get("players", []):
            source = AUTOENCODER_EMA  # train.ema: the model is the weight average (what was evaluated)
        write_weights(load_tensors(weights_file(ckpt, source)), target, half)
    from nonvae.model import Autoencoder

    model = Autoencoder(cfg)  # the inference model alone knows the latent shape (no adversaries built)
    write_config_json(cfg, out, model.image_shape, model.latent_shape, state["step"])
    metrics = {}
    if src.eval.is_file():
        shutil.copyfile(src.eval, dst.eval)
        metrics = {k: v for k, v in json.loads(src.eval.read_text(encoding="utf-8")).items()
                   if not k.startswith("_")}  # _meta: what the keys mean, not a metric
    if src.sampler.is_file():
        shutil.copyfile(src.sampler, dst.sampler)
    (out / STATE_FILE).write_text(json.dumps({"step": state["step"], "players": players}))
    n_samples = _write_samples(cfg, dst.test_images, samples, run_dir) if samples > 0 else 0
    write_model_card(cfg, out, metrics, state["step"], half=half, n_samples=n_samples)
    return out
