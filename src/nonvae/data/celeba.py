"""CelebA's attribute and partition files, and the two-domain split ``nonvae preprocess celeba`` writes.

list_attr_celeba.txt: line 1 the image count, line 2 the 40 attribute names,
then ``name v1 ... v40`` with values 1 / -1 separated by one or more spaces
(the real file pads with runs of spaces and ends lines with a space; copies
made on Windows end them with CRLF). Everything else is an error naming the
file and line, because a silently mis-parsed column would put the wrong faces
in a domain.

The split follows the official preprocess.py (oripress/ContentDisentanglement):
domain A has the attribute, domain B does not; the first ``test_size`` images
of each domain are the test set. With list_eval_partition.txt we honour
CelebA's own split instead: partition 0 -> train, 2 -> test, and the
validation partition 1 goes to valA.txt / valB.txt (kept out of both, so
that a model can be selected on it without touching the test images).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nonvae.errors import DataError, closest

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
RULES = ("glasses", "mouth", "beard")
DEFAULT_ATTRIBUTE = "Eyeglasses"
OFFICIAL_TEST_SIZE = 64  # the official preprocess.py's --num_test_imgs
PARTITIONS = {"0": "train", "1": "val", "2": "test"}
_VALUES = {"1": 1, "-1": -1}


def _read_lines(path: Path, what: str) -> list[str]:
    """The file's lines (CRLF/CR tolerant); one-line DataErrors for missing or binary files."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    return text.splitlines()


@dataclass
class AttributeTable:
    """A parsed list_attr_celeba.txt: one row of +1/-1 values per image."""

    path: Path
    names: list[str]
    files: list[str]
    values: np.ndarray  # int8 (N, len(names)), each 1 or -1
    lines: np.ndarray  # int64 (N,): the 1-based file line of each row

    def __len__(self) -> int:
        return len(self.files)

    def column(self, name: str) -> np.ndarray:
        """One attribute's values; an unknown name lists the closest real ones."""
        if name not in self.names:
            hits = closest(name, self.names)
            hint = f"did you mean {' or '.join(repr(h) for h in hits)}?" if hits else \
                "valid: " + ", ".join(self.names)
            raise DataError(f"{self.path}: line 2: unknown attribute {name!r} ({hint})")
        return self.values[:, self.names.index(name)]


def read_attributes(path: str | Path) -> AttributeTable:
    """Parse list_attr_celeba.txt strictly (count line, names line, ``name v1..vK`` rows of 1/-1)."""
    path = Path(path)
    lines = _read_lines(path, "attribute file")
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: line 1: expected the number of images, got an empty line")
    head = lines[0].strip()
    try:
        count = int(head)
    except ValueError:
        raise DataError(f"{path}: line 1: expected the number of images, got {head[:40]!r}") from None
    if count < 0:
        raise DataError(f"{path}: line 1: negative image count {count}")
    if len(lines) < 2 or not lines[1].split():
        raise DataError(f"{path}: line 2: expected the attribute names")
    names = lines[1].split()
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: line 2: attribute {name!r} is named twice")
        seen.add(name)
    k = len(names)
    files: list[str] = []
    rows: list[list[int]] = []
    where: list[int] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue  # blank lines (e.g. at the end) carry nothing
        if len(parts) != k + 1:
            raise DataError(f"{path}: line {number}: expected an image name and {k} values, "
                            f"got {len(parts) - 1} values")
        row = [_VALUES.get(v, 0) for v in parts[1:]]
        if 0 in row:
            j = row.index(0)
            raise DataError(f"{path}: line {number}: value {parts[j + 1]!r} for {names[j]} is not 1 or -1")
        name = parts[0]
        if name in first_line:
            raise DataError(f"{path}: line {number}: image {name} is listed twice (first at line "
                            f"{first_line[name]})")
        first_line[name] = number
        files.append(name)
        rows.append(row)
        where.append(number)
    if len(files) != count:
        raise DataError(f"{path}: line 1: declares {count} images but the file lists {len(files)}")
    values = np.array(rows, dtype=np.int8).reshape(len(files), k)
    return AttributeTable(path, names, files, values, np.array(where, dtype=np.int64))


def read_partition(path: str | Path) -> tuple[dict[str, str], dict[str, int]]:
    """Parse list_eval_partition.txt (``name 0|1|2``): (image -> train/val/test, image -> line)."""
    path = Path(path)
    lines = _read_lines(path, "partition file")
    split: dict[str, str] = {}
    where: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}: line {number}: expected 'image partition', got {len(parts)} fields")
        name, value = parts
        if value not in PARTITIONS:
            raise DataError(f"{path}: line {number}: partition {value!r} is not 0 (train), 1 (validation) "
                            "or 2 (test)")
        if name in split:
            raise DataError(f"{path}: line {number}: image {name} is listed twice (first at line {where[name]})")
        split[name] = PARTITIONS[value]
        where[name] = number
    if not split:
        raise DataError(f"{path}: no images listed")
    return split, where


