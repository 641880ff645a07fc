"""YAML -> typed, strict dataclasses: the generic machinery.

Every key a config may hold is a dataclass field; each part declares its own
section next to its code (a regularizer's section in its file, a dataset's
extra keys in its file) and registers it (:mod:`nonvae.registry`). Bounds and
choices sit on the fields (``Literal[...]``, :func:`setting`), so validation
needs no tables. Unknown keys and wrong types fail before anything runs,
naming the key path and the closest valid key, so that a typo never silently
falls back to a default. ``--set a.b=c`` overrides any key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import reprlib
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nonvae.errors import ConfigError, did_you_mean
from nonvae.registry import BACKBONES, DATASETS, REGULARIZERS, Registry, load_plugins


# --------------------------------------------------------------------------- field metadata
def setting(default: Any = MISSING, *, factory: Any = MISSING, gt: float | None = None,
            ge: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A config field with bounds, checked on load (for a list: on each item); None always passes."""
    bounds = {k: v for k, v in (("gt", gt), ("ge", ge), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, default_factory=factory, metadata={"bounds": bounds})


def positive(default: Any = MISSING, *, factory: Any = MISSING) -> Any:
    """A field that must be > 0 (a size, a rate, a count)."""
    return setting(default, factory=factory, gt=0)


def non_negative(default: Any = MISSING) -> Any:
    """A field that must be >= 0 (a weight, a seed)."""
    return setting(default, ge=0)


def _bound_error(bounds: dict, value: Any) -> str | None:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if v is None or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        lo_ok = ("gt" not in bounds or v > bounds["gt"]) and ("ge" not in bounds or v >= bounds["ge"])
        hi_ok = ("lt" not in bounds or v < bounds["lt"]) and ("le" not in bounds or v <= bounds["le"])
        if lo_ok and hi_ok:
            continue
        if "ge" in bounds and "le" in bounds:
            return f"must be in [{bounds['ge']:g}, {bounds['le']:g}], got {_show(value)}"
        if not lo_ok:
            return f"must be > {bounds['gt']:g}, got {_show(value)}" if "gt" in bounds and not v > bounds["gt"] \
                else f"must be >= {bounds['ge']:g}, got {_show(value)}"
        limit = bounds.get("lt", bounds.get("le"))
        text = "2**63" if limit == 2**63 else f"{limit:g}"
        return f"must be {'<' if 'lt' in bounds else '<='} {text}, got {_show(value)}"
    return None


# --------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    """Which dataset and how to read it: the keys every dataset has.

    A dataset with further keys subclasses this in its own file and registers the
    subclass (``@register_dataset(name, config=...)``); ``data.name`` picks it.
    """

    name: str = "lines"  # a registered dataset: lines | fashion_mnist | mnist | svhn | cifar10 | digits | ...
    root: str | None = None  # folder with the dataset's files (None: the dataset's default location)
    image_size: int = positive(32)
    channels: int = positive(1)
    train_limit: int | None = positive(None)  # use only the first N training examples (quick runs)
    test_limit: int | None = positive(None)
    num_workers: int = non_negative(0)


@dataclass
class ModelConfig:
    """The keys every backbone has; each backbone extends this in its own file (``nonvae/autoencoders/``)
    and registers the subclass (``@register_backbone(name, config=...)``); ``model.backbone`` picks it.

    The grid keys are here because the ACAI critic mirrors them whatever the backbone.
    """

    backbone: str = "conv"  # a registered backbone: conv | mlp | split | ...
    width: int = positive(16)  # d: channels of the first conv level (conv and split backbones, ACAI's critic)
    latent_width: int = positive(2)  # spatial size of the latent grid
    latent_channels: int = positive(16)
    out_activation: Literal["none", "tanh"] = "none"


@dataclass
class TrainConfig:
    """The one training loop's settings."""

    steps: int = positive(262144)  # 2^24 samples at batch 64, the ACAI paper budget
    batch_size: int = positive(64)
    lr: float = positive(1e-4)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = non_negative(0.0)
    # learning-rate schedule over train.steps, applied to every player's configured lr (a pure function of the
    # step, so a resumed run reproduces an uninterrupted one): constant | cosine (to 0 at train.steps) |
    # linear (to 0 at train.steps); lr_warmup_steps ramps it linearly from 0 first (0: no warm-up)
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    lr_warmup_steps: int = non_negative(0)
    grad_clip: float | None = positive(None)
    # exponential moving average of the autoencoder's weights (decay per step, e.g. 0.999; None: off). The average
    # is checkpointed beside the weights (autoencoder_ema.safetensors) and is what samples, evaluations,
    # nonvae.load and export use; training itself continues from the raw weights
    ema: float | None = setting(None, gt=0, lt=1)
    log_every: int = positive(50)
    eval_every: int = positive(5000)
    sample_every: int = positive(1000)
    checkpoint_every: int = positive(5000)
    keep_checkpoints: int = positive(3)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 autocast where bf16 is native (CUDA with bf16, x86 CPUs with AVX512-BF16 or AMX), else fp32;
    # fp32 | bf16 force it (see docs/distributed.md, "Speed settings", for the speed and quality evidence)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True  # NHWC networks and batches (faster convs on CPU and GPU; no effect on MLPs)
    compile: bool = False
    fused_adam: bool = True  # fused Adam kernel where torch has one (CPU and CUDA): same maths, faster
    # keep freed memory in the process (glibc malloc) instead of page-faulting the step's buffers in again
    # every step: same maths, 1.2-1.4x faster CPU steps (nonvae/threads.py, keep_freed_memory)
    keep_memory: bool = True
    # None: the cores other processes leave free, re-checked while training (nonvae/threads.py)
    threads: int | None = setting(None, gt=0, lt=2**16)
    nonfinite: Literal["stop", "skip"] = "stop"  # what to do on a NaN/inf loss
    detect_anomaly: bool = False
    progress: bool = True
    tensorboard: bool = True
    report: bool = True  # keep RUN_DIR/report.html up to date at each evaluation and at the end
    # torch.distributed collective timeout: a rank that dies makes the others fail after this many
    # seconds instead of hanging forever (passed to init_process_group)
    dist_timeout_s: float = positive(600.0)

    def validate(self, where: str) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"config key '{where}.betas': expected two numbers, got {_show(self.betas)}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"config key '{where}.betas': each must be in [0, 1), got {_show(self.betas)}")


@dataclass
class EvalConfig:
    """What ``nonvae eval`` measures."""

    batch_size: int = positive(256)
    lines_pairs: int = positive(256)
    lines_steps: int = setting(16, ge=2)
    probe: bool = True
    probe_train_limit: int | None = positive(None)
    kmeans: bool = True
    hausdorff: bool = True  # directed Hausdorff distances between test images and the model's samples
    hausdorff_samples: int = positive(10000)
    hausdorff_repeats: int = positive(10)
    # autocast while encoding the probe/k-means/recon sets (auto: bf16 where it is native, as train.precision;
    # lines, Hausdorff and transfer metrics always run in fp32)
    precision: Literal["auto", "fp32", "bf16"] = "auto"


class Sections(dict):
    """The ``regularizers`` section: registered name -> that regularizer's config; absent = off.

    ``cfg.regularizers.acai`` reads a section (None when it is off) so call sites need no string keys.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in REGULARIZERS:
            raise AttributeError(f"no regularizer named {name!r}" + did_you_mean(name, REGULARIZERS.names()))
        return self.get(name)


def variant(registry: Registry, base: type) -> Any:
    """A section whose dataclass one of its keys picks from ``registry`` (data.name, model.backbone); the
    default is the dataclass of the part that key's default value names."""
    def default() -> Any:
        name = next(f.default for f in dataclasses.fields(base) if f.name == _key_field(registry))
        return (registry.get(name).config or base)()

    return field(default_factory=default, metadata={"variant": registry})


def _key_field(registry: Registry) -> str:
    return registry.key.rsplit(".", 1)[-1]  # 'data.name' -> 'name'


@dataclass
class InitConfig:
    """Start from another run's weights (fine-tuning)."""

    from_: str | None = None
    required: bool = False  # fail instead of training from scratch when ``from`` is not given


@dataclass
class Config:
    """A whole run."""

    seed: int = setting(0, ge=0, lt=2**63)
    method: str = "ae"
    # Python files (relative to the config file) or modules that register further parts (docs/extending.md)
    plugins: list[str] = field(default_factory=list)
    data: DataConfig = variant(DATASETS, DataConfig)
    model: ModelConfig = variant(BACKBONES, ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regularizers: Sections = field(default_factory=Sections, metadata={"sections": REGULARIZERS})
    eval: EvalConfig = field(default_factory=EvalConfig)
    init: InitConfig = field(default_factory=InitConfig)


# --------------------------------------------------------------------------- conversion
_RENAMED = {"from": "from_"}  # YAML keys that are Python keywords


def _yaml_name(name: str) -> str:
    for k, v in _RENAMED.items():
        if v == name:
            return k
    return name


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 6
_REPR.maxlevel = 3


def _show(value: Any) -> str:
    """A value for an error message: bounded (a huge or deeply aliased value is cut, never printed whole)."""
    return _REPR.repr(value)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _not_one_of(where: str, value: Any, options: typing.Sequence[str]) -> ConfigError:
    return ConfigError(f"config key '{where}': {_show(value)} is not one of {', '.join(options)}"
                       + did_you_mean(_cut(str(value)), options).split(" (valid")[0])


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
        raise ConfigError(errors[0] if errors else f"config key '{where}': invalid value {_show(value)}")
    if origin is Literal:
        options = typing.get_args(tp)
        text = _convert(str, value, where)
        if text not in options:
            raise _not_one_of(where, text, options)
        return text
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}': expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{where}': expected a list, got {_show(value)}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}': expected a mapping, got {_show(value)}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{where}': expected true/false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{where}': expected an integer, got {_show(value)}")
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
            raise ConfigError(f"config key '{where}': expected a number, got {_show(value)}")
        if not math.isfinite(number):  # no setting means anything at nan/inf; torch would fail later
            raise ConfigError(f"config key '{where}': expected a finite number, got {_show(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{where}': expected a string, got {_show(value)}")
    raise ConfigError(f"config key '{where}': unsupported type {_type_name(tp)}")


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"config key '{where}': expected a mapping, got {type(value).__name__}")
    return value


