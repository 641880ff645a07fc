"""Sampling a deterministic autoencoder (nonvae/sampling.py): a Gaussian mixture on training codes, N(0, I)
for LTAE; the shipped models' samplers: test_model.py."""

from __future__ import annotations

import torch

from .conftest import tiny_overrides


def test_sampler_mixture_matches_the_codes():
    from nonvae.sampling import fit_gmm

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0]])
    codes = torch.cat([centres[0] + 0.1 * torch.randn(500, 2, generator=g),
                       centres[1] + 0.1 * torch.randn(500, 2, generator=g)])
    sampler = fit_gmm(codes.numpy(), (2,), components=2)
    drawn = sampler.codes(2000, seed=0)
    near = (drawn[:, None, :] - centres[None]).norm(dim=-1).min(dim=1).values
    assert near.max() < 1.0  # every sample lies near one of the two clusters
    assert 0.4 < (drawn[:, 0] > 0).float().mean() < 0.6


def test_ltae_samples_normal_codes(tmp_path):
    from nonvae.config import load_config
    from nonvae.sampling import fit_sampler
    from nonvae.train import train

    cfg = load_config("fashion_mnist/ltae_s", tiny_overrides(**{
        "data.name": "digits", "data.image_size": 8, "train.steps": 1, "model.hidden": [8]}))
    method = train(cfg, tmp_path / "ltae").method
    sampler = fit_sampler(method, torch.empty(0))
    assert sampler.kind == "normal"
    assert torch.equal(sampler.codes(4, seed=5), torch.randn((4, *method.backbone.latent_shape),
                                                             generator=torch.Generator().manual_seed(5)))
