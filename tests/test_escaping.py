"""Hostile names through every sink: each escape function (app/escape.py) shows the text literally and lets no
markup, formula, shortcode, link or bidi override through — in the functions themselves, in Plotly figures
(a regression's `units` in the axis titles included), in the HTML report and in the CSV export."""
from __future__ import annotations

import csv
import html as std_html
import io
import re
import unicodedata

import numpy as np
import pandas as pd
import pytest

from app import escape as E

CORPUS = [
    "<img src=x onerror=alert(1)>", "**bold**", "[link](javascript:x)", '=HYPERLINK("http://evil.example","x")',
    "$x$", "$$\\int x$$", "x" * 5000, "שלום עולם", "مرحبا", "\u202egnp.exe", "a\u2066b\u2069c", ":material/home:",
    ":smile:", ":color[red]{foreground=\"red\"}", "http://evil.example/x", "www.evil.example", "a@evil.example",
    "</script><script>alert(1)</script>", "&amp; &#60; &lt;", " =1+1", "\u00a0=1+1", "\n=1+1", "＝1+1", "@SUM(A1)",
    "-2+3", "+1", "\t=1", "\r=1", "<a href='http://evil.example'>x</a>", "# heading", "> quote", "`code`",
    "~~strike~~", "a_b_c", "\\*escaped\\*", "nul\x00byte", "line\nbreak", "Vital signs (day 3)", "1,234.5",
    "Stage (I–IV)", "liver panel", "<b>bold</b><br>", "%{y}", "{{template}}", "' OR 1=1 --",
]
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """What a reader should see: the text with bidi controls and control characters dropped, breaks as spaces."""
    text = re.sub(r"[\t\r\n]+", " ", text)
    return "".join(c for c in text if not BIDI.match(c) and (c == " " or unicodedata.category(c) != "Cc"))


def _md_unescape(s: str) -> str:
    """The text a Markdown parser leaves in the text node: each backslash pair becomes its character."""
    return re.sub(r"\\(.)", r"\1", s)


MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=^&@")
# Patterns Streamlit acts on in text nodes after parsing: emoji / icon shortcodes, GFM autolink literals.
PLUGINS = [re.compile(r":[A-Za-z0-9_+/\-]+:"), re.compile(r"(?i)https?://"), re.compile(r"(?i)\bwww\."),
           re.compile(r"[\w.+-]@[\w-]")]


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_markdown_shows_the_text_and_nothing_else(text):
    s = E.markdown(text)
    i = 0
    while i < len(s):                  # every special character is backslash-escaped
        if s[i] == "\\":
            i += 2
            continue
        assert s[i] not in MD_SPECIAL, (text[:40], s[max(0, i - 5):i + 5])
        i += 1
    node = _md_unescape(s)
    assert node.replace(E.WJ, "") == shown(text)                 # the reader sees exactly the text
    assert not any(p.search(node) for p in PLUGINS), node[:80]  # no shortcode, no autolink survives
    assert "\n" not in s and not BIDI.search(s)


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_label_escapes_only_what_markdown_acts_on(text):
    s = E.label(text)
    node = _md_unescape(s)
    assert node.replace(E.WJ, "") == shown(text)
    assert re.search(r"(?<!\\)[<>*\[\]$`~]", s) is None
    assert not PLUGINS[0].search(node)
    for plain in ("Vital signs (day 3)", "Liver & nutrition labs (day 3)", "blood_gas", "Labs: day 3",
                  "Needs help in ≥ 4 daily activities", "Stage (I–IV)"):
        assert E.label(plain) == plain                   # an ordinary name reads aloud exactly as written


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_plotly_and_html_show_the_text_and_no_markup(text):
    p = E.plotly(text)
    assert not set(p) & set("<>$") and not BIDI.search(p)
    assert re.sub(r"&(lt|gt|amp|#36);", "", p).count("&") == 0        # only our entities
    assert std_html.unescape(p) == shown(text)
    h = E.html(text)
    assert not set(h) & set("<>\"'") and std_html.unescape(h) == shown(text)


FORMULA = re.compile(r"^[=+\-@]")


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_csv_cells_never_start_a_formula(text):
    cell = E.csv_cell(text)
    visible = unicodedata.normalize("NFKC", cell.lstrip(" \t\r\n\u00a0\u3000"))
    assert cell.startswith("'") or not (FORMULA.match(visible) or cell[:1] in "\t\r\n")
    assert cell in (text, "'" + text)                  # the text itself is kept
    assert E.csv_cell(1.5) == 1.5 and E.csv_cell(None) is None and E.csv_cell("") == ""


def test_csv_export_neutralises_cells_and_headers():
    from app import report
    df = pd.DataFrame({t: [t, 1.0] for t in CORPUS[:20]} | {"id": CORPUS[20:22]})
    rows = list(csv.reader(io.StringIO(report.to_csv(df).decode("utf-8"))))
    for cell in [c for r in rows for c in r]:
        visible = unicodedata.normalize("NFKC", cell.lstrip(" \t\r\n\u00a0\u3000"))
        assert cell.startswith("'") or not (FORMULA.match(visible) or cell[:1] in "\t\r\n"), cell[:40]
    assert [c.removeprefix("'") for c in rows[0][:20]] == CORPUS[:20]


# --- Plotly figures: every string the user gave is escaped; only our own tags remain -------------------------
OUR_TAGS = re.compile(r"</?(b|i|br|sub|sup)>|<span style='[^'<>]*'>|</span>")


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def _assert_no_user_markup(fig):
    for s in _strings(fig.to_plotly_json()):
        rest = OUR_TAGS.sub("", s)
        assert not set(rest) & set("<>$"), s[:120]


