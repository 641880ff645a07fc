"""Registries and the config sections the registered parts declare beside their code."""

from __future__ import annotations

import dataclasses
import glob

import pytest
import yaml

from nonvae.autoencoders import ConvModel, MLPModel
from nonvae.config import Config, from_dict, load_config, to_dict
from nonvae.data.attributes import AttributesData
from nonvae.errors import ConfigError
from nonvae.registry import BACKBONES, DATASETS, REGULARIZERS, Registry

from .conftest import REPO

PACKAGE = f"{REPO}/src/nonvae"


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
    # a key of another dataset is refused, naming the dataset that has it
    with pytest.raises(ConfigError, match=r"'data.base' is a key of data.name attributes, not of 'lines'.*"
                                          r"set data.name: attributes"):
        load_config(None, ["data.base=digits"])
    with pytest.raises(ConfigError, match=r"'data.hflip' is a key of data.name attributes \| domains \| images"):
        load_config(None, ["data.name=fashion_mnist", "data.hflip=true"])


def test_shipped_and_pretrained_configs_round_trip():
    paths = glob.glob(f"{PACKAGE}/configs/**/*.yaml", recursive=True) + glob.glob(f"{PACKAGE}/pretrained/*/config.yaml")
    paths += glob.glob(f"{REPO}/examples/extending/*.yaml")
    assert len(paths) > 20, paths
    for path in paths:
        cfg = load_config(path, stored="pretrained" in path)
        assert from_dict(Config, to_dict(cfg)) == cfg, path
        raw = yaml.safe_load(open(path, encoding="utf-8"))
        dumped = to_dict(cfg)
        for section, keys in raw.items():  # every key a file sets keeps its value
            if not isinstance(keys, dict):
                continue
            for key, value in keys.items():
                if section in ("data", "model") and key not in dumped[section]:
                    # a key of another dataset / backbone: only a stored config (older versions wrote them all)
                    assert "pretrained" in path, (path, section, key)
                    continue
                if value is not None:
                    assert dumped[section][key] is not None, (path, section, key)
                if section in ("data", "model"):
                    assert dumped[section][key] == value, (path, section, key)


def test_a_stored_config_drops_what_older_versions_wrote_for_other_parts(tmp_path):
    from nonvae.pipeline import config_of
    from nonvae.rundir import RunDir

    # before the data and model sections were split by part, a resolved config carried every part's keys
    raw = to_dict(load_config("fashion_mnist/acai"))
    raw["data"].update(domain_a=None, crop=None, hflip=False, cache_dir=None, bad_images="error", base="auto")
    raw["model"].update(latent_dim=32, hidden=[500, 500], activation="leaky_relu", content_dim=0, arch="acai")
    old = RunDir(tmp_path).config
    old.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    assert config_of(tmp_path) == load_config(old, stored=True) == load_config("fashion_mnist/acai")
    with pytest.raises(ConfigError, match=r"'data.domain_a' is a key of data.name domains, not of 'fashion_mnist'"):
        load_config(old)  # the same keys written by hand are refused


def test_a_backbone_reads_its_own_keys():
    cfg = load_config(None, ["model.backbone=mlp", "model.hidden=[8]"])
    assert isinstance(cfg.model, MLPModel) and cfg.model.hidden == [8]
    assert isinstance(load_config(None).model, ConvModel)
    with pytest.raises(ConfigError, match=r"'model.hidden' is a key of model.backbone mlp, not of 'conv'"):
        load_config(None, ["model.hidden=[8]"])
    with pytest.raises(ConfigError, match=r"'model.transform' is a key of model.backbone conv \| mlp, not of 'split'"):
        load_config(None, ["model.backbone=split", "model.transform=minmax"])
    with pytest.raises(ConfigError, match=r"unknown config key 'model.hiden'.*'hidden'"):
        load_config(None, ["model.backbone=mlp", "model.hiden=[8]"])
