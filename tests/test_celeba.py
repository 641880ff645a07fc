"""CelebA's attribute / partition files and `nonvae preprocess celeba`, on a tiny fixture in the exact layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nonvae.cli import main
from nonvae.data.celeba import (
    CELEBA_ATTRIBUTES,
    domain_masks,
    preprocess_celeba,
    read_attributes,
    read_partition,
)
from nonvae.errors import DataError

N = 10
GLASSES = {0, 3, 6, 9}  # rows with Eyeglasses = 1
PARTITION = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]


def attribute_rows(n: int = N) -> list[tuple[str, list[int]]]:
    rng = np.random.default_rng(0)
    rows = []
    eye = CELEBA_ATTRIBUTES.index("Eyeglasses")
    for i in range(n):
        values = [int(v) for v in rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))]
        values[eye] = 1 if i in GLASSES else -1
        rows.append((f"{i + 1:06d}.jpg", values))
    return rows


def write_attributes(path: Path, rows, names=CELEBA_ATTRIBUTES, count: int | None = None, eol: str = "\n",
                     sep: str = " ") -> Path:
    """The real file's layout: count, names with a trailing space, values right-aligned in 2 chars."""
    lines = [str(len(rows) if count is None else count), " ".join(names) + " "]
    for name, values in rows:
        lines.append(name + sep + sep.join(f"{v:2d}" for v in values))
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


