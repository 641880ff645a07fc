"""Export (nonvae/export.py): a run's model folder in the Hub layout, inference-only and half-precision."""

import pytest
import torch

import nonvae
from nonvae.cli import main


@pytest.fixture(scope="module")
def lines_run(lines_run):
    """The shared 3-step run, evaluated (so that it has an eval.json and a fitted sampler to export)."""
    if not (lines_run / "eval.json").is_file():
        assert main(["eval", str(lines_run)]) == 0
    return lines_run


def test_export_loads_like_a_run(lines_run, tmp_path):
    out = tmp_path / "model"
    assert main(["export", str(lines_run), "--out", str(out)]) == 0
    a, b = nonvae.load(lines_run), nonvae.load(out)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(a.encode(x), b.encode(x))
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "\n# nonvae model" in card  # Hub metadata front matter, then the card
    # the stored test images are the run's own (lines: synthetic), in [-1, 1]
    samples = nonvae.load_samples(out)
    assert samples["x"].shape == (16, 1, 16, 16) and -1 <= samples["x"].min() < samples["x"].max() <= 1


def test_inference_only_export_has_just_the_autoencoder(lines_run, tmp_path):
    out = tmp_path / "small"
    assert main(["export", str(lines_run), "--out", str(out), "--inference-only", "--samples", "0"]) == 0
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors", "sampler.safetensors"]
    assert not (out / "samples.npz").exists()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(nonvae.load(lines_run).decode(nonvae.load(lines_run).encode(x)),
                       nonvae.load(out).decode(nonvae.load(out).encode(x)))
    with pytest.raises(nonvae.errors.CheckpointError, match="samples.npz"):
        nonvae.load_samples(out)
    (out / "samples.npz").write_bytes(b"PK\x03\x04 not a zip")  # a corrupt file names itself
    with pytest.raises(nonvae.errors.CheckpointError, match="samples.npz: unreadable"):
        nonvae.load_samples(out)


def test_half_export_is_smaller_and_close(lines_run, tmp_path):
    full, half = tmp_path / "full", tmp_path / "half"
    assert main(["export", str(lines_run), "--out", str(full), "--inference-only", "--samples", "0"]) == 0
    assert main(["export", str(lines_run), "--out", str(half), "--inference-only", "--samples", "0", "--half"]) == 0
    size = [(p / "model.safetensors").stat().st_size for p in (full, half)]
    assert size[1] < 0.6 * size[0]
    a, b = nonvae.load(full), nonvae.load(half)
    assert all(p.dtype == torch.float32 for p in b.parameters())
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    ya, yb = a.decode(a.encode(x)), b.decode(b.encode(x))
    assert not torch.equal(ya, yb) and (ya - yb).abs().max() < 1e-2
    assert "float16" in (half / "README.md").read_text()
