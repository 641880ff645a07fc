"""No code execution from data files: weights only from safetensors, configs only via yaml.safe_load.

A static check of the source tree (src/, benchmarks/, scripts/, examples/): it parses every file and
refuses pickle-family imports, ``torch.load`` without ``weights_only=True``, ``yaml.load`` and
friends, and ``numpy.load(..., allow_pickle=True)``. Comments and docstrings may mention pickle.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from .conftest import REPO

TREES = ["src", "benchmarks", "scripts", "examples"]
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
UNSAFE_LOADERS = {"Loader", "UnsafeLoader", "FullLoader"}


def _dotted(node: ast.AST) -> str:
    """'torch.load' for the call target torch.load (best effort; '' for anything else)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def problems(source: str, filename: str = "<string>") -> list[str]:
    """Unsafe deserialisation in one Python file, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    report(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            names = {a.name for a in node.names}
            if module in PICKLE_MODULES:
                report(node, f"imports from {node.module}")
            if module == "torch" and "load" in names:
                report(node, "from torch import load (use safetensors)")
            if module == "yaml" and names & (UNSAFE_YAML | UNSAFE_LOADERS):
                report(node, f"from yaml import {sorted(names & (UNSAFE_YAML | UNSAFE_LOADERS))}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("torch.load", "torch.serialization.load") and not _true(node, "weights_only"):
                report(node, f"{name}( without weights_only=True")
            if name.startswith("yaml.") and last in UNSAFE_YAML:
                report(node, f"{name}( (use yaml.safe_load)")
            if name in ("np.load", "numpy.load") and _true(node, "allow_pickle"):
                report(node, f"{name}(..., allow_pickle=True)")
            if last in ("read_pickle", "from_pickle"):
                report(node, f"{name}(")
        elif isinstance(node, ast.Attribute) and _dotted(node) in {f"yaml.{n}" for n in UNSAFE_LOADERS}:
            report(node, f"{_dotted(node)} (unsafe YAML loader)")
    return found


def test_checker_catches_unsafe_code() -> None:
    bad = """
import pickle
from joblib import load
import torch, yaml, numpy as np
TORCH_LOAD("w.pt")
TORCH_LOAD("w.pt", weights_only=False)
yaml.load(text, Loader=yaml.Loader)
yaml.full_load(text)
np.load("a.npy", allow_pickle=True)
""".replace("TORCH_LOAD", "torch." + "load")  # assembled so the unsafe call never appears literally here
    assert len(problems(bad)) == 8, problems(bad)
    good = """
'''pickle is mentioned here: TORCH_LOAD( and yaml.load( in a docstring'''
import torch, yaml, numpy as np
# TORCH_LOAD("w.pt") in a comment
torch.load("w.pt", weights_only=True)
yaml.safe_load(text)
np.load("a.npy")
""".replace("TORCH_LOAD", "torch." + "load")
    assert problems(good) == []


def _python_files() -> list[Path]:
    root = Path(REPO)
    return sorted(p for tree in TREES if (root / tree).is_dir() for p in (root / tree).rglob("*.py"))


def test_source_tree_has_no_unsafe_deserialisation() -> None:
    files = _python_files()
    assert any(p.name == "checkpoint.py" for p in files)
    found = [hit for p in files for hit in problems(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert found == []


def _code_lines(source: str) -> list[str]:
    """The file's lines with every string literal and comment blanked out (tokenize knows where they are)."""
    lines = source.splitlines()
    hidden = {tokenize.STRING, tokenize.COMMENT}
    fstring = ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")  # Python 3.12+ tokenizes f-strings in parts
    hidden |= {getattr(tokenize, n) for n in fstring if hasattr(tokenize, n)}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in hidden:
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for row in range(r0, r1 + 1):
            text = lines[row - 1]
            start = c0 if row == r0 else 0
            end = c1 if row == r1 else len(text)
            lines[row - 1] = text[:start] + " " * (end - start) + text[end:]
    return lines


TORCH_LOAD_CALL = "torch." + "load("  # assembled: the literal call appears nowhere in this file


@pytest.mark.parametrize("needle", [TORCH_LOAD_CALL, "yaml.load(", "import pickle", "pickle.load"])
def test_plain_grep(needle: str) -> None:
    """The same, as a plain text search over code (string literals and comments skipped)."""
    hits = []
    for path in _python_files():
        for number, code in enumerate(_code_lines(path.read_text(encoding="utf-8")), 1):
            if needle in code and not (needle == TORCH_LOAD_CALL and "weights_only=True" in code):
                hits.append(f"{path.relative_to(REPO)}:{number}: {code.strip()}")
    assert hits == []


def test_plain_grep_sees_code_not_strings() -> None:
    source = 'x = "TL(" # yaml.load(\ny = TL(f)\n"""\nimport pickle\n"""\n'.replace("TL(", TORCH_LOAD_CALL)
    lines = _code_lines(source)
    assert [TORCH_LOAD_CALL in line for line in lines] == [False, True, False, False, False]
    assert not any("import pickle" in line for line in lines)