@pytest.fixture
def celeba(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "img_align_celeba"
    root.mkdir()
    rng = np.random.default_rng(1)
    rows = attribute_rows()
    for name, _ in rows:
        pixels = rng.integers(0, 255, size=(218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name, quality=90)
    attrs = write_attributes(tmp_path / "list_attr_celeba.txt", rows)
    part = tmp_path / "list_eval_partition.txt"
    part.write_text("".join(f"{name} {p}\n" for (name, _), p in zip(rows, PARTITION, strict=True)))
    return {"root": root, "attributes": attrs, "partition": part, "tmp": tmp_path}


# --------------------------------------------------------------------------- parser
def test_parses_the_real_layout(celeba):
    table = read_attributes(celeba["attributes"])
    assert table.names == list(CELEBA_ATTRIBUTES) and len(table.names) == 40
    assert table.files[0] == "000001.jpg" and len(table) == N
    assert set(np.flatnonzero(table.column("Eyeglasses") == 1)) == GLASSES
    assert table.values.dtype == np.int8 and set(np.unique(table.values)) <= {-1, 1}
    assert list(table.lines) == list(range(3, 3 + N))


@pytest.mark.parametrize("eol,sep", [("\r\n", " "), ("\n", "   "), ("\r\n", "\t ")])
def test_parser_tolerates_space_runs_trailing_spaces_and_crlf(tmp_path, eol, sep):
    rows = attribute_rows()
    ref = read_attributes(write_attributes(tmp_path / "a.txt", rows))
    path = write_attributes(tmp_path / "b.txt", rows, eol=eol, sep=sep)
    path.write_bytes(path.read_bytes().replace(eol.encode(), (" " + eol).encode()) + eol.encode())  # + blank
    table = read_attributes(path)
    assert table.files == ref.files and np.array_equal(table.values, ref.values)


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_attributes(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_wrong_column_count_names_line(tmp_path):
    rows = attribute_rows()
    rows[4] = (rows[4][0], rows[4][1][:-1])
    msg = _error(write_attributes(tmp_path / "a.txt", rows))
    assert "line 7" in msg and "40 values, got 39" in msg


@pytest.mark.parametrize("bad", ["0", "2", "x", "+1"])
def test_value_other_than_one_names_line_and_attribute(tmp_path, bad):
    path = write_attributes(tmp_path / "a.txt", attribute_rows())
    lines = path.read_text().splitlines()
    parts = lines[5].split()
    parts[16] = bad  # column 16 = Eyeglasses
    lines[5] = " ".join(parts)
    path.write_text("\n".join(lines) + "\n")
    msg = _error(path)
    assert "line 6" in msg and repr(bad) in msg and "Eyeglasses" in msg


def test_count_mismatch_names_line_one(tmp_path):
    msg = _error(write_attributes(tmp_path / "a.txt", attribute_rows(), count=N + 1))
    assert "line 1" in msg and f"declares {N + 1} images" in msg and f"lists {N}" in msg


def test_count_line_not_a_number(tmp_path):
    path = write_attributes(tmp_path / "a.txt", attribute_rows())
    path.write_text("image_id,5_o_Clock_Shadow\n" + path.read_text())
    assert "line 1" in _error(path)


def test_duplicate_image_names_line(tmp_path):
    rows = attribute_rows()
    rows[3] = (rows[1][0], rows[3][1])
    msg = _error(write_attributes(tmp_path / "a.txt", rows))
    assert "line 6" in msg and "listed twice" in msg and "line 4" in msg


def test_unknown_attribute_lists_closest_names(celeba):
    table = read_attributes(celeba["attributes"])
    with pytest.raises(DataError) as info:
        table.column("Eyeglases")
    msg = str(info.value)
    assert str(celeba["attributes"]) in msg and "line 2" in msg and "'Eyeglasses'" in msg
    with pytest.raises(DataError, match="valid: 5_o_Clock_Shadow"):
        table.column("zzzzzz")


def test_partition_parser(celeba, tmp_path):
    split, where = read_partition(celeba["partition"])
    assert split["000001.jpg"] == "train" and split["000007.jpg"] == "val" and split["000010.jpg"] == "test"
    assert where["000010.jpg"] == 10
    bad = tmp_path / "p.txt"
    bad.write_text("000001.jpg 0\r\n000002.jpg 3\r\n")
    with pytest.raises(DataError, match=r"p.txt: line 2: partition '3'"):
        read_partition(bad)
    bad.write_text("000001.jpg 0 1\n")
    with pytest.raises(DataError, match=r"p.txt: line 1: expected 'image partition'"):
        read_partition(bad)


def test_rules(tmp_path):
    names = list(CELEBA_ATTRIBUTES)

    def row(**on):
        values = [-1] * 40
        for k, v in on.items():
            values[names.index(k)] = v
        return values

    rows = [
        ("a.jpg", row(Male=1, Mustache=1, No_Beard=1)),  # beard A (mustache)
        ("b.jpg", row(Male=1, No_Beard=-1)),  # beard A (a beard)
        ("c.jpg", row(Male=1, No_Beard=1)),  # beard B (clean-shaven)
        ("d.jpg", row(Male=1, No_Beard=-1, **{"5_o_Clock_Shadow": 1})),  # shadow: neither
        ("e.jpg", row(Male=-1, Goatee=1, Mouth_Slightly_Open=1)),  # female: neither; mouth A
    ]
    table = read_attributes(write_attributes(tmp_path / "a.txt", rows))
    a, b = domain_masks(table, rule="beard")
    assert list(a) == [True, True, False, False, False] and list(b) == [False, False, True, False, False]
    a, b = domain_masks(table, rule="mouth")
    assert list(a) == [False, False, False, False, True] and not (a & b).any() and (a | b).all()
    a, _ = domain_masks(table, attribute="Male")
    assert list(a) == [True, True, True, True, False]


# --------------------------------------------------------------------------- preprocess
def read_list(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_preprocess_official_split(celeba, tmp_path):
    dest = tmp_path / "out"
    summary = preprocess_celeba(celeba["root"], celeba["attributes"], dest, test_size=2)
    names = {p: [Path(x).name for x in read_list(dest / f"{p}.txt")] for p in ("trainA", "trainB", "testA", "testB")}
    glasses = [f"{i + 1:06d}.jpg" for i in sorted(GLASSES)]
    others = [f"{i + 1:06d}.jpg" for i in range(N) if i not in GLASSES]
    assert names["testA"] == glasses[:2] and names["trainA"] == glasses[2:]
    assert names["testB"] == others[:2] and names["trainB"] == others[2:]
    assert summary["counts"] == {"testA": 2, "trainA": 2, "testB": 2, "trainB": 4}
    for line in read_list(dest / "trainA.txt"):
        assert Path(line).is_absolute() and Path(line).is_file()
    assert (dest / "split.json").is_file()


def test_preprocess_with_partition(celeba, tmp_path):
    dest = tmp_path / "out"
    preprocess_celeba(celeba["root"], celeba["attributes"], dest, partition=celeba["partition"])
    got = {p: [int(Path(x).stem) - 1 for x in read_list(dest / f"{p}.txt")]
           for p in ("trainA", "trainB", "testA", "testB", "valA", "valB")}
    assert got["trainA"] == [0, 3] and got["valA"] == [6] and got["testA"] == [9]
    assert got["trainB"] == [1, 2, 4, 5] and got["valB"] == [7] and got["testB"] == [8]


def test_partition_missing_an_image_names_attribute_line(celeba, tmp_path):
    part = tmp_path / "short.txt"
    part.write_text("".join(read_list(celeba["partition"])[i] + "\n" for i in range(N - 1)))
    with pytest.raises(DataError, match=rf"short.txt: no partition for image 000010.jpg .*line {N + 2}"):
        preprocess_celeba(celeba["root"], celeba["attributes"], tmp_path / "out", partition=part)


def test_missing_image_names_attribute_file_line(celeba, tmp_path):
    (celeba["root"] / "000004.jpg").unlink()
    with pytest.raises(DataError) as info:
        preprocess_celeba(celeba["root"], celeba["attributes"], tmp_path / "out")
    msg = str(info.value)
    assert str(celeba["attributes"]) in msg and "line 6" in msg and "000004.jpg" in msg
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_seed_command_works_unchanged(celeba, monkeypatch, capsys):
    monkeypatch.chdir(celeba["tmp"])
    args = ["--root", "./img_align_celeba", "--attributes", "./list_attr_celeba.txt", "--dest", "./glasses_train"]
    assert main(["preprocess", "celeba", *args]) == 0
    for part in ("trainA", "trainB", "testA", "testB"):
        assert (celeba["tmp"] / "glasses_train" / f"{part}.txt").is_file()
    # with the official default of 64 test images, this tiny set has no training images left
    assert read_list(celeba["tmp"] / "glasses_train" / "trainA.txt") == []
    assert "attribute Eyeglasses" in capsys.readouterr().out
    # the dataset word may be left out; the official --config/--num_test_imgs spellings are accepted
    assert main(["preprocess", *args, "--config", "mouth", "--num_test_imgs", "1"]) == 0
    assert len(read_list(celeba["tmp"] / "glasses_train" / "testA.txt")) == 1


def test_cli_unknown_attribute_is_one_line_error(celeba, capsys):
    code = main(["preprocess", "celeba", "--root", str(celeba["root"]), "--attributes", str(celeba["attributes"]),
                 "--dest", str(celeba["tmp"] / "o"), "--attribute", "Eyeglases"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "did you mean 'Eyeglasses'" in err


def test_preprocess_output_trains_the_press_architecture(celeba, tmp_path):
    """preprocess -> 'domains' data (178 crop, resize) -> one step of the press-arch backbone + discriminator."""
    import torch

    from nonvae.config import load_config
    from nonvae.data import build_data
    from nonvae.methods import build_method

    from .conftest import REPO

    dest = tmp_path / "glasses_train"
    preprocess_celeba(celeba["root"], celeba["attributes"], dest, test_size=1)
    cfg = load_config(f"{REPO}/configs/celeba/disentangle.yaml", [
        f"data.root={dest}", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=16", "model.width=4",
        "model.content_dim=6", "model.attribute_dim=2", "regularizers.domain.hidden=[8]", "train.batch_size=2"])
    data = build_data(cfg.data, cfg.seed)
    assert data.shape == (3, 16, 16) and data.train.sizes == (3, 5) and len(data.test) == 2
    method = build_method(cfg, data.shape)
    logs = method.train_step(data.train.batch(0, 2), 0, method.build_optimizers())
    assert {"recon", "domain/adv", "discriminator", "discriminator/accuracy"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values())
    assert torch.all(data.test.extras["domain"] == torch.tensor([1.0, 0.0]))
