"""Pure figure functions: numbers in, plotly Figure out (no Streamlit, no torch), tested in tests/test_figures.py.

Conventions: one colour per modality everywhere (Okabe–Ito, extended with Paul Tol's muted colours past seven
modalities), MultiModN and P-Fusion in two fixed colours, risks as whole percentages, regression in the target's
units. Every string that may come from a user's spec passes through `esc` before reaching plotly, whose text
renderer understands a few HTML tags (links included): escaped text is shown literally.
"""
from __future__ import annotations

import html

import math
import re
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .escape import plotly as _plotly_text
from mmn_core.fmt import number, percent as pct, points, signed, with_units  # noqa: F401  (one formatter)
from mmn_core.kinds import KINDS, MODEL_NAMES

# Okabe–Ito's hues at lightnesses that reach WCAG AA's 3:1 for graphics on white (its orange, sky blue and yellow
# were 2.3, 2.3 and 1.3:1): orange → ochre, sky blue → steel blue, blue → navy (to stay apart from steel blue),
# yellow → lavender (no yellow reaches 3:1). Chosen so that the first ten colours stay apart (CIELAB ΔE ≥ 8) under
# simulated deuteranopia, protanopia and tritanopia too; tests/test_accessibility.py measures both.
OKABE_ITO = ["#7F5700", "#2F6380", "#009E73", "#D55E00", "#CA78A5", "#003F62", "#8C6BB1"]
TOL_EXTRA = ["#882255", "#999933", "#332288", "#3B9484", "#AA4499", "#661100", "#117733"]
PALETTE = OKABE_ITO + TOL_EXTRA
PRIOR_COLOR = "#7F7F7F"
NONE_COLOR = "#8C8C8C"                           # a step without data (not measured); 3.4:1 on white
LINE_COLOR = "#404040"
MODEL_COLORS = {"multimodn": "#0072B2", "pfusion": "#D55E00"}
# cohort map, binary: negative Tol teal, positive Tol dark red (palette colours, apart in hue and in lightness, so
# also for colour-blind readers), drawn at OUTCOME_OPACITY: as blended on white each is ≥ 3:1 against the
# background and ≥ 3:1 against the other (measured in tests/test_accessibility.py; the grey/black pair read as
# two shades of "no data")
OUTCOME_COLORS = [TOL_EXTRA[3], TOL_EXTRA[5]]
OUTCOME_OPACITY = 0.9
CLASS_SCALE = "Cividis"                          # multiclass / regression colouring (colour-blind safe)
STATE_SCALE = "PuOr"                             # diverging, colour-blind safe
FONT = dict(family="Source Sans Pro, Arial, sans-serif", size=13)
STATUS_COLOR = "#767676"                         # grey captions ("not measured"); 4.5:1 on white
# Why a step did not run. The two states look different everywhere (marker, line, tick caption, hover, bars):
# "not measured" = the record has no such data; "skipped by you" = switched off in the Explorer.
NOT_MEASURED = "not measured"
SKIPPED_BY_YOU = "skipped by you"


# --- text helpers ------------------------------------------------------------------------------------------
def esc(text) -> str:
    """Text for plotly: '<' and '&' are shown literally instead of being read as markup."""
    return _plotly_text(text)


def wrap(text, width: int = 12) -> str:
    """User text for a plotly label, broken at word boundaries into lines of about `width` characters (joined
    with <br>); each line is escaped, so only our <br> is markup. A parenthesised group such as "(day 3)" is
    kept on one line; a single longer word stays whole."""
    import textwrap
    raw = re.sub(r"\([^()]*\)", lambda m: m.group(0).replace(" ", "\u00a0"), str(text))
    lines = textwrap.wrap(raw, width=width, break_long_words=False, break_on_hyphens=False) or [""]
    return "<br>".join(esc(line.replace("\u00a0", " ")) for line in lines)


def status_caption(text: str) -> str:
    """A small grey italic second line for a plotly label (our fixed words, escaped anyway)."""
    return f"<span style='color:{STATUS_COLOR};font-size:11px'><i>{esc(text)}</i></span>"


