"""Pure tests of every figure function in app/figures.py: traces, axis titles, colours, markers, units."""
from __future__ import annotations

import json
import math
import re
from html import unescape as html_unescape

import numpy as np
import plotly.io as pio
import pytest

from app import figures as F

NAMES = ["demo", "vitals", "labs", "imaging"]
LABELS = ["Demographics", "Vital signs", "Laboratory", "<img src=x onerror=alert(1)>"]
COLORS = F.modality_colors(NAMES)
STEPS = ["prior", *NAMES]
STEP_LABELS = ["Prior", *LABELS]


def _arr(v):
    """Plotly 7 may store arrays base64-encoded in JSON; figures keep numpy/lists in memory."""
    return np.asarray(v, dtype=float)


def _by_name(fig, name):
    return [t for t in fig.data if t.name == name]


# --- text helpers ---------------------------------------------------------------------------------------------
def test_percentages_are_whole_and_points_signed():
    assert F.pct(0.634) == "63%"
    assert F.pct(1.0) == "100%"
    assert F.pct(float("nan")) == "–"
    assert F.points(0.07) == "+7 points"
    assert F.points(-0.034) == "−3 points"
    assert F.points(0.01) == "+1 point"
    assert F.points(0.0) == "no change"
    assert F.points(0.003) == "+<1 point"


def test_numbers_keep_integers_plain_and_units():
    assert F.number(1.0) == "1"
    assert F.number(0.0) == "0"
    assert F.number(36.54) == "36.5"
    assert F.number(7.345) == "7.34"
    assert F.with_units(112.0, "beats/min") == "112 beats/min"
    assert F.signed(-2.5, "points") == "−2.50 points"


