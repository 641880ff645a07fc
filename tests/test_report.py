"""``nonvae report``: one self-contained HTML page, checked as a file and in a headless browser."""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from nonvae.cli import main
from nonvae.config import load_config
from nonvae.data.base import ImageSet
from nonvae.export import export
from nonvae.methods import build_method
from nonvae.report import (
    best_of,
    disentangle_pictures,
    latent_pictures,
    markdown_html,
    write_comparison,
    write_report,
)
from nonvae.train import train

from .conftest import REPO, tiny_overrides

URL = re.compile(r"(?:https?|ftp)://|//[a-z0-9.-]+\.[a-z]{2,}/", re.I)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny ACAI lines run (a periodic evaluation at step 2, samples, eval.json) and its export."""
    root = tmp_path_factory.mktemp("report")
    over = {"data.image_size": 16, "model.latent_width": 2, "model.latent_channels": 4, "data.test_limit": 64,
            "train.steps": 4, "train.eval_every": 2, "train.sample_every": 2, "train.report": True}
    cfg = load_config(os.path.join(REPO, "configs/lines/acai.yaml"), tiny_overrides(**over))
    run = root / "run"
    train(cfg, run)  # train.report: the trainer refreshes RUN_DIR/report.html
    assert main(["eval", str(run)]) == 0
    exported = export(run, root / "exported")
    return run, exported


class _Page(html.parser.HTMLParser):
    """Images, tables, scripts and links of a page, for structural checks."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.scripts: list[dict] = []
        self.links: list[str] = []
        self.details = 0
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "details":
            self.details += 1
        for key in ("href", "src", "action", "data"):
            if tag != "img" and a.get(key):
                self.links.append(a[key])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def explorer_data(text: str) -> list[dict]:
    blocks = re.findall(r'<script type="application/json" class="explorer-data">(.*?)</script>', text, re.S)
    return [json.loads(b)["pairs"] for b in blocks]


# --------------------------------------------------------------------------- structure
def test_training_keeps_run_report(runs):
    run, _ = runs
    text, page = parse(run / "report.html")
    assert "metrics" in page.tables  # the periodic evaluation at step 2
    assert page.imgs and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert not URL.search(text)


@pytest.fixture(scope="module")
def report(runs) -> Path:
    """`nonvae report RUN EXPORT --out ...`, rendered once for the structure and browser tests."""
    run, exported = runs
    out = run.parent / "report.html"
    assert main(["report", str(run), str(exported), "--out", str(out)]) == 0
    return out


def test_report_of_run_and_export(runs, report):
    run, _ = runs
    text, page = parse(report)

    # self-contained: every image inline, no external script/style/link, no URL at all
    assert len(page.imgs) >= 8
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert not page.links and all("src" not in s for s in page.scripts)
    assert not URL.search(text) and "<link" not in text

    # metrics side by side: one column per run, eval.json keys as rows, directions shown
    table = page.tables["metrics"]
    assert table[0][2:] == ["run", "exported"]
    rows = {r[0]: r for r in table[1:]}
    assert "recon/mse" in rows and "lower" in rows["recon/mse"][1]
    evaluated = json.loads((run / "eval.json").read_text())
    assert float(rows["recon/mse"][2]) == pytest.approx(evaluated["recon/mse"], rel=1e-3)
    assert rows["recon/mse"][2] == rows["recon/mse"][3]  # the export reports the same evaluation
    assert "exported model" in text and "run directory" in text

    # config (collapsible), training curves (run only), decoded pictures for both, explorers
    assert page.details == 2 and "regularizers:" in text
    assert "Training losses" in text and "Periodic evaluation" in text
    assert text.count("Reconstructions") >= 2 and text.count("Interpolations") >= 2
    pairs = explorer_data(text)
    assert len(pairs) == 2 and len(pairs[0]) == 6
    assert all(len(p["frames"]) == 16 and p["a"].startswith("data:image/png") for p in pairs[0])
    assert "Pictures not decoded" not in text