def modality_colors(names: Sequence[str]) -> dict[str, str]:
    """One fixed colour per modality, by its position in the spec (so every chart agrees)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


_AXIS = dict(showline=True, linecolor="#BBBBBB", gridcolor="#EEEEEE", zeroline=False, automargin=True)


def _base_layout(title: str | None, height: int) -> dict:
    # automargin: tick labels (long modality names) push the margins out, also in the exported HTML report
    return dict(title=dict(text=title, x=0, xanchor="left") if title else None, height=height,
                margin=dict(l=10, r=10, t=50 if title else 20, b=10), font=FONT, plot_bgcolor="white",
                paper_bgcolor="white", hoverlabel=dict(align="left"), xaxis=dict(_AXIS), yaxis=dict(_AXIS))


def _fig(traces: list[dict], heading: str | None, height: int, xaxis: dict | None = None,
         yaxis: dict | None = None, **layout) -> go.Figure:
    """One Figure from plain dicts in a single validated construction (about 3x faster than building it with
    add_trace/update_* calls; this path runs on every toggle)."""
    lay = _base_layout(heading, height)
    lay["xaxis"].update(xaxis or {})
    lay["yaxis"].update(yaxis or {})
    lay.update(layout)
    return go.Figure(data=traces, layout=lay)


def _layout(fig: go.Figure, title: str | None = None, height: int = 360, **kw) -> go.Figure:
    lay = _base_layout(title, height)
    xa, ya = lay.pop("xaxis"), lay.pop("yaxis")
    fig.update_layout(**lay, **kw)
    fig.update_xaxes(**xa)
    fig.update_yaxes(**ya)
    return fig


# --- Explorer: the step chart ----------------------------------------------------------------------------------
def _value_text(task_type: str, v: float, units: str) -> str:
    return pct(v) if task_type in ("binary", "multiclass") else with_units(v, esc(units))


def _change_text(task_type: str, d: float, units: str) -> str:
    return points(d) if task_type in ("binary", "multiclass") else signed(d, esc(units))


def step_chart(steps: Sequence[str], step_labels: Sequence[str], values: np.ndarray, skipped: Sequence[bool], *,
               task_type: str, task_label: str, colors: dict[str, str], units: str = "",
               classes: Sequence[str] | None = None, truth: float | None = None,
               skip_reasons: Sequence[str] | None = None, sentences: Sequence[str] | None = None,
               off_name: str = SKIPPED_BY_YOU, height: int = 340) -> go.Figure:
    """The prediction after each step of one record, for one task.

    steps: ["prior", m1, ..., mK] (names), step_labels: display names (same length); values: (K+1,) — binary
    P(positive), regression in units — or (K+1, C) class probabilities; skipped: (K,) bool; truth: binary/
    multiclass class index, regression value, None/NaN if unknown; skip_reasons: (K,) why each skipped step
    did not run — NOT_MEASURED (the record has no such data) or any other text such as SKIPPED_BY_YOU (switched
    off by the user); classes: display names of the classes; sentences: (K+1,) plain-language text on hover;
    off_name: how the key names a switched-off step (the HTML report, read by others, says who switched it).

    x = Prior, modalities in encoding order, Actual; tick labels wrap at word boundaries and carry a grey
    caption under a step that did not run. A step the user switched off: hollow circle in the modality's colour,
    reached by a dashed line, on a light band. A step without data: grey crossed circle, dotted line.
    """
    values = np.asarray(values, dtype=float)
    skipped = np.asarray(skipped, dtype=bool)
    k = len(steps) - 1
    if values.shape[0] != k + 1 or skipped.shape[0] != k:
        raise ValueError(f"values ({values.shape[0]}) and skipped ({skipped.shape[0]}) do not match "
                         f"{k} steps")
    xs = list(range(k + 1))
    reasons = list(skip_reasons) if skip_reasons is not None else [SKIPPED_BY_YOU] * k
    # per step: "ran", "off" (switched off by the user) or "none" (not measured)
    kind = ["ran"] + ["none" if (skipped[j] and reasons[j] == NOT_MEASURED) else "off" if skipped[j] else "ran"
                      for j in range(k)]
    has_truth = truth is not None and not (isinstance(truth, float) and math.isnan(truth))
    n_ticks = k + 2 if has_truth else k + 1
    # Labels wrapped into lines that fit a step's width on the narrowest chart they appear in (the Explorer at
    # 1,280 px with the sidebar open: a plot area of about STEP_PLOT_PX); when a single word is still wider
    # than a step (12 steps: "Demographics" is 84 px, a step 58 px), every label is slanted instead.
    spacing = STEP_PLOT_PX / n_ticks
    width = max(6, min(20, int(spacing / CHAR_PX)))
    widest = max(len(html.unescape(line)) for s_ in [*step_labels, "Actual:"] for line in wrap(s_, width).split("<br>"))
    slanted = widest * CHAR_PX > spacing
    width = 16 if slanted else width
    ticktext = [wrap(s, width) if kind[j] == "ran" else f"<span style='color:{STATUS_COLOR}'>{wrap(s, width)}</span>"
                for j, s in enumerate(step_labels)]
    tickvals = list(xs)
    if has_truth:
        if task_type == "binary":
            ty, label = 100.0 * float(truth), (classes[int(truth)] if classes else str(int(truth)))
        elif task_type == "multiclass":
            ty, label = 100.0, (classes[int(truth)] if classes else str(int(truth)))
        else:
            ty, label = float(truth), with_units(truth, units)
        tickvals.append(k + 1)
        ticktext.append("<b>Actual:</b><br>" + wrap(label, width))
    # a light band behind every step the user switched off (the change they made)
    shapes = [dict(type="rect", xref="x", yref="paper", x0=j - 0.5, x1=j + 0.5, y0=0, y1=1, fillcolor="#999999",
                   opacity=0.10, line=dict(width=0), layer="below") for j in range(1, k + 1) if kind[j] == "off"]
    percent = task_type in ("binary", "multiclass")
    scale = 100.0 if percent else 1.0
    series = [values] if values.ndim == 1 else [values[:, c] for c in range(values.shape[1])]
    if values.ndim == 1:
        names = [esc(task_label)]
        line_colors = [LINE_COLOR]
    else:
        names = [esc(c) for c in (classes or [f"class {c + 1}" for c in range(values.shape[1])])]
        line_colors = _sample_scale(len(series))
    symbols = ["circle" if kd == "ran" else "circle-open" if kd == "off" else "circle-x-open" for kd in kind]
    plain = [esc(s) for s in step_labels]
    traces = []
    for c, (v, name, lc) in enumerate(zip(series, names, line_colors)):
        seg = {"ran": ([], []), "off": ([], []), "none": ([], [])}
        for j in range(k):
            tx, ty_ = seg[kind[j + 1]]
            tx += [j, j + 1, None]
            ty_ += [scale * float(v[j]), scale * float(v[j + 1]), None]
        hover = []
        for j in range(k + 1):
            head = "<b>Prior</b> (before any data)" if j == 0 else f"<b>{plain[j]}</b>"
            line = f"{names[c] if values.ndim == 2 else 'Prediction'}: {_value_text(task_type, v[j], units)}"
            if kind[j] == "none":
                head += " — not measured for this record"
                line += " (unchanged: no data, so the step was skipped)"
            elif kind[j] == "off":
                head += f" — {esc(reasons[j - 1])}"
                line += " (unchanged: this data was switched off)"
            elif j > 0:
                line += f" ({_change_text(task_type, v[j] - v[j - 1], units)})"
            extra = f"<br>{esc(sentences[j])}" if sentences is not None and j < len(sentences) and sentences[j] \
                else ""
            hover.append(f"{head}<br>{line}{extra}")
        if values.ndim == 1:
            mcolors = [PRIOR_COLOR] + [colors.get(s, PRIOR_COLOR) for s in steps[1:]]
        else:
            mcolors = [lc] * (k + 1)
        mcolors = [NONE_COLOR if kd == "none" else col for kd, col in zip(kind, mcolors)]
        lw = 3 if (values.ndim == 2 and has_truth and int(truth) == c) else 2
        traces += [
            dict(type="scatter", x=seg["ran"][0], y=seg["ran"][1], mode="lines", line=dict(color=lc, width=lw),
                 hoverinfo="skip", showlegend=False, name=f"{names[c]} (steps that ran)"),
            dict(type="scatter", x=seg["off"][0], y=seg["off"][1], mode="lines",
                 line=dict(color=lc, width=lw, dash="dash"), hoverinfo="skip", showlegend=False,
                 name=f"{names[c]} (switched off)"),
            dict(type="scatter", x=seg["none"][0], y=seg["none"][1], mode="lines",
                 line=dict(color=NONE_COLOR if values.ndim == 1 else lc, width=lw, dash="dot"),
                 hoverinfo="skip", showlegend=False, name=f"{names[c]} (not measured)"),
            dict(type="scatter", x=xs, y=[scale * float(x) for x in v], mode="markers", name=names[c],
                 marker=dict(color=mcolors, symbol=symbols, size=13, line=dict(width=2.5, color=mcolors)),
                 hovertext=hover, hoverinfo="text", showlegend=values.ndim == 2, legendrank=c + 1)]
    if has_truth:
        star = line_colors[int(truth)] if values.ndim == 2 and int(truth) < len(line_colors) else "black"
        traces.append(dict(type="scatter", x=[k + 1], y=[ty], mode="markers", name="Actual outcome",
                           marker=dict(symbol="star", size=16, color=star, line=dict(width=1, color="black")),
                           hovertext=[f"<b>Actual outcome</b><br>{esc(label)}"], hoverinfo="text",
                           showlegend=False))
    # The key to the three kinds of step, always the same three entries (the plot does not jump on a toggle).
    off_key = f"{off_name} (switched off)" if off_name == SKIPPED_BY_YOU else off_name
    for name, sym, col in (("step ran", "circle", LINE_COLOR), (off_key, "circle-open", LINE_COLOR),
                           (f"{NOT_MEASURED} for this record", "circle-x-open", NONE_COLOR)):
        traces.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=name, legend="legend2",
                           marker=dict(symbol=sym, size=11, color=col, line=dict(width=2, color=col)),
                           hoverinfo="skip", showlegend=True, legendrank=1000 + len(traces)))
    if percent:
        yaxis = dict(range=[-4, 104], ticksuffix="%", automargin=False,
                     title=dict(text="Predicted chance (%)" if task_type == "binary" else "Predicted probability (%)"))
    else:   # regression: tick numbers of unknown width; the range holds every value and the actual outcome
        shown = [float(x) for x in np.asarray(values, dtype=float).ravel() if math.isfinite(float(x))]
        shown += [ty] if has_truth else []
        lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
        pad = 0.1 * (hi - lo) or max(abs(hi) * 0.05, 1.0)
        yaxis = dict(title=dict(text=f"Prediction ({esc(units)})" if units else "Prediction"),
                     range=[lo - pad, hi + pad])
    # Fixed margins instead of automargin: the labels' size is known here (at most `lines` lines), and
    # automargin makes plotly lay the chart out a second time on every redraw (each toggle).
    lines = max(t.count("<br>") + 1 for t in ticktext)
    bottom = (30 + 15 * lines + 22) if not slanted else 130
    xaxis = dict(tickvals=tickvals, ticktext=ticktext, tickangle=-40 if slanted else 0, tickfont=dict(size=12),
                 range=[-0.5, (k + 1.5) if has_truth else k + 0.5], automargin=False,
                 title=dict(text="Step (kind of data added, in encoding order)", standoff=6))
    # Top row: the title (left) and the key to the kinds of step (right, legend2); multiclass: the classes
    # (legend) in a row of their own between that and the plot.
    top = 46
    fig = _fig(traces, None, height + (50 if values.ndim == 2 else 0), xaxis, yaxis, shapes=shapes,
               legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0, title=None,
                           font=dict(size=12), itemclick=False, itemdoubleclick=False),
               legend2=dict(orientation="h", yref="container", yanchor="top", y=1, xanchor="right", x=1,
                            font=dict(size=12), itemclick=False, itemdoubleclick=False, bgcolor="rgba(0,0,0,0)"),
               margin=dict(l=75 if percent else 10, r=30, t=top if values.ndim == 1 else top + 50, b=bottom),
               title=dict(text=esc(task_label), x=0, xanchor="left", yref="container", y=1, yanchor="top",
                          pad=dict(t=8)))
    return fig


STEP_PLOT_PX = 700      # the step chart's plot area in the Explorer at 1,280 px (sidebar open), in px
CHAR_PX = 7.0           # mean width of a character of the 12 px tick font


def _sample_scale(n: int) -> list[str]:
    """n colours from the cividis scale (multiclass lines)."""
    from plotly.colors import sample_colorscale
    # stop short of cividis' pale yellow end, which vanishes on white
    return sample_colorscale(CLASS_SCALE, [0.85 * i / max(n - 1, 1) for i in range(n)]) if n > 1 else ["#404040"]


# --- Explorer: Shapley, attributions, state -------------------------------------------------------------------
def shapley_bars(names: Sequence[str], labels: Sequence[str], values: np.ndarray, colors: dict[str, str], *,
                 task_type: str, task_label: str, units: str = "", status: dict[str, str] | None = None,
                 class_label: str | None = None, height: int | None = None) -> go.Figure:
    """Each modality's exact Shapley value for one task of one record (sums to final − prior).

    values: (E,) in probability (binary/multiclass, shown in percentage points) or in units (regression);
    status[name]: "" when used, else why not — NOT_MEASURED or e.g. SKIPPED_BY_YOU: such a row shows no bar
    but that reason, in grey, beside a greyed name with the reason as a caption."""
    values = np.asarray(values, dtype=float)
    status = status or {}
    percent = task_type in ("binary", "multiclass")
    x = values * (100.0 if percent else 1.0)
    texts, hovers, ticktext = [], [], []
    for n, l, v in zip(names, labels, values):
        why = status.get(n)
        name = esc(l)
        if why:             # no bar: the reason is the row's caption (and the hover)
            texts.append("")
            reason = "not measured for this record: no data" if why == NOT_MEASURED else f"{esc(why)}: not used"
            hovers.append(f"<b>{name}</b><br>{reason}, no contribution")
            ticktext.append(f"<span style='color:{STATUS_COLOR}'>{name}</span><br>{status_caption(why)}")
        else:
            texts.append(points(v) if percent else signed(v, esc(units)))
            hovers.append(f"<b>{name}</b><br>{texts[-1]}")
            ticktext.append(name)
    ylab = [esc(l) for l in labels]
    bar = dict(type="bar", y=ylab, x=[float(v) for v in x], orientation="h",
               marker=dict(color=[colors.get(n, PRIOR_COLOR) for n in names]), text=texts, textposition="outside",
               cliponaxis=False, hovertext=hovers, hoverinfo="text", name="Shapley")
    if percent:
        target = f"P({esc(class_label)})" if class_label else "the predicted chance"
        # a long class name would push the title past the chart's edge: the unit goes on a second line
        xt = f"Contribution to {target}" + ("<br>" if class_label else " ") + "(percentage points)"
    else:
        xt = f"Contribution ({esc(units)})" if units else "Contribution"
    span = float(np.nanmax(np.abs(x))) if len(x) and np.isfinite(x).any() else 1.0
    span = span if span > 0 else 1.0
    xaxis = dict(title=dict(text=xt), zeroline=True, zerolinecolor="#888888",
                 range=[-1.8 * span, 1.8 * span], automargin=False)
    n_status = sum(1 for n in names if status.get(n))
    # a fixed left margin from the longest name (about 7 px a character at 13 px), not automargin, which lays
    # the chart out twice on every redraw; the x range leaves room for the value labels
    left = min(320, 24 + 7 * max((len(str(l)) for l in labels), default=8))
    return _fig([bar], f"Why: {esc(task_label)}", height or 100 + 34 * len(names) + 8 * n_status, xaxis,
                dict(autorange="reversed", tickvals=ylab, ticktext=ticktext, automargin=False),
                margin=dict(l=left, r=10, t=50, b=68 if class_label else 50))


def attribution_bars(labels: Sequence[str], values: np.ndarray, raw: Sequence[str], color: str, *,
                     title: str, x_title: str, top: int = 15) -> go.Figure:
    """Signed feature attributions of one step, largest |value| first, each bar labelled with the record's
    raw value ('Heart rate = 112 beats/min'). values: (F,) in the prediction's units."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-np.abs(np.nan_to_num(values)))[:top]
    ylab = [f"{esc(labels[i])} = {esc(raw[i])}" for i in order]
    v = values[order]
    fig = go.Figure(go.Bar(y=ylab, x=v, orientation="h", marker_color=color,
                           marker_line=dict(color="#404040", width=0.5),
                           hovertext=[f"<b>{y}</b><br>attribution {number(x)}" for y, x in zip(ylab, v)],
                           hoverinfo="text", name="attribution"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title=esc(x_title), zeroline=True, zerolinecolor="#888888")
    return _layout(fig, esc(title), height=90 + 28 * len(order))


def state_heatmap(states: np.ndarray, step_labels: Sequence[str], skipped: Sequence[bool] | None = None,
                  skip_reasons: Sequence[str] | None = None) -> go.Figure:
    """The record's state after each step: rows = steps (Prior on top), columns = state dimensions.
    states: (K+1, S); skip_reasons: (K,) why a skipped step did not run (default "skipped")."""
    states = np.asarray(states, dtype=float)
    ylab = [esc(s) + (f" ({esc(skip_reasons[j - 1]) if skip_reasons is not None else 'skipped'})"
                      if skipped is not None and j > 0 and skipped[j - 1] else "")
            for j, s in enumerate(step_labels)]
    lim = float(np.nanmax(np.abs(states))) if states.size else 1.0
    fig = go.Figure(go.Heatmap(z=states, x=[str(i + 1) for i in range(states.shape[1])], y=ylab,
                               colorscale=STATE_SCALE, zmid=0, zmin=-lim, zmax=lim,
                               colorbar=dict(title="value", thickness=12),
                               hovertemplate="%{y}<br>state dimension %{x}: %{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(title="State dimension", type="category")
    return _layout(fig, "The model's state after each step", height=80 + 26 * len(step_labels))


def state_map(cohort_xy: np.ndarray, cohort_values: np.ndarray, *, outcome_type: str, outcome_label: str,
              classes: Sequence[str] | None, path_xy: np.ndarray, steps: Sequence[str],
              step_labels: Sequence[str], colors: dict[str, str], skipped: Sequence[bool],
              units: str = "", ids: Sequence[str] | None = None) -> go.Figure:
    """The record's path through the cohort's 2-D map of final states.

    cohort_xy: (N, 2); cohort_values: (N,) actual outcome (class index, NaN = unknown, or value in units);
    path_xy: (K+1, 2) the record's state after each step, projected the same way; ids: (N,) record ids, carried
    by each cohort dot as customdata [id, escaped id] (a click on a dot names its record; the hover shows it).
    The legend names the outcome ("<outcome>: <class>"), a regression's colour bar the actual value in its units.
    Only the path's start and end are labelled, with arrows pointing in opposite directions, so the two labels
    never cover each other however close the points are."""
    cohort_xy = np.asarray(cohort_xy, dtype=float)
    cohort_values = np.asarray(cohort_values, dtype=float)
    path_xy = np.asarray(path_xy, dtype=float)
    ids = [str(r) for r in ids] if ids is not None else None
    what = esc(outcome_label)

    def dots(sel, hover_value: str) -> dict:
        if ids is None:
            return dict(hoverinfo="skip")
        return dict(customdata=[[ids[i], esc(ids[i])] for i in np.flatnonzero(sel)],
                    hovertemplate=f"Record %{{customdata[1]}}<br>{hover_value}<br><i>click to open it</i>"
                                  "<extra></extra>")

    fig = go.Figure()
    known = ~np.isnan(cohort_values)
    if (~known).any():
        fig.add_trace(go.Scattergl(x=cohort_xy[~known, 0], y=cohort_xy[~known, 1], mode="markers",
                                   marker=dict(size=4, color="#E8E8E8"), name="outcome unknown",
                                   **dots(~known, f"{what}: not recorded")))
    if outcome_type == "regression":
        title = f"Actual {what} ({esc(units)})" if units else f"Actual {what}"
        fig.add_trace(go.Scattergl(x=cohort_xy[known, 0], y=cohort_xy[known, 1], mode="markers",
                                   marker=dict(size=4, color=cohort_values[known], colorscale=CLASS_SCALE,
                                               opacity=0.5, colorbar=dict(title=title, thickness=12)),
                                   name=what, legendgroup="outcome",
                                   **dots(known, f"actual {what}: %{{marker.color:.3~g}} {esc(units)}".strip())))
    else:
        cls = list(classes or [])
        n_cls = max(len(cls), int(np.nanmax(cohort_values)) + 1 if known.any() else 0)
        palette = OUTCOME_COLORS if n_cls == 2 else _sample_scale(n_cls)
        for c in range(n_cls):
            sel = known & (cohort_values == c)
            name = esc(cls[c] if c < len(cls) else str(c))
            fig.add_trace(go.Scattergl(x=cohort_xy[sel, 0], y=cohort_xy[sel, 1], mode="markers",
                                       marker=dict(size=4, color=palette[c],
                                                   opacity=OUTCOME_OPACITY if n_cls == 2 else 0.55),
                                       name=f"{what}: {name}", legendgroup="outcome",
                                       **dots(sel, f"actual {what}: {name}")))
    sk = np.asarray(skipped, dtype=bool)
    mcolors = [PRIOR_COLOR] + [colors.get(s, PRIOR_COLOR) for s in steps[1:]]
    symbols = ["square"] + ["circle-open" if s else "circle" for s in sk]
    fig.add_trace(go.Scatter(x=path_xy[:, 0], y=path_xy[:, 1], mode="lines+markers",
                             line=dict(color="black", width=1.5),
                             marker=dict(size=12, color=mcolors, symbol=symbols, line=dict(width=2, color=mcolors)),
                             name="this record, step by step",
                             hovertext=[esc(l) + (" (skipped)" if j > 0 and sk[j - 1] else "")
                                        for j, l in enumerate(step_labels)], hoverinfo="text"))
    # The start label on the side away from the end, the end label on the side away from the start (pixels).
    right = len(path_xy) < 2 or path_xy[-1, 0] >= path_xy[0, 0]
    ends = [("Start (no data)" if len(path_xy) > 1 else "Start", path_xy[0], -1 if right else 1, 1)]
    if len(path_xy) > 1:
        ends.append(("Final", path_xy[-1], 1 if right else -1, -1))
    notes = [dict(x=float(xy[0]), y=float(xy[1]), text=text, showarrow=True, arrowhead=2, arrowwidth=1.2,
                  arrowcolor=LINE_COLOR, ax=55 * sx, ay=32 * sy, font=dict(size=12, color=LINE_COLOR),
                  bgcolor="rgba(255,255,255,0.85)", borderpad=2) for text, xy, sx, sy in ends]
    fig.update_xaxes(showticklabels=False, title="map axis 1")
    fig.update_yaxes(showticklabels=False, title="map axis 2")
    return _layout(fig, f"Where this record sits among the cohort, coloured by what actually happened ({what})",
                   height=480, annotations=notes, clickmode="event+select",
                   legend=dict(orientation="h", yanchor="top", y=-0.08))


def compare_bars(task_labels: Sequence[str], mmn: Sequence[float], pf: Sequence[float],
                 mmn_all: Sequence[float] | None = None, pf_all: Sequence[float] | None = None) -> go.Figure:
    """Final risks (binary tasks) of MultiModN and P-Fusion for this record under the current toggles, and
    (lighter) with every measured modality. Inputs are probabilities."""
    fig = go.Figure()
    labels = [esc(t) for t in task_labels]
    for key, vals, alls in (("multimodn", mmn, mmn_all), ("pfusion", pf, pf_all)):
        fig.add_trace(go.Bar(x=labels, y=[100 * v for v in vals], name=f"{MODEL_NAMES[key]} (your toggles)",
                             marker_color=MODEL_COLORS[key], text=[pct(v) for v in vals],
                             textposition="outside", cliponaxis=False))
        if alls is not None:
            fig.add_trace(go.Bar(x=labels, y=[100 * v for v in alls], name=f"{MODEL_NAMES[key]} (all measured data)",
                                 marker=dict(color="white", line=dict(color=MODEL_COLORS[key], width=2)),
                                 text=[pct(v) for v in alls], textposition="outside", cliponaxis=False))
    fig.update_yaxes(range=[0, 110], ticksuffix="%", title="Predicted chance (%)")
    return _layout(fig, "Same record, both models", height=420, barmode="group",
                   legend=dict(orientation="h", yanchor="top", y=-0.12))


# --- model card and cohort -------------------------------------------------------------------------------------
def presence_bars(names: Sequence[str], labels: Sequence[str], fractions: Sequence[float],
                  colors: dict[str, str]) -> go.Figure:
    """Fraction of records in which each modality was measured."""
    f = np.asarray(fractions, dtype=float)
    fig = go.Figure(go.Bar(y=[esc(l) for l in labels], x=100 * f, orientation="h",
                           marker_color=[colors.get(n, PRIOR_COLOR) for n in names],
                           text=[pct(v) for v in f], textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: measured in %{x:.0f}% of records<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, 112], ticksuffix="%", title="Records in which it was measured")
    return _layout(fig, "How often each kind of data is present", height=80 + 30 * len(names))


METRIC_LABELS = {"auroc": "AUROC", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy",
                 "mae": "mean absolute error", "rmse": "RMSE", "r2": "R²"}


def metric_heatmap(matrix: dict, task_names: Sequence[str], task_labels: Sequence[str],
                   step_labels: Sequence[str], metrics: dict[str, str]) -> go.Figure:
    """Per-step × per-task test metric: rows = tasks ('Death (AUROC)'), columns = after each step.

    matrix: {"steps": [...], "tasks": {task: {metric: [value per step]}}}; metrics[task]: metric shown."""
    z, text, ylab = [], [], []
    for n, l in zip(task_names, task_labels):
        m = metrics[n]
        row = [float(v) if v is not None else math.nan for v in matrix["tasks"][n][m]]
        z.append(row)
        text.append(["–" if math.isnan(v) else f"{v:.2f}" for v in row])
        ylab.append(f"{esc(l)} ({METRIC_LABELS.get(m, m)})")
    fig = go.Figure(go.Heatmap(z=z, x=[esc(s) for s in step_labels], y=ylab, text=text, texttemplate="%{text}",
                               colorscale=CLASS_SCALE, zmin=0.5 if all(metrics[n] == "auroc" for n in task_names)
                               else None, zmax=1.0 if all(metrics[n] in ("auroc", "accuracy", "balanced_accuracy")
                                                          for n in task_names) else None,
                               colorbar=dict(thickness=12),
                               hovertemplate="%{y}<br>after %{x}: %{text}<extra></extra>"))
    # Names wrapped at word boundaries and kept horizontal (slanted one-line step names overlapped and took the
    # height the rows needed); outcome names wrapped too, so that the cells get the width.
    n = max(len(step_labels), 1)
    ticks = [wrap(s, max(10, min(20, int(130 / n)))) for s in step_labels]
    lines = max(t.count("<br>") + 1 for t in ticks) if ticks else 1
    fig.update_yaxes(autorange="reversed", tickvals=ylab,
                     ticktext=[wrap(l, 24) + f"<br>({METRIC_LABELS.get(metrics[n_], metrics[n_])})"
                               for n_, l in zip(task_names, task_labels)])
    fig.update_xaxes(title="After step", type="category", tickangle=0, tickvals=[esc(s) for s in step_labels],
                     ticktext=ticks, tickfont=dict(size=11))
    return _layout(fig, "Test performance after each step", height=130 + 14 * lines + 50 * len(task_names))


def history_chart(histories: dict[str, list[dict]]) -> go.Figure:
    """Training (solid) and validation (dashed) loss per epoch, one colour per model kind."""
    fig = go.Figure()
    for kind, rows in histories.items():
        color = MODEL_COLORS.get(kind, LINE_COLOR)
        name = MODEL_NAMES.get(kind, kind)
        ep = [r["epoch"] for r in rows]
        fig.add_trace(go.Scatter(x=ep, y=[r["train_loss"] for r in rows], mode="lines+markers",
                                 name=f"{name}: training", line=dict(color=color), marker=dict(size=5)))
        if rows and "val_loss" in rows[0]:
            fig.add_trace(go.Scatter(x=ep, y=[r.get("val_loss") for r in rows], mode="lines+markers",
                                     name=f"{name}: validation", line=dict(color=color, dash="dash"),
                                     marker=dict(size=5, symbol="circle-open")))
    fig.update_xaxes(title="Epoch")
    fig.update_yaxes(title="Loss (lower is better)")
    return _layout(fig, "Training history", height=320)


def importance_ranges(names: Sequence[str], labels: Sequence[str], q10: Sequence[float], q50: Sequence[float],
                      q90: Sequence[float], mean_abs: Sequence[float], colors: dict[str, str], *, task_type: str,
                      task_label: str, units: str = "") -> go.Figure:
    """Each modality's Shapley contribution over the cohort, as a distribution: the bar spans the middle 80 % of
    records (10th–90th percentile), the dot is the median; the hover adds the mean absolute contribution.
    Values in probability (binary/multiclass, shown in points) or in units (regression)."""
    scale = 100.0 if task_type in ("binary", "multiclass") else 1.0
    lo, mid, hi = (np.asarray(a, dtype=float) * scale for a in (q10, q50, q90))
    ma = np.asarray(mean_abs, dtype=float) * scale
    ylab = [esc(l) for l in labels]
    cols = [colors.get(n, PRIOR_COLOR) for n in names]
    unit = "points" if scale == 100.0 else esc(units)
    fig = go.Figure()
    fig.add_trace(go.Bar(y=ylab, x=hi - lo, base=lo, orientation="h", marker_color=cols, opacity=0.55,
                         name="middle 80% of records",
                         hovertext=[f"<b>{y}</b><br>10th–90th percentile: {number(a)} to {number(c)} {unit}<br>"
                                    f"median {number(m)} {unit}; mean size {number(s)} {unit}"
                                    for y, a, m, c, s in zip(ylab, lo, mid, hi, ma)], hoverinfo="text"))
    fig.add_trace(go.Scatter(y=ylab, x=mid, mode="markers", name="median record",
                             marker=dict(color="black", size=9, symbol="line-ns-open", line=dict(width=3)),
                             hoverinfo="skip"))
    fig.add_vline(x=0, line_color="#888888")
    xt = "Contribution to the predicted chance (percentage points)" if scale == 100.0 else \
        (f"Contribution ({esc(units)})" if units else "Contribution")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title=xt)
    return _layout(fig, f"What the model relies on: {esc(task_label)}", height=110 + 34 * len(names),
                   legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))


def spread_histogram(spread: np.ndarray, *, task_type: str, units: str = "") -> go.Figure:
    """How much each record's final prediction moves when only the encoding order changes (max − min)."""
    scale = 100.0 if task_type in ("binary", "multiclass") else 1.0
    v = np.asarray(spread, dtype=float) * scale
    fig = go.Figure(go.Histogram(x=v, nbinsx=40, marker_color=LINE_COLOR, name="records"))
    fig.update_xaxes(title="Spread of the final prediction over encoding orders "
                           + ("(percentage points)" if scale == 100.0 else f"({esc(units)})" if units else ""))
    fig.update_yaxes(title="Records")
    return _layout(fig, "Does the order of the data change the answer?", height=320)


def order_chart(labels: Sequence[str], values: Sequence[float], *, x_title: str, title: str,
                reference: float | None = None) -> go.Figure:
    """A metric per encoder order as dots on a zoomed axis (bars from zero would hide differences of a few
    hundredths); `reference` = the dataset's own order, drawn as a dotted line."""
    v = np.asarray(values, dtype=float)
    fig = go.Figure(go.Scatter(y=[esc(l) for l in labels], x=v, mode="markers+text", marker=dict(size=11,
                               color=LINE_COLOR), text=[number(x, 3) for x in v], textposition="middle right",
                               hovertemplate="%{y}: %{x:.3f}<extra></extra>", name="order"))
    if reference is not None and not math.isnan(reference):
        fig.add_vline(x=reference, line_dash="dot", line_color="black")
    finite = v[np.isfinite(v)]
    if len(finite):
        span = max(float(finite.max() - finite.min()), 0.01)
        fig.update_xaxes(range=[float(finite.min()) - 0.3 * span, float(finite.max()) + 0.6 * span])
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title=esc(x_title))
    return _layout(fig, esc(title), height=100 + 30 * len(labels), showlegend=False)