def test_esc_makes_markup_literal():
    assert F.esc("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"


def test_modality_colours_are_distinct_stable_and_okabe_ito_first():
    names = [f"m{i}" for i in range(len(F.PALETTE))]
    c = F.modality_colors(names)
    assert len(set(c.values())) == len(names)
    assert [c[n] for n in names[:7]] == F.OKABE_ITO
    assert F.modality_colors(["a", "b"])["b"] == F.modality_colors(["x", "b", "z"])["b"]
    assert set(F.MODEL_COLORS.values()).isdisjoint({F.PRIOR_COLOR})
    assert F.MODEL_COLORS["multimodn"] != F.MODEL_COLORS["pfusion"]


# --- step chart ---------------------------------------------------------------------------------------------
def _binary_chart(truth=1.0, reasons=("", F.NOT_MEASURED, "", "")):
    """Steps: demo ran, vitals skipped (why: reasons[1]), labs and imaging ran."""
    values = np.array([0.30, 0.42, 0.42, 0.63, 0.55])
    skipped = np.array([False, True, False, False])
    fig = F.step_chart(STEPS, STEP_LABELS, values, skipped, task_type="binary", task_label="Death",
                       colors=COLORS, classes=["no", "yes"], truth=truth,
                       skip_reasons=list(reasons), sentences=["s0", "s1", "s2", "s3", "s4"])
    return fig, values, skipped


def _points(fig):
    """The traces that draw the steps' values (not the Actual star, not the key to the kinds of step)."""
    return [t for t in fig.data if t.mode == "markers" and t.name != "Actual outcome" and t.legend != "legend2"]


def _lines(fig, dash):
    return [t for t in fig.data if t.mode == "lines" and t.line.dash == dash]


def test_step_chart_binary_traces_percentages_and_axes():
    fig, values, skipped = _binary_chart()
    markers = _points(fig)
    assert len(markers) == 1
    m = markers[0]
    assert m is next(t for t in fig.data if t.mode == "markers")     # the first marker trace (browser tests)
    np.testing.assert_allclose(_arr(m.y), 100 * values)
    assert list(m.x) == [0, 1, 2, 3, 4]
    assert fig.layout.yaxis.title.text == "Predicted chance (%)"
    assert tuple(fig.layout.yaxis.range) == (-4, 104)
    assert fig.layout.xaxis.title.text.startswith("Step")
    assert fig.layout.title.text == "Death"
    # ran / switched off / not measured lines + markers + the actual outcome + a 3-entry key
    assert len(fig.data) == 3 + 1 + 1 + 3


def test_step_chart_colours_each_step_by_modality_and_prior_grey():
    fig, _, _ = _binary_chart(reasons=("", F.SKIPPED_BY_YOU, "", ""))
    m = _points(fig)[0]
    assert list(m.marker.color) == [F.PRIOR_COLOR] + [COLORS[n] for n in NAMES]
    # a step without data is grey whatever its modality's colour
    fig, _, _ = _binary_chart()
    assert list(_points(fig)[0].marker.color) == [F.PRIOR_COLOR, COLORS["demo"], F.NONE_COLOR, COLORS["labs"],
                                                  COLORS["imaging"]]


def test_step_chart_not_measured_differs_from_switched_off():
    not_measured, values, _ = _binary_chart(reasons=("", F.NOT_MEASURED, "", ""))
    switched_off, _, _ = _binary_chart(reasons=("", F.SKIPPED_BY_YOU, "", ""))
    a, b = _points(not_measured)[0], _points(switched_off)[0]
    assert list(a.marker.symbol) == ["circle", "circle", "circle-x-open", "circle", "circle"]
    assert list(b.marker.symbol) == ["circle", "circle", "circle-open", "circle", "circle"]
    # the segment into the skipped step: dotted (no data) or dashed (switched off), flat (prediction unchanged)
    for fig, dash in ((not_measured, "dot"), (switched_off, "dash")):
        seg = _lines(fig, dash)[0]
        assert [x for x in seg.x if x is not None] == [1, 2]
        assert [y for y in seg.y if y is not None] == [42.0, 42.0]
        other = _lines(fig, "dash" if dash == "dot" else "dot")[0]
        assert [x for x in other.x if x is not None] == []
        solid = [t for t in fig.data if t.mode == "lines" and t.line.dash is None][0]
        assert [x for x in solid.x if x is not None] == [0, 1, 2, 3, 3, 4]
    # hover and a grey band say which: only a switched-off step gets the band
    assert "not measured for this record" in a.hovertext[2] and "(unchanged" in a.hovertext[2]
    assert "skipped by you" in b.hovertext[2] and "switched off" in b.hovertext[2]
    assert "not measured" not in b.hovertext[2]
    assert len(not_measured.layout.shapes) == 0
    assert [(s.x0, s.x1) for s in switched_off.layout.shapes] == [(1.5, 2.5)]
    # the step's name is greyed in both cases
    assert F.STATUS_COLOR in not_measured.layout.xaxis.ticktext[2]
    assert F.STATUS_COLOR not in not_measured.layout.xaxis.ticktext[1]
    # a key to the three kinds of step, the same in every chart
    key = [t for t in not_measured.data if t.legend == "legend2"]
    assert [t.name for t in key] == ["step ran", "skipped by you (switched off)", "not measured for this record"]
    assert [t.marker.symbol for t in key] == ["circle", "circle-open", "circle-x-open"]
    assert [t.name for t in key] == [t.name for t in switched_off.data if t.legend == "legend2"]
    assert "+12 points" in a.hovertext[1]          # 30% -> 42%
    assert "−8 points" in a.hovertext[4]           # 63% -> 55%
    assert a.hovertext[3].endswith("s3")           # the narrative sentence of the step is in the hover


def test_step_chart_marks_the_actual_outcome_and_escapes_labels():
    fig, _, _ = _binary_chart(truth=0.0)
    actual = _by_name(fig, "Actual outcome")[0]
    assert list(actual.x) == [5] and list(actual.y) == [0.0]
    assert "no" in actual.hovertext[0]
    ticks = list(fig.layout.xaxis.ticktext)
    assert ticks[-1] == "<b>Actual:</b><br>no" and ticks[0] == "Prior"
    assert any("&lt;img src=x" in t for t in ticks)
    assert not any("<img" in t for t in ticks)
    fig2, _, _ = _binary_chart(truth=float("nan"))
    assert not _by_name(fig2, "Actual outcome")
    assert not any("Actual" in t for t in fig2.layout.xaxis.ticktext)


def test_step_chart_labels_wrap_at_word_boundaries():
    labels = ["Prior", "Liver & nutrition labs (day 3)", "Diagnosis & comorbidities", "x", "<b>bold</b> & more"]
    fig = F.step_chart(STEPS, labels, np.zeros(5), [False] * 4, task_type="binary", task_label="t", colors=COLORS)
    ticks = list(fig.layout.xaxis.ticktext)
    for raw, tick in zip(labels, ticks):
        lines = tick.split("<br>")
        assert " ".join(html_unescape(l) for l in lines) == raw           # only whole words move to a new line
        assert all(len(html_unescape(l)) <= 20 or " " not in html_unescape(l) for l in lines)
    assert "(day 3)" in ticks[1].split("<br>")[-1]                       # a bracketed group stays together
    assert "&lt;b&gt;bold&lt;/b&gt;" in ticks[4] and "<b>" not in ticks[4]
    assert fig.layout.xaxis.tickangle == 0
    # many steps: slanted
    many = [f"m{i}" for i in range(14)]
    fig = F.step_chart(["prior", *many], ["Prior", *many], np.zeros(15), [False] * 14, task_type="binary",
                       task_label="t", colors=F.modality_colors(many))
    assert fig.layout.xaxis.tickangle == -40


def test_wrap_escapes_each_line():
    assert F.wrap("Glucose & urea (day 3)", 10) == "Glucose &amp;<br>urea<br>(day 3)"
    assert F.wrap("<img src=x onerror=alert(1)>", 12) == "&lt;img src=x<br>onerror=alert(1)&gt;"
    assert F.wrap("", 10) == ""


def test_step_chart_multiclass_one_line_per_class():
    v = np.array([[0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.1, 0.6, 0.3], [0.05, 0.15, 0.8], [0.1, 0.1, 0.8]])
    fig = F.step_chart(STEPS, STEP_LABELS, v, [False, True, False, False], task_type="multiclass",
                       task_label="Stage", colors=COLORS, classes=["Early stage", "middle", "late"], truth=2,
                       skip_reasons=["", F.SKIPPED_BY_YOU, "", ""])
    markers = _points(fig)
    assert [t.name for t in markers] == ["Early stage", "middle", "late"]
    for c, t in enumerate(markers):
        np.testing.assert_allclose(_arr(t.y), 100 * v[:, c])
        assert t.marker.symbol[2] == "circle-open"
        assert t.showlegend
    assert len(fig.data) == 4 * 3 + 1 + 3
    assert fig.layout.yaxis.title.text == "Predicted probability (%)"
    assert fig.layout.xaxis.ticktext[-1] == "<b>Actual:</b><br>late"
    assert [t.line.width for t in fig.data if t.mode == "lines" and t.line.dash is None] == [2, 2, 3]


def test_step_chart_regression_in_units():
    v = np.array([10.0, 11.5, 11.5, 13.0, 12.2])
    fig = F.step_chart(STEPS, STEP_LABELS, v, [False, True, False, False], task_type="regression",
                       task_label="Score", colors=COLORS, units="points", truth=12.0)
    m = _points(fig)[0]
    np.testing.assert_allclose(_arr(m.y), v)
    assert fig.layout.yaxis.title.text == "Prediction (points)"
    assert "+1.50 points" in m.hovertext[1]
    assert list(_by_name(fig, "Actual outcome")[0].y) == [12.0]
    assert fig.layout.xaxis.ticktext[-1] == "<b>Actual:</b><br>12 points"


def test_step_chart_regression_axis_holds_the_actual_outcome_off_the_edge():
    """STAR: predictions 550-620 and an actual 515 used to sit on the bottom edge, read as 550."""
    v = np.array([580.0, 600.0, 620.0, 610.0, 550.0])
    fig = F.step_chart(STEPS, STEP_LABELS, v, [False] * 4, task_type="regression", task_label="Reading",
                       colors=COLORS, units="points", truth=515.0)
    lo, hi = fig.layout.yaxis.range
    span = 620.0 - 515.0
    assert lo < 515.0 - 0.05 * span and hi > 620.0 + 0.05 * span
    flat = F.step_chart(STEPS, STEP_LABELS, np.full(5, 3.0), [False] * 4, task_type="regression",
                        task_label="Flat", colors=COLORS)
    lo, hi = flat.layout.yaxis.range
    assert lo < 3.0 < hi


def test_step_chart_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        F.step_chart(STEPS, STEP_LABELS, np.zeros(3), [False] * 4, task_type="binary", task_label="x",
                     colors=COLORS)


# --- Shapley, attributions, state ----------------------------------------------------------------------------
def test_shapley_bars_points_colours_and_status():
    vals = np.array([0.05, 0.0, -0.12, 0.0])
    fig = F.shapley_bars(NAMES, LABELS, vals, COLORS, task_type="binary", task_label="Death",
                         status={"vitals": F.NOT_MEASURED, "imaging": F.SKIPPED_BY_YOU})
    bar = fig.data[0]
    np.testing.assert_allclose(_arr(bar.x), [5.0, 0.0, -12.0, 0.0])
    assert list(bar.marker.color) == [COLORS[n] for n in NAMES]
    # no bar and no number for a modality that did not run: its name is greyed with the reason under it
    assert list(bar.text) == ["+5 points", "", "−12 points", ""]
    ticks = list(fig.layout.yaxis.ticktext)
    assert ticks[0] == "Demographics" and ticks[2] == "Laboratory"
    assert ticks[1].startswith(f"<span style='color:{F.STATUS_COLOR}'>Vital signs</span><br>")
    assert ticks[1].endswith("<i>not measured</i></span>") and "skipped by you" in ticks[3]
    assert "not measured for this record" in bar.hovertext[1] and "skipped by you" in bar.hovertext[3]
    assert list(fig.layout.yaxis.tickvals) == list(bar.y)
    assert list(bar.y)[3] == "&lt;img src=x onerror=alert(1)&gt;"
    assert "<img" not in ticks[3]
    assert fig.layout.xaxis.title.text == "Contribution to the predicted chance (percentage points)"
    assert fig.layout.yaxis.autorange == "reversed"     # spec order top to bottom
    reg = F.shapley_bars(NAMES, LABELS, np.array([1.5, 0, 0, -0.5]), COLORS, task_type="regression",
                         task_label="Score", units="points")
    np.testing.assert_allclose(_arr(reg.data[0].x), [1.5, 0, 0, -0.5])
    assert reg.layout.xaxis.title.text == "Contribution (points)"
    mc = F.shapley_bars(NAMES, LABELS, vals, COLORS, task_type="multiclass", task_label="Stage", class_label="late")
    assert "P(late)" in mc.layout.xaxis.title.text


def test_attribution_bars_sorted_by_size_with_raw_values():
    fig = F.attribution_bars(["Age", "Sex", "Heart rate"], np.array([0.1, -0.5, 0.3]),
                             ["67 years", "female", "112 beats/min"], "#E69F00", title="t", x_title="push", top=2)
    bar = fig.data[0]
    assert list(bar.y) == ["Sex = female", "Heart rate = 112 beats/min"]
    np.testing.assert_allclose(_arr(bar.x), [-0.5, 0.3])
    assert bar.marker.color == "#E69F00"
    assert fig.layout.xaxis.title.text == "push"


def test_state_heatmap_steps_by_dimensions():
    states = np.arange(15, dtype=float).reshape(5, 3) - 7
    fig = F.state_heatmap(states, STEP_LABELS, [False, True, False, False])
    hm = fig.data[0]
    assert np.asarray(hm.z).shape == (5, 3)
    assert hm.zmid == 0 and hm.zmin == -7 and hm.zmax == 7
    assert list(hm.y)[2].endswith("(skipped)") and not list(hm.y)[1].endswith("(skipped)")
    assert fig.layout.xaxis.title.text == "State dimension"


def test_state_map_cohort_by_outcome_and_record_path():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(50, 2))
    y = np.r_[np.zeros(20), np.ones(25), np.full(5, np.nan)]
    path = rng.normal(size=(5, 2))
    fig = F.state_map(xy, y, outcome_type="binary", outcome_label="Death", classes=["no", "yes"], path_xy=path,
                      steps=STEPS, step_labels=STEP_LABELS, colors=COLORS, skipped=[False, True, False, False])
    names = [t.name for t in fig.data]
    assert names == ["outcome unknown", "Death: no", "Death: yes", "this record, step by step"]
    assert [len(t.x) for t in fig.data[:3]] == [5, 20, 25]
    p = fig.data[-1]
    np.testing.assert_allclose(_arr(p.x), path[:, 0])
    assert list(p.marker.color) == [F.PRIOR_COLOR] + [COLORS[n] for n in NAMES]
    assert p.marker.symbol[2] == "circle-open"
    reg = F.state_map(xy, rng.normal(size=50), outcome_type="regression", outcome_label="Score", classes=None,
                      path_xy=path, steps=STEPS, step_labels=STEP_LABELS, colors=COLORS, skipped=[False] * 4)
    assert reg.data[0].marker.colorscale is not None


