"""The benchmark scripts run end to end (at a toy budget) and write what they promise.

Their numbers are measured by running them at full budget (README); here only the plumbing:
every run trained, every column filled from eval.json, the table, JSON and HTML comparison written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .conftest import REPO, tiny_overrides

sys.path.insert(0, f"{REPO}/benchmarks")


@pytest.mark.slow
def test_disentangle_benchmark_sweep_and_ablation(tmp_path, capsys):
    import disentangle

    tiny = tiny_overrides(**{"data.base": "digits", "data.image_size": 16, "data.train_limit": 80,
                             "data.test_limit": 24, "model.latent_width": 4, "model.content_dim": 4,
                             "model.attribute_dim": 2, "train.batch_size": 8, "eval.probe_train_limit": 80})
    args = ["--steps", "3", "--lambdas", "0.5", "--fools", "b_label", "confuse", "--threads", "1",
            "--out", str(tmp_path), *[a for kv in tiny for a in ("--set", kv)]]
    assert disentangle.main([*args, "--lane", "1/2"]) == 0  # trains runs 1 (b_label 0.5) only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b_label_lambda_0.5"]
    assert disentangle.main(args) == 0  # reuses that run, trains the other two, writes the table
    payload = json.loads((tmp_path / "disentangle.json").read_text())
    # the lambda = 0 ablation is always added
    assert [(r["encoder target"], r["lambda"]) for r in payload["rows"]] == [("-", 0), ("b_label", 0.5),
                                                                              ("confuse", 0.5)]
    for row in payload["rows"]:
        for _, key, _ in disentangle.COLUMNS:
            assert row.get(key) is not None, key
    assert payload["rows"][0]["recon_ratio"] == 1.0
    table = (tmp_path / "disentangle.md").read_text()
    assert table.count("\n| ") >= 3 and "target" in payload["verdict"]
    assert (tmp_path / "disentangle.html").is_file()
    assert "removal residual" in capsys.readouterr().out


def test_disentangle_benchmark_variants_table(tmp_path):
    import disentangle

    tiny = tiny_overrides(**{"data.image_size": 16, "data.train_limit": 40, "data.test_limit": 16,
                             "model.latent_width": 4, "model.content_dim": 4, "model.attribute_dim": 2,
                             "train.batch_size": 8, "eval.probe_train_limit": 40})
    args = ["--variants", "band/digits", "--methods", "shipped", "ablation", "--steps", "2", "--threads", "1",
            "--out", str(tmp_path), *[a for kv in tiny for a in ("--set", kv)]]
    assert disentangle.main(args) == 0
    rows = json.loads((tmp_path / "disentangle_variants.json").read_text())["rows"]
    assert [(r["variant"], r["method"]) for r in rows] == [("band/digits", "shipped"), ("band/digits", "ablation")]
    assert "data.attribute=band" in rows[0]["overrides"] and "regularizers.domain.weight=0" in rows[1]["overrides"]
    assert rows[1]["recon_ratio"] == 1.0 and all(r["met"].endswith("/6") for r in rows)
    for row in rows:
        for _, key, _ in disentangle.VARIANT_COLUMNS:
            assert row.get(key) is not None, key
    assert "attribute gain" in (tmp_path / "disentangle_variants.md").read_text()
    # a transfer drawn as well as the reconstructions: above 0, and finite wherever the eval has ground truth
    assert all(0 < r["transfer_floor_ratio"] < float("inf") for r in rows)



def test_disentangle_benchmark_pixel_classifier(tmp_path):
    """--pixel-classifier: the class_kept classifier alone. On the digits base the former one (clean pixels)
    reads a perfect transfer's class almost never; the one fitted on both domains about as often as the test
    images'."""
    import disentangle

    assert disentangle.main(["--pixel-classifier", "--variants", "patch/digits", "--out", str(tmp_path)]) == 0
    before, now = json.loads((tmp_path / "pixel_classifier.json").read_text())["rows"]
    assert before["fit on"].startswith("clean") and now["fit on"].startswith("both")
    assert now["ratio"] >= 0.9 > 0.5 > before["ratio"]