def _variant(registry: Registry, base: type, value: Any, where: str, stored: bool) -> Any:
    """A section whose dataclass is picked by one key (``data.name``, ``model.backbone``) from ``registry``.

    A key that only another registered part has is an error naming the key, the parts that have it and
    the closest key of this one (it would be silently ignored otherwise). ``stored``: a resolved config a
    run directory or model folder holds; older versions wrote every part's keys there, and what a run
    ignored then is dropped now.
    """
    data = _mapping(value, where)
    key = _key_field(registry)
    default_name = next(f.default for f in dataclasses.fields(base) if f.name == key)
    name = _convert(str, data.get(key, default_name), f"{where}.{key}")
    cls = registry.get(name).config or base
    own = {_yaml_name(f.name) for f in dataclasses.fields(cls)}
    for k in data:
        if k in own:
            continue
        owners = [n for n in registry.names() if (c := registry.get(n).config)
                  and k in {_yaml_name(f.name) for f in dataclasses.fields(c)}]
        if owners and stored:
            continue
        path = _cut(f"{where}.{k}")
        if owners:
            close = difflib.get_close_matches(str(k), sorted(own), n=2, cutoff=0.8)  # only a real near miss
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise ConfigError(f"config key {path!r} is a key of {registry.key} {' | '.join(owners)}, not of "
                              f"{name!r}: remove it or set {registry.key}: {owners[0]}{hint}")
        raise ConfigError(f"unknown config key {path!r}" + did_you_mean(_cut(str(k)), own))
    return from_dict(cls, {k: v for k, v in data.items() if k in own}, where)


