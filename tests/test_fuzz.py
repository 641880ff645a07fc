"""Property-based robustness: config and checkpoint readers fail only with their own error types.

Whatever bytes or text a user (or a dying disk) hands them, the config loader raises
ConfigError and the checkpoint loader CheckpointError, so the CLI can print one line.
(The dataset parsers have their own fuzz tests in tests/test_data_*.py.)
"""

from __future__ import annotations

import dataclasses
import os
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


# =========================================================================== generated families, whole CLI
# Every case runs in one subprocess (tests/cli_driver.py) under RLIMIT_AS = 2 GiB with a per-case alarm:
# a blow-up fails the case instead of the machine, a hang is reported as a hang, a segfault names the
# case it happened in. Each case must end in exit status 0 (a value that is valid after all) or 2 with
# exactly one 'nonvae: error:' line, the last one on stderr, and never a traceback.
REPO = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "cli_driver.py"
TINY_SET = [f"--set={s}" for s in [
    "data.image_size=16", "model.latent_width=2", "model.latent_channels=4", "data.test_limit=32", "model.width=4",
    "train.batch_size=8", "train.steps=2", "train.log_every=1", "train.sample_every=1000", "train.eval_every=1000",
    "train.checkpoint_every=1000", "train.progress=false", "train.tensorboard=false", "train.report=false"]]
INT_VALUES = ["-1", "0", "1000000000000", "9" * 30, "nan", "1.5", ""]
SET_VALUES = ["-1", "1000000000000", "{}"]  # NaN and wrong types: the hypothesis tests above


def _drive(cases: list[dict], tmp: Path, timeout: float) -> list[dict]:
    """Run ``cases`` in the driver; returns one result per case (the crash or hang of a case fails)."""
    import json
    import subprocess
    import sys

    (tmp / "cases.json").write_text(json.dumps(cases))
    results = tmp / "results.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "XDG_CACHE_HOME": str(tmp / "xdg")}
    done = subprocess.run([sys.executable, str(DRIVER), str(tmp / "cases.json"), str(results)], env=env,
                          cwd=tmp, capture_output=True, text=True, timeout=timeout)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    ended = {r["i"]: r for r in rows if "rc" in r}
    if done.returncode != 0 or len(ended) != len(cases):
        last = max((r["i"] for r in rows), default=-1)
        raise AssertionError(f"driver died (exit {done.returncode}) in case {last}: "
                             f"{cases[last] if last >= 0 else None}; {done.stderr[-2000:]}")
    return [ended[i] for i in range(len(cases))]


