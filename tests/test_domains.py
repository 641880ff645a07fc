"""Two-domain data: image folders/lists, the decoded-image cache, the batches, the synthetic benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nonvae.data import build_data
from nonvae.data import folders as folders_mod
from nonvae.data.attributes import (
    CLEAN_MAX,
    FACTOR_NAMES,
    KINDS,
    OVERLAY_MAX,
    AttributesData,
    attribute_sets,
    interleave,
    overlay_coverage,
    render_overlay,
    sample_factors,
)
from nonvae.data.cache import cached_images
from nonvae.data.domains import DomainsData
from nonvae.data.folders import decode_image, list_images, load_images
from nonvae.errors import ConfigError, DataError


def write_jpegs(folder: Path, n: int, seed: int = 0, size=(178, 218)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def write_list(path: Path, paths: list[Path]) -> Path:
    path.write_text("".join(f"{p}\n" for p in paths))
    return path


# --------------------------------------------------------------------------- folders
def test_decode_crops_the_centre_then_resizes(tmp_path):
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)
    pixels[:20] = 255  # the 20 rows CenterCrop(178) removes at the top ...
    pixels[198:] = 255  # ... and at the bottom
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = decode_image(tmp_path / "a.png", 16, crop=178, channels=3)
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8 and out.max() == 0
    assert decode_image(tmp_path / "a.png", 16, crop=None, channels=1).shape == (1, 16, 16)


def test_folder_and_list_file(tmp_path):
    paths = write_jpegs(tmp_path / "imgs", 3)
    assert list_images(tmp_path / "imgs").paths == paths
    lst = tmp_path / "l.txt"
    lst.write_text(f"# a comment\r\n{paths[0]}\r\n\r\nimgs/{paths[1].name}\r\n")  # relative to the list file
    src = list_images(lst)
    assert src.paths[0] == paths[0] and src.paths[1].resolve() == paths[1].resolve()
    assert src.origins == [f"{lst} line 2", f"{lst} line 4"]
    with pytest.raises(DataError, match="no such image folder or list file"):
        list_images(tmp_path / "nope")


def test_corrupt_jpeg_is_named(tmp_path):
    paths = write_jpegs(tmp_path / "imgs", 3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 3])  # truncated JPEG
    lst = write_list(tmp_path / "trainA.txt", paths)
    with pytest.raises(DataError) as info:
        load_images(lst, 16, crop=178, progress=False)
    msg = str(info.value)
    assert str(paths[1]) in msg and f"{lst} line 2" in msg and "\n" not in msg
    images, result = load_images(lst, 16, crop=178, policy="skip", progress=False)
    assert len(images) == 2 and result.count == 2 and len(result.skipped) == 1
    assert result.skipped[0]["index"] == 1 and result.skipped[0]["path"] == str(paths[1])


def test_missing_listed_file_is_named(tmp_path):
    paths = write_jpegs(tmp_path / "imgs", 2)
    lst = write_list(tmp_path / "trainB.txt", [paths[0], tmp_path / "imgs" / "gone.jpg", paths[1]])
    with pytest.raises(DataError, match=r"gone.jpg: image file not found \(listed at .*trainB.txt line 2\)"):
        load_images(lst, 8, progress=False)
    images, result = load_images(lst, 8, policy="skip", progress=False)
    assert len(images) == 2 and len(result.skipped) == 1


# --------------------------------------------------------------------------- cache
def test_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    paths = write_jpegs(tmp_path / "imgs", 5)
    source = list_images(tmp_path / "imgs")
    calls = []
    real = folders_mod.decode_image
    monkeypatch.setattr(folders_mod, "decode_image", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cache = tmp_path / "cache"
    first = cached_images(source, 16, 178, 3, cache, progress=False)
    assert first.built and len(calls) == 5 and first.images.shape == (5, 3, 16, 16)
    sidecar = first.path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    assert meta["shape"] == [5, 3, 16, 16] and meta["crop"] == 178
    mtime = sidecar.stat().st_mtime_ns
    second = cached_images(source, 16, 178, 3, cache, progress=False)
    assert not second.built and len(calls) == 5 and sidecar.stat().st_mtime_ns == mtime
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(second.images[2], decode_image(paths[2], 16, 178, 3))
    third = cached_images(source, 8, 178, 3, cache, progress=False)  # another size: another file
    assert third.built and third.path != first.path and len(calls) == 10
    assert not list(cache.glob("*.tmp")) and not list(cache.glob("*.lock"))


def test_cache_records_skipped_files(tmp_path):
    paths = write_jpegs(tmp_path / "imgs", 4)
    paths[2].write_bytes(b"not a jpeg")
    source = list_images(tmp_path / "imgs")
    found = cached_images(source, 8, None, 3, tmp_path / "c", policy="skip", progress=False)
    assert list(found.kept) == [0, 1, 3] and len(found.images) == 3
    again = cached_images(source, 8, None, 3, tmp_path / "c", policy="skip", progress=False)
    assert not again.built and list(again.kept) == [0, 1, 3]
    with pytest.raises(DataError, match="not a jpeg|cannot decode"):
        cached_images(source, 8, None, 3, tmp_path / "c", policy="error", progress=False)


# --------------------------------------------------------------------------- 'domains' data
def domains_cfg(tmp_path: Path, **kw) -> DomainsData:
    base = {"name": "domains", "image_size": 16, "channels": 3, "crop": 178, "cache_dir": str(tmp_path / "cache")}
    base.update(kw)
    return DomainsData(**base)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A preprocess-style folder: trainA.txt trainB.txt testA.txt testB.txt."""
    out = tmp_path / "glasses_train"
    out.mkdir()
    for part, n, seed in (("trainA", 3, 0), ("trainB", 5, 1), ("testA", 2, 2), ("testB", 2, 3)):
        write_list(out / f"{part}.txt", write_jpegs(tmp_path / "img" / part, n, seed))
    return out


