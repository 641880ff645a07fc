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
import torch.nn.functional as F
from torch import nn

from nonvae.errors import ConfigError

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
        raise ConfigError(f"model.latent_width={latent_width} must divide data.image_size={image_size}")
    ratio = image_size // latent_width
    scales = int(round(math.log2(ratio)))
    if 2**scales != ratio:
        raise ConfigError(
            f"data.image_size / model.latent_width must be a power of 2, got {image_size}/{latent_width}"
        )
    return scales


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return NarrowConv2d(cin, cout, k, padding=k // 2)


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


class CoordChannels(nn.Module):
    """Appends two channels holding each pixel's column and row in [-1, 1] (CoordConv, Liu et al. 2018).

    A conv decoder that must draw a shape where a global code says (a band at some angle and offset, rings at
    some height) otherwise has to infer where it is from the zero padding, layer by layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, xs, ys], 1)


class AttributeRenderer(nn.Module):
    """A global attribute code drawn straight onto a full-resolution map, per pixel from its coordinates.

    The first layer's weights on the pixel's column and row are themselves linear maps of the code: unit i computes
    p_i(c) x + q_i(c) y + r_i(c), a straight edge whose direction and offset the code sets (a band's angle and
    offset, a patch's corner), and two 1x1 layers combine the edges into the shape. Everything is bias-free, so a
    zero code (the domain without the attribute) draws a zero map. Built for thin shapes that a 4x4 grid upsampled
    by nearest neighbours through 8 channels places poorly (model.attribute_render; screened on the synthetic band,
    where it did not help because E2 did not encode the band: docs/benchmarks/disentangle.md).
    """

    def __init__(self, code_features: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.edges = nn.Linear(code_features, 3 * hidden, bias=False)
        self.mix = nn.Sequential(_act(), nn.Conv2d(hidden, hidden, 1, bias=False), _act(),
                                 nn.Conv2d(hidden, out_channels, 1, bias=False))
        reference_init(self)

    def forward(self, code: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        ys = torch.linspace(-1.0, 1.0, h, device=code.device, dtype=code.dtype).view(1, 1, h, 1)
        xs = torch.linspace(-1.0, 1.0, w, device=code.device, dtype=code.dtype).view(1, 1, 1, w)
        p, q, r = self.edges(code).unsqueeze(-1).unsqueeze(-1).chunk(3, 1)
        return self.mix(p * xs + q * ys + r)


class ConvDecoder(nn.Module):
    """z (N, latent, h, w) -> x (N, C, h * 2^scales, w * 2^scales), linear output (no tanh).

    ``coords``: every conv also sees the pixel coordinates (:class:`CoordChannels`).
    ``film``: the last ``film`` channels of z (a split backbone's attribute code) also scale and shift every hidden
    conv's output channels (FiLM, Perez et al. 2018; MUNIT's global style code does the same through AdaIN):
    h -> h * (1 + A a) + B a with a the flattened attribute channels and A, B bias-free maps that start at zero,
    so a zero attribute code leaves the decoder as it is and the code reaches every layer, not only the input.
    ``render``: hidden units of an :class:`AttributeRenderer` that draws the last ``attribute`` channels of z at full
    resolution; its ``attribute`` output channels join the input of the last two convs (0: none).
    """

    def __init__(self, channels: int, width: int, scales: int, latent: int, out_activation: str = "none",
                 coords: bool = False, film: int = 0, grid: tuple[int, int] = (1, 1), render: int = 0,
                 attribute: int = 0):
        super().__init__()
        if render and not attribute:
            raise ValueError("render needs the number of attribute channels")

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [CoordChannels(), _conv(cin + 2, cout, 3)] if coords else [_conv(cin, cout, 3)]

        layers: list[nn.Module] = []
        cin = latent
        for s in range(scales - 1, -1, -1):
            cout = width << s
            layers += [*conv(cin, cout), _act(), *conv(cout, cout), _act()]
            layers += [nn.Upsample(scale_factor=2, mode="nearest")]
            cin = cout
        self.render_at = len(layers)  # the renderer's map joins the input of the layers from here on
        layers += [*conv(cin + (attribute if render else 0), width), _act(), *conv(width, channels)]
        if out_activation == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        reference_init(self)
        self.attribute_channels = attribute
        self.renderer = AttributeRenderer(attribute * grid[0] * grid[1], render, attribute) if render else None
        self.film_channels = film
        self.film = nn.ModuleList()
        self.film_after: list[int] = []  # indices in net of the convs whose output is modulated
        if film:
            convs = [i for i, m in enumerate(self.net) if isinstance(m, nn.Conv2d)][:-1]  # not the output conv
            for i in convs:
                modulation = nn.Linear(film * grid[0] * grid[1], 2 * self.net[i].out_channels, bias=False)
                nn.init.zeros_(modulation.weight)
                self.film.append(modulation)
            self.film_after = convs

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.film_channels and self.renderer is None:
            return self.net(z)
        code = z[:, -(self.film_channels or self.attribute_channels):].flatten(1)
        k, h = 0, z
        for i, layer in enumerate(self.net):
            if i == self.render_at and self.renderer is not None:
                h = torch.cat([h, self.renderer(code, h.shape[2:])], 1)
            h = layer(h)
            if k < len(self.film_after) and i == self.film_after[k]:
                scale, shift = self.film[k](code).unsqueeze(-1).unsqueeze(-1).chunk(2, 1)
                h = h * (1 + scale) + shift
                k += 1
        return h


class ConvCritic(nn.Module):
    """The ACAI critic: the encoder architecture averaged to one scalar per image."""

    def __init__(self, channels: int, width: int, scales: int, latent: int) -> None:
        super().__init__()
        self.encoder = ConvEncoder(channels, width, scales, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1).mean(1)


class ImageCritic(nn.Module):
    """The ACAI encoder down to a grid of at least 4x4, averaged to one logit per domain (A, B) per image.

    Content disentanglement's image discriminator (regularizers.domain.image_gan). It halves the image while the
    side stays even and at least 4, so any image size works (an odd side keeps the full resolution).
    """

    def __init__(self, channels: int, size: int, width: int) -> None:
        super().__init__()
        scales = 0
        while size % (2 << scales) == 0 and size >> (scales + 1) >= 4:
            scales += 1
        self.encoder = ConvEncoder(channels, width, scales, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(2).mean(2)


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


# --------------------------------------------------------------------------- Press et al. (2019) convs
# Content disentanglement's official architecture (oripress/ContentDisentanglement): every level is a
# 4x4 stride-2 conv (transposed in the decoder) + optional instance norm + leaky ReLU 0.2 (ReLU in the
# decoder). At 128 px with a 2x2 latent there are six levels: E1 32, 64, 128, 256, 487, 487; E2 32, 64,
# 128, 128, 128, 25; decoder 512, 256, 128, 64, 32, then the image channels and tanh. The widths below
# reproduce those numbers for width = 32 and derive the same pattern for other sizes.


def press_content_widths(width: int, levels: int, content: int) -> list[int]:
    """E1: width * 2^i capped at 8 width, with the last two levels at the content width."""
    if levels < 2:
        raise ConfigError(
            f"model.arch=press needs at least 2 levels (image_size / latent_width >= 4), got {levels}"
        )
    return [min(width << i, width * 8) for i in range(levels - 2)] + [content, content]


def press_attribute_widths(width: int, levels: int, attribute: int) -> list[int]:
    """E2: width * 2^i capped at 4 width, with the last level at the attribute width."""
    if levels < 1:
        raise ConfigError(
            f"model.arch=press needs at least 1 level (data.image_size > model.latent_width), got {levels}"
        )
    return [min(width << i, width * 4) for i in range(levels - 1)] + [attribute]


def press_decoder_widths(width: int, levels: int) -> list[int]:
    """Decoder: width * 2^(levels - 2 - j) for the first levels - 1 transposed convs."""
    return [width << (levels - 2 - j) for j in range(levels - 1)]


# At or below this many grid positions (the conv's output, the transposed conv's input), a CPU (transposed)
# conv of Press et al.'s networks runs as unfold/fold + one matmul: oneDNN's kernels are weight-bound there.
# Measured fwd + bwd, bf16, one thread, 16 images: 487->487 on 4x4 -> 2x2 80 ms as a conv, 20 as a matmul;
# the transposed 512->512 2x2 -> 4x4 77 ms vs 21; 256->487 8x8 -> 4x4 43 vs 29; at 8x8 outputs and above
# the conv kernels win (0.3-0.5x as a matmul). The same at 4 and 64 images per batch.
SMALL_GRID = 16
# the matmul forms as 2-D matmuls of contiguous operands (False: torch.matmul of the weight with 3-D columns; for A/B)
MATMUL_2D = True


def _bias(out: torch.Tensor, bias: torch.Tensor | None, dims: int) -> torch.Tensor:
    return out if bias is None else out + bias.to(out.dtype).view(1, -1, *([1] * dims))


def _plain(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv`` runs its own kernel on ``x`` (not the matmul form): off the CPU, or a case it does not cover."""
    return (x.device.type != "cpu" or x.ndim != 4 or conv.groups != 1 or conv.padding_mode != "zeros"
            or isinstance(conv.padding, str) or torch.jit.is_tracing() or torch.jit.is_scripting())


# The image-side layers of the ACAI networks have one side of at most this many channels (the image's): on the
# CPU the 1x1 conv from the image runs as one matmul over the pixels and the last 3x3 conv to the image as a
# depthwise conv + a sum over its input channels. oneDNN is slow on both shapes in channels_last: fwd + bwd,
# fp32, one thread, 128 images of 32x32: 1 -> 16 1x1 29 ms as a conv, 14 as broadcast arithmetic and less as
# a matmul; 16 -> 1 3x3 36 ms as a conv (60 NCHW), 17 as depthwise + sum. The fp32 lines/ACAI step: 1.08x.
# Under bf16 autocast the conv kernels were faster (attributes/disentangle 0.94x), so they keep them.
NARROW = 4


class NarrowConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters) with CPU forms for a 1x1 conv from, or a conv to, at most ``NARROW`` channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _plain(self, x) or self.stride != (1, 1) or self.dilation != (1, 1) or x.dtype != torch.float32 \
                or torch.is_autocast_enabled("cpu"):  # measured faster in fp32 only (bf16 autocast: 0.94x)
            return super().forward(x)
        n, c, h, w = x.shape
        if self.kernel_size == (1, 1) and self.padding == (0, 0) and c <= NARROW and c == self.in_channels:
            flat = x.permute(0, 2, 3, 1).reshape(-1, c)  # pixels x channels (a view when x is channels_last)
            weight = self.weight.reshape(self.out_channels, c).t()
            out = flat @ weight if self.bias is None else torch.addmm(self.bias, flat, weight)
            return out.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)  # channels_last
        if self.out_channels <= NARROW and c == self.in_channels and not isinstance(self.padding, str):
            cout = self.out_channels
            depthwise = self.weight.transpose(0, 1).reshape(c * cout, 1, *self.kernel_size)
            y = F.conv2d(x, depthwise, None, 1, self.padding, 1, c)  # (n, c * cout, ho, wo), input-channel major
            out = y.view(n, c, cout, y.shape[2], y.shape[3]).sum(1)
            return _bias(out, self.bias, 2)
        return super().forward(x)


class GridConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters) that computes small output grids on the CPU as unfold + one matmul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _plain(self, x):
            return super().forward(x)
        n, _, h, w = x.shape
        (k0, k1), (s0, s1), (p0, p1), (d0, d1) = self.kernel_size, self.stride, self.padding, self.dilation
        ho, wo = (h + 2 * p0 - d0 * (k0 - 1) - 1) // s0 + 1, (w + 2 * p1 - d1 * (k1 - 1) - 1) // s1 + 1
        if ho * wo > SMALL_GRID:
            return super().forward(x)
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (n, c k0 k1, ho wo)
        if not MATMUL_2D:
            out = torch.matmul(self.weight.reshape(self.out_channels, -1), cols)
            return _bias(out, self.bias, 1).view(n, self.out_channels, ho, wo)
        # one 2-D matmul of contiguous operands, (out, c k0 k1) @ (c k0 k1, n ho wo): torch.matmul of the weight
        # with the 3-D cols folds it into a transposed bf16 matmul that is ~20x slower without autograd (eval)
        k = cols.shape[1]
        out = self.weight.reshape(self.out_channels, -1) @ cols.transpose(0, 1).reshape(k, n * ho * wo)
        out = out.view(self.out_channels, n, ho * wo).transpose(0, 1)
        return _bias(out, self.bias, 1).reshape(n, self.out_channels, ho, wo)


class GridConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters) that computes small input grids on the CPU as one matmul + fold."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        n, c, h, w = x.shape if x.ndim == 4 else (0, 0, SMALL_GRID, SMALL_GRID)
        if _plain(self, x) or output_size is not None or h * w > SMALL_GRID:
            return super().forward(x, output_size)
        (k0, k1), (s0, s1), (p0, p1), (d0, d1) = self.kernel_size, self.stride, self.padding, self.dilation
        q0, q1 = self.output_padding
        ho, wo = (h - 1) * s0 - 2 * p0 + d0 * (k0 - 1) + q0 + 1, (w - 1) * s1 - 2 * p1 + d1 * (k1 - 1) + q1 + 1
        if MATMUL_2D:  # (n h w, c) @ (c, cout k0 k1), contiguous operands (see GridConv2d)
            rows = x.reshape(n, c, h * w).transpose(1, 2).reshape(n * h * w, c)
            cols = (rows @ self.weight.reshape(c, -1)).view(n, h * w, -1).transpose(1, 2)  # (n, cout k0 k1, h w)
        else:
            cols = torch.matmul(self.weight.reshape(c, -1).t(), x.reshape(n, c, h * w))  # (n, cout k0 k1, h w)
        out = F.fold(cols, (ho, wo), self.kernel_size, self.dilation, self.padding, self.stride)
        return _bias(out, self.bias, 2)