# --- MNAR lab --------------------------------------------------------------------------------------------------
def mnar_chart(result: dict, metric: str = "auroc") -> go.Figure:
    """AUROC (or another metric) vs MNAR rate: clean test solid, reversed test dashed; MultiModN and P-Fusion in
    their fixed colours; ± one standard deviation over folds as error bars; the no-shortcut ceiling dotted."""
    fig = go.Figure()
    rows = result["results"]
    for kind in KINDS:
        for test, dash in (("clean", "solid"), ("reversed", "dash")):
            sel = sorted((r for r in rows if r["model"] == kind and r["test"] == test), key=lambda r: r["rate"])
            if not sel:
                continue
            fig.add_trace(go.Scatter(
                x=[100 * r["rate"] for r in sel], y=[r[metric] for r in sel], mode="lines+markers",
                name=f"{MODEL_NAMES[kind]} · {test} test", line=dict(color=MODEL_COLORS[kind], dash=dash, width=2.5),
                marker=dict(size=8, symbol="circle" if test == "clean" else "diamond-open"),
                error_y=dict(type="data", array=[r.get(f"{metric}_std", 0) or 0 for r in sel], thickness=1,
                             width=4, color=MODEL_COLORS[kind]),
                hovertemplate=f"{MODEL_NAMES[kind]}, {test} test<br>rate %{{x:.0f}}%: %{{y:.3f}}<extra></extra>"))
    for kind, sel in (result.get("ceiling") or {}).items():
        sel = sorted(sel, key=lambda r: r["rate"])
        if sel and kind in MODEL_COLORS:
            fig.add_trace(go.Scatter(x=[100 * r["rate"] for r in sel], y=[r[metric] for r in sel], mode="lines",
                                     name=f"{MODEL_NAMES[kind]} trained without missingness · reversed test",
                                     line=dict(color=MODEL_COLORS[kind], dash="dot", width=1.5), opacity=0.7))
    fig.update_xaxes(title="Share of the training records with the outcome that lost this data (%)", ticksuffix="%")
    fig.update_yaxes(title=METRIC_LABELS.get(metric, metric) + " on the test set")
    return _layout(fig, "Performance as missingness becomes more informative", height=440,
                   legend=dict(orientation="h", yanchor="top", y=-0.2))


