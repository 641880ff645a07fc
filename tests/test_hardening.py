"""Issue 15: data loss and silent corruption on resume, export, concurrent runs and odd images.

Each test reproduces a case that lost data or silently did the wrong thing; all go through the
CLI (one line on stderr, exit 2, nothing touched) or the library the CLI calls.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nonvae.checkpoint import find_latest, read_state
from nonvae.cli import main
from nonvae.config import dump_config, load_config
from nonvae.rundir import RunDir
from nonvae.train import RESUMABLE_KEYS, check_resume_compatible, resumable

from .conftest import REPO, fails, tiny_overrides

AE = f"{REPO}/configs/lines/ae.yaml"
ACAI = f"{REPO}/configs/lines/acai.yaml"
TINY = [f"--set={s}" for s in tiny_overrides(**{
    "data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4, "data.test_limit": 64,
    "train.steps": 2, "train.checkpoint_every": 1, "eval.lines_pairs": 4})]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}/src", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (symlinks by target) -> its bytes."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = os.readlink(path).encode()
        elif path.is_file() and path.name != ".lock":
            out[rel] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def acai_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("acai") / "run"
    assert main(["train", ACAI, "--run-dir", str(path), *TINY]) == 0
    return path


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=True)
    return copy


# --------------------------------------------------------------------------- 1. resume with another method
def test_resume_with_another_method_is_refused_and_touches_nothing(capsys, acai_run: Path, tmp_path: Path) -> None:
    run = copy_of(acai_run, tmp_path)
    before = snapshot(run)
    fails(capsys, ["train", AE, "--run-dir", str(run), *TINY, "--set", "train.steps=4"],
          str(run), "method 'acai' -> 'ae'", "regularizers", "another --run-dir")
    assert snapshot(run) == before  # no checkpoint pruned or written, config.yaml as it was


@pytest.mark.parametrize("setting, needle", [
    ("method=acai_augment", "method"),
    ("regularizers.augment.weight=1", "regularizers ['acai'] -> ['acai', 'augment']"),
    ("model.out_activation=tanh", "model.out_activation"),  # no shape changes: the checkpoint would load
    ("data.image_size=32", "data.image_size"),
    ("seed=3", "seed 0 -> 3"),
])
def test_resume_refuses_keys_that_define_the_model(capsys, acai_run: Path, tmp_path: Path, setting: str,
                                                   needle: str) -> None:
    run = copy_of(acai_run, tmp_path)
    before = snapshot(run)
    extra = ["--set", "regularizers.augment.ops={hflip: 1}", "--set", "method=acai_augment"] \
        if "augment" in setting else []
    fails(capsys, ["train", ACAI, "--run-dir", str(run), *TINY, "--set", setting, *extra], str(run), needle)
    assert snapshot(run) == before


def _resumable_values() -> list[tuple[str, object]]:
    return [("train.steps", 9), ("train.lr", 0.5), ("train.batch_size", 3), ("eval.batch_size", 7),
            ("init.from", "x"), ("regularizers.acai.weight", 0.1), ("regularizers.acai.gamma", 0.5),
            *[(k, v) for k, v in (("data.root", "/elsewhere"), ("data.num_workers", 2), ("data.cache_dir", "/c"),
                                  ("data.bad_images", "skip"), ("data.train_limit", 5), ("data.test_limit", 5),
                                  ("data.hflip", True))]]


@pytest.mark.parametrize("key, value", _resumable_values())
def test_documented_resumable_keys_may_change(acai_run: Path, tmp_path: Path, key: str, value: object) -> None:
    assert resumable(key)
    tiny = [s.split("=", 1)[1] for s in TINY]
    run, extra = acai_run, []
    if key.startswith("data.") and not hasattr(load_config(ACAI, tiny).data, key.split(".")[1]):
        # a key of the image-file datasets (lines has none): a run on data.name images
        run, extra = copy_of(acai_run, tmp_path), ["data.name=images", "data.root=/data"]
        dump_config(load_config(ACAI, [*tiny, *extra]), RunDir(run).config)
    cfg = load_config(ACAI, [*tiny, *extra, f"{key}={value}"])
    check_resume_compatible(cfg, run)  # no error


def test_every_documented_data_key_is_listed() -> None:
    doc = (Path(REPO) / "docs" / "errors.md").read_text()
    for key in RESUMABLE_KEYS:
        assert key.split(".")[1] in doc
    assert not resumable("model.width") and not resumable("method") and not resumable("data.name")


def test_resume_with_resumable_change_trains_on(capsys, acai_run: Path, tmp_path: Path) -> None:
    run = copy_of(acai_run, tmp_path)
    assert main(["train", ACAI, "--run-dir", str(run), *TINY, "--set", "train.steps=3",
                 "--set", "regularizers.acai.weight=0.25"]) == 0
    assert "config changed" in capsys.readouterr().err
    assert read_state(find_latest(run / "checkpoints"))["step"] == 3


# --------------------------------------------------------------------------- 2. nonfinite=skip still saves
def test_skipped_steps_never_skip_a_due_checkpoint(tmp_path: Path) -> None:
    argv = ["train", AE, "--run-dir", str(tmp_path), *TINY, "--set", "train.steps=4",
            "--set", "train.checkpoint_every=2", "--set", "train.lr=1e30", "--set", "train.nonfinite=skip"]
    assert main(argv) == 0
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = {r["step"] for r in rows if r["kind"] == "nonfinite"}
    assert {1, 3} <= skipped  # steps 1 and 3 (0-based) end at the due steps 2 and 4
    assert (tmp_path / "checkpoints" / "step_00000002").is_dir()
    assert read_state(find_latest(tmp_path / "checkpoints"))["step"] == 4


# --------------------------------------------------------------------------- 4. one trainer per run directory
HOLD = """
import sys, time
from pathlib import Path
from nonvae.train import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_second_trainer_refuses_naming_the_holder_and_a_killed_holder_does_not_block(
        capsys, acai_run: Path, tmp_path: Path) -> None:
    run = copy_of(acai_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = snapshot(run)
        fails(capsys, ["train", ACAI, "--run-dir", str(run), *TINY, "--set", "train.steps=3"],
              str(run), f"PID {holder.pid}", "in use")
        assert snapshot(run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (run / ".lock").read_text().strip() == str(holder.pid)  # the stale file stays...
    assert main(["train", ACAI, "--run-dir", str(run), *TINY, "--set", "train.steps=3"]) == 0  # ...and is no lock



# --------------------------------------------------------------------------- 3. export never overwrites
def test_export_refuses_a_non_empty_folder_without_force(capsys, acai_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    fails(capsys, ["export", str(acai_run), "--out", str(out), "--samples", "0"], str(out), "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["README.md"] and (out / "README.md").read_text() == "my notes"
    assert main(["export", str(acai_run), "--out", str(out), "--samples", "0", "--force"]) == 0
    assert (out / "critic.safetensors").is_file()
    # --force over an earlier export: the critic of the full export does not linger in an inference-only one
    assert main(["export", str(acai_run), "--out", str(out), "--samples", "0", "--force", "--inference-only"]) == 0
    assert not (out / "critic.safetensors").exists()
    capsys.readouterr()


@pytest.mark.parametrize("inside", ["", "sub", "checkpoints"])
def test_export_into_its_own_run_is_refused(capsys, acai_run: Path, tmp_path: Path, inside: str) -> None:
    run = copy_of(acai_run, tmp_path)
    (run / "eval.json").write_text(json.dumps({"mse": 0.5}))
    before = snapshot(run)
    out = run / inside if inside else run
    fails(capsys, ["export", str(run), "--out", str(out), "--force"], "inside the run directory")
    assert snapshot(run) == before
    assert main(["eval", str(run), "--set", "eval.probe=false", "--set", "eval.kmeans=false",
                 "--set", "eval.hausdorff=false"]) == 0
    capsys.readouterr()


def test_export_to_a_file_is_refused(capsys, acai_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    fails(capsys, ["export", str(acai_run), "--out", str(target)], "not a folder")
    fails(capsys, ["export", str(acai_run), "--out", str(target / "sub")], str(target / "sub"))


# --------------------------------------------------------------------------- 5. the image cache sees new content
def _pgm(path: Path, value: int, size: int = 8) -> None:
    path.write_bytes(b"P5 %d %d 255\n" % (size, size) + bytes([value]) * (size * size))


def test_cache_sees_a_same_size_replacement(tmp_path: Path) -> None:
    from nonvae.data.cache import cached_images
    from nonvae.data.folders import list_images

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        _pgm(folder / f"{i}.pgm", 10 * i)
    first = cached_images(list_images(folder), 8, None, 1, tmp_path / "cache", progress=False)
    assert first.built and int(first.images[2].max()) == 20
    target = folder / "2.pgm"
    stamp = target.stat()
    _pgm(target, 200)  # same byte size
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # and the old modification time (cp -p)
    assert target.stat().st_size == stamp.st_size
    second = cached_images(list_images(folder), 8, None, 1, tmp_path / "cache", progress=False)
    assert second.built and int(second.images[2].max()) == 200
    third = cached_images(list_images(folder), 8, None, 1, tmp_path / "cache", progress=False)
    assert not third.built  # unchanged files: the cache is reused


def test_a_killed_cache_build_leaves_no_temporary_file(tmp_path: Path, capsys) -> None:
    from nonvae.data.cache import cached_images
    from nonvae.data.folders import list_images

    folder, cache = tmp_path / "imgs", tmp_path / "cache"
    folder.mkdir()
    cache.mkdir()
    for i in range(1200):  # large enough that the build takes a while: it is killed half-way
        _pgm(folder / f"{i:04d}.pgm", i % 251, size=160)
    script = ("import sys\n"
              "from nonvae.data.cache import cached_images\n"
              "from nonvae.data.folders import list_images\n"
              "cached_images(list_images(sys.argv[1]), 8, None, 1, sys.argv[2], progress=False, workers=1)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(folder), str(cache)], env=ENV)
    deadline = time.monotonic() + 60
    while not [p for p in cache.iterdir() if p.name.endswith(".tmp")] and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # the killed build's array
    found = cached_images(list_images(folder), 8, None, 1, cache, progress=False)
    assert found.built and not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert "interrupted image-cache builds" in capsys.readouterr().err


# --------------------------------------------------------------- 6. every Pillow mode: right range or refused
def test_sixteen_bit_png_keeps_its_range(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from nonvae.data.folders import decode_image

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)  # black..white
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    got = decode_image(tmp_path / "g16.png", 64, channels=1)[0]
    want = np.round(ramp / 257.0).astype(np.uint8)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert got.min() == 0 and got.max() == 255 and 120 < got.mean() < 135  # not "nearly all 255"
    rgb = decode_image(tmp_path / "g16.png", 64, channels=3)
    assert rgb.shape == (3, 64, 64) and (rgb[0] == got).all()


@pytest.mark.parametrize("mode, array", [
    ("F", lambda np: np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32)),
    ("I", lambda np: np.arange(64).reshape(8, 8).astype(np.int32) * 1000),
])
def test_float_and_32_bit_tiffs_are_refused_by_name(capsys, tmp_path: Path, mode: str, array) -> None:
    import numpy as np
    from PIL import Image

    path = tmp_path / "x.tif"
    Image.fromarray(array(np)).save(path)
    assert Image.open(path).mode == mode
    fails(capsys, _image_run(tmp_path, path), str(path), f"mode '{mode}'")


def _image_run(tmp_path: Path, image: Path) -> list[str]:
    """`nonvae train` on two-domain data whose list files name only ``image``."""
    lst = tmp_path / "list.txt"
    lst.write_text(f"{image}\n{image}\n")
    return ["train", f"{REPO}/configs/celeba/disentangle.yaml", "--run-dir", str(tmp_path / "run"),
            *[f"--set=data.{k}" for k in (f"domain_a={lst}", f"domain_b={lst}", f"cache_dir={tmp_path}/c", "root=null",
                                          "test_limit=1")],
            "--set", "train.steps=1", "--set", "train.progress=false", "--set", "train.tensorboard=false"]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"])
def test_eight_bit_modes_decode_white_as_255(tmp_path: Path, mode: str) -> None:
    from PIL import Image

    from nonvae.data.folders import decode_image

    white = Image.new("RGB", (8, 8), (255, 255, 255)).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "YCbCr", "LA", "PA") else "x.png")
    try:
        white.save(path)
    except OSError:
        pytest.skip(f"Pillow cannot write mode {mode} here")
    got = decode_image(path, 8, channels=3)
    assert got.min() >= 250, (mode, Image.open(path).mode, got.min())


def test_a_fifo_listed_as_an_image_does_not_hang(capsys, tmp_path: Path) -> None:
    fifo = tmp_path / "img.png"
    os.mkfifo(fifo)
    fails(capsys, _image_run(tmp_path, fifo), str(fifo), "not a regular file")


# --------------------------------------------------------------------------- 7. method names what is built
@pytest.mark.parametrize("config, setting, needles", [
    (AE, "method=vae", ["'vae' is not a method", "it builds 'ae'"]),
    (AE, "method=acai", ["'acai' needs regularizers.acai", "no regularizers"]),
    (ACAI, "method=ae", ["'ae' needs no regularizers", "regularizers.acai"]),
    (f"{REPO}/configs/fashion_mnist/ltae_s.yaml", "model.transform=minmax", ["'ltae_s' needs", "'ltae_m'"]),
])
def test_method_must_match_what_the_config_builds(capsys, tmp_path: Path, config: str, setting: str,
                                                  needles: list[str]) -> None:
    fails(capsys, ["train", config, "--run-dir", str(tmp_path / "r"), "--set", setting], "config key 'method'",
          *needles)
    assert not (tmp_path / "r").exists()


def test_every_shipped_config_names_its_method() -> None:
    for path in sorted(Path(REPO, "configs").glob("*/*.yaml")):
        assert load_config(path).method == yaml.safe_load(path.read_text())["method"]
    assert load_config(None, ["regularizers.acai.weight=1"]).method == "acai"  # no method key: named after it


# --------------------------------------------------------------------------- 8. the rest of the silent cases
def test_duplicate_yaml_keys_are_refused_with_file_and_line(capsys, tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("method: ae\ntrain:\n  steps: 3\n  lr: 0.1\n  steps: 5\n")
    fails(capsys, ["train", str(path)], f"{path}: line 5", "duplicate key 'steps' (first on line 3)")
    fails(capsys, ["train", AE, "--set", "train={steps: 1, steps: 2}"], "duplicate key 'steps'")


@pytest.mark.parametrize("ops", ["{color_noise: {p: 1, sigma: .inf}}", "{color_noise: {p: 1, sigma: .nan}}",
                                 "{hflip: .inf}", "{hflip: 1e400}", f"{{hflip: {10**400}}}",
                                 f"{{color_noise: {{sigma: {10**400}}}}}"])
def test_non_finite_augmentation_settings_are_refused(capsys, tmp_path: Path, ops: str) -> None:
    fails(capsys, ["train", f"{REPO}/configs/lines/acai_augment.yaml", "--run-dir", str(tmp_path / "r"),
                   "--set", f"regularizers.augment.ops={ops}"], "regularizers.augment.ops", "finite")


def test_lines_with_three_channels_is_refused_not_trained_as_one(capsys, tmp_path: Path) -> None:
    fails(capsys, ["train", AE, "--run-dir", str(tmp_path / "r"), *TINY, "--set", "data.channels=3"],
          "lines images have 1 channel", "channels=3")
    assert not (tmp_path / "r" / "config.yaml").exists()


@pytest.mark.parametrize("step", [10**30, 2**40, 7, -1, True])
def test_absurd_step_in_state_json_is_refused(capsys, acai_run: Path, tmp_path: Path, step: object) -> None:
    run = copy_of(acai_run, tmp_path)
    latest = (run / "checkpoints" / "latest").resolve()
    state = json.loads((latest / "state.json").read_text())
    state["step"] = step
    (latest / "state.json").write_text(json.dumps(state))
    before = snapshot(run)
    fails(capsys, ["train", ACAI, "--run-dir", str(run), *TINY, "--set", "train.steps=3"], str(latest / "state.json"))
    assert snapshot(run) == before


# --------------------------------------------------------------------------- messages that named the wrong cause
@pytest.mark.parametrize("code, advice", [(13, "Make the run directory writable"), (40, "symbolic link"),
                                          (28, "Free space")])
def test_a_failed_checkpoint_write_names_its_cause(tmp_path: Path, monkeypatch, tiny_lines, code: int,
                                                   advice: str) -> None:
    from nonvae import checkpoint
    from nonvae.errors import TrainingError
    from nonvae.train import Trainer

    def failing(*args, **kwargs):  # the file system refuses the write (injected: no real full disk here)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoint, "save_file", failing)
    with pytest.raises(TrainingError) as info:
        Trainer(tiny_lines(**{"train.steps": 1, "train.tensorboard": False}), tmp_path).fit()
    assert advice in str(info.value) and os.strerror(code) in str(info.value)
    if code != 28:
        assert "Free space" not in str(info.value)


def test_a_full_disk_while_logging_is_not_masked_by_closing_the_log(tmp_path: Path, monkeypatch, tiny_lines) -> None:
    from nonvae.errors import TrainingError
    from nonvae.train import Trainer

    trainer = Trainer(tiny_lines(**{"train.steps": 2, "train.tensorboard": False}), tmp_path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "metrics.jsonl"))

    def full_on_close():
        raise OSError(28, "No space left on device", str(tmp_path / "tensorboard" / "events"))

    monkeypatch.setattr(trainer.log, "write", full)
    monkeypatch.setattr(trainer.log, "close", full_on_close)
    with pytest.raises(TrainingError, match=r"metrics.jsonl: No space left on device") as info:
        trainer.fit()
    assert info.value.__context__ is None or "tensorboard" not in str(info.value)


def test_alias_bomb_and_gzip_bomb_stay_small(capsys, tmp_path: Path) -> None:
    import gzip
    import struct
    import tracemalloc
    import zlib

    from nonvae.data.idx import read_idx
    from nonvae.errors import DataError

    bomb = tmp_path / "bomb.yaml"
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    bomb.write_text("\n".join(rows) + "\n")
    assert len(bomb.read_bytes()) < 600
    tracemalloc.start()
    line = fails(capsys, ["train", str(bomb)], str(bomb), "alias")
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 10, 28, 28)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gz = packer.compress(header) + b"".join(packer.compress(bytes(1 << 24)) for _ in range(64)) + packer.flush()
    (tmp_path / "bomb.gz").write_bytes(gz)  # ~1 MB that inflates to 1 GiB
    with pytest.raises(DataError, match="inflates past the 7856 bytes its IDX header declares"):
        read_idx(tmp_path / "bomb.gz")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(line) < 400 and peak < 64 << 20, (len(line), peak)
    (tmp_path / "ok.gz").write_bytes(gzip.compress(header + bytes(10 * 28 * 28)))
    assert read_idx(tmp_path / "ok.gz").shape == (10, 28, 28)


def test_a_config_from_a_newer_version_is_not_called_a_typo(capsys, acai_run: Path, tmp_path: Path) -> None:
    run = copy_of(acai_run, tmp_path)
    text = (run / "config.yaml").read_text()
    assert text.startswith("# written by nonvae ")
    (run / "config.yaml").write_text("# written by nonvae 99.0\n" + text.split("\n", 1)[1].replace(
        "train:\n", "train:\n  ema_decay: 0.999\n", 1))
    line = fails(capsys, ["eval", str(run)], "newer than this nonvae", "'train.ema_decay'", "upgrade nonvae")
    assert "did you mean" not in line
    (run / "config.yaml").write_text(text.replace("train:\n", "train:\n  ema_decay: 0.999\n", 1))  # same version
    fails(capsys, ["eval", str(run)], "unknown config key 'train.ema_decay'")


def test_non_utf8_file_names_in_an_image_folder(capsys, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(np.full((16, 16), 6 * i, np.uint8)).save(os.fsdecode(bytes(folder) + b"/\xff%d.png" % i))
    bad = os.fsdecode(bytes(folder) + b"/\xfebad.png")
    Path(bad).write_bytes(b"not a png")
    argv = ["train", "images/ae", *[f"--set={s}" for s in (
        f"data.root={folder}", "data.channels=1", "data.image_size=16", "model.latent_width=2", "model.width=4",
        "train.steps=1", "train.progress=false", "train.tensorboard=false", "train.report=false",
        f"data.cache_dir={tmp_path}/cache")]]
    fails(capsys, [*argv, "--run-dir", str(tmp_path / "r1")], "bad.png", "cannot decode image")
    assert main([*argv, "--set=data.bad_images=skip", "--run-dir", str(tmp_path / "r2")]) == 0


def test_a_one_image_test_set_trains_without_an_interpolation_grid(capsys, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        Image.fromarray(np.full((16, 16), 30 * i, np.uint8)).save(folder / f"{i}.png")
    argv = ["train", "images/ae", *[f"--set={s}" for s in (
        f"data.root={folder}", "data.channels=1", "data.image_size=16", "model.latent_width=2", "model.width=4",
        "data.test_limit=1", "train.steps=1", "train.progress=false", "train.tensorboard=false",
        "train.report=false", f"data.cache_dir={tmp_path}/cache")], "--run-dir", str(tmp_path / "r")]
    assert main(argv) == 0, capsys.readouterr().err
    assert list((tmp_path / "r" / "samples").glob("*recon*"))