def test_lines_benchmark_seeds_table_and_reuse(tmp_path, capsys):
    import lines

    tiny = tiny_overrides(**{"data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4,
                             "data.test_limit": 32})
    args = ["--budget-steps", "2", "--seeds", "0,1", "--threads", "1", "--out", str(tmp_path),
            *[a for kv in tiny for a in ("--set", kv)]]
    assert lines.main([*args, "--only", "ae"]) == 0  # baselines only, no table yet
    assert sorted(p.name for p in (tmp_path / "seed1").iterdir()) == ["ae"]
    stamp = (tmp_path / "seed0" / "ae" / "benchmark.json").stat().st_mtime_ns
    assert lines.main(args) == 0  # reuses both baselines, trains ACAI for both seeds, writes the table
    assert (tmp_path / "seed0" / "ae" / "benchmark.json").stat().st_mtime_ns == stamp
    payload = json.loads((tmp_path / "lines.json").read_text())
    assert payload["seeds"] == [0, 1] and len(payload["results"]["acai"]) == 2
    recipe = lines.ACAI_ONLY
    assert [r["overrides"][-len(recipe):] for r in payload["results"]["acai"]] == [recipe] * 2
    # display-only overrides and another order of the same settings still reuse a finished run
    assert lines.main([*args, "--set", "train.progress=false", "--set", "train.report=false"]) == 0
    assert (tmp_path / "seed0" / "ae" / "benchmark.json").stat().st_mtime_ns == stamp
    md = (tmp_path / "lines.md").read_text()
    assert "per-seed ratios" in md and "both ratios <= 0.5" in md
    assert (tmp_path / "interpolations_acai.png").is_file() and (tmp_path / "lines.html").is_file()
    # an ACAI-only ablation next to the same baselines
    ablation = tmp_path / "warmup0"
    assert lines.main([*args, "--acai-set", "regularizers.acai.warmup_steps=0", "--acai-out", str(ablation)]) == 0
    assert (tmp_path / "seed0" / "ae" / "benchmark.json").stat().st_mtime_ns == stamp
    assert json.loads((ablation / "lines.json").read_text())["results"]["acai"][0]["overrides"][-1] == \
        "regularizers.acai.warmup_steps=0"
    assert "ACAI beats the baseline on both" in capsys.readouterr().out


def test_probe_benchmark_budget_sweep_reuse_and_pca_rows(tmp_path, capsys, caplog):
    import probe

    tiny = [o for o in tiny_overrides(**{"data.name": "digits", "data.image_size": 16, "model.latent_width": 4,
                                         "data.test_limit": 60})
            if not o.startswith(("train.checkpoint_every=", "train.eval_every="))]
    args = ["--seeds", "0,1", "--latents", "1", "--threads", "1", "--out", str(tmp_path),
            *[a for kv in tiny for a in ("--set", kv)]]
    assert probe.main([*args, "--budgets", "2", "--methods", "ae"]) == 0
    stamp = (tmp_path / "ae_1" / "seed0" / "budget2.json").stat().st_mtime_ns
    assert probe.main([*args, "--budgets", "2,4"]) == 0  # reuses the two baselines at 2 steps, resumes them to 4
    assert (tmp_path / "ae_1" / "seed0" / "budget2.json").stat().st_mtime_ns == stamp
    payload = json.loads((tmp_path / "probe.json").read_text())
    assert sorted((r["method"], r["budget"], r["seed"]) for r in payload["results"]) == sorted(
        (m, b, s) for m in ("ae", "acai") for b in (2, 4) for s in (0, 1))
    for r in payload["results"]:
        assert 0 <= r["probe/accuracy"] <= 1 and 0 <= r["kmeans/accuracy"] <= 1 and r["recon/mse"] > 0
    # the 4-step runs continued the 2-step ones (same directory, logged every 2 steps), time adds up
    log = [json.loads(line) for line in (tmp_path / "acai_1" / "seed1" / "metrics.jsonl").read_text().splitlines()]
    assert sorted({row["step"] for row in log if row.get("kind") == "train"}) == [2, 4]
    four = next(r for r in payload["results"] if (r["method"], r["budget"], r["seed"]) == ("acai", 4, 1))
    two = next(r for r in payload["results"] if (r["method"], r["budget"], r["seed"]) == ("acai", 2, 1))
    assert four["train_seconds_total"] == pytest.approx(two["train_seconds_total"] + four["train_seconds"])
    assert [(v["budget"], v["seeds"]) for v in payload["verdicts"]] == [(2, [0, 1]), (4, [0, 1])]
    probe_of = {(r["method"], r["budget"], r["seed"]): r["probe/accuracy"] for r in payload["results"]}
    for v in payload["verdicts"]:
        gains = [probe_of["acai", v["budget"], s] - probe_of["ae", v["budget"], s] for s in (0, 1)]
        assert v["probe_gain_per_seed"] == pytest.approx(gains)
        assert v["probe_gain"] == pytest.approx(sum(gains) / 2)
        assert v["margin_met"] == (v["probe_gain"] >= 0.02)
    assert payload["pca"][0]["components"] == 16 and 0 < payload["pca"][0]["probe/accuracy"] <= 1
    md = (tmp_path / "probe.md").read_text()
    assert "whitened PCA (16 comp.)" in md and md.count("| 4x4x1 (16-d) | 4 |") == 2 and "; target >= +2: " in md
    assert all(isinstance(v["both_above_pca"], bool) for v in payload["verdicts"]) and "both above whitened PCA (" in md
    # a latent size whose PCA row was not computed says so instead of "no"
    no_pca = {**payload["verdicts"][0], "probe_pca": float("nan"), "both_above_pca": None}
    assert probe.verdict_text([no_pca]).endswith("whitened PCA not run for this size")
    captured = capsys.readouterr()
    assert "k-means accuracy" in captured.out
    # each of the 4 runs resumed at 4 steps (a retrained run would say nothing)
    resumed = [r for r in caplog.records if "config changed since this run started: train.checkpoint_every, "
               "train.eval_every, train.steps" in r.getMessage()]
    assert len(resumed) == 4
    # a smaller budget than the one a run directory already reached is refused, not silently retrained
    with pytest.raises(SystemExit, match="already past 3 steps"):
        probe.main([*args, "--budgets", "3", "--seeds", "0", "--methods", "ae"])


