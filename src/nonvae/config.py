"""YAML -> typed, strict dataclasses.

Every key a config may hold is a field below. Unknown keys and wrong types fail
before anything runs, naming the key path and the closest valid key, so that a
typo never silently falls back to a default. ``--set a.b=c`` overrides any key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nonvae.errors import ConfigError, did_you_mean


# --------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    """Which dataset and how to read it."""

    name: str = "lines"  # lines | fashion_mnist | mnist | svhn | cifar10 | digits | attributes | domains
    root: str | None = None  # folder with the dataset's files (None: the dataset's default location)
    image_size: int = 32
    channels: int = 1
    train_limit: int | None = None  # use only the first N training examples (quick runs)
    test_limit: int | None = None
    num_workers: int = 0
    # two-domain data (disentanglement): list files / folders and preprocessing
    domain_a: str | None = None
    domain_b: str | None = None
    crop: int | None = None
    hflip: bool = False
    cache_dir: str | None = None  # decoded-image cache (None: $XDG_CACHE_HOME/nonvae or ~/.cache/nonvae)
    bad_images: str = "error"  # error | skip: a corrupt or missing image file
    base: str = "auto"  # attributes benchmark base images: auto | fashion_mnist | digits | shapes


@dataclass
class ModelConfig:
    """The backbone: the ACAI conv autoencoder, an MLP, or the split (E1, E2) encoder."""

    backbone: str = "conv"  # conv | mlp | split
    width: int = 16  # d: channels of the first conv level
    latent_width: int = 2  # spatial size of the latent (conv backbone)
    latent_channels: int = 16
    latent_dim: int = 32  # mlp backbone: size of the latent vector
    hidden: list[int] = field(default_factory=lambda: [500, 500])  # mlp backbone
    activation: str = "leaky_relu"  # mlp backbone: leaky_relu | softplus | relu
    # split backbone (content disentanglement)
    content_dim: int = 0  # 0 = derive from the architecture
    attribute_dim: int = 0
    arch: str = "acai"  # acai (ACAI convs) | press (4x4 stride-2 convs, Press et al. 2019)
    norm: str = "none"  # none | instance (press arch)
    out_activation: str = "none"  # none | tanh
    # LTAE latent transform z' = a * (z + b) (+ noise when decoding)
    transform: str = "none"  # none | standardize (LTAE-S) | minmax (LTAE-M)
    transform_noise: float = 0.01


@dataclass
class TrainConfig:
    """The one training loop's settings."""

    steps: int = 262144  # 2^24 samples at batch 64, the ACAI paper budget
    batch_size: int = 64
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    grad_clip: float | None = None
    log_every: int = 50
    eval_every: int = 5000
    sample_every: int = 1000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    channels_last: bool = False
    compile: bool = False
    fused_adam: bool = True  # fused Adam kernel where torch has one (CPU and CUDA): same maths, faster
    threads: int | None = None
    nonfinite: str = "stop"  # stop | skip: what to do on a NaN/inf loss
    detect_anomaly: bool = False
    progress: bool = True
    tensorboard: bool = True
    report: bool = True  # keep RUN_DIR/report.html up to date at each evaluation and at the end
    # torch.distributed collective timeout: a rank that dies makes the others fail after this many
    # seconds instead of hanging forever (passed to init_process_group)
    dist_timeout_s: float = 600.0


@dataclass
class EvalConfig:
    """What ``nonvae eval`` measures."""

    batch_size: int = 256
    lines_pairs: int = 256
    lines_steps: int = 16
    probe: bool = True
    probe_train_limit: int | None = None
    kmeans: bool = True
    hausdorff: bool = False
    hausdorff_samples: int = 10000
    hausdorff_repeats: int = 10
    precision: str = "fp32"  # fp32 | bf16: autocast while encoding the probe/k-means/recon sets (lines,
    # Hausdorff and transfer metrics always run in fp32)