def test_compare_bars_fixed_model_colours_percent():
    fig = F.compare_bars(["Death"], [0.63], [0.71], [0.60], [0.70])
    assert [t.name for t in fig.data] == ["MultiModN (your toggles)", "MultiModN (all measured data)",
                                          "P-Fusion (your toggles)", "P-Fusion (all measured data)"]
    assert fig.data[0].marker.color == F.MODEL_COLORS["multimodn"]
    assert fig.data[2].marker.color == F.MODEL_COLORS["pfusion"]
    assert list(fig.data[0].y) == [63.0] and list(fig.data[2].text) == ["71%"]


# --- model card and cohort ------------------------------------------------------------------------------------
def test_presence_bars_percent_and_colours():
    fig = F.presence_bars(NAMES, LABELS, [1.0, 0.5, 0.25, 0.0], COLORS)
    np.testing.assert_allclose(_arr(fig.data[0].x), [100, 50, 25, 0])
    assert list(fig.data[0].text) == ["100%", "50%", "25%", "0%"]
    assert list(fig.data[0].marker.color) == [COLORS[n] for n in NAMES]


def test_metric_heatmap_values_and_labels():
    matrix = {"steps": STEPS, "tasks": {"death": {"auroc": [0.5, 0.6, 0.6, 0.7, float("nan")]},
                                        "score": {"r2": [0.0, 0.1, 0.1, 0.3, 0.4]}}}
    fig = F.metric_heatmap(matrix, ["death", "score"], ["Death", "Score"], STEP_LABELS,
                           {"death": "auroc", "score": "r2"})
    hm = fig.data[0]
    z = np.asarray(hm.z, dtype=float)
    np.testing.assert_allclose(z[0, :4], [0.5, 0.6, 0.6, 0.7])
    assert math.isnan(z[0, 4])
    assert list(hm.y) == ["Death (AUROC)", "Score (R²)"]
    assert hm.text[0][4] == "–" and hm.text[1][4] == "0.40"


