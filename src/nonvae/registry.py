"""Registries: what a config name (``data.name``, a ``regularizers`` section, ``model.backbone``) means.

A part registers itself in its own file, next to the config dataclass it reads::

    @register_regularizer("acai", config=AcaiConfig)
    class InterpolationRegularizer(Regularizer): ...

so a new regularizer, dataset or backbone is one new file: each registry imports
every module of its package the first time a name is looked up. Names that are
not there fail with a one-line error naming the closest one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
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
