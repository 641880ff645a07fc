"""A metric in one file: the mean Euclidean norm of the test codes.

Deterministic autoencoders have no prior to keep codes near the origin; this shows how far they
drift (compare runs with and without the MMD prior of mmd_prior.py). It has no "better"
direction, so the report shows it without ranking. Enable it with ``plugins: [code_norm_metric.py]``.
"""

from __future__ import annotations

import numpy as np

from nonvae.metrics import EvalContext, Info, register_metric


@register_metric("code_norm", keys={"code/mean_norm": Info(None, doc="mean ||z|| over the test codes")})
def code_norm(ctx: EvalContext) -> dict[str, float]:
    codes, _ = ctx.test_codes  # computed once for every evaluator
    return {"code/mean_norm": float(np.linalg.norm(codes, axis=1).mean())}
