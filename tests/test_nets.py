"""The networks' reference initialisation (ACAI): N(0, 1 / ((1 + 0.2^2) fan_in)) weights, zero biases.

With PyTorch's default init the 32x32 lines autoencoder stays at the mean image for thousands of
steps (DESIGN.md), so the init is checked directly, layer by layer.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nonvae.nets import ConvCritic, ConvDecoder, ConvEncoder


def test_reference_init_of_the_acai_networks():
    torch.manual_seed(0)
    checked = 0
    for net in (ConvEncoder(1, 16, 4, 16), ConvDecoder(1, 16, 4, 16), ConvCritic(1, 16, 4, 16)):
        for m in net.modules():
            if not isinstance(m, nn.Conv2d):
                continue
            assert m.bias is not None and torch.count_nonzero(m.bias) == 0
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            expected = math.sqrt(1.0 / ((1.0 + 0.2**2) * fan_in))
            w = m.weight.detach()
            if w.numel() >= 2000:  # the std estimate is within ~2% of the truth; 8% is 4+ sigma
                assert abs(float(w.std()) / expected - 1) < 0.08, (type(net).__name__, tuple(w.shape))
                assert abs(float(w.mean())) < 4 * expected / math.sqrt(w.numel())
                checked += 1
    assert checked >= 10


def test_grid_convs_match_torch_and_take_the_matmul_path(monkeypatch):
    """Press et al.'s 4x4 stride-2 (transposed) convs: on small grids the CPU matmul form gives
    nn.Conv2d's / nn.ConvTranspose2d's outputs and gradients (float64), with the same parameters."""
    import nonvae.nets as nets
    from nonvae.nets import GridConv2d, GridConvTranspose2d

    torch.manual_seed(0)
    calls = []
    unfold, fold = nets.F.unfold, nets.F.fold
    monkeypatch.setattr(nets.F, "unfold", lambda *a, **k: calls.append("unfold") or unfold(*a, **k))
    monkeypatch.setattr(nets.F, "fold", lambda *a, **k: calls.append("fold") or fold(*a, **k))
    cases = [(GridConv2d, nn.Conv2d, 8, 1), (GridConv2d, nn.Conv2d, 4, 1), (GridConv2d, nn.Conv2d, 16, 0),
             (GridConvTranspose2d, nn.ConvTranspose2d, 2, 1), (GridConvTranspose2d, nn.ConvTranspose2d, 4, 1),
             (GridConvTranspose2d, nn.ConvTranspose2d, 8, 0)]
    for fast, plain, side, matmuls in cases:
        for bias in (True, False):
            calls.clear()
            a, b = fast(5, 7, 4, 2, 1, bias=bias).double(), plain(5, 7, 4, 2, 1, bias=bias).double()
            b.load_state_dict(a.state_dict())
            x = torch.randn(3, 5, side, side, dtype=torch.float64, requires_grad=True)
            ya, yb = a(x), b(x)
            assert len(calls) == matmuls, (fast.__name__, side)
            g = torch.randn_like(ya)
            grads_a = torch.autograd.grad(ya, [x, *a.parameters()], g)
            grads_b = torch.autograd.grad(yb, [x, *b.parameters()], g)
            torch.testing.assert_close(ya, yb)
            for ga, gb in zip(grads_a, grads_b, strict=True):
                torch.testing.assert_close(ga, gb)
            with torch.autocast("cpu", dtype=torch.bfloat16):  # as nn.Conv2d under autocast: a bf16 output
                xa = x.detach().float()
                out = a.float()(xa)
                assert out.dtype == torch.bfloat16
                assert out.float().sub(b.float()(xa).float()).abs().max() < 0.05 * out.float().abs().max()
    assert nets.GridConv2d(3, 4, 4, 2, 1, padding_mode="reflect")(torch.randn(1, 3, 4, 4)).shape == (1, 4, 2, 2)
    with pytest.raises(RuntimeError):  # shapes are still checked
        nets.GridConv2d(3, 4, 4, 2, 1)(torch.randn(1, 5, 4, 4))


def test_narrow_convs_match_torch_and_take_their_own_path(monkeypatch):
    """The ACAI networks' image-side convs (1x1 from <= 4 channels, any conv to <= 4 channels) computed as a
    matmul / depthwise + sum on the CPU in fp32 give nn.Conv2d's outputs and gradients; under bf16 autocast
    and for wider convs torch's own kernel runs."""
    from nonvae.nets import NarrowConv2d

    torch.manual_seed(0)
    plain_calls = []
    conv_forward = nn.Conv2d._conv_forward
    monkeypatch.setattr(nn.Conv2d, "_conv_forward", lambda self, *a: plain_calls.append(1) or conv_forward(self, *a))
    cases = [(1, 16, 1, True), (3, 8, 1, True), (16, 1, 3, True), (16, 3, 3, True), (8, 8, 3, False),
             (1, 16, 3, False)]
    for cin, cout, k, own in cases:
        for fmt in (torch.contiguous_format, torch.channels_last):
            for bias in (True, False):
                a = NarrowConv2d(cin, cout, k, padding=k // 2, bias=bias).to(memory_format=fmt)
                b = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias).to(memory_format=fmt)
                b.load_state_dict(a.state_dict())
                x = torch.randn(5, cin, 6, 6).contiguous(memory_format=fmt).requires_grad_()
                plain_calls.clear()
                ya = a(x)
                assert bool(plain_calls) != own, (cin, cout, k)
                yb = b(x)
                g = torch.randn_like(yb)
                grads_a = torch.autograd.grad(ya, [x, *a.parameters()], g)
                grads_b = torch.autograd.grad(yb, [x, *b.parameters()], g)
                torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
                for ga, gb in zip(grads_a, grads_b, strict=True):
                    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-4)
                plain_calls.clear()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    assert a(x).dtype == torch.bfloat16
                assert plain_calls


