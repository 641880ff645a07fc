"""What ships inside the package: the built-in configs and the pretrained models, found by name.

An installed nonvae has no repository around it, so ``nonvae train lines/acai`` and
``nonvae.load("lines_acai")`` look inside the package. A path that exists always wins; the old
checkout paths (``configs/lines/acai.yaml``, ``pretrained/lines_acai``) keep working anywhere
because a missing path is retried as the name after its ``configs``/``pretrained`` folder.
"""

from __future__ import annotations

from pathlib import Path

from nonvae.errors import CheckpointError, ConfigError, did_you_mean
from nonvae.rundir import RunDir

PACKAGE = Path(__file__).resolve().parent
CONFIGS = PACKAGE / "configs"
PRETRAINED = PACKAGE / "pretrained"


def config_names() -> list[str]:
    """Every built-in config as ``dataset/method`` (sorted)."""
    return sorted(p.relative_to(CONFIGS).with_suffix("").as_posix() for p in CONFIGS.rglob("*.yaml"))


def config_summary(name: str) -> str:
    """The first comment line of a built-in config (what ``nonvae configs`` prints beside the name)."""
    for line in (CONFIGS / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def pretrained_names() -> list[str]:
    """Every shipped model folder's name (sorted)."""
    if not PRETRAINED.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED.iterdir() if _is_model(p))


def _is_model(folder: Path) -> bool:
    run = RunDir(folder)
    return run.config.is_file() or run.config_json.is_file()


def _after(path: Path, folder: str) -> str | None:
    """The part of ``path`` after its last ``folder`` component ('configs/lines/acai.yaml' -> 'lines/acai.yaml')."""
    parts = path.parts
    if folder in parts:
        i = len(parts) - 1 - parts[::-1].index(folder)
        rest = parts[i + 1:]
        return "/".join(rest) if rest else None
    return None


def config_path(name_or_path: str | Path) -> Path:
    """A config file: an existing path, else a built-in name (``lines/acai``, ``lines/acai.yaml``)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    for candidate in (_after(path, "configs"), str(name_or_path)):
        if candidate is None:
            continue
        name = candidate[:-5] if candidate.endswith(".yaml") else candidate
        if (CONFIGS / f"{name}.yaml").is_file():
            return CONFIGS / f"{name}.yaml"
    raise ConfigError(f"config file not found: {name_or_path} (not a file, nor a built-in config"
                      + did_you_mean(str(name_or_path).removesuffix(".yaml"), config_names()) + "; "
                      "`nonvae configs` lists them)")


def model_path(name_or_path: str | Path) -> Path:
    """A model folder: an existing path, else a shipped pretrained model's name (``lines_acai``)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    for candidate in (_after(path, "pretrained"), str(name_or_path)):
        if candidate and "/" not in candidate and _is_model(PRETRAINED / candidate):
            return PRETRAINED / candidate
    names = pretrained_names()
    raise CheckpointError(f"{name_or_path}: no such run directory or model folder (shipped models: "
                          f"{', '.join(names) or 'none'})")


__all__ = ["config_names", "config_path", "config_summary", "model_path", "pretrained_names"]
