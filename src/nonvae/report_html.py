"""The HTML of ``nonvae report``: tables, pictures, the interpolation explorer, one self-contained page.

:mod:`nonvae.report` collects what a run holds into :class:`~nonvae.report.RunPage` objects; this
module only renders them (no model, no files).
"""

from __future__ import annotations

import datetime
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nonvae.rundir import RunDir

if TYPE_CHECKING:
    from nonvae.report import Picture, RunPage


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def best_of(values: Mapping[str, float | None], direction: str | None) -> set[str]:
    """Names holding the best finite value (ties all count).

    Empty without a direction, below two values, or when all values are equal (nothing is better).
    """
    finite = {n: float(v) for n, v in values.items() if _is_number(v) and math.isfinite(float(v))}
    if direction is None or len(finite) < 2 or max(finite.values()) == min(finite.values()):
        return set()
    target = min(finite.values()) if direction == "lower" else max(finite.values())
    tol = 1e-12 * max(1.0, abs(target))
    return {n for n, v in finite.items() if abs(v - target) <= tol}


def _fmt(v: Any) -> str:
    if not _is_number(v):
        return "–"
    v = float(v)
    if not math.isfinite(v):
        return "n/a" if math.isnan(v) else str(v)
    if v.is_integer() and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
 padding:1em 1.5em;color:#1d1d1f;background:#fafafa;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{margin:1.2em 0 .4em} .muted{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:right} th{background:#f0f0f0}
