"""The networks' reference initialisation (ACAI): N(0, 1 / ((1 + 0.2^2) fan_in)) weights, zero biases.

With PyTorch's default init the 32x32 lines autoencoder stays at the mean image for thousands of
steps (DESIGN.md), so the init is checked directly, layer by layer.
"""

from __future__ import annotations

import math

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

