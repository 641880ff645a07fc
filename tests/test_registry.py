"""Registries and the config sections the registered parts declare beside their code."""

from __future__ import annotations

import dataclasses
import glob

import pytest
import yaml

from nonvae.config import Config, from_dict, load_config, to_dict
from nonvae.data.attributes import AttributesData
from nonvae.errors import ConfigError
from nonvae.registry import BACKBONES, DATASETS, REGULARIZERS, Registry

from .conftest import REPO


def test_builtin_parts_are_registered():
    assert {"lines", "fashion_mnist", "mnist", "svhn", "cifar10", "digits", "attributes", "domains"} <= set(
        DATASETS.names())
    assert REGULARIZERS.names()[:4] == ["acai", "domain", "augment", "ltae"]  # fixes the order of loss terms
    assert {"conv", "mlp", "split"} <= set(BACKBONES.names())
    for name in REGULARIZERS.names():
        entry = REGULARIZERS.get(name)
        assert dataclasses.is_dataclass(entry.config) and entry.obj.name == name


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ConfigError, match=r"'data.name': 'lnes' is not one of .*did you mean 'lines'"):
        load_config(None, ["data.name=lnes"])
    with pytest.raises(ConfigError, match=r"'model.backbone': 'splt'.*did you mean 'split'"):
        load_config(None, ["model.backbone=splt"])
    with pytest.raises(ConfigError, match=r"unknown config key 'regularizers.ltea'.*'ltae'"):
        load_config(None, ["regularizers.ltea.weight=1"])



def test_a_name_is_registered_once():
    things = Registry("thing", "x.name", "nonvae.errors")  # a module without parts: nothing else loads
    class Thing:
        pass

    assert things.register("a")(Thing).name == "a"  # a registered class knows its name
    with pytest.raises(ValueError, match="registered twice"):
        things.register("a")(yaml.safe_load)  # another module
    with pytest.raises(ConfigError, match=r"'x.name': 'b' is not one of a"):
        things.get("b")


def test_bounds_and_choices_come_from_the_fields():
    with pytest.raises(ConfigError, match=r"'regularizers.domain.fool': 'confus'.*did you mean 'confuse'"):
        load_config(None, ["regularizers.domain.fool=confus"])
    with pytest.raises(ConfigError, match=r"'regularizers.domain.hidden': must be > 0"):
        load_config(None, ["regularizers.domain.hidden=[4, 0]"])
    with pytest.raises(ConfigError, match=r"'data.bad_images': 'skp'"):
        load_config(None, ["data.name=domains", "data.bad_images=skp"])
    with pytest.raises(ConfigError, match=r"'seed': must be < 2\*\*63"):
        load_config(None, [f"seed={2**63}"])
    with pytest.raises(ConfigError, match=r"'eval.lines_steps': must be >= 2"):
        load_config(None, ["eval.lines_steps=1"])


def test_a_dataset_reads_its_own_keys():
    cfg = load_config(None, ["data.name=attributes", "data.base=digits", "data.hflip=true"])
    assert isinstance(cfg.data, AttributesData) and cfg.data.base == "digits" and cfg.data.hflip
    with pytest.raises(ConfigError, match=r"unknown config key 'data.bsae'.*'base'"):
        load_config(None, ["data.name=attributes", "data.bsae=digits"])
    # a key of another dataset is ignored, as before the split (resolved configs carry them all)
    assert not hasattr(load_config(None, ["data.base=digits"]).data, "base")


def test_shipped_and_pretrained_configs_round_trip():
    for path in glob.glob(f"{REPO}/configs/**/*.yaml", recursive=True) + glob.glob(f"{REPO}/pretrained/*/config.yaml"):
        cfg = load_config(path)
        assert from_dict(Config, to_dict(cfg)) == cfg, path
        raw = yaml.safe_load(open(path, encoding="utf-8"))
        dumped = to_dict(cfg)
        for section, keys in raw.items():  # every key a file sets keeps its value (the data keys of
            if isinstance(keys, dict) and section != "data":  # other datasets aside)
                for key, value in keys.items():
                    if value is not None:
                        assert dumped[section][key] is not None, (path, section, key)
        for key, value in (raw.get("data") or {}).items():
            if key in dumped["data"]:
                assert dumped["data"][key] == value, (path, key)