RUN_SYMBOLS = ("square", "triangle-up", "cross", "x", "star")


def mnar_overlay(runs: Sequence[tuple[str, dict]], metric: str = "auroc") -> go.Figure:
    """Several MNAR runs on one chart. `runs`: [(label, run_mnar result)], oldest first. The newest is drawn as
    mnar_chart draws one run (same trace names, its ceiling dotted); each earlier one adds its clean and
    reversed lines, fainter, with its own marker, in a legend group "Run n" (n: its place in `runs`, 1 = oldest;
    the labels are listed beside the chart)."""
    *earlier, (label, newest) = runs
    fig = mnar_chart(newest, metric)
    if not earlier:
        return fig
    for tr in fig.data:              # short group titles: the page lists each run's full settings by number
        tr.update(legendgroup="run-newest", legendgrouptitle_text=f"Run {len(runs)} (latest)")
    for i, (lab, result) in enumerate(reversed(earlier)):
        n = len(earlier) - i
        for kind in KINDS:
            for test, dash in (("clean", "solid"), ("reversed", "dash")):
                sel = sorted((r for r in result["results"] if r["model"] == kind and r["test"] == test),
                             key=lambda r: r["rate"])
                if not sel:
                    continue
                fig.add_trace(go.Scatter(
                    x=[100 * r["rate"] for r in sel], y=[r[metric] for r in sel], mode="lines+markers",
                    name=f"{MODEL_NAMES[kind]} · {test} test (run {n})", legendgroup=f"run-{n}",
                    legendgrouptitle_text=f"Run {n}", opacity=0.55,
                    line=dict(color=MODEL_COLORS[kind], dash=dash, width=1.5),
                    marker=dict(size=7, symbol=RUN_SYMBOLS[(n - 1) % len(RUN_SYMBOLS)]),
                    hovertemplate=esc(f"Run {n}: {lab}") + f"<br>{MODEL_NAMES[kind]}, {test} test"
                                  "<br>rate %{x:.0f}%: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=480 + 110 * len(earlier), margin=dict(b=40),
                      legend=dict(orientation="h", yanchor="top", y=-0.3, groupclick="toggleitem"))
    return fig


# --- how much to trust this; what to measure next; faithfulness per method -------------------------------------
def _shown(task_type: str, v) -> np.ndarray:
    """Values as drawn: probabilities in %, regression as is."""
    return np.asarray(v, dtype=float) * (100.0 if task_type in ("binary", "multiclass") else 1.0)


def _value_axis(task_type: str, units: str, what: str = "Prediction") -> dict:
    if task_type in ("binary", "multiclass"):
        return dict(title=dict(text=f"{what} (%)"), ticksuffix="%", range=[-4, 104])
    return dict(title=dict(text=f"{what} ({esc(units)})" if units else what))


def trust_curve(removed_labels: Sequence[str], removed: Sequence[str], deletion: np.ndarray, random: np.ndarray,
                colors: dict[str, str], *, task_type: str, units: str = "", title: str = "",
                method_label: str = "Exact Shapley order", height: int = 260) -> go.Figure:
    """One record's deletion curve: the prediction after removing the top 0..p modalities in the method's
    order (solid; each dot in the removed modality's colour, as in the Why bars, its name in the hover)
    against the mean over random orders (dashed).
    deletion, random: (p+1,) binary P(positive) / multiclass P(class) / regression units; removed: (p,)."""
    d, r = _shown(task_type, deletion), _shown(task_type, random)
    p = len(d) - 1
    if len(r) != p + 1 or len(removed) != p or len(removed_labels) != p:
        raise ValueError(f"curves of {len(d)} and {len(r)} points do not match {len(removed)} removals")
    val = (lambda v: pct(v / 100)) if task_type in ("binary", "multiclass") else (lambda v: with_units(v, esc(units)))
    hover = ["<b>All its data</b><br>" + val(d[0])] + [
        f"<b>Without the top {j}</b> (removed last: {esc(removed_labels[j - 1])})<br>in this order: {val(d[j])}"
        f"<br>in a random order (mean): {val(r[j])}" for j in range(1, p + 1)]
    traces = [
        dict(type="scatter", x=list(range(p + 1)), y=r.tolist(), mode="lines+markers", name="random order (mean)",
             line=dict(color=PRIOR_COLOR, dash="dash", width=2), marker=dict(size=6, color=PRIOR_COLOR),
             hoverinfo="skip"),
        dict(type="scatter", x=list(range(p + 1)), y=d.tolist(), mode="lines+markers", name=esc(method_label),
             line=dict(color=LINE_COLOR, width=2.5),
             marker=dict(size=11, color=[PRIOR_COLOR] + [colors.get(m, PRIOR_COLOR) for m in removed],
                         line=dict(width=1, color=LINE_COLOR)), hovertext=hover, hoverinfo="text")]
    yaxis = _value_axis(task_type, units, "Predicted chance" if task_type == "binary" else "Prediction")
    return _fig(traces, esc(title) if title else None, height,
                dict(tickvals=list(range(p + 1)), tickfont=dict(size=11), automargin=False,
                     title=dict(text="Kinds of data removed", standoff=4), range=[-0.4, p + 0.4]),
                yaxis, margin=dict(l=60, r=10, t=40 if title else 10, b=48),
                legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0, font=dict(size=11)))