def test_history_chart_solid_training_dashed_validation_per_model():
    rows = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.8}, {"epoch": 2, "train_loss": 0.7, "val_loss": 0.75}]
    fig = F.history_chart({"multimodn": rows, "pfusion": rows})
    assert len(fig.data) == 4
    assert fig.data[0].line.color == fig.data[1].line.color == F.MODEL_COLORS["multimodn"]
    assert fig.data[1].line.dash == "dash" and fig.data[0].line.dash is None
    assert fig.data[2].line.color == F.MODEL_COLORS["pfusion"]
    assert list(fig.data[1].y) == [0.8, 0.75]
    assert fig.layout.xaxis.title.text == "Epoch"


def test_importance_ranges_span_q10_to_q90():
    fig = F.importance_ranges(NAMES, LABELS, [-0.1, 0, 0.02, -0.3], [0.0, 0, 0.05, -0.1], [0.1, 0, 0.1, 0.0],
                              [0.05, 0, 0.06, 0.12], COLORS, task_type="binary", task_label="Death")
    bar, med = fig.data
    np.testing.assert_allclose(_arr(bar.base), [-10, 0, 2, -30])
    np.testing.assert_allclose(_arr(bar.x), [20, 0, 8, 30])
    np.testing.assert_allclose(_arr(med.x), [0, 0, 5, -10])
    assert list(bar.marker.color) == [COLORS[n] for n in NAMES]


