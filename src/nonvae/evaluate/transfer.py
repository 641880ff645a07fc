"""Disentanglement metrics for two-domain data: remove, add and transfer an attribute.

Uses only the split backbone's interface: ``encode_parts(x) -> (content, attribute)``,
``combine(content, attribute) -> code`` and ``decode(code)``. With the synthetic
'attributes' data every A image has its clean version and overlay factors, so:

- ``transfer/removal_mse``: MSE(G(E1(a), 0), clean a); compare with ``transfer/overlay_mse``
  (doing nothing: MSE(a, clean a)) and ``transfer/clean_recon_mse`` (the floor: MSE(G(E1(clean a), 0), clean a)).
- ``transfer/transfer_mse``: MSE(G(E1(b), E2(a)), b + (a - clean a)), the exact "b with a's glasses".
- ``transfer/attribute_gain``: how much of the expected attribute a transfer adds. With e = a - clean a (the
  exact change "b with a's glasses" - b) and d = G(E1(b), E2(a)) - G(E1(b), 0) (what the attribute code
  changes), gain = sum <d, e> / sum <e, e> over the test pairs: 1 = the whole attribute, 0 = nothing
  (it can exceed 1). A low transfer MSE alone can hide a transfer that adds nothing.
- ``transfer/render_gain``: the same measure of the model's own reconstruction of the donor,
  sum <G(E1(a), E2(a)) - G(E1(clean a), 0), a - clean a> / sum <e, e> over the test A images: how much of the
  attribute the autoencoder draws at all. A transfer rarely adds more of it than this, so it is the attribute
  gain's practical ceiling at a given budget and size (a blurry decoder caps both).
- ``transfer/removal_residual``: MSE(G(E1(a),0), G(E1(clean a),0)) / MSE(G(E1(a),E2(a)), G(E1(clean a),0)),
  the share of the attribute left after zeroing E2 (0 = removed, 1 = untouched).
- ``transfer/leakage_acc``: accuracy of a FRESH linear probe predicting the domain from E1 codes
  (0.5 = no leakage for balanced domains); ``transfer/leakage_acc_mlp`` the same with a small nonlinear
  probe. The training discriminator's accuracy is not a measure of leakage: fooling it does not remove
  the information.
- ``transfer/content_rms``: the root mean square of E1's codes over the test images, the scale a domain
  discriminator reads them at. Under ``regularizers.domain.fool: confuse`` the encoders can satisfy it by
  shrinking the codes (15-25x against the lambda = 0 ablation), which removes nothing the probes above read.
- ``transfer/attribute_r2``: R^2 of a linear regression E2(a) -> overlay factors.
- ``transfer/overlay_r2_content`` and ``transfer/overlay_r2_attribute``: where the attribute's picture lives.
  The share of the variance of the overlay a - clean a (pixels, test A images) that a ridge regression reads
  from E1(a) and from E2(a), fitted on training A images. Kind-agnostic (no factor parametrisation): a code
  that holds the attribute scores high. E1 should score low and E2 high; E1 above E2 means the content code
  holds more of the attribute than the attribute code, and the decoder draws it from there.
- ``transfer/content_acc``: linear-probe class accuracy from E1 codes.
- ``transfer/class_kept`` (transfers) and ``transfer/class_kept_removal`` (removals): the content's class
  as read by a pixel classifier (PCA-64 + logistic regression) fitted on the images a user has, both domains'
  training images x (with and without the attribute: up to PIXEL_FIT of them, half per domain), so that the
  attribute itself does not decide the class it reads; ``transfer/pixel_classifier_accuracy`` is that
  classifier's accuracy on the test images of both domains (the ceiling) and ``transfer/class_kept_exact`` its
  accuracy on the exact transfer targets b + (a - clean a), what a perfect transfer scores (close to the
  ceiling: 0.96-0.99 of it on every built-in variant). Until 2026-12 the classifier was fitted on the clean
  pixels of 2,000 images only; it read the added attribute as content, so the exact composites kept the
  class only 0.75-0.87 x its clean ceiling on Fashion-MNIST and 0.07-0.10 x on the digits base
  (docs/benchmarks/disentangle.md).
For image files without ground truth: ``transfer/recon_mse_a``, ``transfer/recon_mse_b`` and the leakage.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from nonvae.config import Config
from nonvae.data import DataBundle
from nonvae.data.base import ImageSet
from nonvae.latent import backbone_of, decode_parts, split_backbone, split_codes

QUICK_TEST = 512
QUICK_FIT = 1000
FULL_FIT = 2000
PIXEL_FIT = 8000  # images (half per domain) the pixel classifier of class_kept is fitted on (quick: QUICK_FIT)
OVERLAY_RIDGE = 1.0  # ridge of the overlay_r2 regressions on standardised codes (E1: 320 numbers, ~1,000 images)
PROBE_ITERS = 150  # L-BFGS iterations of the fresh probes (2 shared cores: keep evaluation short)


# --------------------------------------------------------------------------- helpers
def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example mean squared error."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def _balanced(domain: torch.Tensor, n: int | None) -> torch.Tensor:
    """Up to n indices, half from each domain (the first of each), in ascending order."""
    is_a = domain > 0.5
    ia, ib = torch.nonzero(is_a).view(-1), torch.nonzero(~is_a).view(-1)
    if n is not None:
        ia, ib = ia[: n // 2], ib[: n - n // 2]
    return torch.cat([ia, ib]).sort().values


class _Pass:
    """Everything one pass over a set computes, per example (CPU numpy / tensors)."""

    def __init__(self) -> None:
        self.store: dict[str, list] = {}

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            self.store.setdefault(k, []).append(v.detach().float().cpu())

    def get(self, key: str) -> torch.Tensor:
        return torch.cat(self.store[key])


@torch.no_grad()
def _encode_pass(method, ds: ImageSet, index: torch.Tensor, device: torch.device, batch_size: int,
                 ground_truth: bool, decodes: bool = True) -> _Pass:
    """Codes and reconstruction errors; with ``decodes`` also the removal / clean renderings."""
    out = _Pass()
    for start in range(0, len(index), batch_size):
        batch = ds.batch(index[start: start + batch_size])
        x = batch["x"].to(device)
        domain = batch["domain"].to(device).float()
        content, attribute = split_codes(method, x)
        d = domain.view(-1, *([1] * (attribute.ndim - 1))).to(attribute.dtype)
        recon = decode_parts(method, content, attribute * d, clamp=False)
        out.add(content=content.flatten(1), attribute=attribute.flatten(1), domain=domain,
                recon_mse=_mse(recon, x))
        if "y" in batch:
            out.add(y=batch["y"].float())
        if ground_truth:
            clean = batch["clean"].to(device)
            out.add(factors=batch["factors"], clean=clean.flatten(1), overlay=(x - clean).flatten(1))
        if ground_truth and decodes:
            zeros = torch.zeros_like(attribute)
            removed = decode_parts(method, content, zeros, clamp=False)
            clean_content, _ = split_codes(method, clean)
            clean_render = decode_parts(method, clean_content, zeros, clamp=False)
            full = decode_parts(method, content, attribute, clamp=False)
            out.add(removal_mse=_mse(removed, clean), overlay_mse=_mse(x, clean),
                    clean_recon_mse=_mse(clean_render, clean), residual_num=_mse(removed, clean_render),
                    residual_den=_mse(full, clean_render), removed=removed.clamp(-1, 1).flatten(1),
                    render_dot=((full - clean_render).double() * (x - clean).double()).flatten(1).sum(1),
                    overlay_energy=(x - clean).double().pow(2).flatten(1).sum(1))
    return out


def _pixel_classifier(images: np.ndarray, labels: np.ndarray):
    """A logistic regression on the top principal components of pixels, to read decoded images' class.

    Fitted on both domains' images (see the module docstring): deterministic (PCA's seed, L-BFGS), about 1 s
    on one core for 8,000 32x32 images.
    """
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pca = PCA(n_components=min(64, *images.shape), random_state=0)
    clf = make_pipeline(pca, StandardScaler(), LogisticRegression(max_iter=PROBE_ITERS, tol=1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(images, labels)
    return clf


def pixel_classifier(fit_set: ImageSet, n: int | None = PIXEL_FIT, images: str = "x"):
    """The class_kept classifier: fitted on up to n images of ``fit_set``, half per domain, as they are
    (``images`` 'x': attribute included for domain A), so that it reads the content, not the attribute.
    ``images`` 'clean' fits the former classifier (clean pixels only), kept for the comparison in
    benchmarks/disentangle.py --pixel-classifier."""
    batch = fit_set.batch(_balanced(fit_set.extras["domain"], n))
    return _pixel_classifier(batch[images].flatten(1).numpy(), batch["y"].long().numpy())


def exact_composites(test_set: ImageSet, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(composites b + (a - clean a), b positions in ``index``, donor positions) for every B image of
    ``test_set[index]`` with the A donors in turn: what a perfect transfer decodes."""
    batch = test_set.batch(index)
    is_a = batch["domain"] > 0.5
    pos_a, pos_b = torch.nonzero(is_a).view(-1), torch.nonzero(~is_a).view(-1)
    donors = pos_a[torch.arange(len(pos_b)) % len(pos_a)]
    exact = batch["clean"][pos_b] + (batch["x"][donors] - batch["clean"][donors])
    return exact, pos_b, donors


