import pytest

from nonvae.config import Config, apply_overrides, from_dict, load_config, to_dict
from nonvae.errors import ConfigError

from .conftest import REPO


def test_defaults_round_trip():
    cfg = Config()
    again = from_dict(Config, to_dict(cfg))
    assert again == cfg


def test_every_shipped_config_loads():
    from nonvae.resources import config_names

    names = config_names()
    assert len(names) >= 10 and "lines/acai" in names
    for path in names:
        cfg = load_config(path)
        assert cfg.train.steps > 0 and cfg.train.batch_size > 0


def test_contract_keys_exist():
    cfg = load_config(f"{REPO}/configs/lines/acai.yaml")
    for key in ("seed", "data.root", "train.steps", "train.batch_size", "train.lr", "train.eval_every",
                "train.checkpoint_every"):
        node = cfg
        for part in key.split("."):
            assert hasattr(node, part), key
            node = getattr(node, part)
    assert cfg.regularizers.acai.weight == 0.5 and cfg.regularizers.acai.gamma == 0.2
    assert cfg.train.lr == 1e-4 and cfg.train.batch_size == 64 and cfg.train.steps * 64 == 2**24


def test_unknown_key_suggests_closest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  stpes: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "train.stpes" in msg and "'steps'" in msg and str(path) in msg


def test_unknown_section_and_override():
    with pytest.raises(ConfigError, match="regularizers.acia.*'acai'"):
        load_config(None, ["regularizers.acia.weight=1"])
    with pytest.raises(ConfigError, match="'train.lr'.*number"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="train.steps.*> 0"):
        load_config(None, ["train.steps=0"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["train.steps"])
    with pytest.raises(ConfigError, match="data.name"):
        load_config(None, ["data.name=lnes"])


def test_overrides_apply_and_enable_sections():
    cfg = load_config(None, ["train.steps=7", "regularizers.acai.weight=0.25", "model.backbone=mlp",
                           "model.hidden=[3, 4]"])
    assert cfg.train.steps == 7
    assert cfg.regularizers.acai is not None and cfg.regularizers.acai.weight == 0.25
    assert cfg.regularizers.domain is None
    assert cfg.model.hidden == [3, 4]


def test_yaml_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: 3\n   lr: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*line \d"):
        load_config(path)


def test_bool_and_int_strictness():
    with pytest.raises(ConfigError):
        load_config(None, ["train.progress=3"])
    with pytest.raises(ConfigError):
        load_config(None, ["train.steps=1.5"])
    assert apply_overrides({}, ["a.b=1"]) == {"a": {"b": 1}}
