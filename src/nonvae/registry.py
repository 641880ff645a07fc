"""Registries: what a config name (``data.name``, a ``regularizers`` section, ``model.backbone``) means.

A part registers itself in its own file, next to the config dataclass it reads::

    @register_regularizer("acai", config=AcaiConfig)
    class InterpolationRegularizer(Regularizer): ...

so a new regularizer, dataset, backbone or metric is one new file: each registry
imports every module of its package the first time a name is looked up, and a
config's ``plugins:`` list imports files (or modules) from anywhere before the
config is read (see docs/extending.md). Names that are not there fail with a
one-line error naming the closest one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nonvae.errors import ConfigError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered part: its name, the object (class or builder) and its config dataclass."""

    name: str
    obj: Any
    config: type | None
    module: str


class Registry:
    """Name -> ``Entry`` for one kind of part; the built-in parts live in ``package``."""

    def __init__(self, kind: str, key: str, package: str) -> None:
        self.kind = kind  # 'regularizer', 'dataset', ...: for messages
        self.key = key  # the config key that names an entry, e.g. 'data.name'
        self.package = package
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, config: type | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (with the dataclass its config section reads)."""

        def decorate(obj: T) -> T:
            module = getattr(obj, "__module__", "?")
            old = self._entries.get(name)
            if old is not None and old.module != module:  # re-running the same file (reload) is fine
                raise ValueError(f"{self.kind} {name!r} is registered twice ({old.module} and {module})")
            self._entries[name] = Entry(name, obj, config, module)
            if isinstance(obj, type):
                obj.name = name  # type: ignore[attr-defined]  # a registered class knows its config name
            return obj

        return decorate

    def _load(self) -> None:
        """Import every module of the package once, so that each one's ``@register`` runs."""
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name is a ConfigError naming the closest one."""
        self._load()
        entry = self._entries.get(name)
        if entry is None:
            valid = list(self._entries)
            raise ConfigError(f"config key '{self.key}': {name!r} is not one of {', '.join(valid)}"
                              + did_you_mean(str(name), valid).split(" (valid")[0])
        return entry

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries


REGULARIZERS = Registry("regularizer", "regularizers", "nonvae.regularizers")
DATASETS = Registry("dataset", "data.name", "nonvae.data")
BACKBONES = Registry("backbone", "model.backbone", "nonvae.autoencoders")

register_regularizer = REGULARIZERS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register


_PLUGINS: dict[str, str] = {}  # resolved file -> module name: a file is imported once per process


def load_plugins(entries: object, base: Path) -> list[str]:
    """Import the config's ``plugins``: Python files (relative to ``base``, the config's folder) or module
    names, each registering its parts; returns them with files made absolute (for the resolved config)."""
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
        raise ConfigError(f"config key 'plugins': expected a list of .py files or module names, got {entries!r}")
    resolved = []
    for i, entry in enumerate(entries):
        where = f"config key 'plugins[{i}]'"
        if entry.endswith(".py"):
            path = Path(entry).expanduser()
            path = (path if path.is_absolute() else base / path).resolve()
            if not path.is_file():
                raise ConfigError(f"{where}: no such file {path}")
            if str(path) not in _PLUGINS:
                name = f"nonvae_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
                spec = importlib.util.spec_from_file_location(name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # dataclasses look their module up while the file runs
                try:
                    spec.loader.exec_module(module)
                except ConfigError:
                    raise
                except Exception as exc:
                    del sys.modules[name]
                    raise ConfigError(f"{where}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
                _PLUGINS[str(path)] = name
            resolved.append(str(path))
        else:
            try:
                importlib.import_module(entry)
            except ImportError as exc:
                raise ConfigError(f"{where}: cannot import module {entry!r} ({exc})") from None
            resolved.append(entry)
    return resolved