def _sections(registry: Registry, value: Any, where: str) -> Sections:
    """Optional sections, one per registered name (the regularizers); a missing or null one is off."""
    data = _mapping(value, where)
    names = registry.names()
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {_cut(f'{where}.{key}')!r}" + did_you_mean(_cut(str(key)), names))
    out = Sections()
    for name in names:  # registry order, not YAML order: it fixes the order of the loss terms
        if data.get(name) is not None:
            out[name] = _convert(registry.get(name).config, data[name], f"{where}.{name}")
    return out


def from_dict(cls: type, data: dict, where: str = "", stored: bool = False) -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys (``stored``: see :func:`_variant`)."""
    hints = typing.get_type_hints(cls)
    fields = {_yaml_name(f.name): f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key {_cut(path)!r}" + did_you_mean(_cut(str(key)), fields))
        f = fields[key]
        if "variant" in f.metadata:
            kwargs[f.name] = _variant(f.metadata["variant"], hints[f.name], value, path, stored)
        elif "sections" in f.metadata:
            kwargs[f.name] = _sections(f.metadata["sections"], value, path)
        else:
            kwargs[f.name] = _convert(hints[f.name], value, path)
    obj = cls(**kwargs)
    _validate(obj, where)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict with YAML key names (the resolved config)."""
    if isinstance(obj, Sections):  # every registered section, null when off
        return {name: to_dict(obj.get(name)) for name in REGULARIZERS.names()}
    if dataclasses.is_dataclass(obj):
        return {_yaml_name(f.name): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _validate(obj: Any, where: str) -> None:
    """Check the bounds declared on the fields, then the dataclass's own ``validate(where)`` if any."""
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get("bounds")
        if bounds:
            error = _bound_error(bounds, getattr(obj, f.name))
            if error:
                path = f"{where}.{_yaml_name(f.name)}" if where else f.name
                raise ConfigError(f"config key '{path}': {error}")
    check = getattr(obj, "validate", None)
    if callable(check):
        check(where)


# --------------------------------------------------------------------------- overrides and files
def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=c' -> (['a', 'b'], yaml-parsed c)."""
    if "=" not in text:
        raise ConfigError(f"--set {_cut(text)!r}: expected KEY=VALUE, e.g. train.steps=1000")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {_cut(text)!r}: empty key")
    try:
        value = safe_yaml(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError) as exc:
        if isinstance(exc, yaml.YAMLError) and ("duplicate key" in str(exc) or "alias" in str(exc)):
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"--set {_cut(text)!r}: {_cut(' '.join(problem.split()), 200)}") from None
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
                raise ConfigError(f"--set {_cut(text)!r}: '{_cut(part)}' is not a section")
            node = child
        node[path[-1]] = value
    return data


