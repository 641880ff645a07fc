"""A straightforward PyTorch port of the benchmarked methods: what a user writes in an afternoon.

No nonvae code: plain ``nn.Sequential`` networks of the same architectures and sizes as the configs,
the same losses, ``torch.optim.Adam`` with its defaults (on CPU a per-tensor loop), fp32, NCHW, one
eager forward per term as the original notebooks and official code compute them. It is the yardstick
of ``benchmarks/throughput.py``: "× the port" is nonvae's default config over this loop, in the same
process at the same thread count.

One choice is generous to the port: the adversary's parameters are frozen during the autoencoder's
update (a naive loop would also compute their gradients there and throw them away).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.2


def _init(module: nn.Module) -> nn.Module:
    """ACAI's reference init (as the official code): N(0, 1/((1 + 0.2^2) fan_in)), zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, math.sqrt(1.0 / ((1 + LEAK**2) * m.weight[0].numel())))
            nn.init.zeros_(m.bias)
    return module


def acai_encoder(channels: int, width: int, scales: int, latent: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 1)]
    cin = width
    for s in range(scales):
        cout = width << s
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(LEAK),
                   nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(LEAK), nn.AvgPool2d(2)]
        cin = cout
    layers += [nn.Conv2d(cin, width << scales, 3, padding=1), nn.LeakyReLU(LEAK),
               nn.Conv2d(width << scales, latent, 3, padding=1)]
    return _init(nn.Sequential(*layers))


def acai_decoder(channels: int, width: int, scales: int, latent: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = latent
    for s in range(scales - 1, -1, -1):
        cout = width << s
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(LEAK),
                   nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(LEAK), nn.Upsample(scale_factor=2)]
        cin = cout
    layers += [nn.Conv2d(cin, width, 3, padding=1), nn.LeakyReLU(LEAK), nn.Conv2d(width, channels, 3, padding=1)]
    return _init(nn.Sequential(*layers))