def outcome_spread(names: Sequence[str], labels: Sequence[str], outcomes: Sequence[np.ndarray], current,
                   colors: dict[str, str], *, task_type: str, units: str = "", title: str = "",
                   threshold: float | None = 0.5, actual: Sequence[float] | None = None) -> go.Figure:
    """What measuring each candidate modality could do to one record's prediction: one row per modality (ranked,
    top first), a box over its K possible outcomes with every outcome as a dot, the current prediction as a
    solid line, the decision threshold (binary) dotted; `actual` (hindsight): the true value as a star.
    current: the prediction now (one value), or one per row (hindsight: without that modality) drawn as ticks.
    outcomes[i]: (K,) in the estimate's scalar (binary P(positive), multiclass P(current class), units)."""
    if len(outcomes) != len(names) or len(labels) != len(names):
        raise ValueError(f"{len(outcomes)} outcome sets for {len(names)} modalities")
    ylab = [esc(l) for l in labels]
    val = (lambda v: _value_text(task_type, v, units))
    traces = []
    for n, y, o in zip(names, ylab, outcomes):
        o = np.asarray(o, dtype=float)
        traces.append(dict(type="box", x=_shown(task_type, o).tolist(), y=[y] * len(o), orientation="h", name=y,
                           marker=dict(color=colors.get(n, PRIOR_COLOR), size=5, opacity=0.6),
                           line=dict(color=colors.get(n, PRIOR_COLOR)), fillcolor="rgba(0,0,0,0)",
                           boxpoints="all", jitter=0.5, pointpos=0, showlegend=False, hoverinfo="skip"))
    if actual is not None:
        traces.append(dict(type="scatter", x=_shown(task_type, actual).tolist(), y=ylab, mode="markers",
                           name="its real value", marker=dict(symbol="star", size=15, color="black"),
                           hovertext=[f"<b>{y}</b><br>with its real value: {val(a)}" for y, a in zip(ylab, actual)],
                           hoverinfo="text"))
    curs = np.atleast_1d(np.asarray(current, dtype=float))
    cur = float(_shown(task_type, curs[:1])[0])
    shapes, notes = [], []
    if len(curs) > 1 and not np.allclose(curs, curs[0]):
        # hindsight: each row's "now" is the prediction without that modality, so one line would be wrong for all
        # rows but one; a tick per row instead
        traces.append(dict(type="scatter", x=_shown(task_type, curs).tolist(), y=ylab, mode="markers",
                           name="without it", marker=dict(symbol="line-ns-open", size=22, color=LINE_COLOR,
                                                          line=dict(width=3, color=LINE_COLOR)),
                           hovertext=[f"<b>{y}</b><br>without it: {val(c)}" for y, c in zip(ylab, curs)],
                           hoverinfo="text"))
    else:
        shapes.append(dict(type="line", xref="x", yref="paper", x0=cur, x1=cur, y0=0, y1=1,
                           line=dict(color=LINE_COLOR, width=2)))
        notes.append(dict(x=cur, y=1, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                          text=f"now {val(float(curs[0]))}", font=dict(size=11)))
    if threshold is not None and task_type == "binary":
        shapes.append(dict(type="line", xref="x", yref="paper", x0=100 * threshold, x1=100 * threshold, y0=0, y1=1,
                           line=dict(color=PRIOR_COLOR, width=1, dash="dot")))
    # zoomed on the outcomes (a spread of a few points is the message; 0-100 % would flatten it), the threshold
    # kept in view when it is near them
    shown = np.concatenate([_shown(task_type, o) for o in outcomes] + [_shown(task_type, curs)] +
                           ([_shown(task_type, actual)] if actual is not None else []))
    shown = shown[np.isfinite(shown)]
    lo, hi = (float(shown.min()), float(shown.max())) if len(shown) else (0.0, 1.0)
    pct_axis = task_type in ("binary", "multiclass")
    if threshold is not None and task_type == "binary" and lo - 15 <= 100 * threshold <= hi + 15:
        lo, hi = min(lo, 100 * threshold), max(hi, 100 * threshold)
    pad = max(0.12 * (hi - lo), 2.0 if pct_axis else 0.05 * max(abs(hi), 1.0))
    rng = [max(lo - pad, -1.0), min(hi + pad, 101.0)] if pct_axis else [lo - pad, hi + pad]
    xaxis = {**_value_axis(task_type, units, "Prediction after measuring it"), "range": rng}
    left = min(300, 24 + 7 * max((len(str(l)) for l in labels), default=8))
    return _fig(traces, esc(title) if title else None, 90 + 46 * len(names), xaxis,
                dict(autorange="reversed", automargin=False, type="category"), shapes=shapes, annotations=notes,
                margin=dict(l=left, r=20, t=(46 if title else 26), b=50), showlegend=actual is not None,
                legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))