def test_spread_histogram_and_order_chart():
    fig = F.spread_histogram(np.array([0.01, 0.02, 0.1]), task_type="binary")
    np.testing.assert_allclose(_arr(fig.data[0].x), [1, 2, 10])
    assert "percentage points" in fig.layout.xaxis.title.text
    oc = F.order_chart(["Dataset order", "Reversed"], [0.78, 0.74], x_title="AUROC", title="t", reference=0.78)
    np.testing.assert_allclose(_arr(oc.data[0].x), [0.78, 0.74])
    assert list(oc.data[0].text) == ["0.780", "0.740"]
    assert any(s.x0 == 0.78 for s in oc.layout.shapes)
    lo, hi = oc.layout.xaxis.range                 # zoomed so that a 0.04 difference is visible
    assert 0.7 < lo < 0.74 and 0.78 < hi < 0.82


# --- MNAR lab ------------------------------------------------------------------------------------------------------
def test_mnar_chart_clean_solid_reversed_dashed_two_model_colours():
    rows = []
    for kind in ("multimodn", "pfusion"):
        for test in ("clean", "reversed"):
            for r in (0.0, 0.4, 0.8):
                drop = r / 4 if test == "reversed" else 0.0
                rows.append({"rate": r, "model": kind, "test": test, "auroc": 0.8 - drop, "auroc_std": 0.01})
    result = {"results": rows, "ceiling": {"multimodn": [{"rate": r, "auroc": 0.79} for r in (0.0, 0.4, 0.8)]}}
    fig = F.mnar_chart(result)
    by = {t.name: t for t in fig.data}
    mc, mr = by["MultiModN · clean test"], by["MultiModN · reversed test"]
    pc, pr = by["P-Fusion · clean test"], by["P-Fusion · reversed test"]
    assert mc.line.color == mr.line.color == F.MODEL_COLORS["multimodn"]
    assert pc.line.color == pr.line.color == F.MODEL_COLORS["pfusion"]
    assert mc.line.dash == "solid" and mr.line.dash == "dash"
    np.testing.assert_allclose(_arr(mr.x), [0, 40, 80])
    np.testing.assert_allclose(_arr(mr.y), [0.8, 0.7, 0.6])
    np.testing.assert_allclose(_arr(mr.error_y.array), [0.01] * 3)
    ceiling = [t for t in fig.data if "without missingness" in t.name]
    assert len(ceiling) == 1 and ceiling[0].line.dash == "dot"
    assert "AUROC" in fig.layout.yaxis.title.text