GROUP_FORM = True


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (same settings) that runs on the CPU as a group norm with one group per channel.

    Without affine parameters and running statistics (Press et al.'s networks) the two are the same
    normalisation: per image and channel, biased variance, the same eps. On the CPU the group norm kernel is
    faster (fwd + bwd, bf16, one thread, 16 images: 32x64x64 2.6 -> 1.6 ms, 256x8x8 0.9 -> 0.4 ms); it takes an
    NCHW copy of a channels_last input (its channels_last kernel is far slower with one channel per group).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not GROUP_FORM or x.device.type != "cpu" or x.ndim != 4 or self.affine or self.track_running_stats:
            return super().forward(x)
        return F.group_norm(x.contiguous(), self.num_features, None, None, self.eps)


def _norm(kind: str, channels: int) -> nn.Module:
    return InstanceNorm2d(channels) if kind == "instance" else nn.Identity()


class PressEncoder(nn.Module):
    """x -> code: one 4x4 stride-2 conv + norm + leaky ReLU per level (also after the last level)."""

    def __init__(self, channels: int, widths: list[int], norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        for cout in widths:
            layers += [GridConv2d(cin, cout, 4, 2, 1), _norm(norm, cout), _act()]
            cin = cout
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PressDecoder(nn.Module):
    """code -> x: 4x4 stride-2 transposed convs + norm + ReLU, a last one to the image channels."""

    def __init__(self, channels: int, latent: int, widths: list[int], norm: str = "instance",
                 out_activation: str = "tanh") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = latent
        for cout in widths:
            layers += [GridConvTranspose2d(cin, cout, 4, 2, 1), _norm(norm, cout), nn.ReLU()]
            cin = cout
        layers.append(GridConvTranspose2d(cin, channels, 4, 2, 1))
        if out_activation == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