METHOD_LABELS = {"shapley": "Exact Shapley", "leave_one_out": "Leave one out", "step_delta": "Change at its step",
                 "ig": "Integrated Gradients (per kind of data)", "shapley_sampling": "Shapley sampling (Captum)",
                 "random": "Random order (baseline)"}
# each ≥ 3:1 on white (Okabe-Ito's orange #E69F00, 2.3:1, became the palette's ochre)
METHOD_COLORS = {"shapley": "#0072B2", "leave_one_out": OKABE_ITO[0], "step_delta": "#009E73", "ig": "#CC79A7",
                 "shapley_sampling": "#D55E00", "random": PRIOR_COLOR}


def faithfulness_curves(curves: dict[str, np.ndarray], *, title: str, height: int = 360) -> go.Figure:
    """Mean deletion curves over a cohort sample: the prediction's support (toward each record's own
    prediction, 0–1) after removing the top k kinds of data in each method's order; random dashed."""
    traces = []
    for m, c in curves.items():
        c = 100 * np.asarray(c, dtype=float)
        rnd = m == "random"
        traces.append(dict(type="scatter", x=list(range(len(c))), y=c.tolist(), mode="lines+markers",
                           name=esc(METHOD_LABELS.get(m, m)),
                           line=dict(color=METHOD_COLORS.get(m, LINE_COLOR), dash="dash" if rnd else "solid",
                                     width=2.5 if m == "shapley" else 1.8),
                           marker=dict(size=6), hovertemplate="%{y:.0f}% after removing %{x}<extra>"
                           + esc(METHOD_LABELS.get(m, m)) + "</extra>"))
    return _fig(traces, esc(title), height,
                dict(title=dict(text="Kinds of data removed (most important first, by each method)"), dtick=1),
                dict(title=dict(text="P(the predicted outcome) (%)"), ticksuffix="%"),
                legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02, font=dict(size=12)),
                margin=dict(l=70, r=10, t=50, b=50))


# --- Presentation mode: one record, one task, step by step (large type; the same traces on every step) --------
BIG_FONT = dict(family=FONT["family"], size=17)
# No plotly transition: a 150 ms one delayed the redrawn slide past the step budget (benchmarks/present_speed.md);
# the slide is a stepped fragment whose new point and ring appear at once.
TRANSITION = dict(duration=0)


def present_step_chart_height(n_steps: int, with_truth: bool) -> int:
    """Pixels of the ladder (30 a row): the map beside it takes the same height."""
    return 70 + 30 * (n_steps + int(with_truth))


