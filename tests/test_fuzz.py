"""Property-based robustness: config and checkpoint readers fail only with their own error types.

Whatever bytes or text a user (or a dying disk) hands them, the config loader raises
ConfigError and the checkpoint loader CheckpointError, so the CLI can print one line.
(The dataset parsers have their own fuzz tests in tests/test_data_*.py.)
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import typing
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nonvae.checkpoint import load_checkpoint, load_tensors, save_checkpoint
from nonvae.config import Config, from_dict, load_config
from nonvae.errors import CheckpointError, ConfigError

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _key_paths(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted config key, sections included (so the fuzzers hit real keys often)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = "from" if f.name == "from_" else f.name
        path = f"{prefix}{name}"
        out.append(path)
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        for arg in args:
            if dataclasses.is_dataclass(arg):
                out += _key_paths(arg, path + ".")
    return out


KEYS = _key_paths()
LEAVES = sorted({k.rsplit(".", 1)[-1] for k in KEYS})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["lines", "mnist", "stop", "bf16", "1e-3", ".inf", "nan", "-1", "0"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.one_of(st.sampled_from(LEAVES), st.text(max_size=6)), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def config_dicts(draw: st.DrawFn) -> dict:
    """Nested mappings shaped like configs: real section and key names with random values."""
    data: dict = {}
    for path in draw(st.lists(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), max_size=6)):
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = draw(values)
    return data


@FUZZ
@given(config_dicts())
def test_from_dict_raises_only_config_error(data: dict) -> None:
    try:
        cfg = from_dict(Config, data)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(cfg, Config)


YAML_BITS = ["train:", "data:", "  steps: ", "  lr: ", "  name: ", "model:", "- ", "[", "]", "{", "}", ": ",
             "\n", "  ", "\t", "'", '"', "&a ", "*a", "!!python/object:os.system ", "!!binary ", "? ", "#",
             "%YAML 1.1\n", "---\n", "...\n", "|\n", ">\n", "1e-3", ".inf", "null", "yes", "\x00", "\ufeff"]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=5)), max_size=25))
def test_config_file_raises_only_config_error(bits: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes("".join(bits).encode("utf-8", "surrogatepass"))
        try:
            load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)


@FUZZ
@given(st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.one_of(st.text(max_size=10),
                                                                      st.sampled_from(YAML_BITS))),
    st.text(max_size=15),
), max_size=4))
def test_set_overrides_raise_only_config_error(overrides: list[str]) -> None:
    try:
        load_config(None, overrides)
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml"):
        load_config(path)
    with pytest.raises(ConfigError):
        load_config(None, ["seed=" + "[" * 5000 + "]" * 5000])


# --------------------------------------------------------------------------- checkpoints
def _players() -> tuple[dict[str, torch.nn.Module], dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    critic = torch.nn.Linear(3, 1)
    players = {"autoencoder": net, "critic": critic}
    return players, {n: torch.optim.Adam(m.parameters(), lr=1e-3) for n, m in players.items()}


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint folder with Adam state (one optimizer step taken)."""
    players, opts = _players()
    loss = players["critic"](players["autoencoder"](torch.randn(2, 1, 4, 4))).sum()
    loss.backward()
    for opt in opts.values():
        opt.step()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), 1, players, opts)


def test_valid_checkpoint_loads(valid_checkpoint: Path) -> None:
    players, opts = _players()
    assert load_checkpoint(valid_checkpoint, players, opts)["step"] == 1


@FUZZ
@given(st.binary(max_size=300))
def test_load_tensors_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        path.write_bytes(data)
        try:
            load_tensors(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)


def test_safetensors_with_a_128_byte_header_is_not_taken_for_pickle(tmp_path: Path) -> None:
    """The first byte of a safetensors file is the header length's low byte: 0x80 is legitimate."""
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    for n in range(1, 64):
        save_file({"k": torch.zeros(1), "x" * n: torch.ones(2)}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert set(load_tensors(path)) == {"k", "x" * n}


@FUZZ
@given(
    which=st.sampled_from(["autoencoder.safetensors", "optim_autoencoder.safetensors", "critic.safetensors",
                           "state.json"]),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
)
def test_load_checkpoint_mutated(valid_checkpoint: Path, which: str, cut: int | None,
                                 flips: list[tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "step"
        shutil.copytree(valid_checkpoint, folder)
        data = bytearray((folder / which).read_bytes())
        for pos, value in flips:
            if data:
                data[pos % len(data)] = value
        if cut is not None:
            data = data[: cut % (len(data) + 1)]
        (folder / which).write_bytes(bytes(data))
        players, opts = _players()
        try:
            load_checkpoint(folder, players, opts)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and str(folder) in str(exc)