def test_instance_norm_as_group_norm_matches_torch(monkeypatch):
    """Press et al.'s instance norm (no affine, no running statistics) runs on the CPU as a group norm with one
    group per channel: nn.InstanceNorm2d's outputs and input gradients (float64), NCHW and channels_last."""
    import nonvae.nets as nets
    from nonvae.nets import InstanceNorm2d

    calls = []
    group_norm = nets.F.group_norm
    monkeypatch.setattr(nets.F, "group_norm", lambda *a, **k: calls.append(1) or group_norm(*a, **k))
    torch.manual_seed(0)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = (torch.randn(3, 5, 6, 6, dtype=torch.float64) * 3 + 1).contiguous(memory_format=fmt).requires_grad_()
        calls.clear()
        ya, yb = InstanceNorm2d(5)(x), nn.InstanceNorm2d(5)(x)
        assert calls
        g = torch.randn_like(yb)
        torch.testing.assert_close(ya, yb)
        torch.testing.assert_close(torch.autograd.grad(ya, x, g)[0], torch.autograd.grad(yb, x, g)[0])
    calls.clear()
    InstanceNorm2d(5, affine=True)(torch.randn(2, 5, 4, 4))  # affine: torch's own
    assert not calls


def test_coord_channels_tell_every_conv_of_the_decoder_where_it_is():
    """model.coord_channels: each decoder conv gets the pixel's column and row in [-1, 1] as two more inputs, so
    the same code decodes to different pixels at different places (a zero code too, unlike without them)."""
    from nonvae.nets import CoordChannels

    x = torch.randn(2, 3, 4, 8)
    out = CoordChannels()(x)
    assert out.shape == (2, 5, 4, 8) and torch.equal(out[:, :3], x)
    assert torch.equal(out[0, 3, 0], torch.linspace(-1, 1, 8))
    assert torch.equal(out[1, 4, :, 5], torch.linspace(-1, 1, 4))
    torch.manual_seed(0)
    plain, coords = ConvDecoder(1, 4, 2, 6), ConvDecoder(1, 4, 2, 6, coords=True)
    convs = [m for m in coords.modules() if isinstance(m, nn.Conv2d)]
    plain_convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert [m.in_channels for m in convs] == [m.in_channels + 2 for m in plain_convs]
    z = torch.zeros(1, 6, 4, 4)
    with torch.no_grad():
        assert float(plain(z).abs().max()) == 0.0  # zero code, zero biases: nothing tells the pixels apart
        assert float(coords(z).std()) > 0  # the coordinates do