def present_step_chart(step_labels: Sequence[str], steps: Sequence[str], values: np.ndarray,
                       status: Sequence[str], upto: int, *, task_type: str, units: str = "",
                       colors: dict[str, str], truth: float | None = None, truth_text: str = "",
                       height: int | None = None) -> go.Figure:
    """The prediction after steps 0..upto of one record, as a ladder read top to bottom: one row per step
    (the names horizontal and whole, so they fit beside a map at 1,280 px), the prediction along x. values:
    (K+1,) the task's scalar (probability or units); status: (K+1,) "prior" / "ran" / "not measured" /
    "switched off". Rows still to come are listed in grey; the current one is bold and its dot carries the
    value in large type. `truth` (binary 0/1, regression a value) adds a last row with the actual outcome.
    The markers trace ("prediction after each step") holds x = the values shown (binary in %)."""
    values = np.asarray(values, dtype=float)
    k = len(values) - 1
    if len(step_labels) != k + 1 or len(status) != k + 1 or len(steps) != k + 1:
        raise ValueError("step_labels, steps, status and values must have one entry per step")
    upto = min(max(int(upto), 0), k)
    percent = task_type != "regression"
    scale = 100.0 if percent else 1.0
    rows = list(range(upto + 1))
    xs = [scale * float(v) for v in values[:upto + 1]]
    mcol = [PRIOR_COLOR] + [STATUS_COLOR if status[j] != "ran" else colors.get(steps[j], PRIOR_COLOR)
                            for j in range(1, k + 1)]
    sym = ["circle" if s in ("prior", "ran") else "circle-x-open" for s in status]
    ticks = []
    for j, lab in enumerate(step_labels):
        text = wrap(lab, 22).replace("<br>", " ") if len(lab) <= 24 else wrap(lab, 22)
        if status[j] == "not measured":
            text += " <i>(not measured)</i>"
        elif status[j] == "switched off":
            text += " <i>(switched off)</i>"
        ticks.append(f"<b>{text}</b>" if j == upto else text if j < upto
                     else f"<span style='color:{STATUS_COLOR}'>{text}</span>")
    tickvals = list(range(k + 1))
    traces = [dict(type="scatter", x=xs, y=rows, mode="lines", line=dict(color=LINE_COLOR, width=3),
                   hoverinfo="skip", showlegend=False, name="prediction so far"),
              dict(type="scatter", x=xs, y=rows, mode="markers+text", name="prediction after each step",
                   marker=dict(color=mcol[:upto + 1], symbol=sym[:upto + 1], size=[13] * upto + [22],
                               line=dict(width=2, color=mcol[:upto + 1])),
                   # regression: the number alone (the unit is in the axis title), so the label fits the plot
                   text=[""] * upto + [f"<b>{pct(values[upto]) if percent else number(values[upto])}</b>"],
                   textposition="middle right", textfont=dict(size=24, color="#000000"), cliponaxis=False,
                   hoverinfo="text", showlegend=False,
                   hovertext=[f"{esc(step_labels[j])}: {_value_text(task_type, values[j], units)}" for j in rows])]
    shown = [float(v) * scale for v in values if math.isfinite(float(v))]
    if truth is not None and math.isfinite(float(truth)) and task_type in ("binary", "regression"):
        tx = 100.0 * float(truth) if task_type == "binary" else float(truth)
        tickvals.append(k + 1)
        ticks.append(f"<b>What actually happened: {esc(truth_text)}</b>")
        traces.append(dict(type="scatter", x=[tx], y=[k + 1], mode="markers", name="actual outcome",
                           marker=dict(symbol="star", size=20, color="#000000"), hoverinfo="text",
                           hovertext=[f"What actually happened: {esc(truth_text)}"], showlegend=False))
        shown.append(tx)
    if percent:
        xaxis = dict(range=[-4, 118], tickvals=[0, 25, 50, 75, 100], side="top",
                     ticktext=["0%", "25%", "50%", "75%", "100%"],
                     title=dict(text="Predicted probability"), automargin=False)
    else:
        lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
        pad = 0.1 * (hi - lo) or max(abs(hi) * 0.05, 1.0)
        xaxis = dict(range=[lo - pad, hi + 3.5 * pad], side="top", automargin=False,
                     title=dict(text=f"Prediction ({esc(units)})" if units else "Prediction"))
    yaxis = dict(tickvals=tickvals, ticktext=ticks, autorange=False, range=[max(tickvals) + 0.6, -0.6],
                 tickfont=dict(size=15), showgrid=True, automargin=True)
    height = height or present_step_chart_height(k + 1, len(tickvals) > k + 1)
    return _fig(traces, None, height, xaxis, yaxis, font=BIG_FONT, transition=TRANSITION,
                margin=dict(l=10, r=45, t=60, b=10))          # r: room for "100%" beside the last dot


def present_state_map(cohort_xy: np.ndarray, cohort_values: np.ndarray, *, outcome_type: str,
                      classes: Sequence[str] | None, path_xy: np.ndarray, upto: int, steps: Sequence[str],
                      status: Sequence[str], colors: dict[str, str], units: str = "",
                      height: int = 380) -> go.Figure:
    """The record's state after steps 0..upto on the cohort's 2-D map (cohort_xy (N, 2): other records' final
    states; cohort_values (N,) their actual outcome: class index or value, NaN unknown; path_xy (K+1, 2))."""
    cohort_xy = np.asarray(cohort_xy, dtype=float)
    vals = np.asarray(cohort_values, dtype=float)
    path = np.asarray(path_xy, dtype=float)
    upto = min(max(int(upto), 0), len(path) - 1)
    known = np.isfinite(vals)
    traces = []
    if outcome_type == "regression":
        traces.append(dict(type="scattergl", x=cohort_xy[known, 0], y=cohort_xy[known, 1], mode="markers",
                           marker=dict(size=6, color=vals[known], colorscale=CLASS_SCALE, opacity=0.45,
                                       colorbar=dict(title=dict(text=f"actual ({esc(units)})" if units else "actual",
                                                                side="top"),
                                                     orientation="h", thickness=8, len=0.8, y=-0.06,
                                                     yanchor="top")),
                           hoverinfo="skip", name="other records (actual outcome)"))
    else:
        cls = list(classes or [])
        n_cls = max(len(cls), int(np.nanmax(vals)) + 1 if known.any() else 0)
        palette = OUTCOME_COLORS if n_cls == 2 else _sample_scale(n_cls)
        for c in range(n_cls):
            sel = known & (vals == c)
            traces.append(dict(type="scattergl", x=cohort_xy[sel, 0], y=cohort_xy[sel, 1], mode="markers",
                               marker=dict(size=4, color=palette[c], opacity=OUTCOME_OPACITY if n_cls == 2
                                           else 0.45), hoverinfo="skip",
                               name=f"actual: {esc(cls[c] if c < len(cls) else c)}", legendgroup="outcome"))
    mcol = [PRIOR_COLOR] + [colors.get(s, PRIOR_COLOR) for s in steps[1:]]
    ran = [j for j in range(upto + 1) if status[j] in ("prior", "ran")]
    traces.append(dict(type="scatter", x=path[ran, 0], y=path[ran, 1], mode="lines", hoverinfo="skip",
                       line=dict(color="#FFFFFF", width=8), name="(halo)", showlegend=False))
    traces.append(dict(type="scatter", x=path[ran, 0], y=path[ran, 1], mode="lines+markers",
                       line=dict(color="#000000", width=3), name="this record so far",
                       marker=dict(size=15, color=[mcol[j] for j in ran], line=dict(width=2, color="#FFFFFF")),
                       hoverinfo="skip", showlegend=False))
    traces.append(dict(type="scatter", x=[path[upto, 0]], y=[path[upto, 1]], mode="markers",
                       name="this record now", marker=dict(size=34, color="rgba(255,255,255,0.35)",
                                                           line=dict(width=4, color="#000000")),
                       hoverinfo="skip", showlegend=True))
    # Zoomed on the whole path (all steps, so the view does not jump while stepping): one record's states move
    # little against the spread of a cohort; the cohort stays visible around it for orientation.
    c_lo, c_hi = np.nanmin(cohort_xy, 0), np.nanmax(cohort_xy, 0)
    p_lo, p_hi = np.nanmin(path, 0), np.nanmax(path, 0)
    half = np.maximum(0.75 * (p_hi - p_lo), 0.2 * (c_hi - c_lo)) + 0.06 * (c_hi - c_lo) + 1e-9
    mid = (p_lo + p_hi) / 2
    lo, hi = mid - half, mid + half
    ax = dict(showticklabels=False, showgrid=False, zeroline=False)
    # the colour bar of a regression sits under the map, where the axis title would be
    xa = dict(ax, range=[lo[0], hi[0]],
              title=None if outcome_type == "regression" else "records the model sees as similar lie close")
    ya = dict(ax, range=[lo[1], hi[1]], title=None)
    return _fig(traces, None, max(height, 400), xa, ya, font=BIG_FONT, transition=TRANSITION,
                legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, font=dict(size=14)),
                margin=dict(l=10, r=10, t=40, b=90 if outcome_type == "regression" else 40))


# --- Explorer: a what-if path over the step chart -----------------------------------------------------------------
WHATIF_COLOR = "#762A83"          # deep purple: apart from the grey step line and the modality markers; 9:1 on white


