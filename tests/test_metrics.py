"""The metric registry (nonvae/metrics.py): each evaluator declares what its keys mean, eval.json's _meta
carries it, and only the evaluators that apply to a run run (ranking from _meta: test_report.py,
test_disentangle.py's report test on the keys a real evaluation emits)."""

from __future__ import annotations

from nonvae.metrics import METRICS, EvalContext, Info, declared, meta_for, register_metric


def test_the_built_in_keys_say_which_way_is_better():
    known = declared()
    expected = {"recon/mse": ("lower", False), "lines/mean_distance": ("lower", False),
                "lines/smoothness": ("lower", False), "probe/accuracy": ("higher", False),
                "kmeans/accuracy": ("higher", False), "transfer/content_acc": ("higher", False),
                "transfer/leakage_acc": ("lower", False), "probe/train_accuracy": ("higher", True),
                "transfer/overlay_mse": ("lower", True), "transfer/pixel_classifier_accuracy": ("higher", True)}
    for key, (direction, reference) in expected.items():
        assert (known[key].direction, known[key].reference) == (direction, reference), key
    assert all(info.direction in ("higher", "lower", None) for info in known.values())


def test_meta_leaves_out_undeclared_keys_and_a_registered_evaluator_declares_its_keys():
    assert meta_for(["recon/mse", "made/up"]) == {"recon/mse": {"direction": "lower", "reference": False,
                                                                "doc": declared()["recon/mse"].doc}}

    @register_metric("test_only_metric", keys={"test/only": Info(None, doc="a test")},
                     applies=lambda ctx: ctx.quick)
    def only(ctx: EvalContext) -> dict[str, float]:
        return {"test/only": 1.0}

    try:
        assert declared()["test/only"] == Info(None, doc="a test")
        assert meta_for(["test/only"]) == {"test/only": {"direction": None, "reference": False, "doc": "a test"}}
        quick, full = (EvalContext(None, None, None, "cpu", quick=q) for q in (True, False))
        assert only.applies(quick) and not only.applies(full)  # run_all asks this before running it
    finally:
        METRICS._entries.pop("test_only_metric")
