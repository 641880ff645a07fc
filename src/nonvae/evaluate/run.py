"""``nonvae eval``: every metric that applies to a run's data, as one flat dict.

Talks only to the backbone interface (encode/decode) and the data bundle.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nonvae.config import Config
from nonvae.data import DataBundle
from nonvae.data.base import ImageSet
from nonvae.latent import backbone_of, encode_all
from nonvae.metrics import META, EvalContext, higher, lower, meta_for, reference, register_metric, run_all

__all__ = ["encode_all", "evaluate", "hausdorff_metrics", "save_metrics"]


def evaluate(method, data: DataBundle, cfg: Config, device: torch.device | str = "cpu",
             quick: bool = False, sampler=None) -> dict[str, float]:
    """All metrics for this run (every registered evaluator that applies); ``quick`` uses smaller samples
    for periodic evaluation.

    ``sampler`` (:class:`nonvae.sampling.Sampler`) is what the Hausdorff distances sample from; without
    one it is fitted here to the training data (N(0, I) for LTAE, a Gaussian mixture otherwise).
    """
    metrics = run_all(EvalContext(method, data, cfg, torch.device(device), quick, sampler))
    # NaN stays NaN (e.g. Smoothness of a model whose every path is constant); save_metrics writes null
    return {k: float(v) for k, v in metrics.items() if v is not None}


# --------------------------------------------------------------------------- the built-in evaluators
@register_metric("recon", keys={"recon/mse": lower("mean squared reconstruction error on the test set")})
def recon_metrics(ctx: EvalContext) -> dict[str, float]:
    return {"recon/mse": ctx.test_codes[1]}


@register_metric("lines", applies=lambda ctx: ctx.data.name == "lines", keys={
    "lines/mean_distance": lower("cosine distance of decoded interpolations to the nearest clean line"),
    "lines/smoothness": lower("largest angle step along a path relative to the whole path, minus the even step"),
})
def lines_metrics(ctx: EvalContext) -> dict[str, float]:
    from nonvae.evaluate.lines import evaluate_interpolations

    e, method = ctx.cfg.eval, ctx.method
    pairs = e.lines_pairs if not ctx.quick else min(64, e.lines_pairs)
    metrics, _ = evaluate_interpolations(
        method.encode, lambda z: method.decode(z).float(), n_pairs=pairs, steps=e.lines_steps,
        batch=e.batch_size, size=ctx.data.shape[1], device=ctx.device,
    )
    return metrics


def _has_labels(ctx: EvalContext) -> bool:
    train = ctx.data.train_set
    return ctx.data.test.labels is not None and train is not None and train.labels is not None


@register_metric("probe", applies=_has_labels, keys={
    "probe/accuracy": higher("test accuracy of a linear softmax classifier on frozen codes"),
    "probe/train_accuracy": reference("the same classifier's training accuracy (how separable the fit set is)",
                                      "higher"),
    "kmeans/accuracy": higher("k-means on PCA-whitened codes, accuracy after Hungarian matching"),
})
def probe_metrics(ctx: EvalContext) -> dict[str, float]:
    from nonvae.evaluate.probe import kmeans_accuracy, linear_probe

    e, data = ctx.cfg.eval, ctx.data
    assert data.train_set is not None and data.train_set.labels is not None and ctx.test.labels is not None
    limit = e.probe_train_limit if not ctx.quick else min(e.probe_train_limit or 5000, 5000)
    train = data.train_set if limit is None else data.train_set.subset(limit)
    z_test, y_test = ctx.test_codes[0], ctx.test.labels.numpy()
    metrics: dict[str, float] = {}
    if e.probe:
        z_train, _ = encode_all(ctx.method, train, ctx.device, e.batch_size, desc="encode train", recon=False,
                                precision=e.precision)
        metrics.update(linear_probe(z_train, train.labels.numpy(), z_test, y_test))
    if e.kmeans:
        metrics.update(kmeans_accuracy(z_test, y_test))
    return metrics


@register_metric("hausdorff", applies=lambda ctx: ctx.cfg.eval.hausdorff and not ctx.quick, keys={
    "hausdorff/data_to_samples": lower("directed Hausdorff distance from test images to decoded samples"),
    "hausdorff/samples_to_data": lower("directed Hausdorff distance from decoded samples to test images"),
})
def hausdorff_evaluator(ctx: EvalContext) -> dict[str, float]:
    sampler = ctx.sampler
    if sampler is None:
        from nonvae.sampling import fit_sampler, training_images

        sampler = fit_sampler(ctx.method, training_images(ctx.cfg, ctx.data), seed=ctx.cfg.seed)
    return hausdorff_metrics(ctx.method, ctx.test, ctx.cfg, ctx.device, sampler)


@register_metric("transfer", applies=lambda ctx: "domain" in ctx.data.test.extras, keys={
    "transfer/recon_mse_a": lower("reconstruction MSE of domain A (with the attribute)"),
    "transfer/recon_mse_b": lower("reconstruction MSE of domain B"),
    "transfer/leakage_acc": lower("a fresh linear probe's domain accuracy from content codes (0.5: no leak)"),
    "transfer/leakage_acc_mlp": lower("the same with a small nonlinear probe"),
    "transfer/content_rms": reference("root mean square of the content codes: the scale a domain discriminator "
                                      "reads them at (the encoders can shrink it to fool one)"),
    "transfer/content_acc": higher("class accuracy of a linear probe on content codes"),
    "transfer/removal_mse": lower("MSE(G(E1(a), 0), clean a)"),
    "transfer/overlay_mse": reference("doing nothing: MSE(a, clean a), the baseline removal must beat", "lower"),
    "transfer/clean_recon_mse": reference("the floor: MSE(G(E1(clean a), 0), clean a)", "lower"),
    "transfer/removal_residual": lower("share of the attribute left after zeroing E2 (0: removed)"),
    "transfer/attribute_r2": higher("R^2 of a linear regression from E2 codes to the overlay factors"),
    "transfer/overlay_r2_content": lower("share of the overlay's (a - clean a) variance a ridge regression reads "
                                         "from E1(a): how much of the attribute the content code still holds"),
    "transfer/overlay_r2_attribute": higher("the same from E2(a): how much of the attribute the attribute code "
                                            "holds"),
    "transfer/transfer_mse": lower("MSE of b with a's attribute against the exact composite"),
    "transfer/attribute_gain": higher("share of the exact attribute a transfer adds: sum <G(E1(b), E2(a)) - "
                                      "G(E1(b), 0), a - clean a> / sum |a - clean a|^2 (1: all of it)"),
    "transfer/render_gain": reference("the gain's ceiling: the same measure of the reconstruction of a over the "
                                      "rendering of clean a, sum <G(E1(a), E2(a)) - G(E1(clean a), 0), a - clean a> "
                                      "/ sum |a - clean a|^2 (how much of the attribute the model draws at all)",
                                      "higher"),
    "transfer/pixel_classifier_accuracy": reference("the ceiling: the pixel classifier's (fitted on both "
                                                    "domains' images) accuracy on both domains' test images",
                                                    "higher"),
    "transfer/class_kept": higher("transfers whose content class the pixel classifier still reads"),
    "transfer/class_kept_exact": reference("the transfers' ceiling: the pixel classifier on the exact composites "
                                           "b + (a - clean a), what a perfect transfer scores", "higher"),
    "transfer/class_kept_removal": higher("removals whose content class the pixel classifier still reads"),
})
def transfer_metrics(ctx: EvalContext) -> dict[str, float]:
    from nonvae.evaluate.transfer import evaluate_domains

    return evaluate_domains(ctx.method, ctx.data, ctx.cfg, ctx.device, quick=ctx.quick)


def save_metrics(metrics: dict[str, float], path) -> None:
    """Write eval.json: one flat object, plus what each key means under ``_meta`` (see nonvae.metrics);
    NaN (undefined) becomes null so the file stays valid JSON."""
    import json
    from pathlib import Path

    clean: dict = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    clean[META] = meta_for(metrics)
    Path(path).write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@torch.no_grad()
def hausdorff_metrics(method, test: ImageSet, cfg: Config, device: torch.device, sampler=None) -> dict[str, float]:
    """Directed Hausdorff between held-out images and decoded samples (LTAE's sampling test).

    Samples are decoded codes of ``sampler`` (fresh ones per repeat), or N(0, I) codes without one.
    """
    from nonvae.evaluate.hausdorff import hausdorff_both

    n = min(cfg.eval.hausdorff_samples, len(test))
    real = test.batch(torch.arange(n))["x"].flatten(1).numpy()
    shape = backbone_of(method).latent_shape

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
