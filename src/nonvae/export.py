"""``nonvae export``: a minimal model folder that ``load``, ``interpolate``, ``transfer`` and ``report`` accept.

The folder holds config.yaml, the players' safetensors weights (only the autoencoder with
``inference_only``), eval.json when the run was evaluated, a README.md model card with the metrics,
and samples.npz: a few test images (uint8, with their domain and class when the data has them) so
that pictures can be made from the folder alone, without the training data.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from nonvae.checkpoint import load_tensors, read_state
from nonvae.config import dump_config
from nonvae.errors import NonvaeError
from nonvae.methods import AUTOENCODER
from nonvae.pipeline import checkpoint_dir_of, config_of

SAMPLES_FILE = "samples.npz"


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


def _write_samples(cfg, path: Path, n: int) -> int:
    """Up to n test images (half from each domain for two-domain data) -> samples.npz; returns the count."""
    import numpy as np
    import torch

    from nonvae.data import build_data

    try:
        test = build_data(cfg.data, cfg.seed).test
    except NonvaeError as exc:  # e.g. the data is not on this machine: the export is still usable
        print(f"warning: no samples.npz ({exc})", file=sys.stderr)
        return 0
    if "domain" in test.extras:
        domain = test.extras["domain"].reshape(-1) > 0.5
        ia, ib = torch.nonzero(domain).view(-1), torch.nonzero(~domain).view(-1)
        index = torch.cat([ia[: n - n // 2], ib[: n // 2]])
    else:
        index = torch.arange(min(n, len(test)))
    batch = test.batch(index)
    arrays = {"x": ((batch["x"].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()}
    for key in ("domain", "y"):
        if key in batch:
            arrays[key] = batch[key].numpy()
    np.savez_compressed(path, **arrays)
    return len(index)


def export(run_dir: str | Path, out: str | Path, inference_only: bool = False, samples: int = 16,
           half: bool = False) -> Path:
    from nonvae.resources import model_path

    run_dir, out = model_path(run_dir), Path(out)
    cfg = config_of(run_dir)
    ckpt = checkpoint_dir_of(run_dir)
    state = read_state(ckpt)
    players = [p for p in state.get("players", []) if not inference_only or p == AUTOENCODER]
    out.mkdir(parents=True, exist_ok=True)
    cfg = _pin_attribute_base(cfg)
    dump_config(cfg, out / "config.yaml")
    for name in players:
        if half:  # float16 copies: half the size; loading casts them back to the model's float32
            from safetensors.torch import save_file

            tensors = {k: (v.half() if v.is_floating_point() else v).contiguous()
                       for k, v in load_tensors(ckpt / f"{name}.safetensors").items()}
            save_file(tensors, str(out / f"{name}.safetensors"), metadata={"stored_as": "float16"})
        else:
            shutil.copyfile(ckpt / f"{name}.safetensors", out / f"{name}.safetensors")
    metrics = {}
    if (run_dir / "eval.json").is_file():
        shutil.copyfile(run_dir / "eval.json", out / "eval.json")
        metrics = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    (out / "state.json").write_text(json.dumps({"step": state["step"], "players": players}))
    n_samples = _write_samples(cfg, out / SAMPLES_FILE, samples) if samples > 0 else 0
    lines = [
        f"# nonvae model: {cfg.method} on {cfg.data.name}",
        "",
        f"Trained for {state['step']} steps (batch {cfg.train.batch_size}, lr {cfg.train.lr}, seed {cfg.seed}).",
        f"Backbone: {cfg.model.backbone}; regularizers: "
        + (", ".join(f"{k} ({_settings(v)})" for k, v in cfg.regularizers.items() if v is not None)
           or "none") + ". The full config is config.yaml.",
        "",
        "Load it with `nonvae.load(\"" + str(out) + "\")`"
        + (f"; `nonvae.load_samples(\"{out}\")` gives the {n_samples} test images stored beside it."
           if n_samples else "."),
        *(["", "Weights are stored as float16 (half the size; loading casts them back to float32). "
            "The metrics below were measured with the float32 weights before export."] if half else []),
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [
            f"| {k} | {v:.6g} |" if isinstance(v, int | float) else f"| {k} | – |" for k, v in sorted(metrics.items())
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