MAX_YAML_BYTES = 1 << 20  # a config is a few KiB; more is not a config
MAX_YAML_NODES = 100_000  # after expanding aliases: a few-hundred-byte alias bomb expands to billions


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys (YAML says they are an error; PyYAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201 - PyYAML's signature
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            try:
                key = self.construct_object(key_node, deep=True)
                hash(key)
            except TypeError:
                continue  # an unhashable key: PyYAML's own error follows
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_cut(repr(key))} (first on line {seen[key].line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(obj: Any, memo: dict[int, int], limit: int) -> int:
    """Number of values in ``obj`` counting every alias expansion (shared objects once per use), capped."""
    key = id(obj)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a cycle (recursive alias) counts as too many
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    total = 1
    for child in children:
        total += _expanded_size(child, memo, limit)
        if total > limit:
            break
    memo[key] = min(total, limit + 1)
    return memo[key]


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused and alias expansion bounded (YAMLError otherwise)."""
    loader = _StrictLoader(text)  # a SafeLoader: never constructs Python objects
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if _expanded_size(data, {}, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise yaml.YAMLError(f"more than {MAX_YAML_NODES} values once aliases are expanded (an alias bomb?)")
    return data


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with safe_load; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config file "
                              f"(at most {MAX_YAML_BYTES})")
        data = safe_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {_cut(problem, 200)}") from None
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


# method label -> (the regularizer sections it has, the model.transform it needs or None for any)
METHODS: dict[str, tuple[frozenset[str], str | None]] = {
    "ae": (frozenset(), None),
    "acai": (frozenset({"acai"}), None),
    "ae_augment": (frozenset({"augment"}), None),
    "augment_finetune": (frozenset({"augment"}), None),
    "acai_augment": (frozenset({"acai", "augment"}), None),
    "disentangle": (frozenset({"domain"}), None),
    "disentangle_acai": (frozenset({"domain", "acai"}), None),
    "disentangle_augment": (frozenset({"domain", "augment"}), None),
    "ltae_s": (frozenset({"ltae"}), "standardize"),
    "ltae_m": (frozenset({"ltae"}), "minmax"),
}


def transform_of(cfg: Config) -> str:
    """model.transform (LTAE's latent transform) of the plain backbones; 'none' for one without it."""
    return getattr(cfg.model, "transform", "none")


def built_method(cfg: Config) -> str:
    """The method name of what ``cfg`` builds: a preset's name, else its regularizers joined by '+'."""
    regs = frozenset(k for k, v in cfg.regularizers.items() if v is not None)
    for name, (want, transform) in METHODS.items():
        if want == regs and transform in (None, transform_of(cfg)):
            return name
    return "+".join(sorted(regs))


def check_method(cfg: Config) -> None:
    """``method`` must name what the config builds: a label that lies ('acai' on a config without the
    critic, 'vae') would report one method's results as another's. A preset's name must match its
    regularizers; with a plugin's regularizer, any name that is not a preset's is accepted."""
    built = built_method(cfg)
    if cfg.method == built:
        return
    regs = sorted(k for k, v in cfg.regularizers.items() if v is not None)
    if cfg.method in METHODS:
        want, transform = METHODS[cfg.method]
        if want == frozenset(regs) and transform in (None, transform_of(cfg)):
            return  # e.g. augment_finetune and ae_augment build the same thing
        needs = ", ".join(f"regularizers.{r}" for r in sorted(want)) or "no regularizers"
        if transform:
            needs += f" and model.transform: {transform}"
        raise ConfigError(
            f"config key 'method': {_cut(cfg.method)!r} needs {needs}, but this config has "
            f"{', '.join(f'regularizers.{r}' for r in regs) or 'no regularizers'}"
            f"{f' and model.transform: {transform_of(cfg)}' if transform else ''}, which is method {built!r}"
        )
    builtin = {r for want, _ in METHODS.values() for r in want}
    if any(r not in builtin for r in regs):
        return  # a plugin's regularizer: its method's name is the plugin's to choose
    valid = sorted({*METHODS, built})
    raise ConfigError(f"config key 'method': {_cut(cfg.method)!r} is not a method this config builds "
                      f"(it builds {built!r})"
                      + did_you_mean(_cut(cfg.method), valid).replace(" (valid:", " (methods:"))


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                stored: bool = False) -> Config:
    """Read a YAML config (a path or a built-in name; defaults when None), apply overrides, validate.

    ``stored``: the resolved config of a run directory or model folder (see :func:`_variant`). Without a
    ``method`` key the method is named after what the config builds (see :data:`METHODS`); with one, it
    must match.
    """
    if path is not None:
        from nonvae.resources import config_path

        path = config_path(path)  # a file, or a built-in config's name (lines/acai)
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    try:
        if data.get("plugins") is not None:  # first: they register the parts the rest may name
            data["plugins"] = load_plugins(data["plugins"], Path(path).parent if path is not None else Path.cwd())
        cfg = from_dict(Config, data, stored=stored)
        if "method" in data:
            check_method(cfg)
        else:
            cfg.method = built_method(cfg)
        return cfg
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {newer_version_note(_written_by(path), str(exc))}") from None
        raise


VERSION_HEADER = "# written by nonvae "


def _written_by(path: str | Path) -> str | None:
    """The nonvae version named in a resolved config's first line (``dump_config`` writes it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline(200)
    except (OSError, UnicodeDecodeError):
        return None
    return first[len(VERSION_HEADER):].strip() or None if first.startswith(VERSION_HEADER) else None


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def newer_version_note(written_by: str | None, message: str) -> str:
    """``message``, or, for an unknown key in a config written by a newer nonvae, why it is unknown (an
    upgrade fixes it; it is not a typo)."""
    from nonvae import __version__

    if not written_by or "unknown config key" not in message:
        return message
    if _version_tuple(written_by) <= _version_tuple(__version__):
        return message
    key = message.split("unknown config key", 1)[1].split("(did you mean")[0].split("(valid")[0].strip()
    return (f"written by nonvae {_cut(written_by, 20)}, newer than this nonvae {__version__}: config key {key} "
            "is not known to this version; upgrade nonvae (pip install -U nonvae) to read it")


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config atomically (temp file + rename): a kill never leaves it half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        from nonvae import __version__

        header = f"{VERSION_HEADER}{__version__}\n"
        tmp.write_text(header + yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