def test_falls_back_to_training_samples(runs, tmp_path):
    run, _ = runs
    broken = tmp_path / "broken"
    shutil.copytree(run, broken, symlinks=True)
    shutil.rmtree(broken / "checkpoints")  # the model cannot be rebuilt any more
    out = write_report([broken], tmp_path / "r.html")
    text, page = parse(out)
    assert "Pictures not decoded from the model" in text and "samples/recon_" in text
    assert len(page.imgs) >= 2 and "metrics" in page.tables


def test_model_folder_without_its_data_uses_its_stored_samples(runs, tmp_path):
    """A shipped model on a machine without its dataset: pictures come from samples.npz."""

    _, exported = runs
    moved = tmp_path / "model"
    shutil.copytree(exported, moved)
    meta = json.loads((moved / "config.json").read_text())  # the Hub layout: the run config inside
    meta["config"]["data"].update(name="fashion_mnist", root=str(tmp_path / "not_here"))
    (moved / "config.json").write_text(json.dumps(meta))
    out = write_report([moved], tmp_path / "r.html")
    text, page = parse(out)
    assert "test images stored with the model" in text and "Pictures not decoded" not in text
    assert "Interpolations" in text and len(page.imgs) >= 2


def test_missing_run_dir_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_best_of():
    assert best_of({"a": 0.1, "b": 0.2, "c": 0.1}, "lower") == {"a", "c"}
    assert best_of({"a": 0.1, "b": 0.2, "c": None}, "higher") == {"b"}
    assert best_of({"a": 0.1, "b": 0.1}, "lower") == set()  # nothing is better
    assert best_of({"a": 0.1}, "lower") == set()


def test_comparison_writes_markdown_and_html(runs, tmp_path):
    _, exported = runs
    md = "# Lines\n\n| method | Mean Distance |\n|---|---|\n| `ae` | 1.0 |\n| **acai** | 0.5 |\n"
    out = write_comparison([exported], tmp_path / "bench" / "lines.html", md)
    assert (tmp_path / "bench" / "lines.md").read_text() == md
    text, _ = parse(out)
    assert "<td><code>ae</code></td>" in text and "<td><b>acai</b></td>" in text
    assert "<th>Mean Distance</th>" in text and "---" not in markdown_html(md)