def test_domain_batches(tmp_path, layout):
    data = build_data(domains_cfg(tmp_path, root=str(layout)), seed=3)
    assert data.shape == (3, 16, 16) and data.train.sizes == (3, 5)
    batch = data.train.batch(0, 4)
    assert batch["x"].shape == (8, 3, 16, 16) and batch["x"].dtype == torch.float32
    assert batch["domain"].tolist() == [1.0] * 4 + [0.0] * 4
    assert torch.equal(batch["x"], data.train.batch(0, 4)["x"])  # depends on the step only
    assert not torch.equal(batch["x"], data.train.batch(1, 4)["x"])
    # world 2 x batch 2 == world 1 x batch 4 for each domain
    r0, r1 = data.train.batch(0, 2, 0, 2), data.train.batch(0, 2, 1, 2)
    assert torch.equal(torch.cat([r0["x"][:2], r1["x"][:2]]), batch["x"][:4])
    # domain A images come from trainA only
    train_a = {tuple(x.flatten()[:8].tolist()) for x in data.train_set.batch(
        torch.nonzero(data.train_set.extras["domain"] > 0.5).view(-1))["x"]}
    assert all(tuple(x.flatten()[:8].tolist()) in train_a for x in batch["x"][:4])
    assert data.test.extras["domain"].tolist() == [1.0, 0.0, 1.0, 0.0]  # interleaved