td.key,th.key{text-align:left;font-family:ui-monospace,monospace} td.dir{text-align:center;color:#666}
td.best{background:#d9f2d9;font-weight:bold} td.best::after{content:" \\2605";color:#2a7a2a}
table.summary td{text-align:left}
figure{margin:.6em 0 1.2em;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #ccc;background:#fff}
img.px{image-rendering:pixelated;image-rendering:crisp-edges}
figcaption{font-size:.85em;color:#555;max-width:60em}
details{background:#fff;border:1px solid #ddd;padding:.4em .8em;margin:.5em 0}
summary{cursor:pointer;font-weight:600} pre{overflow-x:auto;font-size:.85em}
.note{background:#fff6dd;border-left:4px solid #e0b000;padding:.4em .8em}
.explorer{background:#fff;border:1px solid #ddd;padding:.6em 1em;margin:.6em 0}
.explorer .controls{display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}
.explorer .frames{display:flex;gap:1em;align-items:flex-end;margin-top:.6em}
.explorer .frames figure{margin:0;text-align:center} .explorer input[type=range]{width:22em}
.run{margin-top:2.5em}
.side{display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap} .side.stacked{flex-direction:column}
.side figure{margin:.3em 0}
td.data{font-size:.85em;color:#444;text-align:center}
"""

_JS = """
(function () {
  document.querySelectorAll('.explorer').forEach(function (ex) {
    var data = JSON.parse(ex.querySelector('script.explorer-data').textContent);
    var sel = ex.querySelector('select'), rng = ex.querySelector('input[type=range]');
    var frame = ex.querySelector('img.frame'), a = ex.querySelector('img.end-a');
    var b = ex.querySelector('img.end-b'), out = ex.querySelector('output');
    function show() {
      var p = data.pairs[+sel.value], k = Math.min(+rng.value, p.frames.length - 1);
      rng.max = p.frames.length - 1;
      frame.src = p.frames[k]; a.src = p.a; b.src = p.b;
      frame.dataset.frame = k;
      out.textContent = '\\u03b1 = ' + (k / (p.frames.length - 1)).toFixed(2) + '  (frame ' + (k + 1) +
        ' of ' + p.frames.length + ')';
    }
    sel.addEventListener('change', show);
    rng.addEventListener('input', show);
    show();
  });
})();
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _picture_html(p: Picture) -> str:
    width = f' width="{p.width}"' if p.width else ""
    cls = ' class="px"' if p.pixelated else ""
    cap = f"<figcaption><b>{_e(p.title)}</b>" + (f" — {_e(p.caption)}" if p.caption else "") + "</figcaption>"
    return f'<figure><img{cls}{width} alt="{_e(p.title)}" src="{p.uri}">{cap}</figure>'


def metric_meta(pages: Sequence[RunPage], keys: Sequence[str]) -> dict[str, dict]:
    """What each key means: from the pages' eval.json ``_meta``, else from the registered evaluators
    (periodic evaluations in metrics.jsonl carry no meta); keys nobody declares have no direction."""
    from nonvae.metrics import meta_for

    meta = meta_for(keys)
    for page in pages:
        meta.update({k: v for k, v in page.meta.items() if k in keys})
    return meta


def metrics_table_html(pages: Sequence[RunPage]) -> str:
    """Metric per row, run per column; the best value of each ranked row is marked.

    Directions and reference rows (baselines, floors, ceilings: never ranked) come from the
    metrics' own declarations (see nonvae.metrics), not from their names."""
    keys: list[str] = []
    for page in pages:
        keys += [k for k in page.metrics if k not in keys]
    if not keys:
        return '<p class="muted">No evaluation metrics yet: run <code>nonvae eval RUN_DIR</code>.</p>'
    from nonvae.compare import best_by_data

    meta = metric_meta(pages, keys)
    head = "".join(f"<th>{_e(p.name)}</th>" for p in pages)
    data_row = "".join(f'<td class="data">{_e(p.data_label or "?")}</td>' for p in pages)
    rows = [f'<tr><td class="key">data</td><td class="dir">ranked within</td>{data_row}</tr>']
    # a metric is ranked only among runs on the same data (pages that do not say which: one group)
    keys_of = {p.name: p.data_key for p in pages}
    for key in sorted(keys):
        info = meta.get(key, {})
        direction = info.get("direction") if info.get("direction") in ("lower", "higher") else None
        is_reference = bool(info.get("reference"))
        best = set() if is_reference else best_by_data({p.name: p.metrics.get(key) for p in pages}, keys_of,
                                                        direction, best_of)
        arrow = {"lower": "↓ lower is better", "higher": "↑ higher is better"}.get(direction or "", "")
        if is_reference:
            arrow = "reference" + (f" ({arrow.split(' ', 1)[1]})" if arrow else "")
        cells = []
        for p in pages:
            v = p.metrics.get(key)
            cls = ' class="best" title="best"' if p.name in best else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        doc = f' title="{_e(info["doc"])}"' if info.get("doc") else ""
        rows.append(f'<tr><td class="key"{doc}>{_e(key)}</td><td class="dir">{arrow}</td>{"".join(cells)}</tr>')
    return (f'<table id="metrics" class="metrics"><thead><tr><th class="key">metric</th><th></th>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def summary_table_html(pages: Sequence[RunPage]) -> str:
    fields: list[str] = []
    for p in pages:
        fields += [k for k in p.summary if k not in fields]
    head = "".join(f"<th>{_e(p.name)}</th>" for p in pages)
    rows = "".join(
        f'<tr><td class="key">{_e(f)}</td>' + "".join(f"<td>{_e(p.summary.get(f, '–'))}</td>" for p in pages)
        + "</tr>" for f in fields)
    return f'<table class="summary"><thead><tr><th class="key"></th>{head}</tr></thead><tbody>{rows}</tbody></table>'


def explorer_html(page: RunPage, index: int) -> str:
    """A pair picker and an alpha slider over precomputed decoded frames (no server, a few lines of JS)."""
    if not page.explorer:
        return ""
    first = page.explorer[0]
    size = int(first.get("size", 32))
    scale = max(1, 160 // max(size, 1))
    disp = size * scale
    options = "".join(f'<option value="{i}">{_e(p["label"])}</option>' for i, p in enumerate(page.explorer))
    payload = json.dumps({"pairs": page.explorer}).replace("</", "<\\/")
    last = len(first["frames"]) - 1

    def img(cls: str, src: str, alt: str) -> str:
        return f'<img class="px {cls}" width="{disp}" height="{disp}" alt="{alt}" src="{src}">'

    return f"""<div class="explorer" id="explorer-{index}">
<div class="controls"><label>pair <select aria-label="interpolation pair">{options}</select></label>
<label>&alpha; <input type="range" min="0" max="{last}" step="1" value="0" aria-label="alpha"></label>
<output>&alpha; = 0.00</output></div>
<div class="frames"><figure>{img("end-a", first["a"], "endpoint A")}<figcaption>A (input)</figcaption></figure>
<figure>{img("frame", first["frames"][0], "decoded interpolation")}<figcaption>decoded at &alpha;</figcaption>
</figure><figure>{img("end-b", first["b"], "endpoint B")}<figcaption>B (input)</figcaption></figure></div>
<script type="application/json" class="explorer-data">{payload}</script></div>"""


def markdown_html(md: str) -> str:
    """Markdown (e.g. a benchmark's table) as HTML, with the ``markdown`` package and its tables extension.

    Raw HTML in the text is shown as text (the page stays self-contained whatever the file holds);
    headings move two levels down, below the page's own h1/h2.
    """
    import markdown

    converter = markdown.Markdown(extensions=["tables"], output_format="html")
    converter.preprocessors.deregister("html_block")  # raw HTML stays text
    converter.inlinePatterns.deregister("html")
    out = converter.convert(md)
    out = re.sub(r"<(/?)h([1-6])>", lambda m: f"<{m.group(1)}h{min(6, int(m.group(2)) + 2)}>", out)
    return out.replace("<table>", '<table class="md">').replace("<strong>", "<b>").replace("</strong>", "</b>")


def side_by_side_html(pages: Sequence[RunPage]) -> list[str]:
    """Interpolation grids of runs on the same data together, on the same test pairs, upscaled alike."""
    from nonvae.compare import groups, side_by_side_layout

    out: list[str] = []
    by_name = {p.name: p for p in pages}
    for names in groups({p.name: (p.data_key, p.pairs_from) for p in pages if p.pairs_from}).values():
        grids = [(by_name[n], next((q for q in by_name[n].pictures if q.title == "Interpolations"), None))
                 for n in names]
        grids = [(page, pic) for page, pic in grids if pic is not None and pic.native]
        if len(grids) < 2:
            continue
        scale, in_row = side_by_side_layout([pic.native for _, pic in grids])  # type: ignore[misc]
        figures = "".join(
            f'<figure><img class="px" width="{pic.native * scale}" alt="{_e(page.name)} interpolations" '
            f'src="{pic.uri}"><figcaption><b>{_e(page.name)}</b> ({_e(page.summary.get("method", ""))})'
            "</figcaption></figure>" for page, pic in grids)
        out += [f"<h3>Interpolations compared: {_e(grids[0][0].data_label)}</h3>",
                '<p class="muted">The same test pairs in every grid (one pair per row, α = 0 … 1 left to right), '
                f"shown {scale}× (nearest neighbour).</p>",
                f'<div class="side{"" if in_row else " stacked"}">{figures}</div>']
    return out


def render_html(pages: Sequence[RunPage], curves: Sequence[Picture], title: str, table_md: str | None = None) -> str:
    """The whole page as one string."""
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">Written {now} by <code>nonvae report</code> for {len(pages)} '
        f'{"run" if len(pages) == 1 else "runs"}: {", ".join(_e(p.name) for p in pages)}.</p>',
    ]
    if table_md:
        parts += ['<h2>Benchmark</h2>', f'<div class="benchmark">{markdown_html(table_md)}</div>']
    parts += ["<h2>Runs</h2>", summary_table_html(pages), "<h2>Metrics</h2>",
              '<p class="muted">Best value per row marked ★ among runs on the same data only (where the row has a '
              "direction and at least two such runs report different values): metrics of different datasets are "
              "not comparable.</p>", metrics_table_html(pages), *side_by_side_html(pages), "<h2>Training curves</h2>"]
    if curves:
        parts += [_picture_html(p) for p in curves]
    else:
        parts.append(f'<p class="muted">No training metrics ({RunDir.metrics.name}) in these folders; exported '
                     "models keep only their weights and evaluation.</p>")
    for i, page in enumerate(pages):
        parts.append(f'<section class="run" id="run-{i}"><h2>{_e(page.name)} <span class="muted">'
                     f'({_e(page.summary.get("method", ""))} on {_e(page.summary.get("data", ""))})</span></h2>')
        parts += [f'<p class="note">{_e(n)}</p>' for n in page.notes]
        parts.append(f"<details><summary>Resolved config ({_e(RunDir(page.path).config)})</summary>"
                     f"<pre>{_e(page.config_text)}</pre></details>")
        parts += [_picture_html(p) for p in page.pictures]
        if page.explorer:
            parts.append("<h3>Interpolation explorer</h3><p class=\"muted\">Pick a pair and drag the slider: "
                         "each position shows the decoded code (1−α)·z_A + α·z_B.</p>")
            parts.append(explorer_html(page, i))
        parts.append("</section>")
    parts += [f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