def attribute_gain(added: torch.Tensor, base: torch.Tensor, expected: torch.Tensor) -> float:
    """sum <added - base, expected> / sum <expected, expected> over all pairs (see the module docstring).

    ``added`` = G(E1(b), E2(a)), ``base`` = G(E1(b), 0), ``expected`` = a - clean a, all (N, ...).
    """
    d = (added.double() - base.double()).flatten()
    e = expected.double().flatten()
    den = float(e @ e)
    return float(d @ e) / den if den > 0 else float("nan")


@torch.no_grad()
def _transfers(method, test: _Pass, ds: ImageSet, index: torch.Tensor, device: torch.device,
               batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Decode G(E1(b), E2(a)) for every test B image b with an A donor a.

    Returns (decoded, target, b position, attribute gain).
    """
    ae = split_backbone(method)
    domain = test.get("domain")
    pos_a, pos_b = torch.nonzero(domain > 0.5).view(-1), torch.nonzero(domain <= 0.5).view(-1)
    donors = pos_a[torch.arange(len(pos_b)) % len(pos_a)]
    shape = (-1, *ds.shape)
    lat_c = (-1, ae.content_channels, *ae.latent_shape[1:])
    lat_a = (-1, ae.attribute_channels, *ae.latent_shape[1:])
    content, attribute = test.get("content"), test.get("attribute")
    decoded, targets, raw, bases, overlays = [], [], [], [], []
    for start in range(0, len(pos_b), batch_size):
        pb, pa = pos_b[start: start + batch_size], donors[start: start + batch_size]
        c = content[pb].view(lat_c).to(device)
        att = attribute[pa].view(lat_a).to(device)
        added = decode_parts(ae, c, att, clamp=False).cpu()
        raw.append(added)
        bases.append(decode_parts(ae, c, torch.zeros_like(att), clamp=False).cpu())
        decoded.append(added.clamp(-1, 1))
        b = ds.batch(index[pb])
        a = ds.batch(index[pa])
        overlays.append((a["x"] - a["clean"]).view(shape))
        targets.append((b["clean"] + (a["x"] - a["clean"])).view(shape))
    gain = attribute_gain(torch.cat(raw), torch.cat(bases), torch.cat(overlays))
    return torch.cat(decoded), torch.cat(targets), pos_b, gain


def evaluate_domains(method, data: DataBundle, cfg: Config, device: torch.device | str = "cpu",
                     quick: bool = False) -> dict[str, float]:
    """The transfer/* metrics (see the module docstring) on the test set, probes fitted on training codes."""
    from nonvae.evaluate.probe import linear_probe, linear_regression_r2, mlp_probe

    device = torch.device(device)
    if not hasattr(backbone_of(method), "encode_parts"):
        return {}
    test_set, fit_set = data.test, data.train_set if data.train_set is not None else data.test
    ground_truth = "clean" in test_set.extras and "factors" in test_set.extras
    bs = cfg.eval.batch_size
    test_index = _balanced(test_set.extras["domain"], QUICK_TEST if quick else None)
    limit = QUICK_FIT if quick else (cfg.eval.probe_train_limit or FULL_FIT)
    fit_index = _balanced(fit_set.extras["domain"], limit)
    test = _encode_pass(method, test_set, test_index, device, bs, ground_truth)
    fit = _encode_pass(method, fit_set, fit_index, device, bs, ground_truth, decodes=False)

    metrics: dict[str, float] = {}
    dom_t, dom_f = test.get("domain") > 0.5, fit.get("domain") > 0.5
    rec = test.get("recon_mse")
    if dom_t.any():
        metrics["transfer/recon_mse_a"] = float(rec[dom_t].mean())
    if (~dom_t).any():
        metrics["transfer/recon_mse_b"] = float(rec[~dom_t].mean())
    if dom_f.any() and (~dom_f).any() and len(dom_t) > 0:
        probe = linear_probe(fit.get("content").numpy(), dom_f.long().numpy(), test.get("content").numpy(),
                             dom_t.long().numpy(), max_iter=PROBE_ITERS)
        metrics["transfer/leakage_acc"] = probe["probe/accuracy"]
        metrics["transfer/content_rms"] = float(test.get("content").float().pow(2).mean().sqrt())
        if not quick:
            probe = mlp_probe(fit.get("content").numpy(), dom_f.long().numpy(), test.get("content").numpy(),
                              dom_t.long().numpy())
            metrics["transfer/leakage_acc_mlp"] = probe["probe/accuracy"]
    has_labels = "y" in test.store and "y" in fit.store
    if has_labels and len(fit.get("y").unique()) > 1:
        probe = linear_probe(fit.get("content").numpy(), fit.get("y").long().numpy(),
                             test.get("content").numpy(), test.get("y").long().numpy(), max_iter=PROBE_ITERS)
        metrics["transfer/content_acc"] = probe["probe/accuracy"]
    if not ground_truth or not dom_t.any() or dom_t.all():
        return metrics

    ta = dom_t
    for key in ("removal_mse", "overlay_mse", "clean_recon_mse"):
        metrics[f"transfer/{key}"] = float(test.get(key)[ta].mean())
    den = float(test.get("residual_den")[ta].mean())
    metrics["transfer/removal_residual"] = float(test.get("residual_num")[ta].mean()) / max(den, 1e-12)
    energy = float(test.get("overlay_energy")[ta].double().sum())
    if energy > 0:
        metrics["transfer/render_gain"] = float(test.get("render_dot")[ta].double().sum()) / energy
    if dom_f.sum() >= 2 and ta.sum() >= 2:
        metrics["transfer/attribute_r2"] = linear_regression_r2(
            fit.get("attribute")[dom_f].numpy(), fit.get("factors")[dom_f].numpy(),
            test.get("attribute")[ta].numpy(), test.get("factors")[ta].numpy())
        overlay_fit, overlay_test = fit.get("overlay")[dom_f].numpy(), test.get("overlay")[ta].numpy()
        for key, part in (("overlay_r2_content", "content"), ("overlay_r2_attribute", "attribute")):
            metrics[f"transfer/{key}"] = linear_regression_r2(
                fit.get(part)[dom_f].numpy(), overlay_fit, test.get(part)[ta].numpy(), overlay_test,
                alpha=OVERLAY_RIDGE, multioutput="variance_weighted")
    decoded, targets, pos_b, gain = _transfers(method, test, test_set, test_index, device, bs)
    metrics["transfer/transfer_mse"] = float(_mse(decoded, targets).mean())
    metrics["transfer/attribute_gain"] = gain
    if has_labels and len(fit.get("y").unique()) > 1:
        clf = pixel_classifier(fit_set, QUICK_FIT if quick else PIXEL_FIT)
        y_test = test.get("y").long().numpy()
        metrics["transfer/pixel_classifier_accuracy"] = float(
            np.mean(clf.predict(test_set.batch(test_index)["x"].flatten(1).numpy()) == y_test))
        metrics["transfer/class_kept"] = float(np.mean(clf.predict(decoded.flatten(1).numpy()) ==
                                                       y_test[pos_b.numpy()]))
        metrics["transfer/class_kept_exact"] = float(np.mean(clf.predict(targets.flatten(1).numpy()) ==
                                                             y_test[pos_b.numpy()]))
        metrics["transfer/class_kept_removal"] = float(np.mean(
            clf.predict(test.get("removed")[ta].numpy()) == y_test[ta.numpy()]))
    return metrics