def test_hflip_is_seeded_by_step(tmp_path, layout):
    plain = build_data(domains_cfg(tmp_path, root=str(layout)), seed=0)
    flipped = build_data(domains_cfg(tmp_path, root=str(layout), hflip=True), seed=0)
    a, b = plain.train.batch(2, 4)["x"], flipped.train.batch(2, 4)["x"]
    same = [torch.equal(a[i], b[i]) for i in range(8)]
    mirrored = [torch.equal(a[i].flip(-1), b[i]) for i in range(8)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and any(mirrored)
    assert torch.equal(b, flipped.train.batch(2, 4)["x"])


def test_folders_and_holdout(tmp_path):
    for d, seed in (("A", 0), ("B", 1)):
        write_jpegs(tmp_path / "data" / f"train{d}", 4, seed)
        write_jpegs(tmp_path / "data" / f"test{d}", 1, seed + 5)
    data = build_data(domains_cfg(tmp_path, root=str(tmp_path / "data")), seed=0)
    assert data.train.sizes == (4, 4) and len(data.test) == 2
    # two plain folders without test siblings: the first test_limit images of each are held out
    write_jpegs(tmp_path / "only_a", 5, 7)
    write_jpegs(tmp_path / "only_b", 6, 8)
    cfg = domains_cfg(tmp_path, domain_a=str(tmp_path / "only_a"), domain_b=str(tmp_path / "only_b"), test_limit=2)
    data = build_data(cfg, seed=0)
    assert data.train.sizes == (3, 4) and len(data.test) == 4


def test_domain_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        build_data(domains_cfg(tmp_path))
    with pytest.raises(ConfigError, match="together"):
        build_data(domains_cfg(tmp_path, domain_a="x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing trainA, trainB, testA, testB"):
        build_data(domains_cfg(tmp_path, root=str(tmp_path / "empty")))


# --------------------------------------------------------------------------- the synthetic benchmark
def attr_cfg(**kw) -> AttributesData:
    base = {"name": "attributes", "image_size": 16, "channels": 1, "base": "digits", "train_limit": 60,
            "test_limit": 20}
    base.update(kw)
    return AttributesData(**base)


@pytest.mark.parametrize(("base", "kind"), [("digits", "rings"), ("shapes", "rings"), ("digits", "band"),
                                            ("digits", "patch")])
def test_ground_truth_overlay_is_exact(base, kind):
    train, test = attribute_sets(attr_cfg(base=base, attribute=kind), seed=0)
    for ds in (train, test):
        domain, factors = ds.extras["domain"], ds.extras["factors"]
        a = domain > 0.5
        assert a.sum() == (~a).sum() and ds.labels is not None and kind in ds.name
        images, clean = ds.images.numpy().astype(np.int16), ds.extras["clean"].numpy().astype(np.int16)
        overlay = render_overlay(factors[a].numpy(), 16, kind=kind)
        assert np.array_equal(images[a.numpy()] - clean[a.numpy()], overlay)  # A - clean == the overlay
        assert overlay.max() > 0 and overlay.max() <= OVERLAY_MAX and clean.max() <= CLEAN_MAX
        assert np.array_equal(images[~a.numpy()], clean[~a.numpy()]) and (factors[~a] == 0).all()
        assert (factors[a][:, 0] > 0).all() and factors.shape[1] == len(FACTOR_NAMES)
        assert domain[:4].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_attribute_kinds_have_their_shapes():
    """band: a thin straight line across the image; patch: a solid square in the chosen corner."""
    # a horizontal band (angle pi/2: normal along y) 4 px above the centre, 2 px wide, full intensity
    band = overlay_coverage(np.array([[1.0, np.pi / 2, -4.0, 1.0]]), 16, "band")[0]
    assert np.allclose(band[3:5], 1) and np.allclose(band[:2], 0) and np.allclose(band[6:], 0)
    # a 5 px patch in corner 3 (bottom right), 1 px from the edges
    patch = overlay_coverage(np.array([[5.0, 3.0, 1.0, 1.0]]), 16, "patch")[0]
    assert np.allclose(patch[10:15, 10:15], 1) and patch.sum() == pytest.approx(25)
    for kind in KINDS:
        f = sample_factors(500, 32, np.random.default_rng(0), kind)
        cover = overlay_coverage(f, 32, kind)
        assert (f[:, 0] > 0).all() and (f[:, 3] >= 0.5).all() and (cover.reshape(500, -1).max(1) > 0.9).all()
    with pytest.raises(ConfigError, match="data.attribute"):
        from nonvae.config import load_config

        load_config(str(Path(__file__).parents[1] / "configs/attributes/disentangle.yaml"), ["data.attribute=ring"])


def test_benchmark_is_deterministic_from_the_seed():
    train0, test0 = attribute_sets(attr_cfg(), seed=0)
    train0b, test0b = attribute_sets(attr_cfg(), seed=0)
    train1, test1 = attribute_sets(attr_cfg(), seed=1)
    assert torch.equal(train0.images, train0b.images) and torch.equal(train0.extras["factors"],
                                                                       train0b.extras["factors"])
    assert not torch.equal(train0.images, train1.images)
    assert torch.equal(test0.images, test1.images) and torch.equal(test0.images, test0b.images)


def test_attributes_bundle_and_fallback():
    data = build_data(attr_cfg(base="auto"), seed=0)  # 16 px: Fashion-MNIST (28 px) cannot fit -> digits
    assert "digits" in data.test.name and data.shape == (1, 16, 16)
    batch = data.train.batch(0, 5)
    assert set(batch) == {"x", "domain"} and batch["x"].shape == (10, 1, 16, 16)
    assert batch["x"].min() >= -1 and batch["x"].max() <= 1


def test_interleave():
    assert interleave(2, 4).tolist() == [0, 2, 1, 3, 4, 5]
    assert interleave(3, 1).tolist() == [0, 3, 1, 2]


# --------------------------------------------------------------------------- folder path == built-in path
def write_domain_folders(root: Path, train, test, mode: str) -> None:
    """The benchmark's images as trainA/ trainB/ testA/ testB/ PNG folders (in set order; mode L or RGB)."""
    for part, ds in (("train", train), ("test", test)):
        a = ds.extras["domain"] > 0.5
        for suffix, mask in (("A", a), ("B", ~a)):
            folder = root / f"{part}{suffix}"
            folder.mkdir(parents=True)
            for i, img in enumerate(ds.images[mask].numpy()):
                pixels = img[0]
                Image.fromarray(pixels if mode == "L" else np.repeat(pixels[..., None], 3, -1)).save(
                    folder / f"{i:05d}.png")


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "L"), (1, "RGB"), (3, "RGB")])
def test_folders_give_the_builtin_tensors(tmp_path, channels, mode):
    """The same images through data.name domains (files) and data.name attributes (built in): identical
    test images, domain labels and training batches (scaling to [-1, 1], no crop or resize, channels)."""
    cfg = attr_cfg(channels=channels, train_limit=12, test_limit=6)
    builtin = build_data(cfg, seed=5)
    write_domain_folders(tmp_path / "data", builtin.train_set, builtin.test, mode)
    folders = build_data(domains_cfg(tmp_path, root=str(tmp_path / "data"), channels=channels, crop=None), seed=5)
    assert folders.shape == builtin.shape == (channels, 16, 16)
    assert folders.test.images.dtype == builtin.test.images.dtype == torch.uint8
    assert torch.equal(folders.test.images, builtin.test.images)
    assert torch.equal(folders.test.extras["domain"], builtin.test.extras["domain"])
    assert torch.equal(folders.train_set.images, builtin.train_set.images)
    for step in (0, 3):
        got, want = folders.train.batch(step, 4), builtin.train.batch(step, 4)
        assert torch.equal(got["domain"], want["domain"]) and torch.equal(got["x"], want["x"])
    x = builtin.train.batch(0, 4)["x"]
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