def test_every_figure_serialises_to_json():
    fig, _, _ = _binary_chart()
    spec = json.loads(pio.to_json(fig))
    assert spec["layout"]["yaxis"]["title"]["text"] == "Predicted chance (%)"


# --- how much to trust this; what to measure next; faithfulness per method --------------------------------------
def test_trust_curve_draws_the_deletion_curve_against_random_in_percent():
    removed = ["vitals", "imaging", "demo"]
    dele, rnd = np.array([0.8, 0.3, 0.35, 0.5]), np.array([0.8, 0.7, 0.6, 0.5])
    fig = F.trust_curve([LABELS[1], LABELS[3], LABELS[0]], removed, dele, rnd, COLORS, task_type="binary")
    solid = _by_name(fig, "Exact Shapley order")[0]
    dashed = _by_name(fig, "random order (mean)")[0]
    np.testing.assert_allclose(_arr(solid.y), 100 * dele)
    np.testing.assert_allclose(_arr(dashed.y), 100 * rnd)
    assert dashed.line.dash == "dash" and solid.line.dash is None
    # each removal's dot in that modality's colour, the start grey
    assert list(solid.marker.color) == [F.PRIOR_COLOR, COLORS["vitals"], COLORS["imaging"], COLORS["demo"]]
    assert fig.layout.yaxis.ticksuffix == "%" and fig.layout.yaxis.title.text == "Predicted chance (%)"
    # the removed modality named in the hover, escaped (user text)
    assert F.esc(LABELS[3]) in solid.hovertext[2] and "<img" not in pio.to_json(fig)


def test_trust_curve_regression_in_units_and_rejects_mismatch():
    fig = F.trust_curve(["Vital signs"], ["vitals"], np.array([12.0, 9.5]), np.array([12.0, 9.5]), COLORS,
                        task_type="regression", units="kg")
    assert fig.layout.yaxis.title.text == "Prediction (kg)"
    np.testing.assert_allclose(_arr(_by_name(fig, "Exact Shapley order")[0].y), [12.0, 9.5])
    with pytest.raises(ValueError):
        F.trust_curve(["a"], ["vitals"], np.array([1.0, 0.5, 0.2]), np.array([1.0, 0.5]), COLORS,
                      task_type="binary")