def press_encoder(channels: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in widths:
        layers += [nn.Conv2d(channels, cout, 4, 2, 1), nn.InstanceNorm2d(cout), nn.LeakyReLU(LEAK)]
        channels = cout
    return nn.Sequential(*layers)


def press_decoder(channels: int, latent: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in widths:
        layers += [nn.ConvTranspose2d(latent, cout, 4, 2, 1), nn.InstanceNorm2d(cout), nn.ReLU()]
        latent = cout
    layers += [nn.ConvTranspose2d(latent, channels, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


class AcaiPort:
    """ACAI (Berthelot et al. 2018) as the official code trains it: critic on three batches."""

    def __init__(self, channels: int, size: int, width: int, latent_width: int, latent: int, lr: float,
                 weight: float = 0.5, gamma: float = 0.2) -> None:
        scales = int(math.log2(size // latent_width))
        self.encoder = acai_encoder(channels, width, scales, latent)
        self.decoder = acai_decoder(channels, width, scales, latent)
        self.critic = acai_encoder(channels, width, scales, latent)
        self.opt_ae = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.weight, self.gamma = weight, gamma
        self.last: dict[str, float] = {}  # the step's loss terms (checked against nonvae's in the tests)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).flatten(1).mean(1)

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        x = batch["x"]
        z = self.encoder(x)
        recon = self.decoder(z)
        alpha = 0.5 - (torch.rand(len(x), device=x.device) - 0.5).abs()
        a = alpha.view(-1, 1, 1, 1)
        mixed = self.decoder(a * z + (1 - a) * z.flip(0))
        self.critic.requires_grad_(False)
        terms = {"recon": F.mse_loss(recon, x), "fool": self.weight * self.score(mixed).pow(2).mean()}
        loss_ae = terms["recon"] + terms["fool"]
        self.opt_ae.zero_grad()
        loss_ae.backward()
        self.opt_ae.step()
        self.critic.requires_grad_(True)
        loss_critic = (self.score(mixed.detach()) - alpha).pow(2).mean() + \
            self.score(self.gamma * x + (1 - self.gamma) * recon.detach()).pow(2).mean()
        self.opt_critic.zero_grad()
        loss_critic.backward()
        self.opt_critic.step()
        self.last = {**{k: float(v.detach()) for k, v in terms.items()}, "loss": float(loss_ae.detach()),
                     "critic": float(loss_critic.detach())}
        return self.last["loss"]


class GlobalCode(nn.Module):
    """E2 as a global vector: the conv encoder's grid, a linear map to ``dim`` numbers, a linear map back."""

    def __init__(self, encoder: nn.Module, dim: int, grid: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim, self.grid = dim, grid
        self.pool = nn.Linear(dim * grid * grid, dim, bias=False)
        self.spread = nn.Linear(dim, dim * grid * grid, bias=False)
        nn.init.normal_(self.spread.weight, 0.0, 1.0 / math.sqrt(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spread(self.pool(self.encoder(x).flatten(1))).view(len(x), self.dim, self.grid, self.grid)


class DisentanglePort:
    """Content disentanglement (Press et al. 2019): E1, E2, one decoder, an MLP on E1's code.

    ``disc_steps`` discriminator updates per step on the same detached codes; ``zero_b`` x mean E2(b)^2 over the
    domain-B images; ``attribute_cycle`` x mean (E2(G(E1(b), E2(a))) - E2(a))^2 over min(#A, #B) pairs (the
    translation decoded and encoded again, target detached): Benaim et al. (ICCV 2019), as the shipped
    attributes config trains; with ``image_gan``, their image critic too: ``critic`` (two logits per image, domain
    A and B, averaged over its grid) learns reconstructions as real and the translations and removals
    G(E1(a), 0) as fake, and the autoencoder gets ``image_gan`` x the non-saturating loss of those; with
    ``image_gan_adaptive`` that weight is a capped ratio of gradient norms, image_gan x min(1, |grad recon| /
    |grad gan|) on the decoder's last conv weight (VQGAN's adaptive weight).
    ``last`` holds the step's loss terms (checked against nonvae's in the tests).
    """

    def __init__(self, e1: nn.Module, e2: nn.Module, decoder: nn.Module, content_features: int, hidden: int,
                 lr: float, weight: float, target: float | None, clip: float = 5.0, disc_steps: int = 1,
                 zero_b: float = 0.0, attribute_cycle: float = 0.0, image_gan: float = 0.0,
                 critic: nn.Module | None = None, image_gan_adaptive: bool = False) -> None:
        self.e1, self.e2, self.decoder = e1, e2, decoder
        self.disc = nn.Sequential(nn.Linear(content_features, hidden), nn.LeakyReLU(LEAK), nn.Linear(hidden, 1))
        ae_params = [*e1.parameters(), *e2.parameters(), *decoder.parameters()]
        self.opt_ae = torch.optim.Adam(ae_params, lr=lr, betas=(0.5, 0.999))
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.999))
        self.weight, self.target, self.clip = weight, target, clip
        self.disc_steps, self.zero_b, self.attribute_cycle = disc_steps, zero_b, attribute_cycle
        self.image_gan, self.critic = image_gan, critic if image_gan > 0 else None
        self.adaptive = image_gan_adaptive
        if self.critic is not None:
            self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.999))
        self.last: dict[str, float] = {}

    def _critic_logits(self, images: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
        return self.critic(images).mean((2, 3)).gather(1, column[:, None]).squeeze(1)

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        x, domain = batch["x"], batch["domain"]
        is_a = domain > 0.5
        content = self.e1(x)
        raw = self.e2(x)
        attribute = raw * domain.view(-1, 1, 1, 1)
        recon = self.decoder(torch.cat([content, attribute], 1))
        self.disc.requires_grad_(False)
        logits = self.disc(content.flatten(1)).squeeze(1)
        target = torch.full_like(logits, 0.5 if self.target is None else self.target)
        terms = {"recon": F.mse_loss(recon, x),
                 "adv": self.weight * F.binary_cross_entropy_with_logits(logits, target)}
        if self.zero_b > 0:
            terms["zero_b"] = self.zero_b * raw[~is_a].pow(2).mean()
        if self.attribute_cycle > 0 or self.critic is not None:  # b's content with a's attribute, decoded
            ia, ib = torch.nonzero(is_a).view(-1), torch.nonzero(~is_a).view(-1)
            n = min(len(ia), len(ib))
            donor = attribute[ia[:n]]
            translation = self.decoder(torch.cat([content[ib[:n]], donor], 1))
            if self.attribute_cycle > 0:  # ... then encoded by E2 again
                terms["attribute_cycle"] = self.attribute_cycle * (self.e2(translation) - donor.detach()).pow(2).mean()
        if self.critic is not None:  # translations should pass for domain A, removals for domain B
            removal = self.decoder(torch.cat([content[ia], torch.zeros_like(attribute[ia])], 1))
            fakes = torch.cat([translation, removal])
            fake_column = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(len(ia), dtype=torch.long)])
            self.critic.requires_grad_(False)
            gan = F.softplus(-self._critic_logits(fakes, fake_column)).mean()
            scale = 1.0
            if self.adaptive:  # the critic's pull on the output conv at most image_gan x the reconstruction's
                out_weight = [m for m in self.decoder.modules() if isinstance(m, nn.Conv2d)][-1].weight
                g_rec = torch.autograd.grad(terms["recon"], out_weight, retain_graph=True)[0].norm()
                g_gan = torch.autograd.grad(gan, out_weight, retain_graph=True)[0].norm()
                scale = (g_rec / (g_gan + 1e-4)).clamp(max=1.0).detach()
            terms["image_gan"] = self.image_gan * scale * gan
        loss_ae = sum(terms.values())
        self.opt_ae.zero_grad()
        loss_ae.backward()
        nn.utils.clip_grad_norm_([p for g in self.opt_ae.param_groups for p in g["params"]], self.clip)
        self.opt_ae.step()
        self.disc.requires_grad_(True)
        codes = content.detach().flatten(1)
        for _ in range(self.disc_steps):
            logits = self.disc(codes).squeeze(1)
            loss_disc = F.binary_cross_entropy_with_logits(logits[is_a], domain[is_a]) + \
                F.binary_cross_entropy_with_logits(logits[~is_a], domain[~is_a])
            self.opt_disc.zero_grad()
            loss_disc.backward()
            nn.utils.clip_grad_norm_(self.disc.parameters(), self.clip)
            self.opt_disc.step()
        self.last = {**{k: float(v.detach()) for k, v in terms.items()}, "loss": float(loss_ae.detach()),
                     "disc": float(loss_disc.detach())}
        if self.critic is not None:  # reconstructions real, translations and removals fake
            self.critic.requires_grad_(True)
            real = self._critic_logits(recon.detach(), (~is_a).long())
            fake = self._critic_logits(fakes.detach(), fake_column)
            loss_critic = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
                F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            self.opt_critic.zero_grad()
            loss_critic.backward()
            nn.utils.clip_grad_norm_(self.critic.parameters(), self.clip)
            self.opt_critic.step()
            self.last["critic"] = float(loss_critic.detach())
        return self.last["loss"]


# the shipped attributes recipe's extra work per step (configs/attributes/disentangle.yaml), and Press et al.'s
# loss alone (one discriminator update, no extra terms)
RECIPES = {"shipped": {"weight": 0.03, "disc_steps": 5, "zero_b": 1.0, "attribute_cycle": 1.0, "image_gan": 0.1,
                       "image_gan_adaptive": True},
           "official": {"weight": 0.03, "disc_steps": 1, "zero_b": 0.0, "attribute_cycle": 0.0, "image_gan": 0.0}}


def build_port(config: str, size: int, recipe: str = "shipped"):
    """The port of one benchmarked config (dataset/method) at ``size`` px, with the networks of the shipped config.

    ``recipe`` (attributes/disentangle): 'shipped' trains as the config does (lambda 0.03, 5 discriminator updates,
    zero_b, attribute_cycle, the image critic at 0.1 with the adaptive weight), 'official' Press et al.'s loss only
    (at the config's lambda).
    """
    if config == "lines/acai":
        return AcaiPort(1, size, width=16, latent_width=2, latent=16, lr=1e-4)
    if config == "attributes/disentangle":  # 32 px: ACAI convs, width 8, 4x4 latent, 16 + 4 channels, global E2
        scales = int(math.log2(size // 4))
        e1, e2 = acai_encoder(1, 8, scales, 16), GlobalCode(acai_encoder(1, 8, scales, 4), 4, 4)
        critic = acai_encoder(1, 8, scales, 2)  # the image critic: the same convs down to 4x4, two logits
        return DisentanglePort(e1, e2, acai_decoder(1, 8, scales, 20), 16 * 16, 256, 2e-4, target=None,
                               critic=critic, **RECIPES[recipe])
    if config == "celeba/disentangle":  # Press et al.'s official networks: 128 px -> 2x2, E1 487 + E2 25 (global)
        levels = int(math.log2(size // 2))
        w = 32
        e1 = press_encoder(3, [min(w << i, w * 8) for i in range(levels - 2)] + [487, 487])
        e2 = GlobalCode(press_encoder(3, [min(w << i, w * 4) for i in range(levels - 1)] + [25]), 25, 2)
        decoder = press_decoder(3, 512, [w << (levels - 2 - j) for j in range(levels - 1)])
        return DisentanglePort(e1, e2, decoder, 487 * 4, 512, 2e-4, 0.001, 0.0)
    raise ValueError(f"no port of {config}")