def _check(cases: list[dict], results: list[dict], allowed: tuple[int, ...] = (0, 2)) -> None:
    bad = []
    for case, res in zip(cases, results, strict=True):
        lines = [x for x in res["err"].splitlines() if x.strip()]
        errors = [x for x in lines if x.startswith("nonvae: error:")]
        ok = res["exc"] is None and res["rc"] in allowed and "Traceback" not in res["err"]
        if ok and res["rc"] == 2:
            ok = len(errors) == 1 and lines[-1] == errors[0]
        if not ok:
            bad.append((case.get("argv") or case.get("mutate"), res["rc"], res["exc"] or lines[-3:]))
    if bad and os.environ.get("NONVAE_FUZZ_REPORT"):
        with open(os.environ["NONVAE_FUZZ_REPORT"], "a", encoding="utf-8") as fh:
            for argv, rc, what in bad:
                tail = what.strip().splitlines()[-1] if isinstance(what, str) else what
                fh.write(f"{rc} {str(argv)[-160:]} :: {str(tail)[:300]}\n")
    assert not bad, f"{len(bad)} of {len(cases)} cases misbehaved, first: " + "; ".join(map(str, bad[:3]))


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained ACAI run (two players, Adam state) to point every verb at."""
    from nonvae.cli import main

    run = tmp_path_factory.mktemp("fuzzrun") / "run"
    assert main(["train", str(REPO / "configs/lines/acai.yaml"), "--run-dir", str(run), *TINY_SET]) == 0
    return run


def _paths(tmp: Path, suffix: str) -> list[str]:
    """Hostile output paths: under a file, an existing folder, a FIFO, a non-UTF-8 name, a read-only
    file system, a symlink loop, empty."""

    (tmp / "afile").write_text("x")
    (tmp / "adir").mkdir(exist_ok=True)
    (tmp / "adir" / "keep").write_text("x")
    if not (tmp / "afifo").exists():
        os.mkfifo(tmp / "afifo")
    if not (tmp / "loop").is_symlink():
        os.symlink("loop", tmp / "loop")
    return [f"{tmp}/afile/x{suffix}", f"{tmp}/adir", f"{tmp}/afifo", f"{tmp}/\udcff{suffix}",
            f"/proc/nonvae/x{suffix}", f"{tmp}/loop/x{suffix}", ""]


def _option_cases(run: Path, tmp: Path) -> list[dict]:
    """Every option of every verb (but --set and --device) x hostile values, the other options valid."""
    from nonvae.cli import _int_option, build_parser

    verbs = {
        "train": ["train", str(REPO / "configs/lines/acai.yaml"), *TINY_SET, "--run-dir", f"{tmp}/t"],
        "eval": ["eval", str(run), "--set=eval.probe=false", "--set=eval.kmeans=false",
                 "--set=eval.hausdorff=false", "--out", f"{tmp}/e.json"],
        "sample": ["sample", "lines_ae", "--n", "4", "--out", f"{tmp}/s.png"],
        "interpolate": ["interpolate", str(run), "--pairs", "2", "--steps", "3", "--out", f"{tmp}/i.npz"],
        "export": ["export", str(run), "--samples", "0", "--out", f"{tmp}/x"],
        "transfer": ["transfer", "attributes_disentangle", "--n", "2", "--out", f"{tmp}/t.png"],
        "report": ["report", str(run), "--pairs", "1", "--steps", "2", "--out", f"{tmp}/r.html"],
    }
    from .test_celeba import attribute_rows, write_attributes

    celeba = tmp / "celeba"
    celeba.mkdir()
    rows = attribute_rows()
    for name, _ in rows:
        (celeba / name).write_bytes(b"")  # preprocess lists the files; it does not decode them
    write_attributes(tmp / "attrs.txt", rows)
    verbs["preprocess"] = ["preprocess", "celeba", "--root", str(celeba), "--attributes", f"{tmp}/attrs.txt",
                           "--test-size", "2", "--dest", f"{tmp}/pre"]
    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    cases = []
    for verb, base in verbs.items():
        for action in subs[verb]._actions:
            if not action.option_strings or action.nargs == 0 or action.dest in ("help", "set", "device"):
                continue
            flag = action.option_strings[-1]
            if action.type is _int_option:
                values = INT_VALUES
            elif action.dest in ("out", "png", "run_dir", "table", "content", "root", "attributes", "dest",
                                 "partition") or (action.dest == "attribute" and verb == "transfer"):
                values = _paths(tmp, {"png": ".png", "out": Path(base[-1]).suffix}.get(action.dest, ".txt"))
            else:
                values = ["", "x" * 5000]
            for value in values:
                argv = list(base)
                if flag in argv:
                    argv[argv.index(flag) + 1] = value
                else:
                    argv += [flag, value]
                cases.append({"kind": "cli", "argv": argv, "timeout": 30})
    return cases


def test_every_cli_option_with_hostile_values(fuzz_run: Path, tmp_path: Path) -> None:
    cases = _option_cases(fuzz_run, tmp_path)
    assert len(cases) > 100
    _check(cases, _drive(cases, tmp_path, timeout=600))


def _set_keys() -> list[str]:
    from nonvae.registry import REGULARIZERS

    keys = [k for k in KEYS if k != "train.steps"]  # a long run is not an error
    for name in REGULARIZERS.names():
        config = REGULARIZERS.get(name).config
        if config is not None:
            keys += [f"regularizers.{name}.{f.name}" for f in dataclasses.fields(config)]
    return keys


def test_every_config_key_with_hostile_values(tmp_path: Path) -> None:
    """--set KEY=VALUE for every key (regularizers' too) through `nonvae train`; a value that is valid
    trains one step."""
    cases = [{"kind": "cli", "timeout": 60,
              "argv": ["train", str(REPO / "configs/lines/acai.yaml"), *TINY_SET, f"--set={key}={value}",
                       "--set=train.steps=1", "--run-dir", f"{tmp_path}/r{i}"]}
             for i, (key, value) in enumerate((k, v) for k in _set_keys() for v in SET_VALUES)]
    _check(cases, _drive(cases, tmp_path, timeout=600))


def test_every_checkpoint_tensor_mutated(fuzz_run: Path, tmp_path: Path) -> None:
    """Each tensor of each file of a checkpoint: grown, reshaped, cast to int32, or NaN. Each must be refused
    before anything steps (a wrong Adam shape used to segfault the fused kernel)."""
    from safetensors.torch import load_file

    latest = (fuzz_run / "checkpoints" / "latest").resolve()
    cases = []
    overrides = [s.split("=", 1)[1] for s in TINY_SET]
    for file in sorted(latest.glob("*.safetensors")):
        for key, tensor in load_file(str(file)).items():
            for how in ("grow", "int32", "nan"):
                if how == "nan" and not tensor.is_floating_point():
                    continue
                cases.append({"kind": "ckpt", "folder": str(latest), "config": str(REPO / "configs/lines/acai.yaml"),
                              "overrides": overrides, "mutate": {"file": file.name, "key": key, "how": how},
                              "tmp": str(tmp_path / "m")})
    assert len(cases) > 100
    _check(cases, _drive(cases, tmp_path, timeout=600), allowed=(2,))


def _mutations(data: bytes) -> dict[str, bytes]:
    """Truncated at the start, inside a header, half way, one byte short; inflated by one byte and 1 MiB."""
    return {"empty": b"", "1": data[:1], "7": data[:7], "17": data[:17], "half": data[: len(data) // 2],
            "short": data[:-1], "+1": data + b"\0", "+1MiB": data + bytes(1 << 20)}


def test_every_reader_with_truncated_and_inflated_files(tmp_path: Path) -> None:
    """Each file of each dataset reader (IDX raw and gzip, CIFAR-10 binary, SVHN .mat, an image list),
    cut short or grown, through `nonvae train`: one line, exit 2."""
    import numpy as np
    from PIL import Image

    from .test_data_cifar_svhn import make_cifar, make_svhn
    from .test_data_idx import make_split

    base = [*TINY_SET, "--set=train.steps=1"]
    datasets: dict[str, tuple[Path, list[str]]] = {}
    for gz in (False, True):
        root = tmp_path / f"idx{int(gz)}"
        root.mkdir()
        make_split(root, "train", gz=gz)
        make_split(root, "test", gz=gz)
        datasets[root.name] = (root, ["configs/fashion_mnist/ae.yaml", f"--set=data.root={root}",
                                      "--set=data.image_size=32"])
    make_cifar(tmp_path / "c10")
    datasets["c10"] = (tmp_path / "c10", ["configs/cifar10/ae.yaml", f"--set=data.root={tmp_path}/c10",
                                          "--set=data.image_size=32", "--set=data.channels=3"])
    (tmp_path / "svhn").mkdir()
    make_svhn(tmp_path / "svhn", "train")
    make_svhn(tmp_path / "svhn", "test")
    datasets["svhn"] = (tmp_path / "svhn", ["configs/svhn/ae.yaml", f"--set=data.root={tmp_path}/svhn",
                                            "--set=data.image_size=32", "--set=data.channels=3"])
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(6):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(imgs / f"{i}.png")
    (imgs / "list.txt").write_text("".join(f"{imgs}/{i}.png\n" for i in range(6)))
    datasets["imgs"] = (imgs, ["configs/images/ae.yaml", f"--set=data.root={imgs}/list.txt",
                               "--set=data.channels=1", f"--set=data.cache_dir={tmp_path}/cache"])
    cases = []
    for name, (folder, argv) in datasets.items():
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            original = file.read_bytes()
            for how, data in _mutations(original).items():
                if data == original:  # a cut past the end of a small file
                    continue
                copy = tmp_path / "m" / f"{name}-{file.name}-{how}"
                shutil.copytree(folder, copy)
                (copy / file.name).write_bytes(data)
                run = [a.replace(str(folder), str(copy)) for a in argv]
                cases.append({"kind": "cli", "timeout": 30, "mutate": f"{name}/{file.name}/{how}",
                              "argv": ["train", str(REPO / run[0]), *base, *run[1:], "--run-dir", f"{copy}-run"]})
    assert len(cases) > 100
    results = _drive(cases, tmp_path, timeout=600)
    # bytes appended after a self-delimiting container (PNG chunks, MATLAB variables) leave the values read
    # unchanged: the only mutations that may be accepted
    lenient = [c for c, r in zip(cases, results, strict=True) if r["rc"] == 0 and not (
        c["mutate"].endswith(("/+1", "/+1MiB")) and (".png/" in c["mutate"] or ".mat/" in c["mutate"]))]
    assert not lenient, [c["mutate"] for c in lenient][:10]
    _check(cases, results)