@dataclass
class AcaiConfig:
    """Adversarially constrained interpolation (Berthelot et al. 2018)."""

    weight: float = 0.5  # lambda: weight of the critic-fooling term in the autoencoder loss
    gamma: float = 0.2  # critic regularizer mix of real and reconstructed images
    lr: float | None = None  # critic learning rate (None: train.lr)
    width: int | None = None  # critic width d (None: model.width)
    warmup_steps: int = 0  # linear ramp of ``weight`` from 0 over this many steps


@dataclass
class DomainConfig:
    """Domain discriminator on the content code (Press et al. 2019)."""

    weight: float = 0.001
    lr: float | None = None
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    grad_clip: float | None = 5.0
    # what the encoders are trained towards: 'b_label' (official: both domains' codes -> domain B's label),
    # 'confuse' (both -> 0.5, the discriminator's maximum uncertainty) or 'flip' (A -> B's label, B -> A's)
    fool: str = "b_label"


@dataclass
class AugmentConfig:
    """Augmentation cross-consistency: L(g(f(x)), t(x)) + L(g(f(t(x))), x)."""

    weight: float = 1.0
    ops: dict[str, Any] = field(default_factory=dict)  # op name -> probability or {p: .., ...}


@dataclass
class LtaeConfig:
    """LTAE: pull the transformed code z' towards norm(z)."""

    weight: float = 1.0
    detach_target: bool = False  # true: norm(z) is a constant target (the reference lets it carry gradient)
    scope: str = "sample"  # sample: statistics per example | batch: over the whole batch (reference min-max)


@dataclass
class RegularizersConfig:
    """Terms added to the reconstruction loss; a missing section is switched off."""

    acai: AcaiConfig | None = None
    domain: DomainConfig | None = None
    augment: AugmentConfig | None = None
    ltae: LtaeConfig | None = None


@dataclass
class InitConfig:
    """Start from another run's weights (fine-tuning)."""

    from_: str | None = None
    required: bool = False  # fail instead of training from scratch when ``from`` is not given


