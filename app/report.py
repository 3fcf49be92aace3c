"""Exports of one Explorer view: a self-contained HTML report and CSV tables.

`gather` collects plain data (through the cached loaders), `render_html` turns it into one HTML file that
opens offline (plotly.js inlined once). Every piece of text is HTML-escaped; CSV cells that a spreadsheet
would read as a formula are prefixed with an apostrophe.
"""
from __future__ import annotations

import datetime as _dt
import io
import re

import numpy as np
import pandas as pd

from mmn_core.explain.browse import attribution_in_units

from . import components as C
from . import escape
from . import figures as F
from . import resources as R
from .common import actual_text, col_label, raw_text, value_text

OFF = "switched off in the Explorer"          # a report is read by others: not "by you"

METHOD_NAMES = C.METHODS


def safe_file_part(text: str) -> str:
    """A record id as part of a download file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:60] or "record"


def _h(text) -> str:
    return escape.html(text)


def _csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Neutralise spreadsheet formulas in text cells (ids and names can come from an uploaded file)."""
    def fix(v):
        return escape.csv_cell(v)
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].map(fix)
    out.columns = [fix(str(c)) for c in out.columns]
    return out


def to_csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    _csv_safe(df).to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


# --- tables ------------------------------------------------------------------------------------------------
def class_header(task, value) -> str:
    """A class in a CSV/table header: its plain name, with the dataset's own value in brackets when different."""
    plain = task.class_display(value)
    return plain if plain == str(value) else f"{plain} [{value}]"


def trace_frame(b: R.Bundle, view: dict, measured: dict) -> pd.DataFrame:
    """One row per step: the step, whether it ran, and every task's prediction after it (probabilities as
    0–1, regression in units, multiclass one column per class, headed by its plain name)."""
    spec = b.spec
    rows = []
    for j, m in enumerate(view.steps):
        row = {"step": j, "modality": "Prior" if j == 0 else spec.modality(m).display,
               "status": "prior" if j == 0 else ("skipped: not measured" if not measured[m] else
                                                  f"skipped: {OFF}" if view.skipped[j - 1] else "used")}
        for t in spec.tasks:
            v = view.value[t.name][j]
            if t.type == "multiclass":
                for c, name in enumerate(b.trained.prep.classes[t.name]):
                    row[f"{t.display}: P({class_header(t, name)})"] = float(v[c])
            elif t.type == "binary":
                row[f"{t.display}: P({class_header(t, b.trained.prep.classes[t.name][1])})"] = float(v)
            else:
                row[f"{t.display} ({t.units})" if t.units else t.display] = float(v)
        rows.append(row)
    return pd.DataFrame(rows)


def shapley_frame(b: R.Bundle, view: dict, measured: dict, use) -> pd.DataFrame:
    """One row per modality: status and its Shapley value per task (multiclass: per class)."""
    spec = b.spec
    sm = view.shapley_modalities
    rows = []
    for m in spec.modality_names:
        row = {"modality": spec.modality(m).display,
               "status": "not measured" if not measured[m] else OFF if m not in use else "used"}
        j = sm.index(m)
        for t in spec.tasks:
            v = np.asarray(view.shapley[t.name])[j]
            if t.type == "multiclass":
                for c, name in enumerate(b.trained.prep.classes[t.name]):
                    row[f"{t.display}: P({class_header(t, name)})"] = float(v[c])
            else:
                row[t.display] = float(v)
        rows.append(row)
    return pd.DataFrame(rows)


def attribution_frame(b: R.Bundle, ref, rid: str, use, order, task: str, method: str = "ig") -> pd.DataFrame:
    """Captum attributions of every used modality for `task`, each at its own step (the change it made)."""
    spec = b.spec
    rows = []
    ttype = spec.task(task).type
    # classification: rescaled from log-odds to the change in probability (0-1), as the Shapley columns
    unit = (spec.task(task).units or "") if ttype == "regression" else "change in probability (0-1)"
    for m in use:
        a = R.record_attribution(ref, rid, tuple(use), tuple(order), m, task, True, method, None)
        ms = spec.modality(m)
        by_col = attribution_in_units(a, ttype)
        for col in a.columns:
            rv = a.raw.get(col)
            rows.append({"modality": ms.display, "value": col_label(ms, col),
                         "this record": raw_text(rv[-1] if isinstance(rv, list) and rv else
                                                 (None if isinstance(rv, list) else rv), ms.units.get(col, ""), col),
                         "attribution": by_col[col], "unit": unit, "method": METHOD_NAMES[method],
                         "convergence delta": a.delta})
    return pd.DataFrame(rows)


# --- gather + render ---------------------------------------------------------------------------------------------
def gather(ref, rid: str, use, order, focus: str, method: str = "ig") -> dict:
    b = R.get_bundle(ref)
    row = b.pos[rid]
    measured = {m: bool(b.data.present[m][row]) for m in b.spec.modality_names}
    view = R.record_view(ref, rid, tuple(use), tuple(order))
    return {"bundle": b, "rid": rid, "use": tuple(use), "order": tuple(order), "focus": focus, "view": view,
            "measured": measured, "trace": trace_frame(b, view, measured),
            "shapley": shapley_frame(b, view, measured, use),
            "attributions": attribution_frame(b, ref, rid, use, order, focus, method) if use else pd.DataFrame(),
            "frame_row": b.ds.frame.iloc[row], "method": method,
            "trust": R.record_trust(ref, rid, tuple(use), focus, tuple(order)),
            "measure": R.measure_next(ref, rid, tuple(use))}


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_h(_fmt(v))}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else F.number(v, 3)
    return str(v)


