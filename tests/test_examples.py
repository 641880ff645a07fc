"""The examples/ notebooks run top to bottom on the shipped pretrained/ models, so they never rot.

Each notebook asserts what it shows (e.g. ACAI's Mean Distance below the baseline's on the shipped
lines models), so a broken model, API change or notebook fails here.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import REPO

EXAMPLES = Path(REPO) / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_are_notebooks_and_models():
    assert {p.stem for p in NOTEBOOKS} >= {"visualise_interpolations", "transfer_attribute", "compare_methods"}
    from nonvae.resources import pretrained_names

    shipped = set(pretrained_names())
    assert shipped >= {"lines_ae", "lines_acai", "fashion_mnist_ae", "fashion_mnist_acai", "attributes_disentangle"}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # CI's 2 cores: the kernel must not oversubscribe them
    # figures as notebook outputs (the test session's Agg backend would draw them nowhere)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any failure
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 2, f"{path.name} drew {len(figures)} figures"