@dataclass
class Config:
    """A whole run."""

    seed: int = 0
    method: str = "ae"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regularizers: RegularizersConfig = field(default_factory=RegularizersConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    init: InitConfig = field(default_factory=InitConfig)


# --------------------------------------------------------------------------- conversion
_RENAMED = {"from": "from_"}  # YAML keys that are Python keywords


def _field_name(key: str) -> str:
    return _RENAMED.get(key, key)


def _yaml_name(name: str) -> str:
    for k, v in _RENAMED.items():
        if v == name:
            return k
    return name


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; ``where`` is the key path."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{where}': must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key '{where}': invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}': expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{where}': expected a list, got {value!r}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{where}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{where}': expected an integer, got {value!r}")
    if tp is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int too large for a float
                number = math.inf
        elif isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"config key '{where}': expected a number, got {value!r}")
        if not math.isfinite(number):  # no setting means anything at nan/inf; torch would fail later
            raise ConfigError(f"config key '{where}': expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{where}': expected a string, got {value!r}")
    raise ConfigError(f"config key '{where}': unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {_yaml_name(f.name): f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}" + did_you_mean(str(key), names))  # repr: 1 line
        kwargs[names[key]] = _convert(hints[names[key]], value, path)
    obj = cls(**kwargs)
    _validate(obj, where)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict with YAML key names (the resolved config)."""
    if dataclasses.is_dataclass(obj):
        return {_yaml_name(f.name): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


_CHOICES = {
    "data.name": ("lines", "fashion_mnist", "mnist", "svhn", "cifar10", "digits", "attributes", "domains"),
    "data.bad_images": ("error", "skip"),
    "eval.precision": ("fp32", "bf16"),
    "regularizers.domain.fool": ("b_label", "confuse", "flip"),
    "data.base": ("auto", "fashion_mnist", "digits", "shapes"),
    "model.backbone": ("conv", "mlp", "split"),
    "model.arch": ("acai", "press"),
    "model.activation": ("leaky_relu", "softplus", "relu"),
    "model.norm": ("none", "instance"),
    "model.out_activation": ("none", "tanh"),
    "model.transform": ("none", "standardize", "minmax"),
    "train.precision": ("fp32", "bf16"),
    "train.nonfinite": ("stop", "skip"),
    "regularizers.ltae.scope": ("sample", "batch"),
}
_POSITIVE = {
    "data.image_size",
    "data.channels",
    "model.width",
    "model.latent_width",
    "model.latent_channels",
    "model.latent_dim",
    "train.steps",
    "train.batch_size",
    "train.lr",
    "train.log_every",
    "train.eval_every",
    "train.sample_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "eval.batch_size",
    "eval.lines_pairs",
    # further bounds: each of these would otherwise fail deep inside torch with a traceback
    "data.train_limit",
    "data.test_limit",
    "data.crop",
    "model.hidden",
    "train.grad_clip",
    "train.threads",
    "train.dist_timeout_s",
    "eval.probe_train_limit",
    "eval.hausdorff_samples",
    "eval.hausdorff_repeats",
    "regularizers.acai.lr",
    "regularizers.acai.width",
    "regularizers.domain.lr",
    "regularizers.domain.hidden",
    "regularizers.domain.grad_clip",
}
_NON_NEGATIVE = {
    "seed",
    "data.num_workers",
    "model.content_dim",
    "model.attribute_dim",
    "model.transform_noise",
    "train.weight_decay",
    "regularizers.acai.weight",
    "regularizers.acai.warmup_steps",
    "regularizers.domain.weight",
    "regularizers.augment.weight",
    "regularizers.ltae.weight",
}


def _validate(obj: Any, where: str) -> None:
    for f in dataclasses.fields(obj):
        path = f"{where}.{_yaml_name(f.name)}" if where else f.name
        value = getattr(obj, f.name)
        if path in _CHOICES and value not in _CHOICES[path]:
            raise ConfigError(
                f"config key '{path}': {value!r} is not one of {', '.join(_CHOICES[path])}"
                + did_you_mean(str(value), _CHOICES[path]).split(" (valid")[0]
            )
        items = value if isinstance(value, list) else [value]
        if path in _POSITIVE and any(v is not None and v <= 0 for v in items):
            raise ConfigError(f"config key '{path}': must be > 0, got {value!r}")
        if path in _NON_NEGATIVE and any(v is not None and v < 0 for v in items):
            raise ConfigError(f"config key '{path}': must be >= 0, got {value!r}")
    if where == "" and obj.seed >= 2**63:
        raise ConfigError(f"config key 'seed': must be < 2**63, got {obj.seed}")
    if where == "regularizers.acai" and not 0 <= obj.gamma <= 1:
        raise ConfigError(f"config key 'regularizers.acai.gamma': must be in [0, 1], got {obj.gamma!r}")
    if where == "eval" and obj.lines_steps < 2:
        raise ConfigError("config key 'eval.lines_steps': must be >= 2")
    if where == "train" and len(obj.betas) != 2:
        raise ConfigError(f"config key 'train.betas': expected two numbers, got {obj.betas!r}")
    if where == "train" and not all(0 <= b < 1 for b in obj.betas):
        raise ConfigError(f"config key 'train.betas': each must be in [0, 1), got {obj.betas!r}")


# --------------------------------------------------------------------------- overrides and files
def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=c' -> (['a', 'b'], yaml-parsed c)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.steps=1000")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides to a raw config mapping (validated later by ``from_dict``)."""
    for text in overrides or []:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with safe_load; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{line}: invalid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    except RecursionError:  # PyYAML composes recursively: absurdly deep nesting
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except OSError as exc:  # a folder, no permission, an I/O error
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a path or a built-in name; defaults when None), apply overrides, validate."""
    if path is not None:
        from nonvae.resources import config_path

        path = config_path(path)  # a file, or a built-in config's name (lines/acai)
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    try:
        return from_dict(Config, data)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config atomically (temp file + rename): a kill never leaves it half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