def what_if_path(fig: go.Figure, original: np.ndarray, edited: np.ndarray, *, task_type: str, units: str = "",
                 classes: Sequence[str] | None = None, name: str = "what-if") -> go.Figure:
    """A copy of a `step_chart` with the edited record's path drawn over it (the original is left as it is).

    original / edited: (K+1,) — binary P(positive), regression in units — or (K+1, C) class probabilities, the
    same steps as the chart; name: the key's text (user text, escaped here). Diamonds on a dash-dot line in
    WHATIF_COLOR (multiclass: one line per class in the chart's class colours); hover = the value and its change
    from the original at that step."""
    original, edited = np.asarray(original, dtype=float), np.asarray(edited, dtype=float)
    if original.shape != edited.shape:
        raise ValueError(f"original {original.shape} and edited {edited.shape} paths differ in shape")
    scale = 100.0 if task_type in ("binary", "multiclass") else 1.0
    xs = list(range(original.shape[0]))
    one = original.ndim == 1
    series = [(original, edited)] if one else [(original[:, c], edited[:, c]) for c in range(original.shape[1])]
    colors = [WHATIF_COLOR] if one else _sample_scale(len(series))
    labels = [""] if one else [f"{esc(c)}: " for c in (classes or [f"class {c + 1}" for c in range(len(series))])]
    out = go.Figure(fig)
    for (o, e), col, lab in zip(series, colors, labels):
        hover = [f"<b>{esc(name)}</b><br>{lab}{_value_text(task_type, e[j], units)} (was "
                 f"{_value_text(task_type, o[j], units)}: {_change_text(task_type, e[j] - o[j], units)})"
                 for j in xs]
        out.add_trace(go.Scatter(x=xs, y=[scale * float(v) for v in e], mode="lines+markers", hovertext=hover,
                                 hoverinfo="text", showlegend=False, name=f"{lab}{esc(name)}",
                                 line=dict(color=col, width=2, dash="dashdot"),
                                 marker=dict(symbol="diamond", size=9, color=col, line=dict(width=1, color="white"))))
    if task_type == "regression":       # the range was fitted to the original path: widen it to hold both
        lo, hi = fig.layout.yaxis.range or (None, None)
        if lo is not None:
            shown = np.concatenate([edited.ravel(), [lo, hi]])
            pad = 0.05 * (shown.max() - shown.min()) or 1.0
            out.update_yaxes(range=[min(lo, edited.min() - pad), max(hi, edited.max() + pad)])
    # the key in the first legend (the row above the plot), not beside the kinds of step: that row is full
    out.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=esc(name),
                             line=dict(color=WHATIF_COLOR, width=2, dash="dashdot"),
                             marker=dict(symbol="diamond", size=9, color=WHATIF_COLOR), hoverinfo="skip",
                             showlegend=True, legendrank=2000))
    if one:                             # a binary / regression chart had no such row: make room for it
        out.update_layout(height=(fig.layout.height or 340) + 26, margin_t=(fig.layout.margin.t or 46) + 26)
    return out


# --- Compare two records: the Explorer's charts on axes shared by both sides -----------------------------------
def aligned_step_chart(steps: Sequence[str], step_labels: Sequence[str], values: np.ndarray,
                       skipped: Sequence[bool], *, value_range: tuple[float, float], task_type: str,
                       y_title: str | None = None, height: int = 300, **kw) -> go.Figure:
    """`step_chart` of one side of a comparison, for a half-width column: the value axis is `value_range`
    (probability 0..1, or the target's units), the same on both sides; the step names are one slanted line each
    (a dozen wrapped names do not fit side by side), grey where the step did not run; the key to the markers is
    left to the page (once for both sides). values: (K+1,); other arguments as in `step_chart`."""
    fig = step_chart(steps, step_labels, values, skipped, task_type=task_type, height=height, **kw)
    lo, hi = (float(x) for x in value_range)
    percent = task_type in ("binary", "multiclass")
    rng = [100.0 * lo - 4, 100.0 * hi + 4] if percent else [lo, hi]
    ticks = [esc(s) if j == 0 or not skipped[j - 1] else f"<span style='color:{STATUS_COLOR}'>{esc(s)}</span>"
             for j, s in enumerate(step_labels)]
    old = list(fig.layout.xaxis.ticktext)
    if len(old) > len(ticks):                                   # the actual outcome's column
        ticks.append(old[-1].replace("<br>", " ", 1))
    for t in fig.data:
        if t.legend == "legend2":
            t.showlegend = False
    longest = max((len(str(s)) for s in step_labels), default=8)
    fig.update_xaxes(ticktext=ticks, tickangle=-45, tickfont=dict(size=11), title=None)
    fig.update_yaxes(range=rng, **({"title": dict(text=esc(y_title))} if y_title else {}))
    # a slanted label reaches down and to the left by about 0.7 × its length in px (6 px a character)
    drop = int(0.7 * 6 * longest) + 20
    fig.update_layout(margin=dict(b=drop, l=max(75 if percent else 10, drop - 40), t=36), height=height + drop - 60)
    return fig


PAIR_BAR_ROOM = 1.5       # a comparison's Why bars run ±1.5 × the largest |value| of either side (room for labels)


def aligned_shapley_bars(names: Sequence[str], labels: Sequence[str], values: np.ndarray, colors: dict[str, str],
                         *, span: float, task_type: str, status: dict[str, str] | None = None,
                         **kw) -> go.Figure:
    """`shapley_bars` of one side of a comparison, for a half-width column: the modalities in the order given
    (the same on both sides), names wrapped onto two lines, one height for any number of greyed rows (the two
    sides' rows line up) and an x axis running ±PAIR_BAR_ROOM × `span` (the largest |value| of either side, in
    probability or units)."""
    status = status or {}
    rows = len(names)
    fig = shapley_bars(names, labels, values, colors, task_type=task_type, status=status, height=90 + 54 * rows,
                       **kw)
    percent = task_type in ("binary", "multiclass")
    s = float(span) * (100.0 if percent else 1.0)
    s = s if math.isfinite(s) and s > 0 else 1.0
    ticks = []
    for n, lab in zip(names, labels):
        name = wrap(lab, 20)
        why = status.get(n)
        ticks.append(f"<span style='color:{STATUS_COLOR}'>{name}</span><br>{status_caption(why)}" if why else name)
    width = max((len(line) for lab in labels for line in wrap(lab, 20).split("<br>")), default=8)
    title = fig.layout.xaxis.title.text or ""
    title = title.replace("<br>(percentage points)", " (points)").replace(" (percentage points)", " (points)")
    fig.update_xaxes(range=[-PAIR_BAR_ROOM * s, PAIR_BAR_ROOM * s], title=dict(text=title))
    fig.update_yaxes(ticktext=ticks)
    fig.update_layout(margin=dict(l=24 + 7 * width, r=60, t=50, b=50))
    return fig


# --- Explorer: every outcome x every step at a glance ---------------------------------------------------------------
def step_overview(task_labels: Sequence[str], step_labels: Sequence[str], change: np.ndarray, relative: np.ndarray,
                  units: Sequence[str], finals: Sequence[str]) -> go.Figure:
    """A compact step × outcome heatmap: cell (t, k) = what step k did to outcome t, written in the outcome's
    unit ("+12 pts", "−3.1 points", "+4.2 mg"), coloured by its share of that outcome's largest change (each
    row on its own scale, since the outcomes' units differ); a step that did not run is blank ("–").
    change, relative: (T, K); finals: (T,) the final prediction as text, shown after the row's name."""
    change, relative = np.asarray(change, dtype=float), np.asarray(relative, dtype=float)

    def cell(v: float, u: str) -> str:
        if not math.isfinite(v):
            return "–"
        return signed(v, "pts") if u == "points" else signed(v, esc(u))

    text = [[cell(v, u) for v in row] for row, u in zip(change, units)]
    ylab = [f"{esc(t)}<br><span style='font-size:11px'>ends at {esc(f)}</span>" for t, f in zip(task_labels, finals)]
    xlab = [wrap(s, 10) for s in step_labels]        # flat, up to 4 short lines: ~60 px a column at 1,280 px
    hover = [[f"<b>{esc(s)}</b> → {esc(t)}: {txt}" for s, txt in zip(step_labels, row)]
             for t, row in zip(task_labels, text)]
    fig = go.Figure(go.Heatmap(z=relative, x=list(range(len(step_labels))), y=list(range(len(task_labels))),
                               text=text, texttemplate="%{text}", textfont=dict(size=12), hovertext=hover,
                               hoverinfo="text", colorscale=STATE_SCALE, zmid=0, zmin=-1, zmax=1, showscale=False,
                               xgap=2, ygap=2))
    fig.update_xaxes(tickvals=list(range(len(step_labels))), ticktext=xlab, side="top", tickfont=dict(size=10),
                     tickangle=0)
    fig.update_yaxes(tickvals=list(range(len(task_labels))), ticktext=ylab, autorange="reversed")
    top = 14 + 13 * max((x.count("<br>") + 1 for x in xlab), default=1)
    fig.update_layout(height=top + 20 + 46 * len(task_labels), margin=dict(l=10, r=10, t=top, b=10),
                      plot_bgcolor="white", paper_bgcolor="white", font=dict(size=12))
    return fig
