"""The inference model ``nonvae.load`` returns: a plain ``nn.Module`` people already know how to use.

``model(x)`` reconstructs, ``encode``/``decode`` map images to codes and back (decoded images are
clamped to [-1, 1], as in ``interpolate``), ``sample`` decodes codes drawn from the model's sampler
(see :mod:`nonvae.sampling`), and a split backbone adds ``remove``/``add``/``transfer``.
``save_pretrained``/``from_pretrained`` use the Hugging Face Hub folder layout (config.json,
model.safetensors, README.md with metadata front matter), with no network.
The latent operations themselves live once, in :mod:`nonvae.pipeline`; this class only wraps them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from nonvae.config import Config
from nonvae.errors import ConfigError
from nonvae.rundir import RunDir

CONFIG_FILE = RunDir.config_json.name
WEIGHTS_FILE = RunDir.model_weights.name
LIBRARY = "nonvae"


class Autoencoder(nn.Module):
    """A trained non-variational autoencoder for inference (in eval mode when loaded).

    Images are float tensors (N, C, H, W) in [-1, 1]; ``config`` is the run's full config.
    """

    def __init__(self, config: Config, backbone: nn.Module | None = None, sampler=None,
                 source: Path | None = None) -> None:
        super().__init__()
        from nonvae.autoencoders import build_backbone

        self.cfg = config
        self.image_shape = (config.data.channels, config.data.image_size, config.data.image_size)
        # the backbone (encode/decode, and encode_parts for the split one)
        self.backbone = backbone if backbone is not None else build_backbone(config.model, self.image_shape)
        self.sampler = sampler  # nonvae.sampling.Sampler or None (fitted on first use when the data is here)
        self.source = source  # the folder it was loaded from (where a fitted sampler is stored)
        self.eval()

    @classmethod
    def from_method(cls, method: nn.Module, sampler=None, source: Path | None = None) -> Autoencoder:
        """The inference model of a trained ``Method`` (its backbone; the adversaries are left behind)."""
        return cls(method.cfg, method.backbone, sampler, source=source)

    # -- the module ---------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.cfg

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one code (without the batch dimension)."""
        return tuple(self.backbone.latent_shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``, clamped to [-1, 1]."""
        return self.decode(self.encode(x))

    def encode(self, x: torch.Tensor, domain: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> codes (N, *latent_shape). ``domain`` (split backbone): 0 zeroes the attribute code."""
        return self.backbone.encode(x, domain)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes -> images clamped to [-1, 1] (the range the data lives in)."""
        return self.backbone.decode(z).clamp(-1, 1)

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 16) -> torch.Tensor:
        """Decoded straight-line paths between the codes of x_a and x_b: (N, steps, C, H, W), ends included."""
        from nonvae.latent import interpolate

        return interpolate(self, x_a, x_b, steps)

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n new images (n, C, H, W) in [-1, 1]; the same seed gives the same images.

        LTAE decodes N(0, I) codes; every other model decodes codes of a 10-component Gaussian
        mixture fitted to its training codes (stored beside the weights; fitted on first use).
        """
        from nonvae.sampling import sample, sampler_for

        if n < 1:
            raise ConfigError(f"sample: n must be >= 1 (got {n})")
        if self.sampler is None:
            if self.source is None:
                from nonvae.sampling import fit_sampler, training_images

                self.sampler = fit_sampler(self, training_images(self.cfg), seed=self.cfg.seed)
            else:
                self.sampler = sampler_for(self, self.source, self.cfg)
        return sample(self, self.sampler, n, seed)

    # -- split backbone (content disentanglement) ---------------------------------------------
    @torch.no_grad()
    def remove(self, x: torch.Tensor) -> torch.Tensor:
        """G(E1(x), 0): the images with their attribute removed (split backbone only)."""
        from nonvae.latent import remove_attribute

        return remove_attribute(self, x)

    @torch.no_grad()
    def add(self, x: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
        """G(E1(x_i), E2(donor_i)): each image with its donor's attribute (one donor, or one per image)."""
        from nonvae.latent import add_code

        if len(donors) == 1 and len(x) > 1:
            donors = donors.expand(len(x), *donors.shape[1:])
        if len(donors) != len(x):
            raise ConfigError(f"add: {len(donors)} donors for {len(x)} images; give 1 or one per image")
        return self.decode(add_code(self, x, donors))

    @torch.no_grad()
    def transfer(self, content: torch.Tensor, donors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every content image with every donor's attribute (see :func:`nonvae.transfer`)."""
        from nonvae.latent import transfer

        return transfer(self, content, donors)

    # -- export -------------------------------------------------------------------------------
    def encoder_module(self) -> nn.Module:
        """The encoder alone as a module (x -> z), e.g. for ``torch.onnx.export``."""
        return _Part(self, "encode")

    def decoder_module(self) -> nn.Module:
        """The decoder alone as a module (z -> image in [-1, 1])."""
        return _Part(self, "decode")

    def save_pretrained(self, folder: str | Path, metrics: dict | None = None, step: int | None = None,
                        half: bool = False) -> Path:
        """Write the Hugging Face Hub layout: config.json, model.safetensors, README.md (+ sampler)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_weights(self.backbone.state_dict(), folder / WEIGHTS_FILE, half)
        write_config_json(self.cfg, folder, self.image_shape, self.latent_shape, step)
        if self.sampler is not None:
            self.sampler.save(RunDir(folder).sampler)
        if metrics:
            RunDir(folder).eval.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        write_model_card(self.cfg, folder, metrics or {}, step, half=half)
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
        """Load a saved folder, an exported or shipped model (by name) or a run directory (its latest checkpoint)."""
        from nonvae.pipeline import load as load_method
        from nonvae.resources import model_path
        from nonvae.sampling import SAMPLER_FILE, Sampler

        folder = model_path(path)
        method = load_method(folder, "cpu")
        sampler = Sampler.read(folder / SAMPLER_FILE) if (folder / SAMPLER_FILE).is_file() else None
        model = cls.from_method(method, sampler, source=folder)
        return model.to(device).eval()

    def extra_repr(self) -> str:
        return f"method={self.cfg.method!r}, data={self.cfg.data.name!r}, latent_shape={self.latent_shape}"


class _Part(nn.Module):
    """One half of an autoencoder as its own module (for tracing and ONNX export)."""

    def __init__(self, model: Autoencoder, which: str) -> None:
        super().__init__()
        self.model, self.which = model, which

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x) if self.which == "encode" else self.model.decode(x)


# --------------------------------------------------------------------------- the folder layout
def write_weights(state: dict[str, torch.Tensor], path: Path, half: bool = False) -> None:
    from safetensors.torch import save_file

    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt", "stored_as": "float16" if half else "float32"})


def write_config_json(cfg: Config, folder: Path, image_shape, latent_shape, step: int | None) -> None:
    from nonvae import __version__
    from nonvae.config import to_dict

    data = {"library_name": LIBRARY, "nonvae_version": __version__, "method": cfg.method,
            "image_shape": list(image_shape), "latent_shape": list(latent_shape), "step": step,
            "config": to_dict(cfg)}
    (folder / CONFIG_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def read_config_json(path: Path) -> Config:
    """The run config inside a config.json written by :func:`write_config_json`."""
    from nonvae.config import Config as _Config
    from nonvae.config import from_dict
    from nonvae.errors import CheckpointError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        config = data["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a nonvae {RunDir.config_json.name} ({type(exc).__name__}: {exc})") from None
    try:
        return from_dict(_Config, config, stored=True)
    except ConfigError as exc:
        from nonvae.config import newer_version_note

        written_by = data.get("nonvae_version") if isinstance(data, dict) else None
        raise ConfigError(f"{path}: {newer_version_note(str(written_by) if written_by else None, str(exc))}") \
            from None


def write_model_card(cfg: Config, folder: Path, metrics: dict, step: int | None, half: bool = False,
                     n_samples: int = 0) -> None:
    """README.md with Hub metadata front matter (license, library_name, tags, datasets, metrics)."""
    import yaml

    regs = [k for k, v in cfg.regularizers.items() if v is not None]
    numeric = {k: v for k, v in sorted(metrics.items()) if isinstance(v, int | float)}
    front = {
        "license": "mit",
        "library_name": LIBRARY,
        "tags": ["autoencoder", "non-variational-autoencoder", "pytorch", *dict.fromkeys([cfg.method, *regs])],
        "datasets": [cfg.data.name],
        "metrics": sorted({k.split("/")[0] for k in numeric}) or ["mse"],
        "model-index": [{"name": folder.name, "results": [{
            "task": {"type": "image-to-image", "name": "autoencoding"},
            "dataset": {"type": cfg.data.name, "name": cfg.data.name},
            "metrics": [{"type": k, "name": k, "value": float(v)} for k, v in numeric.items()],
        }]}] if numeric else [],
    }
    from nonvae.export import describe

    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             *describe(cfg, folder, step, half, n_samples)]
    if numeric:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.6g} |" for k, v in numeric.items()]
    RunDir(folder).model_card.write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["Autoencoder", "CONFIG_FILE", "WEIGHTS_FILE"]