@pytest.mark.parametrize("hostile", ["<a href='http://evil.example'>units</a>", "$\\alpha$ per <b>kg</b>",
                                     "\u202ekg", "x" * 3000, "mmHg"])
def test_figures_escape_units_names_and_classes(hostile):
    from app import figures as F
    steps = ["prior", "m1", "m2"]
    labels = ["Prior", f"<img src=x onerror=alert(1)> {hostile}", "$x$ **bold**"]
    colors = F.modality_colors(steps[1:])
    fig = F.step_chart(steps, labels, np.array([1.0, 2.0, 3.5]), [False, True], task_type="regression",
                       task_label=f"[link](javascript:x) {hostile}", colors=colors, units=hostile, truth=3.0,
                       sentences=["a", "b <i>", "c"])
    assert fig.layout.yaxis.title.text == f"Prediction ({E.plotly(hostile)})"     # the units in the axis title
    _assert_no_user_markup(fig)
    bars = F.shapley_bars(steps[1:], labels[1:], np.array([0.5, -0.25]), colors, task_type="regression",
                          task_label=hostile, units=hostile)
    assert E.plotly(hostile) in bars.layout.xaxis.title.text
    _assert_no_user_markup(bars)
    cls = F.step_chart(steps, labels, np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]), [False, False],
                       task_type="multiclass", task_label=hostile, colors=colors,
                       classes=[f"<script>{hostile}", "=1+1"], truth=1)
    _assert_no_user_markup(cls)


# --- the HTML report of a model trained on hostile names ----------------------------------------------------
UNITS = "<a href='http://evil.example'>°C</a> $x$"


@pytest.fixture(scope="module")
def hostile_bundle(tmp_path_factory):
    import yaml

    from app import resources as R
    from mmn_core import load_data
    from mmn_core.train import TrainConfig, train_model
    folder = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame({"id": [f"<b>r{i}</b>" if i else "=HYPERLINK(1)" for i in range(n)],
                          "<img src=x onerror=alert(1)>": rng.normal(size=n), "**bold**": rng.normal(size=n),
                          "y": rng.normal(20, 3, n), "cat": rng.choice(["[link](javascript:x)", "$x$"], n)})
    spec = {"name": "hostile", "title": "</script><script>alert(1)</script>", "id_column": "id",
            "modalities": [{"name": "<img src=x onerror=alert(1)>", "columns": ["<img src=x onerror=alert(1)>"],
                            "description": "[link](javascript:x)"},
                           {"name": ":material/home: \u202eRTL", "columns": ["**bold**", "cat"],
                            "units": {"**bold**": UNITS}}],
            "tasks": [{"name": "=HYPERLINK(\"x\")", "column": "y", "type": "regression", "units": UNITS}]}
    frame.to_csv(folder / "d.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    ds = load_data(folder / "d.csv", folder / "spec.yaml")
    trained = train_model(ds, "multimodn", config=TrainConfig(epochs=1))
    data = trained.prep.transform(ds)
    b = R.Bundle(None, ds, trained, data, np.arange(n), {r: i for i, r in enumerate(data.ids)}, None, None)
    return b, R._mask


def test_html_report_escapes_every_user_string(hostile_bundle):
    from app import report
    from mmn_core import acquire as AQ
    from mmn_core import explain as X
    from mmn_core import panels as P
    b, mask = hostile_bundle
    names = b.spec.modality_names
    rid = b.ds.ids[1]
    row = b.pos[rid]
    use = tuple(names)
    view = X.record_view(b.trained, b.data.subset([row]), mask(b.spec, use), list(names))
    measured = {m: bool(b.data.present[m][row]) for m in names}
    g = {"bundle": b, "rid": rid, "use": use, "order": tuple(names), "focus": b.spec.tasks[0].name, "view": view,
         "measured": measured, "trace": report.trace_frame(b, view, measured),
         "shapley": report.shapley_frame(b, view, measured, use), "attributions": pd.DataFrame(),
         "frame_row": b.ds.frame.iloc[row], "method": "ig",
         # the trust element and What-to-measure-next carry modality names too
         "trust": P.record_trust(b.trained, b.data, row, b.spec.tasks[0].name, use=use),
         "measure": P.measure_next(b.trained, b.data, row, AQ.Donors(b.trained, b.data,
                                                                     AQ.training_pool(b.trained, b.ds)), use=use)}
    page = report.render_html(g)
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, re.S)
    library = [x for x in scripts if "plotly.js v" in x]
    assert len(library) == 1                                # plotly.js inlined once; its source has own markup
    # the charts' JSON, with plotly's \\uXXXX escapes decoded (they would hide a raw '<' from the checks)
    figures = [re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), x)
               for x in scripts if x not in library]
    outside = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert len(figures) >= 2 and outside.count("<h1>") == 1
    for part in [outside.lower(), *(x.lower() for x in figures)]:
        assert "<img" not in part and "<a href" not in part and "<script" not in part and "<b>r1" not in part
    for x in figures:                                        # the charts' JSON: no raw markup, no LaTeX
        assert "$x$" not in x and "onerror=alert(1)>" not in x
    assert "\u202e" not in page
    assert E.html(b.spec.modality(names[0]).display) in page and E.html(rid) in page
    low = outside.lower()
    assert "href=\"javascript" not in low and "href='javascript" not in low
    axis = f"Prediction ({E.plotly(UNITS)})"
    # units in every step chart's axis title, and in the trust element's chart when it is drawn
    from app import components as C
    expected = len(b.spec.tasks) + int(C.trust_figure(b.spec, g["trust"]) is not None)
    assert sum(axis in x for x in figures) == expected, axis
    assert "evil.example'>" not in page
    csv_text = report.to_csv(g["trace"]).decode("utf-8")
    assert "\n=HYPERLINK" not in csv_text and not csv_text.startswith("=")