def test_disentangle_and_2d_latent_pictures():
    torch.manual_seed(0)
    n = 12
    domain = torch.tensor([1.0, 0.0] * (n // 2))
    test = ImageSet(torch.rand(n, 1, 16, 16) * 2 - 1, torch.arange(n) % 3, "toy", 3, {"domain": domain})
    split = build_method(load_config(None, ["model.backbone=split", "model.width=4", "model.latent_width=2",
                                            "model.latent_channels=4", "data.image_size=16"]), (1, 16, 16)).eval()
    pics = disentangle_pictures(split, test, torch.device("cpu"), n=4)
    assert [p.title for p in pics] == ["Remove the attribute", "Add the attribute", "Transfer between donors"]
    mlp = build_method(load_config(None, ["model.backbone=mlp", "model.latent_dim=2", "model.hidden=[8]",
                                          "data.image_size=16"]), (1, 16, 16)).eval()
    (scatter,) = latent_pictures(mlp, test, torch.device("cpu"))
    assert scatter.uri.startswith("data:image/png;base64,") and not scatter.pixelated
    assert latent_pictures(split, test, torch.device("cpu")) == []  # 4x2x2 codes: no scatter


# --------------------------------------------------------------------------- in a browser
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


_PROBE = """<script>
window.addEventListener('load', function () {
  var r = {};
  var table = document.getElementById('metrics');
  r.metric_rows = table ? table.querySelectorAll('tbody tr').length : -1;
  var imgs = Array.prototype.slice.call(document.images);
  r.images = imgs.length;
  r.broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var ex = document.querySelector('.explorer');
  var data = JSON.parse(ex.querySelector('script.explorer-data').textContent).pairs;
  var rng = ex.querySelector('input[type=range]'), sel = ex.querySelector('select');
  var frame = ex.querySelector('img.frame'), endA = ex.querySelector('img.end-a');
  var frames = data[0].frames, k = frames.length - 1;
  while (k > 0 && frames[k] === frames[0]) k--;
  r.distinct_frames = k > 0;
  var before = frame.src;
  rng.value = String(k);
  rng.dispatchEvent(new Event('input', {bubbles: true}));
  r.frame_changed = frame.src !== before;
  r.frame_matches_slider = frame.src === frames[k];
  r.label = ex.querySelector('output').textContent;
  var a0 = endA.src;
  sel.value = '1';
  sel.dispatchEvent(new Event('change', {bubbles: true}));
  r.pair_changed = endA.src !== a0 && frame.src === data[1].frames[k];
  frame.decode().then(function () {
    r.frame_width = frame.naturalWidth;
  }, function (e) { r.frame_width = -1; r.error = String(e); }).then(function () {
    var pre = document.createElement('pre');
    pre.id = 'probe-result';
    pre.textContent = JSON.stringify(r);
    document.body.appendChild(pre);
  });
});
</script>
"""


def _browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             "--hide-scrollbars", f"--user-data-dir={profile}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_in_headless_chromium(report, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium found (install Debian's 'chromium' package; scripts/setup.sh does as root)")

    shot = tmp_path / "report.png"
    proc = _browser(binary, tmp_path / "profile1", "--window-size=1280,2400", f"--screenshot={shot}",
                    report.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 100  # something was drawn, not a blank page
    if os.environ.get("NONVAE_KEEP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["NONVAE_KEEP_SCREENSHOT"])

    # the same page with a probe appended: it checks what a user would see and writes it into the DOM
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    proc = _browser(binary, tmp_path / "profile2", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe result in the DOM; stderr: {proc.stderr[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["metric_rows"] >= 2
    assert result["images"] >= 8 and result["broken"] == 0
    assert result["frame_matches_slider"] and result["pair_changed"] and result["frame_width"] > 0
    if result["distinct_frames"]:
        assert result["frame_changed"]
    assert "frame" in result["label"] and "0.00" not in result["label"]


def test_ranks_only_within_a_dataset_and_shows_same_data_grids_side_by_side(runs, tmp_path):
    from nonvae.resources import PRETRAINED

    run, exported = runs
    other = tmp_path / "fashion"
    shutil.copytree(PRETRAINED / "fashion_mnist_acai", other)
    # make the other dataset's MSE the smallest overall: it must still not be marked best (nothing to rank it with)
    (other / "eval.json").write_text(json.dumps({"recon/mse": 1e-9}))
    different = tmp_path / "different"
    shutil.copytree(exported, different)
    metrics = json.loads((run / "eval.json").read_text())
    (different / "eval.json").write_text(json.dumps({**metrics, "recon/mse": metrics["recon/mse"] * 2}))
    out = write_report([run, different, other], tmp_path / "r.html", pairs=2, steps=3)
    text, page = parse(out)
    table = page.tables["metrics"]
    assert table[1][0] == "data" and "lines" in table[1][2] and "fashion_mnist" in table[1][4]
    mse = next(r for r in table if r[0] == "recon/mse")
    best_cells = re.findall(r'<tr><td class="key"[^>]*>recon/mse</td>.*?</tr>', text)[0]
    assert best_cells.count('class="best"') == 1  # the lines run, ranked against the other lines model only
    assert float(mse[4]) == pytest.approx(1e-9)
    side = text.split("Interpolations compared", 1)
    assert len(side) == 2 and "fashion" not in side[1].split("</div>", 1)[0]  # only the two lines models
    row = side[1].split("</div>", 1)[0]
    scale = int(re.search(r"shown (\d+)×", row).group(1))
    widths = [int(w) for w in re.findall(r'<img class="px" width="(\d+)"', row)]
    assert len(widths) == 2 and scale >= 2 and all(w % scale == 0 for w in widths)  # upscaled, integer factor
    # the two grids come from the same test pairs: identical inputs give identical endpoint rows
    pairs = explorer_data(text)
    assert [p["a"] for p in pairs[0]] == [p["a"] for p in pairs[1]]
