"""``nonvae export``: a minimal model folder that ``load``, ``interpolate`` and ``report`` accept.

The folder holds config.yaml, the players' safetensors weights, eval.json when the
run was evaluated, and a README.md model card with the metrics.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nonvae.checkpoint import read_state
from nonvae.config import dump_config
from nonvae.pipeline import checkpoint_dir_of, config_of


def export(run_dir: str | Path, out: str | Path) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    cfg = config_of(run_dir)
    ckpt = checkpoint_dir_of(run_dir)
    state = read_state(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    for name in state.get("players", []):
        shutil.copyfile(ckpt / f"{name}.safetensors", out / f"{name}.safetensors")
    metrics = {}
    if (run_dir / "eval.json").is_file():
        shutil.copyfile(run_dir / "eval.json", out / "eval.json")
        metrics = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    (out / "state.json").write_text(json.dumps({"step": state["step"], "players": state.get("players", [])}))
    lines = [
        f"# nonvae model: {cfg.method} on {cfg.data.name}",
        "",
        f"Trained for {state['step']} steps (batch {cfg.train.batch_size}, lr {cfg.train.lr}, seed {cfg.seed}).",
        f"Backbone: {cfg.model.backbone}; regularizers: "
        + (", ".join(k for k, v in vars(cfg.regularizers).items() if v is not None) or "none") + ".",
        "",
        "Load it with `nonvae.load(\"" + str(out) + "\")`.",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [
            f"| {k} | {v:.6g} |" if isinstance(v, int | float) else f"| {k} | – |" for k, v in sorted(metrics.items())
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