def test_lines_settings_last_value_wins_display_ignored():
    import lines

    assert lines.settings(["a.b=1", "train.progress=false", "a.b=2", "c = 3"]) == {"a.b": "2", "c": "3"}
    assert lines.settings(["x=1", "y=2"]) == lines.settings(["y=2", "train.report=false", "x=1"])
    assert lines.settings(["x=1"]) != lines.settings(["x=2"])  # a changed setting is another run


def _lines_commands(text: str) -> list[list[str]]:
    """The arguments of every ``python benchmarks/lines.py`` command in a script or in README code spans."""
    import re
    import shlex

    text = text.replace("\\\n", " ")
    spans = re.findall(r"`python benchmarks/lines\.py([^`]*)`", text)  # README: inline code
    spans += re.findall(r"^\s*python benchmarks/lines\.py(.*)$", text, flags=re.M)  # scripts
    return [shlex.split(span, comments=True) for span in spans]


def _training_settings(words: list[str]) -> dict[str, str]:
    import lines

    pairs = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--set", "--acai-set")]
    return lines.settings(pairs)


def test_demo_readme_and_pretrained_use_the_same_lines_recipe():
    """scripts/demo.sh, scripts/make_pretrained.sh and the README's lines table train with the same settings.

    The recipe lives in benchmarks/lines.py (SHARED, ACAI_ONLY); none of the three may add a training
    setting of its own (only display ones such as train.report), so the demo reproduces the table.
    """
    demo = _lines_commands((Path(REPO) / "scripts" / "demo.sh").read_text())
    pretrained = _lines_commands((Path(REPO) / "scripts" / "make_pretrained.sh").read_text())
    readme = [c for c in _lines_commands((Path(REPO) / "README.md").read_text()) if "--seeds" in c and "0,1,2" in c]
    assert demo and pretrained and readme
    for words in demo + pretrained + readme:
        assert _training_settings(words) == {}, words


@pytest.mark.slow
def test_standalone_benchmark_times_both_sides_in_their_own_processes(tmp_path, capsys):
    import standalone

    out = tmp_path / "standalone.json"
    assert standalone.main(["--only", "lines/acai", "--pairs", "1", "--rounds", "1", "--threads", "1",
                            "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["config"] for r in rows] == ["lines/acai"]
    (port,), (default,) = rows[0]["runs"]["port"], rows[0]["runs"]["default"]
    assert port["images_per_s"] > 0 and default["images_per_s"] > 0 and port["threads"] == default["threads"] == 1
    assert rows[0]["ratio_per_pair"] == [pytest.approx(default["images_per_s"] / port["images_per_s"])]
    assert "| lines/acai | 32 |" in out.with_suffix(".md").read_text()


def test_standalone_benchmark_overrides_reach_the_default_only(tmp_path):
    import standalone

    out = tmp_path / "standalone.json"
    assert standalone.main(["--only", "lines/acai", "--pairs", "1", "--rounds", "1", "--threads", "1", "--seconds",
                            "0.3", "--set", "train.precision=bf16", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    (port,), (default,) = row["runs"]["port"], row["runs"]["default"]
    assert row["overrides"] == ["train.precision=bf16"]
    assert default["precision"] == "bf16" and port["precision"] == "fp32"
    assert default["steps_per_round"] >= 10  # a round fills --seconds (at least the row's 10 steps)


def test_standalone_benchmark_names_an_unknown_override(tmp_path, capsys):
    import standalone

    out = tmp_path / "standalone.json"
    assert standalone.main(["--only", "lines/acai", "--pairs", "1", "--rounds", "1", "--threads", "1",
                            "--set", "train.precison=bf16", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "default process of lines/acai failed" in err and "train.precison" in err
    assert not out.exists()
