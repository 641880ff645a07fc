"""``nonvae eval``: every metric that applies to a run's data, as one flat dict.

Talks only to the backbone interface (encode/decode) and the data bundle.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from nonvae.config import Config
from nonvae.data import DataBundle
from nonvae.data.base import ImageSet


@torch.no_grad()
def encode_all(method, ds: ImageSet, device: torch.device, batch_size: int = 256,
               desc: str | None = None, recon: bool = True, precision: str = "fp32") -> tuple[np.ndarray, float]:
    """Flattened codes of every image in ``ds`` and the mean reconstruction MSE.

    ``recon=False`` skips decoding (the MSE is then NaN): a third of the work for a conv AE, which
    matters when encoding a whole training set for the probe. ``precision='bf16'`` runs the networks
    under bf16 autocast (codes and errors are read back in float32).
    """
    codes, sq, count = [], 0.0, 0
    starts = range(0, len(ds), batch_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for start in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 20, leave=False):
        batch = ds.batch(torch.arange(start, min(start + batch_size, len(ds))))
        x = batch["x"].to(device)
        domain = batch.get("domain")
        with autocast:
            z = method.encode(x, None if domain is None else domain.to(device))
            if recon:
                decoded = method.decode(z)
        if recon:
            sq += float((decoded.float() - x.float()).pow(2).sum())
            count += x.numel()
        codes.append(z.flatten(1).float().cpu().numpy())
    return np.concatenate(codes), sq / count if count else float("nan")


def evaluate(method, data: DataBundle, cfg: Config, device: torch.device | str = "cpu",
             quick: bool = False, sampler=None) -> dict[str, float]:
    """All metrics for this run; ``quick`` uses smaller samples for periodic evaluation.

    ``sampler`` (:class:`nonvae.sampling.Sampler`) is what the Hausdorff distances sample from; without
    one it is fitted here to the training data (N(0, I) for LTAE, a Gaussian mixture otherwise).
    """
    device = torch.device(device)
    e = cfg.eval
    test = data.test if not quick else data.test.subset(2000)
    z_test, mse = encode_all(method, test, device, e.batch_size, desc="encode test", precision=e.precision)
    metrics: dict[str, float] = {"recon/mse": mse}

    if data.name == "lines":
        from nonvae.evaluate.lines import evaluate_interpolations

        pairs = e.lines_pairs if not quick else min(64, e.lines_pairs)
        lines_metrics, _ = evaluate_interpolations(
            method.encode, lambda z: method.decode(z).float(), n_pairs=pairs, steps=e.lines_steps,
            batch=e.batch_size, size=data.shape[1], device=device,
        )
        metrics.update(lines_metrics)

    if data.test.labels is not None and data.train_set is not None and data.train_set.labels is not None:
        from nonvae.evaluate.probe import kmeans_accuracy, linear_probe

        limit = e.probe_train_limit if not quick else min(e.probe_train_limit or 5000, 5000)
        train = data.train_set if limit is None else data.train_set.subset(limit)
        y_test = test.labels.numpy()
        if e.probe:
            z_train, _ = encode_all(method, train, device, e.batch_size, desc="encode train", recon=False,
                                    precision=e.precision)
            metrics.update(linear_probe(z_train, train.labels.numpy(), z_test, y_test))
        if e.kmeans:
            metrics.update(kmeans_accuracy(z_test, y_test))

    if e.hausdorff and not quick:
        if sampler is None:
            from nonvae.sampling import fit_sampler, training_images

            sampler = fit_sampler(method, training_images(cfg, data), seed=cfg.seed)
        metrics.update(hausdorff_metrics(method, test, cfg, device, sampler))

    if data.name in ("attributes", "domains"):
        from nonvae.evaluate.transfer import evaluate_domains

        metrics.update(evaluate_domains(method, data, cfg, device, quick=quick))
    # NaN stays NaN (e.g. Smoothness of a model whose every path is constant); save_metrics writes null
    return {k: float(v) for k, v in metrics.items() if v is not None}


def save_metrics(metrics: dict[str, float], path) -> None:
    """Write eval.json: one flat object; NaN (undefined) becomes null so the file stays valid JSON."""
    import json
    from pathlib import Path

    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    Path(path).write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@torch.no_grad()
def hausdorff_metrics(method, test: ImageSet, cfg: Config, device: torch.device, sampler=None) -> dict[str, float]:
    """Directed Hausdorff between held-out images and decoded samples (LTAE's sampling test).

    Samples are decoded codes of ``sampler`` (fresh ones per repeat), or N(0, I) codes without one.
    """
    from nonvae.evaluate.hausdorff import hausdorff_both

    n = min(cfg.eval.hausdorff_samples, len(test))
    real = test.batch(torch.arange(n))["x"].flatten(1).numpy()
    shape = method.autoencoder.latent_shape

    def sample(rep: int) -> np.ndarray:
        g = torch.Generator().manual_seed(10_000 + rep)
        if sampler is not None and sampler.kind != "normal":
            from nonvae.sampling import sample as decode_samples

            return decode_samples(method, sampler, n, seed=10_000 + rep).flatten(1).numpy()
        out = []
        for start in range(0, n, cfg.eval.batch_size):
            m = min(cfg.eval.batch_size, n - start)
            z = torch.randn((m, *shape), generator=g).to(device)
            out.append(method.decode(z).clamp(-1, 1).flatten(1).float().cpu().numpy())
        return np.concatenate(out)

    # fresh N(0, I) codes per repeat, compared with the same real images; the mean over repeats
    runs = [hausdorff_both(real, sample(rep)) for rep in range(max(1, cfg.eval.hausdorff_repeats))]
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
