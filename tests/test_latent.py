"""latent.py: the operations on a backbone, written once for the CLI, report, evaluation and API."""

from __future__ import annotations

import torch


def test_split_code_operations_compose(tiny_digits):
    """remove/add/transfer are the same decodes of [E1, E2] codes, whoever calls them."""
    from nonvae.latent import add_code, decode_parts, pick_pairs, remove_attribute, remove_code, split_codes, transfer
    from nonvae.methods import build_method

    cfg = tiny_digits(**{"model.backbone": "split"})
    method = build_method(cfg, (1, 16, 16)).eval()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    content, attribute = split_codes(method, x)
    assert torch.equal(remove_code(method, x), method.autoencoder.combine(content, torch.zeros_like(attribute)))
    assert torch.allclose(add_code(method, x[:1], x[1:2]),
                          method.autoencoder.combine(content[:1], attribute[1:2]))
    out = transfer(method, x[:2], x[2:])
    assert torch.allclose(out["added"][1, 0], decode_parts(method, content[1:2], attribute[2:3])[0], atol=1e-6)
    assert torch.allclose(out["removed"], remove_attribute(method, x[:2]), atol=1e-6)
    masked = split_codes(method, x, torch.tensor([1.0, 0.0, 1.0]))[1]
    assert masked[1].abs().sum() == 0 and torch.equal(masked[0], attribute[0])
    a, b = pick_pairs(10, 3, seed=1)
    assert len(set(a.tolist() + b.tolist())) == 6 and torch.equal(a, pick_pairs(10, 3, seed=1)[0])


def test_interpolation_ends_and_batched_encoding(tiny_digits):
    import numpy as np

    from nonvae.data.base import ImageSet, to_uint8
    from nonvae.latent import encode_all, interpolate, reconstruct
    from nonvae.methods import build_method

    method = build_method(tiny_digits(), (1, 16, 16)).eval()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    frames = interpolate(method, x[:2], x[2:], 5)
    assert frames.shape == (2, 5, 1, 16, 16)
    assert torch.allclose(frames[:, 0], reconstruct(method, x[:2]), atol=1e-6)
    assert torch.allclose(frames[:, -1], reconstruct(method, x[2:]), atol=1e-6)
    ds = ImageSet(to_uint8(x))
    z1, mse1 = encode_all(method, ds, "cpu", batch_size=1)
    z4, mse4 = encode_all(method.autoencoder, ds, "cpu", batch_size=4)  # a method or its backbone alike
    assert np.allclose(z1, z4, atol=1e-5) and abs(mse1 - mse4) < 1e-6 and mse1 > 0
    z2, mse2 = encode_all(method, ds, "cpu", recon=False, limit=2)
    assert len(z2) == 2 and np.isnan(mse2)
