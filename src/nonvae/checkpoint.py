"""Checkpoints: safetensors weights + JSON state, written atomically.

Layout of ``RUN_DIR/checkpoints``::

    step_000100/  <player>.safetensors, optim_<player>.safetensors, state.json (written last)
    latest -> step_000100   (a symlink, replaced atomically after the step folder is complete)

A checkpoint folder is first written as ``.tmp-step_...``, every file fsynced,
then renamed; ``latest`` is swapped last. A kill at any moment therefore leaves
the previous or the new checkpoint readable, never a torn one. No pickle: the
optimizer state is split into tensors (safetensors) and plain values (JSON).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nonvae.errors import CheckpointError
from nonvae.rundir import RunDir, weights_name

STEP_RE = re.compile(r"^step_(\d+)$")
STATE_FILE = "state.json"
MAX_STEP = 2**40  # far beyond any run (2^24 samples at batch 64 is 2^18 steps); larger is a corrupt state


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(clean, str(path), metadata=metadata)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a torn file) is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        # Parse as safetensors first: the format's first byte is the low byte of the header length,
        # which is 0x80 for a valid file with a 128-byte header, so sniffing pickle first would refuse it.
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        head = b""
    if head[:1] == b"\x80" or head[:2] == b"PK":  # pickle protocol 2+, or torch.save's zip container
        raise CheckpointError(
            f"{path}: looks like a pickle/torch.save file; only safetensors weights are loaded (never pickle)"
        ) from None
    raise CheckpointError(f"{path}: not a readable safetensors file, torn or corrupt ({reason})") from None


# -- optimizer state <-> (tensors, json) -------------------------------------------------------
def optimizer_to_flat(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        plain_entry = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value
            else:
                plain_entry[key] = value
        plain["state"][str(idx)] = plain_entry
    return tensors, plain


def optimizer_from_flat(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(k): dict(v) for k, v in plain["state"].items()}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


# -- saving ---------------------------------------------------------------------------------
def save_checkpoint(
    ckpt_dir: str | Path,
    step: int,
    players: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    extra_state: dict | None = None,
    keep: int = 3,
) -> Path:
    """Write ``step_N`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step_{step:08d}"
    tmp = ckpt_dir / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        optim_json = {}
        for name, module in players.items():
            _save_tensors(module.state_dict(), tmp / weights_name(name), {"player": name})
            if optimizers and name in optimizers:
                tensors, plain = optimizer_to_flat(optimizers[name].state_dict())
                _save_tensors(tensors, tmp / f"optim_{name}.safetensors")
                optim_json[name] = plain
        state = {"step": step, "players": sorted(players), "optimizers": optim_json, **(extra_state or {})}
        _write_json(tmp / STATE_FILE, state)
        _fsync_dir(tmp)
    except BaseException as exc:  # disk full, I/O error, interrupt: drop the partial folder, keep `latest`
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, SafetensorError):  # safetensors reports its write errors (ENOSPC...) this way
            raise OSError(" ".join(str(exc).split())) from None
        raise
    old = None
    if final.exists():  # re-saving a step (e.g. on SIGTERM right after a scheduled save): move, never delete,
        old = ckpt_dir / f".old-{final.name}-{os.getpid()}"  # so `latest` dangles only between two renames
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    link_tmp = ckpt_dir / f".latest-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(final.name, link_tmp)
    os.replace(link_tmp, ckpt_dir / "latest")
    _fsync_dir(ckpt_dir)
    _prune(ckpt_dir, keep, protect=final)
    return final


def _prune(ckpt_dir: Path, keep: int, protect: Path) -> None:
    steps = sorted(p for p in ckpt_dir.iterdir() if STEP_RE.match(p.name) and p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old != protect:
            shutil.rmtree(old, ignore_errors=True)
    for junk in ckpt_dir.glob(".tmp-*"):  # folders of saves that were killed half-way
        shutil.rmtree(junk, ignore_errors=True)
    for junk in [*ckpt_dir.glob(".old-*"), *ckpt_dir.glob(".latest-*")]:
        if junk.is_symlink() or junk.is_file():
            junk.unlink(missing_ok=True)
        else:
            shutil.rmtree(junk, ignore_errors=True)


# -- loading --------------------------------------------------------------------------------
def is_complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file()


def find_latest(ckpt_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder (``latest`` if valid, else the highest step)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    latest = ckpt_dir / "latest"
    if latest.exists() and is_complete(latest):
        return latest.resolve()
    steps = sorted((p for p in ckpt_dir.iterdir() if STEP_RE.match(p.name) and is_complete(p)), reverse=True)
    return steps[0] if steps else None


def read_state(path: Path) -> dict:
    """state.json of a checkpoint folder, checked enough that resuming cannot crash on it."""
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or bad UTF-8
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{path / STATE_FILE}: unreadable checkpoint state ({reason})") from None
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < MAX_STEP:
        raise CheckpointError(f"{path / STATE_FILE}: not a nonvae checkpoint state (no valid 'step')")
    named = STEP_RE.match(path.resolve().name)
    if named and int(named.group(1)) != step:
        raise CheckpointError(f"{path / STATE_FILE}: says step {step} but the folder is {path.resolve().name} "
                              "(corrupt or edited checkpoint state)")
    players = state.get("players", [])
    bad_players = not isinstance(players, list) or not all(isinstance(p, str) for p in players)
    bad_ints = any(not isinstance(state.get(k, 1), int) or isinstance(state.get(k, 1), bool)
                   or not 0 <= state.get(k, 1) < 2**63 for k in ("seed", "world_size", "batch_size"))
    if bad_players or bad_ints or not isinstance(state.get("optimizers", {}), dict):
        raise CheckpointError(f"{path / STATE_FILE}: not a nonvae checkpoint state (malformed fields)")
    return state


def load_weights(module: torch.nn.Module, path: str | Path, name: str = "") -> None:
    """Load a safetensors state dict into ``module`` with a clear error on any mismatch."""
    tensors = load_tensors(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not match {name or 'the model'} "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}); "
            "was it trained with another method or config?"
        )
    for key, value in tensors.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: '{key}' has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)} "
                "(different architecture settings?)"
            )
        if value.dtype != own[key].dtype and not (value.is_floating_point() and own[key].is_floating_point()):
            raise CheckpointError(f"{path}: '{key}' is {value.dtype}, the model expects {own[key].dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):  # NaN weights: corruption, not lr
            raise CheckpointError(f"{path}: '{key}' holds NaN or infinite values (corrupt file)")
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit {name or 'the model'} ({exc})") from None


def _check_param_groups(plain: Any, opt: torch.optim.Optimizer) -> None:
    """The saved param groups hold the same settings, with the same types, as the optimizer's own.

    torch accepts any values here and fails (or silently misbehaves) only at the next step.
    """
    own = opt.state_dict()["param_groups"]
    groups = plain.get("param_groups") if isinstance(plain, dict) else None
    if not isinstance(groups, list) or len(groups) != len(own) or not isinstance(plain.get("state"), dict):
        raise ValueError("malformed optimizer state")
    for group, ref in zip(groups, own, strict=True):
        if not isinstance(group, dict) or set(group) != set(ref):
            raise ValueError(f"param group keys {sorted(group) if isinstance(group, dict) else group!r}")
        for key, value in ref.items():
            want = type(value)
            if want is tuple:
                want = list
            got = type(group[key])
            if got is not want and not (want is float and got is int):
                raise ValueError(f"param group '{key}' is {group[key]!r}")
            ids = group[key]
            if key == "params" and (len(ids) != len(value) or not all(type(i) is int for i in ids)):
                raise ValueError("param group 'params' does not match the model's parameters")


def weights_file(folder: str | Path, name: str) -> Path:
    """A player's weights in a checkpoint or model folder (the Hub layout keeps the autoencoder in
    model.safetensors; checkpoints and older exports in autoencoder.safetensors)."""
    return RunDir(folder).weights(name)


ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def _check_optimizer_tensors(tensors: dict[str, torch.Tensor], plain: dict, opt: torch.optim.Optimizer,
                             step: int) -> None:
    """Every saved Adam tensor has its parameter's shape and a float dtype, holds finite values, and no
    parameter misses one; ``step`` is the most updates the optimizer can have made.

    torch loads any tensors here; a wrong shape then segfaults the fused Adam kernel (exit 139), and a
    NaN moment shows up only as a non-finite loss that looks like a too-high learning rate.
    """
    params = [p for group in opt.param_groups for p in group["params"]]
    ids = [i for group in plain["param_groups"] for i in group["params"]]
    by_id = dict(zip(ids, params, strict=True))  # saved ids -> this optimizer's parameters, in order
    amsgrad = any(group.get("amsgrad") for group in opt.param_groups)
    expected = set(ADAM_STATE) | ({"max_exp_avg_sq"} if amsgrad else set())
    seen: dict[int, set[str]] = {}
    for key, value in tensors.items():
        idx_text, _, field = key.partition(".")
        if not idx_text.isdigit() or int(idx_text) not in by_id or field not in expected:
            raise ValueError(f"unexpected tensor {key[:60]!r}")
        param = by_id[int(idx_text)]
        seen.setdefault(int(idx_text), set()).add(field)
        if not value.is_floating_point():
            raise ValueError(f"tensor {key!r} is {value.dtype}, expected a float tensor")
        if field == "step":
            if value.numel() != 1 or not 0 <= float(value) <= max(step, 0) + 1:
                raise ValueError(f"tensor {key!r} is not a step count in [0, {step}]")
            continue
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"tensor {key!r} has shape {tuple(value.shape)}, its parameter {tuple(param.shape)}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"tensor {key!r} holds NaN or infinite values (corrupt file)")
        if field != "exp_avg" and bool((value < 0).any()):
            raise ValueError(f"tensor {key!r} has negative second moments (corrupt file)")
    for idx_text, entry in plain["state"].items():
        if not str(idx_text).isdigit() or int(idx_text) not in by_id or not isinstance(entry, dict):
            raise ValueError(f"state entry {str(idx_text)[:20]!r} does not match a parameter")
        for field, value in entry.items():  # plain (JSON) values: only an old-style numeric step
            if field != "step" or isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 <= value <= step + 1:
                raise ValueError(f"state entry {idx_text}.{str(field)[:20]} is {str(value)[:20]!r}")
            seen.setdefault(int(idx_text), set()).add(field)
    for idx, fields in seen.items():
        if fields != expected:
            raise ValueError(f"parameter {idx} has {sorted(fields)}, Adam needs {sorted(expected)}")


def load_checkpoint(
    path: str | Path,
    players: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    updates_per_step: dict[str, int] | None = None,
) -> dict:
    """Restore players (and optimizers) from a checkpoint folder; return its state.json.

    ``updates_per_step`` bounds each optimizer's saved Adam step count (an adversary updated k times
    per training step has made up to k x step updates); 1 for an optimizer it does not name.
    """
    path = Path(path)
    state = read_state(path)
    saved = state.get("players")
    missing = sorted(set(players) - set(saved)) if saved is not None else []
    if missing:
        raise CheckpointError(
            f"{path}: has no weights for {missing} (it holds {sorted(saved)}); "
            "was it trained with another method or config?"
        )
    for name, module in players.items():
        load_weights(module, weights_file(path, name), name)
    if optimizers:
        for name, opt in optimizers.items():
            plain = state.get("optimizers", {}).get(name)
            if plain is None:
                raise CheckpointError(f"{path}: no optimizer state for '{name}'")
            tensors = load_tensors(path / f"optim_{name}.safetensors")
            try:
                _check_param_groups(plain, opt)
                updates = int(state["step"]) * max(1, (updates_per_step or {}).get(name, 1))
                _check_optimizer_tensors(tensors, plain, opt, updates)
                opt.load_state_dict(optimizer_from_flat(tensors, plain))
            except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
                why = " ".join(str(exc).split()) or type(exc).__name__
                raise CheckpointError(f"{path}: optimizer state for '{name}' does not fit ({why})") from None
    return state
