"""Network building blocks: the ACAI conv encoder/decoder/critic, MLPs, and a discriminator.

The conv architecture follows the ACAI reference (brain-research/acai): no
normalisation layers, leaky ReLU 0.2, average-pool down / nearest up, linear
last layers, and the reference initialisation N(0, 1/((1 + 0.2^2) fan_in)) with
zero biases. With PyTorch's default init the 4-scale 32x32 autoencoder stays at
the mean image for thousands of steps, so the init is not optional.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LEAK = 0.2


def reference_init(module: nn.Module) -> None:
    """ACAI's variance-scaling init for every conv/linear layer in ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear | nn.ConvTranspose2d):
            fan_in = m.weight[0].numel() if not isinstance(m, nn.ConvTranspose2d) else (
                m.weight.shape[0] * m.weight[0, 0].numel()
            )
            std = math.sqrt(1.0 / ((1.0 + LEAK**2) * fan_in))
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def scales_for(image_size: int, latent_width: int) -> int:
    """Number of 2x down/up-sampling levels between the image and the latent grid."""
    if latent_width <= 0 or image_size % latent_width:
        raise ValueError(f"latent width {latent_width} must divide image size {image_size}")
    ratio = image_size // latent_width
    scales = int(round(math.log2(ratio)))
    if 2**scales != ratio:
        raise ValueError(f"image size / latent width must be a power of 2, got {image_size}/{latent_width}")
    return scales


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAK)


class ConvEncoder(nn.Module):
    """x (N, C, H, W) -> z (N, latent, H / 2^scales, W / 2^scales)."""

    def __init__(self, channels: int, width: int, scales: int, latent: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(channels, width, 1)]
        cin = width
        for s in range(scales):
            cout = width << s
            layers += [_conv(cin, cout, 3), _act(), _conv(cout, cout, 3), _act(), nn.AvgPool2d(2)]
            cin = cout
        layers += [_conv(cin, width << scales, 3), _act(), _conv(width << scales, latent, 3)]
        self.net = nn.Sequential(*layers)
        reference_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """z (N, latent, h, w) -> x (N, C, h * 2^scales, w * 2^scales), linear output (no tanh)."""

    def __init__(self, channels: int, width: int, scales: int, latent: int, out_activation: str = "none"):
        super().__init__()
        layers: list[nn.Module] = []
        cin = latent
        for s in range(scales - 1, -1, -1):
            cout = width << s
            layers += [_conv(cin, cout, 3), _act(), _conv(cout, cout, 3), _act()]
            layers += [nn.Upsample(scale_factor=2, mode="nearest")]
            cin = cout
        layers += [_conv(cin, width, 3), _act(), _conv(width, channels, 3)]
        if out_activation == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        reference_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvCritic(nn.Module):
    """The ACAI critic: the encoder architecture averaged to one scalar per image."""

    def __init__(self, channels: int, width: int, scales: int, latent: int) -> None:
        super().__init__()
        self.encoder = ConvEncoder(channels, width, scales, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1).mean(1)


_ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(LEAK), "softplus": nn.Softplus, "relu": nn.ReLU}


def mlp(sizes: list[int], activation: str = "leaky_relu", last_activation: bool = False) -> nn.Sequential:
    """Linear layers with ``activation`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flattened image -> latent vector (the LTAE reference used 784-500-500-d, softplus)."""

    def __init__(self, in_features: int, hidden: list[int], latent: int, activation: str) -> None:
        super().__init__()
        self.net = mlp([in_features, *hidden, latent], activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """Latent vector -> image of ``shape``."""

    def __init__(self, shape: tuple[int, int, int], hidden: list[int], latent: int, activation: str,
                 out_activation: str = "none") -> None:
        super().__init__()
        self.shape = shape
        self.net = mlp([latent, *reversed(hidden), math.prod(shape)], activation)
        self.out = nn.Tanh() if out_activation == "tanh" else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z.flatten(1))).view(len(z), *self.shape)


class Discriminator(nn.Module):
    """An MLP on latent codes (never images) giving one logit per example."""

    def __init__(self, in_features: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = mlp([in_features, *hidden, 1], "leaky_relu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.flatten(1)).squeeze(1)