def test_outcome_spread_one_box_per_candidate_with_every_outcome():
    outs = [np.array([0.2, 0.6, 0.7]), np.array([0.4, 0.45, 0.5])]
    fig = F.outcome_spread(["labs", "imaging"], [LABELS[2], LABELS[3]], outs, 0.45, COLORS, task_type="binary")
    boxes = [t for t in fig.data if t.type == "box"]
    assert [b.name for b in boxes] == [LABELS[2], F.esc(LABELS[3])]
    for b, o in zip(boxes, outs):
        np.testing.assert_allclose(_arr(b.x), 100 * o)
        assert b.boxpoints == "all"
    assert boxes[0].marker.color == COLORS["labs"]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert lines[0].x0 == pytest.approx(45.0)                      # the prediction now, solid
    assert lines[1].x0 == pytest.approx(50.0) and lines[1].line.dash == "dot"    # the 50% threshold
    assert fig.layout.annotations[0].text == "now 45%"
    lo, hi = fig.layout.xaxis.range                              # zoomed on the outcomes, all of them in view
    assert lo <= 20 and hi >= 70 and hi - lo < 80
    # hindsight: the real value as a star per row
    fig = F.outcome_spread(["labs"], [LABELS[2]], outs[:1], 0.45, COLORS, task_type="binary", actual=[0.62])
    star = _by_name(fig, "its real value")[0]
    assert star.marker.symbol == "star" and _arr(star.x)[0] == pytest.approx(62.0)
    with pytest.raises(ValueError):
        F.outcome_spread(["labs"], [LABELS[2]], outs, 0.45, COLORS, task_type="binary")


def test_outcome_spread_hindsight_marks_each_rows_own_without_it_value():
    """Hindsight: hiding each modality gives its own 'now', so no single 'now' line (it would be wrong for every
    row but one): one tick per row at that row's value."""
    outs = [np.array([0.6, 0.7]), np.array([0.85, 0.9])]
    fig = F.outcome_spread(["labs", "imaging"], [LABELS[2], LABELS[3]], outs, [0.71, 0.88], COLORS,
                           task_type="binary", actual=[0.87, 0.87])
    ticks = _by_name(fig, "without it")[0]
    np.testing.assert_allclose(_arr(ticks.x), [71.0, 88.0])
    assert list(ticks.y) == [LABELS[2], F.esc(LABELS[3])]
    assert all(s.x0 != pytest.approx(71.0) for s in fig.layout.shapes)       # no 'now' line
    assert not any("now" in (a.text or "") for a in fig.layout.annotations)
    # equal values (missing mode passes one) keep the single line
    fig = F.outcome_spread(["labs", "imaging"], [LABELS[2], LABELS[3]], outs, [0.71, 0.71], COLORS,
                           task_type="binary")
    assert fig.layout.shapes[0].x0 == pytest.approx(71.0) and not _by_name(fig, "without it")


def test_outcome_spread_regression_has_no_threshold():
    fig = F.outcome_spread(["labs"], ["Laboratory"], [np.array([10.0, 12.0])], 11.0, COLORS,
                           task_type="regression", units="kg")
    assert len(fig.layout.shapes) == 1 and fig.layout.annotations[0].text == "now 11 kg"
    np.testing.assert_allclose(_arr(fig.data[0].x), [10.0, 12.0])


def test_faithfulness_curves_methods_in_fixed_colours_random_dashed():
    curves = {"shapley": np.array([0.8, 0.5, 0.6]), "ig": np.array([0.8, 0.6, 0.6]),
              "random": np.array([0.8, 0.7, 0.6])}
    fig = F.faithfulness_curves(curves, title="t")
    for m, c in curves.items():
        tr = _by_name(fig, F.METHOD_LABELS[m])[0]
        np.testing.assert_allclose(_arr(tr.y), 100 * c)
        assert tr.line.color == F.METHOD_COLORS[m]
    assert _by_name(fig, F.METHOD_LABELS["random"])[0].line.dash == "dash"
    assert len(set(F.METHOD_COLORS.values())) == len(F.METHOD_COLORS)


