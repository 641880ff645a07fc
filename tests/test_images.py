"""Your own images: data.name images (folders, list files, splits, classes, bad files) and the README's
"Train on your own images" commands run as written (nonvae.fit on tensors and Datasets: test_fitting.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nonvae
from nonvae.cli import main
from nonvae.config import load_config

from .conftest import REPO, tiny_overrides


def write_pngs(folder: Path, n: int, size=(40, 48), classes: tuple[str, ...] = ("",), seed: int = 0) -> list[Path]:
    """n small RGB pictures (a coloured disc on a background), non-square so the crop matters."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        cls = classes[i % len(classes)]
        h, w = size
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = rng.uniform(12, h - 12), rng.uniform(12, w - 12), rng.uniform(4, 10)
        img = np.zeros((h, w, 3), np.uint8) + rng.integers(0, 80, 3, dtype=np.uint8)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(120, 256, 3, dtype=np.uint8)
        path = folder / cls / f"img_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def images_cfg(root: Path, tmp_path: Path, **extra):
    over = {"data.root": str(root), "data.image_size": 16, "data.cache_dir": str(tmp_path / "cache"),
            "model.width": 4, "model.latent_width": 2, "model.latent_channels": 4, "train.steps": 2}
    over.update(extra)
    return load_config("images/ae", tiny_overrides(**over))


def test_folder_holdout_split_is_fixed_and_cached(tmp_path):
    from nonvae.data import build_data

    write_pngs(tmp_path / "pics" / "nested", 30)
    cfg = images_cfg(tmp_path / "pics", tmp_path)
    data = build_data(cfg.data, seed=0)
    assert len(data.test) == 3 and len(data.train_set) == 27  # a tenth held out
    assert data.shape == (3, 16, 16) and data.test.labels is None
    again = build_data(cfg.data, seed=5)  # another run seed: the same test images
    assert torch.equal(again.test.images, data.test.images)
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 2  # decoded once, reused
    grey = build_data(images_cfg(tmp_path / "pics", tmp_path, **{"data.channels": 1,
                                                                 "data.test_limit": 5}).data, 0)
    assert grey.shape == (1, 16, 16) and len(grey.test) == 5


def test_sibling_test_folder_list_file_and_classes(tmp_path):
    from nonvae.data import build_data

    write_pngs(tmp_path / "set" / "train", 12, classes=("cat", "dog"))
    write_pngs(tmp_path / "set" / "test", 4, classes=("cat", "dog"), seed=1)
    data = build_data(images_cfg(tmp_path / "set", tmp_path).data, 0)  # train/ and test/ inside root
    assert len(data.train_set) == 12 and len(data.test) == 4
    assert data.train_set.num_classes == 2 and data.test.labels.tolist() == [0, 0, 1, 1]  # cat/, dog/ (sorted paths)
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(str(p) for p in sorted((tmp_path / "set" / "train").rglob("*.png"))[:6]) + "\n")
    (tmp_path / "test.txt").write_text(str(next((tmp_path / "set" / "test").rglob("*.png"))) + "\n")
    data = build_data(images_cfg(listing, tmp_path).data, 0)  # a list file and its test.txt sibling
    assert len(data.train_set) == 6 and len(data.test) == 1


def test_bad_image_is_one_line_error_or_skipped(tmp_path, capsys):
    write_pngs(tmp_path / "pics", 20)
    (tmp_path / "pics" / "broken.png").write_bytes(b"not a png")
    run = tmp_path / "run"
    args = ["train", "images/ae", "--run-dir", str(run),
            *[f"--set={s}" for s in tiny_overrides(**{
                "data.root": str(tmp_path / "pics"), "data.image_size": 16, "data.cache_dir": str(tmp_path / "c"),
                "model.width": 4, "model.latent_width": 2, "model.latent_channels": 4, "train.steps": 2,
                "data.test": str(tmp_path / "pics")})]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "data.bad_images=skip" in err and err.count("\n") == 1
    assert main([*args, "--set", "data.bad_images=skip"]) == 0
    assert main(["train", "images/ae", "--set", f"data.root={tmp_path / 'nothing'}"]) == 2
    assert "data.root not found" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["images/acai", "fashion_mnist/ltae_s", "fashion_mnist/ae_augment"])
def test_every_single_domain_method_trains_on_images(tmp_path, config):
    from nonvae.train import train

    write_pngs(tmp_path / "pics", 20)
    over = {"data.name": "images", "data.root": str(tmp_path / "pics"), "data.image_size": 16,
            "data.channels": 1, "data.cache_dir": str(tmp_path / "c"), "train.steps": 2,
            "model.width": 4, "model.latent_width": 2, "model.latent_channels": 4}
    if "ltae" in config:
        over["model.hidden"] = [8]
    cfg = load_config(config, tiny_overrides(**over))
    trainer = train(cfg, tmp_path / "run")
    assert trainer.step == 2
    model = nonvae.load(tmp_path / "run")
    assert model.sample(2).shape == (2, 1, 16, 16)


def _readme_block() -> list[str]:
    text = (Path(REPO) / "README.md").read_text(encoding="utf-8")
    section = text.split("### Train on your own images", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.slow
def test_readme_own_images_commands_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_pngs(tmp_path / "my_images", 24)
    write_pngs(tmp_path / "my_images" / "more", 12, seed=3)
    commands = _readme_block()
    assert len(commands) >= 4
    for line in commands:
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "nonvae"
        assert main(argv[1:]) == 0, line
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "interp.png").is_file()
    assert (tmp_path / "runs" / "mine" / "eval.json").is_file()
    assert (tmp_path / "models" / "mine" / "model.safetensors").is_file()
