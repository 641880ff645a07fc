"""``nonvae.fit`` (nonvae/fitting.py): training from Python on tensors and Datasets, with the CLI's run
directory, resume and the later commands working without the tensors."""

from __future__ import annotations

import pytest
import torch

import nonvae
from nonvae.cli import main

from .conftest import tiny_overrides


def test_fit_on_tensors_and_datasets_resumes(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 16, 16, generator=g) * 2 - 1
    over = [f"{s}" for s in tiny_overrides(**{"model.width": 4, "model.latent_width": 2,
                                              "model.latent_channels": 4, "train.steps": 2})]
    model = nonvae.fit("lines/ae", train=x[:32], test=x[32:], run_dir=tmp_path / "t", overrides=over)
    assert isinstance(model, nonvae.Autoencoder) and not model.training
    assert (tmp_path / "t" / "checkpoints" / "latest").exists() and (tmp_path / "t" / "samples.npz").is_file()
    with torch.no_grad():
        assert torch.equal(nonvae.load(tmp_path / "t")(x[:3]), model(x[:3]))
    # the same call with more steps resumes (same weights as an uninterrupted 3-step run)
    more = [*over, "train.steps=3"]
    resumed = nonvae.fit("lines/ae", train=x[:32], test=x[32:], run_dir=tmp_path / "t", overrides=more)
    straight = nonvae.fit("lines/ae", train=x[:32], test=x[32:], run_dir=tmp_path / "s", overrides=more)
    with torch.no_grad():
        assert torch.equal(resumed(x[:3]), straight(x[:3]))
    # later commands work without the tensors: test images and sampler stayed in the run directory
    assert main(["interpolate", str(tmp_path / "t"), "--pairs", "2", "--steps", "3",
                 "--out", str(tmp_path / "i.npz")]) == 0
    assert main(["sample", str(tmp_path / "t"), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return x[i], i % 2

    from_dataset = nonvae.fit("lines/ae", train=Pairs(), run_dir=tmp_path / "d", overrides=over)
    assert from_dataset.latent_shape == model.latent_shape
    with pytest.raises(nonvae.errors.DataError, match=r"\[-1, 1\]"):
        nonvae.fit("lines/ae", train=x * 3, run_dir=tmp_path / "bad", overrides=over)