def domain_masks(table: AttributeTable, attribute: str | None = None,
                 rule: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (A = with the attribute, B = without) over the table's rows.

    ``rule``: 'glasses' (Eyeglasses), 'mouth' (Mouth_Slightly_Open), or 'beard': A = male, no
    5_o_Clock_Shadow and (Mustache or Goatee or not No_Beard); B = male, No_Beard, no shadow (other
    images are in neither domain, as in the official preprocess.py). ``attribute``: any column name.
    """
    if attribute is not None and rule is not None:
        raise DataError("give either an attribute or a rule, not both")
    if rule is not None and rule not in RULES:
        raise DataError(f"unknown rule {rule!r} (valid: {', '.join(RULES)})")
    if rule == "beard":
        male = table.column("Male") == 1
        no_shadow = table.column("5_o_Clock_Shadow") == -1
        has_beard = (table.column("Mustache") == 1) | (table.column("Goatee") == 1) | \
            (table.column("No_Beard") == -1)
        a = male & no_shadow & has_beard
        b = male & no_shadow & (table.column("No_Beard") == 1) & ~a
        return a, b
    name = {"glasses": "Eyeglasses", "mouth": "Mouth_Slightly_Open"}.get(rule or "", attribute or DEFAULT_ATTRIBUTE)
    column = table.column(name)
    return column == 1, column == -1


def assign_splits(table: AttributeTable, mask_a: np.ndarray, mask_b: np.ndarray,
                  partition: str | Path | None = None, test_size: int | None = None) -> dict[str, np.ndarray]:
    """Row indices for trainA/trainB/testA/testB (and valA/valB with a partition file)."""
    if test_size is not None and test_size < 0:
        raise DataError(f"test size must be >= 0, got {test_size}")
    out: dict[str, np.ndarray] = {}
    if partition is None:
        n_test = OFFICIAL_TEST_SIZE if test_size is None else test_size
        for d, mask in (("A", mask_a), ("B", mask_b)):
            rows = np.flatnonzero(mask)
            out[f"test{d}"], out[f"train{d}"] = rows[:n_test], rows[n_test:]
        return out
    split, _ = read_partition(partition)
    kind = np.empty(len(table), dtype=object)
    for i, name in enumerate(table.files):
        if name not in split:
            raise DataError(f"{partition}: no partition for image {name} "
                            f"(listed at {table.path} line {int(table.lines[i])})")
        kind[i] = split[name]
    for d, mask in (("A", mask_a), ("B", mask_b)):
        for part in ("train", "val", "test"):
            out[f"{part}{d}"] = np.flatnonzero(mask & (kind == part))
        if test_size is not None:
            out[f"test{d}"] = out[f"test{d}"][:test_size]
    return out


def check_images_exist(table: AttributeTable, root: Path) -> None:
    """Every image the attribute file lists must be in root; the error names the attribute-file line."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    present = set(os.listdir(root))
    missing = [i for i, name in enumerate(table.files) if name not in present]
    if missing:
        i = missing[0]
        more = f" ({len(missing) - 1} more images are missing)" if len(missing) > 1 else ""
        raise DataError(f"{table.path}: line {int(table.lines[i])}: image {table.files[i]} not found in "
                        f"{root}{more}")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def preprocess_celeba(root: str | Path, attributes: str | Path, dest: str | Path, attribute: str | None = None,
                      rule: str | None = None, partition: str | Path | None = None,
                      test_size: int | None = None) -> dict:
    """Write dest/{train,test}{A,B}.txt (+ val*.txt with a partition) and dest/split.json; return counts.

    Each list file holds one absolute image path per line, so training can run from any directory.
    """
    root, dest = Path(root).expanduser(), Path(dest).expanduser()
    table = read_attributes(attributes)
    mask_a, mask_b = domain_masks(table, attribute, rule)
    check_images_exist(table, root)
    splits = assign_splits(table, mask_a, mask_b, partition, test_size)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest}: cannot create the output folder ({exc.strerror or exc})") from None
    base = root.resolve()
    counts = {}
    for name, rows in splits.items():
        _write_atomic(dest / f"{name}.txt", "".join(f"{base / table.files[i]}\n" for i in rows))
        counts[name] = len(rows)
    summary = {
        "attribute": None if rule else (attribute or DEFAULT_ATTRIBUTE),
        "rule": rule,
        "root": str(base),
        "attributes": str(Path(attributes).resolve()),
        "partition": None if partition is None else str(Path(partition).resolve()),
        "test_size": test_size if partition is not None or test_size is not None else OFFICIAL_TEST_SIZE,
        "counts": counts,
        "excluded": int(len(table) - mask_a.sum() - mask_b.sum()),
    }
    _write_atomic(dest / "split.json", json.dumps(summary, indent=1) + "\n")
    return summary