def test_faithfulness_table_and_summary_read_the_report():
    from app import components as C
    rep = {"records": 40, "methods": {
        "shapley": {"deletion_aopc": 0.25, "insertion_auc": 0.8, "randomization_spearman": 0.01, "ood_top_skip": 0.5},
        "ig": {"deletion_aopc": 0.2, "insertion_auc": 0.7, "randomization_spearman": 0.7, "ood_top_skip": 0.25},
        "random": {"deletion_aopc": 0.1, "insertion_auc": 0.6, "randomization_spearman": None, "ood_top_skip": 0.4}},
        "agreement": {"shapley|ig": 0.66}}
    t = C.faithfulness_table(rep)
    assert t["Method"].tolist() == [F.METHOD_LABELS[m] for m in ("shapley", "ig", "random")]
    assert t["Drop (points)"].tolist() == ["25.0", "20.0", "10.0"]
    assert t["Agreement with exact Shapley"].tolist() == ["1.00", "0.66", "–"]
    assert t["Unchanged after scrambling"].tolist() == ["0.01", "0.70", "–"]
    s = C.faithfulness_summary(rep)
    assert "Exact Shapley" in s and "2.5×" in s and "(10.0 points)" in s
    assert "Caution: Integrated Gradients (per kind of data)" in s          # it barely changed: flagged


def test_measure_table_rows_per_modality_and_task():
    from app import components as C
    from mmn_core.panels import MeasureNext, MeasureRow
    from mmn_core.spec import spec_from_dict
    spec = spec_from_dict({"name": "x", "id_column": "id", "modalities": [
        {"name": "a", "label": "Alpha", "columns": ["a1"]}, {"name": "b", "label": "Beta", "columns": ["b1"]}],
        "tasks": [{"name": "y", "column": "y", "type": "binary", "label": "Death"},
                  {"name": "w", "column": "w", "type": "regression", "units": "kg", "label": "Weight"}]})
    ra = MeasureRow("a", 0.07, 0.25, 0.1, 0.4, np.array([0.3, 0.5]), ("1", "2"))
    rb = MeasureRow("b", 0.02, 0.0, 0.0, 0.4, np.array([0.38, 0.42]), ("1", "2"))
    wa = MeasureRow("a", 1.5, float("nan"), 0.3, 70.0, np.linspace(68, 72, 11), ("1", "2"))
    wb = MeasureRow("b", 2.5, float("nan"), 0.3, 70.0, np.linspace(60, 80, 11), ("1", "2"))
    by = {"y": MeasureNext("y", "binary", "missing", 2, (ra, rb)), "w": MeasureNext("w", "regression", "missing", 2,
                                                                                  (wb, wa))}
    t = C.measure_table(spec, by)
    assert t["Kind of data"].tolist() == ["Alpha", "Alpha", "Beta", "Beta"]          # ranked by the first task
    assert t["Outcome"].tolist() == ["Death", "Weight", "Death", "Weight"]
    assert t["Expected change"].tolist() == ["7 points", "1.50 kg", "2 points", "2.50 kg"]
    assert t["Prediction flips"].tolist() == ["25%", "–", "0%", "–"]
    assert t["Likely range (middle 80%)"].iloc[1] == "68.4 kg to 71.6 kg"


def test_step_chart_labels_fit_a_step_or_are_slanted():
    """At the Explorer's width (1,280 px, sidebar open) no wrapped tick label is wider than a step: SUPPORT2's
    12 ticks ("Demographics" alone is wider than a step) are slanted; STAR's 6 stay flat and fit."""
    from mmn_core import load_dataset
    for name, flat in (("support2", False), ("star", True)):
        spec = load_dataset(name).spec
        names = spec.modality_names
        labels = ["Prior", *[spec.modality(m).label for m in names]]
        fig = F.step_chart(["prior", *names], labels, np.full(len(names) + 1, 0.5), [False] * len(names),
                           task_type="binary", task_label="t", colors=F.modality_colors(names), truth=1.0,
                           classes=["no", "yes"])
        ticks = list(fig.layout.xaxis.ticktext)
        spacing = F.STEP_PLOT_PX / len(ticks)
        if flat:
            assert fig.layout.xaxis.tickangle == 0, name
            widest = max(len(html_unescape(re.sub("<[^>]+>", "", line))) for t in ticks for line in t.split("<br>"))
            assert widest * F.CHAR_PX <= spacing, (name, widest, spacing)
        else:
            assert fig.layout.xaxis.tickangle == -40, name