def render_html(g: dict) -> str:
    """The report as one HTML document (plotly.js included once, so it opens offline)."""
    b, view, spec = g["bundle"], g["view"], g["bundle"].spec
    classes = b.trained.prep.classes
    colors = F.modality_colors(spec.modality_names)
    measured, use = g["measured"], g["use"]
    parts, first = [], True

    def fig_html(fig) -> str:
        nonlocal first
        out = fig.to_html(full_html=False, include_plotlyjs=first, config={"displayModeBar": False})
        first = False
        return out

    parts.append(f"<h1>Record {_h(g['rid'])}</h1>")
    parts.append(f"<p class='meta'>{_h(spec.title or spec.name)} · MultiModN · report created "
                 f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>")
    parts.append("<h2>Predictions</h2>")
    pred = pd.DataFrame([{"Outcome": t.display,
                          "Before any data": value_text(t, view.value[t.name][0], classes.get(t.name)),
                          "Final prediction": value_text(t, view.value[t.name][-1], classes.get(t.name)),
                          "Actual": actual_text(t, view.label[t.name], classes.get(t.name))} for t in spec.tasks])
    parts.append(_table(pred))
    parts.append("<h2>Data used, in encoding order</h2><ol>")
    for m in g["order"]:
        st_ = "used" if m in use else ("not measured" if not measured[m] else OFF)
        parts.append(f"<li><span class='dot' style='background:{colors[m]}'></span>{_h(spec.modality(m).display)}"
                     f" — {st_}</li>")
    parts.append("</ol><h2>Step by step</h2>")
    for fig in C.step_figures(spec, view, measured, use, classes, off_name=OFF).values():
        parts.append(fig_html(fig))
    parts.append("<h2>Why</h2>")
    for t in spec.tasks:
        parts.append(fig_html(C.why_figure(spec, view, t.name, measured, use, classes, off_name=OFF)))
        parts.append("<ol class='narrative'>" + "".join(f"<li>{_h(s)}</li>" for s in view.narrative[t.name])
                     + "</ol>")
    ft = spec.task(g["focus"])
    parts.append(f"<h2>How much to trust this: {_h(ft.display)}</h2>")
    trust = g["trust"]
    if not trust.available:
        parts.append(f"<p>{_h(trust.reason)}</p>")
    else:
        fig = C.trust_figure(spec, trust)
        if fig is not None:
            parts.append(fig_html(fig))
        parts.append(f"<p>{_h(trust.sentence)}</p><p class='meta'>{_h(C.TRUST_HELP)}</p>")
    mn = g["measure"][g["focus"]]
    parts.append("<h2>" + ("What if it had not been measured" if mn.mode == "hindsight" else "What to measure next")
                 + f": {_h(ft.display)}</h2>")
    if mn.mode == "unavailable":
        parts.append(f"<p>{_h(mn.reason)}</p>")
    else:
        parts.append(f"<p><b>{_h(mn.sentence)}</b></p>")
        fig = C.measure_figure(spec, mn)
        if fig is not None:
            parts.append(fig_html(fig))
            parts.append(_table(C.measure_table(spec, g["measure"])))
        parts.append(f"<p class='meta'>{_h(C.MEASURE_HELP)}</p>")
    if len(g["attributions"]):
        parts.append(f"<h2>Inside each step: {_h(ft.display)}</h2>")
        parts.append(f"<p>{_h(METHOD_NAMES[g['method']])}: how much each value pushed the prediction at the step "
                     f"where its kind of data was added, compared with an average record "
                     f"({'in ' + _h(ft.units) if ft.type == 'regression' else 'in log-odds'}).</p>")
        parts.append(_table(g["attributions"].drop(columns=["method"])))
    parts.append("<h2>The record's data</h2>")
    rec = g["frame_row"]
    for m in spec.modality_names:
        ms = spec.modality(m)
        parts.append(f"<h3><span class='dot' style='background:{colors[m]}'></span>{_h(ms.display)}"
                     f"{'' if measured[m] else ' — not measured'}</h3>")
        if ms.description:
            parts.append(f"<p class='meta'>{_h(ms.description)}</p>")
        if measured[m] and ms.kind == "tabular":
            parts.append(_table(pd.DataFrame({"Measurement": [col_label(ms, c) for c in ms.columns],
                                              "Value": [rec[c] if isinstance(rec[c], str) else raw_text(rec[c], "", c)
                                                        for c in ms.columns],
                                              "Unit": [ms.units.get(c, "") for c in ms.columns]})))
        elif measured[m]:
            seq = b.ds.sequences[m]
            part = seq[seq[ms.key].astype(str) == g["rid"]][[ms.time_column, *ms.columns]]
            parts.append(_table(part.rename(columns={c: col_label(ms, c) for c in part.columns})))
    style = ("body{font-family:Arial,sans-serif;max-width:1000px;margin:2em auto;color:#222;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:left}th{background:#f3f3f3}.meta{color:#666}.dot{display:inline-block;width:.8em;"
             "height:.8em;border-radius:50%;margin-right:.4em}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Record {_h(g['rid'])} — "
            f"MultiModN Lens</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")


def build_html(ref, rid: str, use, order, focus: str, method: str = "ig") -> str:
    return render_html(gather(ref, rid, use, order, focus, method))
