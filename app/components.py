"""Panels shared by the pages, and the pure helpers behind them that the HTML report uses too.

Pure helpers (no Streamlit; data in, Figure / DataFrame / text out): `step_figures`, `why_figure`,
`trust_figure`, `measure_figure`, `measure_table`. Panels (Streamlit): `headline`, `why_panel`, `trust_panel`,
`measure_panel`, `inside_a_step`, `compare`, `data_tab`. A panel reads its widgets, calls the cached loaders in
`resources.py` and renders; every number comes from the engine.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mmn_core.explain.browse import attribution_in_units, headlines, step_overview
from mmn_core.explain.narration import biggest_movers
from mmn_core.fmt import percent, points, with_units
from mmn_core.panels import PFUSION_ACQUIRE

from . import figures as F
from . import resources as R
from . import state as S
from .common import (STATE_HELP, actual_text, class_names, col_label, label_md, md, mod_label, raw_text, swatch,
                     value_text)

CHART_CONFIG = {"displayModeBar": False}
METHODS = {"ig": "Integrated Gradients", "ablation": "Feature ablation", "shapley": "Shapley sampling"}
TRUST_HELP = ("Checks the Why bars against the model itself: the kinds of data they rank highest are removed "
              "one by one (skipped, exactly as the model treats missing data) and the prediction is followed. A "
              "faithful explanation moves the prediction more, and sooner, than removing kinds of data in a "
              "random order.")
MEASURE_HELP = ("For each kind of data this record lacks, the model borrows its values from the most similar "
                "training records that have it (similar in what the model knows so far) and predicts again with "
                "each. This assumes the missing value would look like theirs; if data go missing for a reason "
                "(not measured because it would be normal), the estimate can be biased.")


# --- pure helpers (the report uses them too) -------------------------------------------------------------------
def status_of(measured: dict, use, m: str, off_name: str = F.SKIPPED_BY_YOU) -> str:
    """'' when the step runs, else why not: F.NOT_MEASURED or `off_name` (switched off)."""
    return "" if m in use else F.NOT_MEASURED if not measured[m] else off_name


def step_figures(spec, view, measured: dict, use, classes: dict, off_name: str = F.SKIPPED_BY_YOU) -> dict:
    """task -> the step chart of a RecordView."""
    colors = F.modality_colors(spec.modality_names)
    steps = view.steps
    labels = ["Prior"] + [mod_label(spec, m) for m in steps[1:]]
    reasons = [status_of(measured, use, m, off_name) or off_name for m in steps[1:]]
    return {t.name: F.step_chart(steps, labels, view.value[t.name], view.skipped, task_type=t.type,
                                 task_label=t.display, colors=colors, units=t.units,
                                 classes=class_names(t, classes.get(t.name)), truth=view.label[t.name],
                                 skip_reasons=reasons, sentences=view.narrative[t.name], off_name=off_name)
            for t in spec.tasks}


def overview(spec, view, classes: dict) -> None:
    """Every outcome × every step in one compact heatmap (the full chart of the outcome in focus follows)."""
    ov = step_overview(view, spec.tasks)
    finals = []
    for t, c, f in zip(spec.tasks, ov.classes, ov.final):
        if t.type == "regression":
            finals.append(with_units(f, t.units))
        elif c is not None:
            finals.append(f"{percent(f / 100)} {class_names(t, classes.get(t.name))[c]}")
        else:
            finals.append(percent(f / 100))
    labels = [mod_label(spec, m) for m in ov.steps]
    st.plotly_chart(F.step_overview([t.display for t in spec.tasks], labels, ov.change, ov.relative, ov.units,
                                    finals), key="ex_overview", config=CHART_CONFIG)
    st.caption("Each cell: what that kind of data changed in that outcome's prediction (percentage points; for a "
               "predicted value, its units; for several classes, the finally predicted one). Colour: the share of "
               "that outcome's largest change, purple up, orange down; \u2013: the step did not run.")


def why_figure(spec, view, task: str, measured: dict, use, classes: dict, ci: int | None = None,
               off_name: str = F.SKIPPED_BY_YOU):
    """The Why bars of `task` (multiclass: of class `ci`, default the predicted one)."""
    td, names = spec.task(task), spec.modality_names
    vals = np.asarray(view.shapley[task])[[view.shapley_modalities.index(m) for m in names]]
    cl = None
    if td.type == "multiclass":
        ci = int(np.asarray(view.value[task][-1]).argmax()) if ci is None else ci
        vals, cl = vals[:, ci], td.class_display(classes[task][ci])
    return F.shapley_bars(names, [mod_label(spec, m) for m in names], vals, F.modality_colors(names),
                          task_type=td.type, task_label=td.display, units=td.units,
                          status={m: status_of(measured, use, m, off_name) for m in names}, class_label=cl)


def trust_figure(spec, trust, title: str = ""):
    """The trust element's chart (a panels.Trust), or None when there is nothing to draw."""
    if not trust.available or len(trust.removed) < 1:
        return None
    td = spec.task(trust.task)
    return F.trust_curve([mod_label(spec, m) for m in trust.removed], list(trust.removed), trust.deletion,
                         trust.random, F.modality_colors(spec.modality_names), task_type=td.type, units=td.units,
                         title=title, method_label="Removed in the Why bars' order")


def measure_figure(spec, mn, title: str = ""):
    """The spread of possible outcomes for each candidate modality (a panels.MeasureNext), or None."""
    if mn.mode == "unavailable" or not mn.rows:
        return None
    td = spec.task(mn.task)
    actual = [r.actual for r in mn.rows] if mn.mode == "hindsight" else None
    current = [r.current for r in mn.rows] if mn.mode == "hindsight" else mn.rows[0].current
    return F.outcome_spread([r.modality for r in mn.rows], [mod_label(spec, r.modality) for r in mn.rows],
                            [r.outcomes for r in mn.rows], current,
                            F.modality_colors(spec.modality_names), task_type=td.type, units=td.units,
                            title=title, actual=actual)


def _change(td, x: float) -> str:
    return points(x).lstrip("+") if td.type != "regression" else with_units(abs(x), td.units)


def measure_table(spec, by_task: dict) -> pd.DataFrame:
    """One row per (candidate modality, task), candidates ranked by the first task: the expected change, how
    often the prediction flips (classification) or its likely range (middle 80%, regression); in hindsight
    mode also the change its real value made."""
    first = next(iter(by_task.values()))
    rows = []
    for r0 in first.rows:
        for t, mn in by_task.items():
            td = spec.task(t)
            r = next(x for x in mn.rows if x.modality == r0.modality)
            lo, hi = np.quantile(r.outcomes, [0.1, 0.9]) if len(r.outcomes) else (np.nan, np.nan)
            val = (lambda v: percent(v)) if td.type != "regression" else (lambda v: with_units(v, td.units))
            row = {"Kind of data": mod_label(spec, r0.modality), "Outcome": td.display,
                   "Now": val(r.current), "Expected change": _change(td, r.expected_abs_change),
                   "Prediction flips": percent(r.flip_probability) if td.type != "regression" else "–",
                   "Likely range (middle 80%)": f"{val(lo)} to {val(hi)}"}
            if mn.mode == "hindsight":
                row["Its real value changed it by"] = _change(td, r.actual - r.current)
            rows.append(row)
    return pd.DataFrame(rows)


FAITH_TABLE_HELP = ("Drop: how far the probability of the predicted outcome falls, on average over the first "
                    "removals, when the method's top kinds of data are removed (larger = more faithful; compare "
                    "with the random order). Rebuild: the average prediction as they are added back to an empty "
                    "record. Unchanged after scrambling: the rank correlation between the method's ranking on "
                    "the trained model and on a model with random weights (near 0 is good: the method explains "
                    "what this model learned, not its structure). Agreement: rank correlation with exact "
                    "Shapley. Rests on rarely-missing data: records whose top-ranked kind of data was almost "
                    "never missing in training, so removing it shows the model something it has rarely seen.")


def faithfulness_table(rep: dict) -> pd.DataFrame:
    """faithfulness.FaithfulnessReport.to_json() as a reader sees it: one row per method, random last."""
    rows = []
    for m, s in rep["methods"].items():
        agree = 1.0 if m == "shapley" else rep["agreement"].get(f"shapley|{m}", rep["agreement"].get(f"{m}|shapley"))
        rs = s["randomization_spearman"]
        rows.append({"Method": F.METHOD_LABELS.get(m, m),
                     "Drop (points)": F.number(100 * s["deletion_aopc"], 1),
                     "Rebuild (%)": percent(s["insertion_auc"]),
                     "Unchanged after scrambling": "–" if rs is None else F.number(rs, 2),
                     "Agreement with exact Shapley": "–" if agree is None or m == "random" else F.number(agree, 2),
                     "Rests on rarely-missing data": percent(s["ood_top_skip"])})
    return pd.DataFrame(rows)


def faithfulness_summary(rep: dict) -> str:
    """One or two sentences: the most faithful method against random, and the scrambling check."""
    ms = {m: s for m, s in rep["methods"].items() if m != "random"}
    best = max(ms, key=lambda m: ms[m]["deletion_aopc"])
    rnd = rep["methods"]["random"]["deletion_aopc"]
    ratio = ms[best]["deletion_aopc"] / rnd if rnd > 0 else float("nan")
    s = (f"On {rep['records']} records, removing the kinds of data {F.METHOD_LABELS.get(best, best)} ranks highest "
         f"lowers the probability of the predicted outcome by {F.number(100 * ms[best]['deletion_aopc'], 1)} "
         f"points on average, {F.number(ratio, 1)}× as much as removing them in a random order "
         f"({F.number(100 * rnd, 1)} points).")
    stuck = [F.METHOD_LABELS.get(m, m) for m, v in ms.items()
             if v["randomization_spearman"] is not None and v["randomization_spearman"] > 0.5]
    s += (" After scrambling the model's weights every method's ranking changes (rank correlation at most 0.5), "
          "as it should." if not stuck else f" Caution: {', '.join(stuck)} barely change when the model's "
          "weights are scrambled, so they describe the model's structure more than what it learned.")
    return s


# --- panels --------------------------------------------------------------------------------------------------
# A class name as the headline value (multiclass) is shown in full: it wraps instead of ending in "…", and a long
# one is set smaller, so three outcomes side by side stay readable at 1,280 px.
HEADLINE_SHORT = 12                 # characters that fit a third of the page at the metric's own size
HEADLINE_STYLE = """<style>
[class*="st-key-ex_head"] [data-testid="stMetricValue"], [class*="st-key-ex_head"] [data-testid="stMetricValue"] * {
  white-space: normal; overflow: visible; text-overflow: clip; overflow-wrap: anywhere;}
[class*="st-key-ex_headlong_"] [data-testid="stMetricValue"] {font-size: 1.6rem; line-height: 1.25;}
</style>"""


def headline(spec, view, classes: dict, sure: dict[str, str] | None = None) -> None:
    """One metric per task: the final prediction, its change since the prior, the actual outcome, and (`sure`:
    task -> sentence) what such a prediction has meant on held-out records."""
    st.html(HEADLINE_STYLE)
    cols = st.columns(len(spec.tasks))
    for i, (col, td) in enumerate(zip(cols, spec.tasks)):
        h = headlines(view, [td])[td.name]
        delta = label_md(F.signed(h.change, td.units)) if td.type == "regression" else F.points(h.change)
        plain = class_names(td, classes.get(td.name))
        shown = plain[h.cls] if h.cls is not None else value_text(td, h.final, classes.get(td.name))
        # the key holds our index, never the task's (user) name: it becomes a CSS class
        c = col.container(key=f"ex_head{'long' if len(shown) > HEADLINE_SHORT else ''}_{i}")
        c.metric(label_md(td.display), label_md(shown), delta=delta, delta_color="off", delta_arrow=h.direction,
                 delta_description="since the prior (no data)", help=md(td.description) if td.description else None)
        prob = f"Probability {F.pct(h.final)} · " if h.cls is not None else ""
        c.caption(f"{prob}Actual outcome: {md(actual_text(td, view.label[td.name], classes.get(td.name)))}")
        if sure and sure.get(td.name):
            c.caption(f"How sure: {md(sure[td.name])}")


def class_choice(spec, task: str, v_final, classes: dict) -> int | None:
    td = spec.task(task)
    if td.type != "multiclass":
        return None
    opts = list(range(len(classes[task])))
    if st.session_state.get(S.EX_CLASS) not in opts:
        st.session_state[S.EX_CLASS] = int(np.asarray(v_final).argmax())
    plain = class_names(td, classes[task])
    return st.selectbox(f"Class explained for {label_md(td.display)}", opts, key=S.EX_CLASS,
                        persist_state="session", format_func=lambda c: plain[c])


def why_panel(b, view, focus: str, measured: dict, use, order) -> None:
    """Exact Shapley bars of the focus task beside 'How much to trust this', the narrative below; the other
    tasks' bars in an expander (each chart costs the browser a redraw per toggle)."""
    spec, classes = b.spec, b.trained.prep.classes
    st.caption("Each bar is an exact Shapley value: how much that kind of data moved this record's final "
               "prediction, averaged over every order in which it could have been added. The bars add up to the "
               "change from the prior to the final prediction.")
    a, c = st.columns([1.7, 1], gap="medium")
    with a:
        ci = class_choice(spec, focus, view.value[focus][-1], classes)
        st.plotly_chart(why_figure(spec, view, focus, measured, use, classes, ci), key=f"ex_shap__{focus}",
                        config=CHART_CONFIG)
    with c:
        trust_panel(b, focus, use, order)
    st.markdown(f"**In words — {md(spec.task(focus).display)}**")
    rid = st.session_state[S.EX_RECORD]
    words = R.why_narrative(b.ref, rid, tuple(use), tuple(order), focus, ci)   # the class the bars show
    top = biggest_movers(view.value[focus], view.skipped, 3, ci)
    st.markdown("\n".join([f"- {md(words[0])}"] + [f"- {md(words[j])}" for j in top]))   # biggest movers first
    with st.expander(f"Every step, in order ({len(words) - 1})", key="ex_why_steps"):
        st.markdown("\n".join(f"{k + 1}. {md(s)}" for k, s in enumerate(words)))
    others = [t.name for t in spec.tasks if t.name != focus]
    if others:
        more = st.expander("The same for the other outcomes", key=S.EX_WHY_MORE, on_change="rerun")
        with more:
            if more.open:
                for t in others:
                    a, c = st.columns([1.2, 1], gap="large")
                    a.plotly_chart(why_figure(spec, view, t, measured, use, classes), key=f"ex_shap__{t}",
                                   config=CHART_CONFIG)
                    c.markdown(f"**In words — {md(spec.task(t).display)}**")
                    tw = R.why_narrative(b.ref, rid, tuple(use), tuple(order), t)
                    c.markdown("\n".join(f"{k + 1}. {md(s)}" for k, s in enumerate(tw)))


def trust_panel(b, task: str, use, order) -> None:
    """'How much to trust this': the record's deletion curve in the Why bars' order against random orders, and
    one plain sentence (mmn_core.panels.record_trust)."""
    rid = st.session_state[S.EX_RECORD]
    trust = R.record_trust(b.ref, rid, tuple(use), task, tuple(order))
    with st.container(border=True, key="ex_trust"):
        st.markdown("**How much to trust this**", help=TRUST_HELP)
        if not trust.available:
            st.caption(md(trust.reason))
            return
        fig = trust_figure(b.spec, trust)
        if fig is not None:
            st.plotly_chart(fig, key="ex_trust_chart", config=CHART_CONFIG)
        st.markdown(md(trust.sentence))
        extra = " (for the class it predicts)" if b.spec.task(task).type == "multiclass" else ""
        st.caption(f"Solid: the prediction{extra} as the kinds of data are removed one by one, largest Why bar "
                   "first (dots in the bars' colours); dashed: the average over 64 random removal orders. "
                   "Computed in the dataset's encoding order.")


def measure_panel(b, focus: str, use) -> None:
    """'What to measure next' (mmn_core.panels.measure_next): ranked candidates, the spread of outcomes, the
    neighbours' values on demand, a sentence to read aloud."""
    spec, rid = b.spec, st.session_state[S.EX_RECORD]
    by_task = R.measure_next(b.ref, rid, tuple(use))
    mn = by_task[focus]
    with st.container(key="ex_measure"):
        if mn.mode == "unavailable":
            st.info(md(mn.reason))
            return
        if mn.mode == "hindsight":
            st.markdown("**Everything was measured.** What if one kind of data had **not** been measured? The "
                        "same estimate, made with it hidden, next to what its real value did.", help=MEASURE_HELP)
        else:
            st.markdown("**Which missing data would change the prediction most?**", help=MEASURE_HELP)
        if not mn.rows:
            st.info(md(mn.sentence))
            return
        st.info(md(mn.sentence), icon=":material/record_voice_over:")
        st.plotly_chart(measure_figure(spec, mn, f"If measured: {spec.task(focus).display}"),
                        key="ex_measure_chart", config=CHART_CONFIG)
        st.caption(f"Each dot: the prediction with the value of one of the {mn.k} most similar training records "
                   "that have this data; the box holds the middle half. Solid line: the prediction now"
                   + ("; dotted, when near: 50%." if spec.task(focus).type == "binary" else ".")
                   + (" Star: with the record's real value." if mn.mode == "hindsight" else ""))
        st.dataframe(measure_table(spec, by_task), hide_index=True, key="ex_measure_table")
        if mn.no_donors:
            st.caption("No similar record has: " + md(", ".join(mod_label(spec, m) for m in mn.no_donors)))
        if b.pf is not None:
            st.caption("Only MultiModN can do this. " + md(PFUSION_ACQUIRE))
        more = st.expander("The similar records' values", key=S.EX_MEASURE_MORE, on_change="rerun")
        with more:
            if more.open:
                mods = [r.modality for r in mn.rows]
                if st.session_state.get(S.EX_MEASURE_MODALITY) not in mods:
                    st.session_state[S.EX_MEASURE_MODALITY] = mods[0]
                m = st.selectbox("Kind of data", mods, key=S.EX_MEASURE_MODALITY,
                                 format_func=lambda x: mod_label(spec, x))
                r = next(x for x in mn.rows if x.modality == m)
                ms = spec.modality(m)
                vals = R.neighbour_values(b.ref, m, r.neighbour_ids)
                td = spec.task(focus)
                shown = [value_text(td, v) if td.type != "multiclass" else percent(v) for v in r.outcomes]
                vals.insert(1, f"{td.display} with this value", shown)
                st.dataframe(vals.rename(columns={c: col_label(ms, c) + (f" ({ms.units[c]})" if ms.units.get(c)
                                                                          else "") for c in ms.columns}),
                             hide_index=True, key="ex_neighbours_table")


def inside_a_step(b, view, focus: str, use, order) -> None:
    """Captum attributions of one step's values (the step and task chosen here)."""
    spec, classes, ss = b.spec, b.trained.prep.classes, st.session_state
    if not use:
        st.info("Turn on at least one kind of data to see what inside it mattered.")
        return
    c1, c2, c3 = st.columns(3)
    if ss.get(S.EX_ATTR_MODALITY) not in use:
        ss[S.EX_ATTR_MODALITY] = use[0]
    am = c1.selectbox("Kind of data", list(use), key=S.EX_ATTR_MODALITY, persist_state="session",
                      format_func=lambda m: mod_label(spec, m))
    target = c2.radio("Explain", ["The change at this step", "The final prediction"], key=S.EX_ATTR_TARGET,
                      persist_state="session",
                      help="At this step: what moved the prediction when this data was added. Final: "
                           "what in this data matters for the last prediction.")
    method = c3.selectbox("Method", list(METHODS), key=S.EX_ATTR_METHOD, persist_state="session",
                          format_func=METHODS.get,
                          help="Integrated Gradients: fast and exact up to the 'convergence delta'. "
                               "Feature ablation: replace one value at a time by the average. "
                               "Shapley sampling: slower, averages over random orders of the values.")
    td = spec.task(focus)
    ci = class_choice(spec, focus, view.value[focus][-1], classes) if td.type == "multiclass" else None
    a = R.record_attribution(b.ref, ss[S.EX_RECORD], tuple(use), tuple(order), am, focus,
                             target.startswith("The change"), method, ci)
    mspec = spec.modality(am)
    by_col = attribution_in_units(a, td.type)
    labels = [col_label(mspec, c) for c in a.columns]
    raws = [attr_raw_text(a.raw.get(c), mspec.units.get(c, ""), c) for c in a.columns]
    pp = 100.0 if td.type != "regression" else 1.0          # classification: percentage points, as the Why bars
    vals = [by_col[c] * pp for c in a.columns]
    plain = class_names(td, classes.get(focus))
    if td.type == "regression":
        xt = f"Effect on the predicted {td.display} ({td.units})" if td.units else "Effect on the prediction"
    else:
        xt = ("Effect on the predicted probability (percentage points)" if td.type == "binary"
              else f"Effect on P('{plain[ci]}') (percentage points)")
    where = f"after {mod_label(spec, am)}" if target.startswith("The change") else "final prediction"
    fig = F.attribution_bars(labels, np.asarray(vals), raws, F.modality_colors(spec.modality_names)[am],
                             title=f"{mod_label(spec, am)} → {td.display} ({where})", x_title=xt)
    st.plotly_chart(fig, key="ex_attr_chart", config=CHART_CONFIG)
    st.caption(md(reference_text(spec, a)))
    if td.type != "regression":
        st.caption("The methods measure each value's push in log-odds; the bars rescale those pushes to "
                   "percentage points of the prediction (the same unit as the Why bars), keeping their signs "
                   "and ratios, so they add up to the change from the reference record to this one.")
    if a.delta is not None:
        st.caption(f"Integrated Gradients check (convergence delta): the bars add up to the change in "
                   f"log-odds from the reference record within {F.number(abs(a.delta))} "
                   f"(total change {F.signed(a.target_logit - a.baseline_logit)} in log-odds).")
    unit = " (percentage points)" if td.type != "regression" else (f" ({td.units})" if td.units else "")
    st.dataframe(pd.DataFrame({"Value": labels, "This record": raws, f"Attribution{unit}": np.round(vals, 4)}),
                 hide_index=True, key="ex_attr_table")


def reference_text(spec, a) -> str:
    """What the attribution bars compare this record with: the training mean, and for each categorical
    column shown the most common value in the training data."""
    mspec = spec.modality(a.modality)
    cats = [f"{col_label(mspec, c)}: {v}" for c, v in a.reference.items()]
    head = ("Each bar compares this record's value with a reference record: the training average for measurements"
            + ("; for categories, the most common value in the training data (" + "; ".join(cats) + ")"
               if cats else "") + ". Values earlier steps added are held fixed.")
    return head


def attr_raw_text(rv, units: str, column: str = "") -> str:
    """A raw value beside its attribution; a sequence shows its latest value."""
    if isinstance(rv, list):
        return f"{raw_text(rv[-1], units, column)} (latest of {len(rv)})" if rv else "—"
    return raw_text(rv, units, column)


def compare(b, view, use, order) -> None:
    """P-Fusion on the same record and switches, side by side."""
    spec, classes, rid = b.spec, b.trained.prep.classes, st.session_state[S.EX_RECORD]
    if b.pf is None:
        st.info("No P-Fusion model is available for this dataset, so there is nothing to compare with.")
        return
    st.markdown("P-Fusion reads all kinds of data **at once**. When one is missing (or switched off here) "
                "it fills in the average value and still uses it; MultiModN skips that step instead.")
    measured = view.measured
    pf_now = R.pfusion_view(b.ref, rid, tuple(use))
    all_use = tuple(m for m in order if measured[m])
    pf_all = R.pfusion_view(b.ref, rid, all_use)
    mmn_all = R.record_view(b.ref, rid, all_use, tuple(order)).value
    rows = []
    for td in spec.tasks:
        t, cl = td.name, classes.get(td.name)
        rows.append({"Outcome": td.display, "Actual": actual_text(td, view.label[t], cl),
                     "MultiModN (your choices)": value_text(td, view.value[t][-1], cl),
                     "P-Fusion (your choices)": value_text(td, pf_now[t], cl),
                     "MultiModN (all measured data)": value_text(td, mmn_all[t][-1], cl),
                     "P-Fusion (all measured data)": value_text(td, pf_all[t], cl)})
    binary = [td.name for td in spec.tasks if td.type == "binary"]
    if binary:
        fig = F.compare_bars([spec.task(t).display for t in binary], [view.value[t][-1] for t in binary],
                             [pf_now[t] for t in binary], [mmn_all[t][-1] for t in binary],
                             [pf_all[t] for t in binary])
        st.plotly_chart(fig, key="ex_compare_chart", config=CHART_CONFIG)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ex_compare_table")
    st.caption("Not available for P-Fusion — What to measure next: " + md(PFUSION_ACQUIRE) + " How far P-Fusion's "
               "explanations can be trusted (its own zero-fill ablation): `python -m mmn_core faithfulness "
               "--checkpoint` with its checkpoint, and benchmarks/explain_evidence.md.")


def state_tab(b, view, focus: str, table: pd.DataFrame, use) -> None:
    """The record's state after each step (heatmap) and its path over the cohort's map of final states."""
    spec, measured = b.spec, view.measured
    steps = view.steps
    labels = ["Prior"] + [mod_label(spec, m) for m in steps[1:]]
    reasons = [status_of(measured, use, m) or F.SKIPPED_BY_YOU for m in steps[1:]]
    st.subheader("State", help=STATE_HELP)
    st.plotly_chart(F.state_heatmap(view.states, labels, view.skipped, reasons), key="ex_state_heat",
                    config=CHART_CONFIG)
    smap = R.state_map(b.ref)
    td = spec.task(focus)
    ids_pos = {r: j for j, r in enumerate(smap.ids)}
    cloud = smap.cloud[-1][[ids_pos[r] for r in table["id"]]]
    fig = F.state_map(cloud, table[f"{focus}__label"].to_numpy(), outcome_type=td.type, outcome_label=td.display,
                      classes=class_names(td, b.trained.prep.classes.get(focus)), path_xy=smap.transform(view.states),
                      steps=steps, step_labels=labels, colors=F.modality_colors(spec.modality_names),
                      skipped=view.skipped, units=td.units, ids=table["id"].tolist())
    # A click on a dot opens that record: the callback notes it (callbacks cannot rerun the whole page), then
    # the record is opened exactly as a shared link opens one (state.URL_VIEW, read at the top of the Explorer).
    st.plotly_chart(fig, key=MAP_KEY, config=CHART_CONFIG, on_select=_map_clicked, selection_mode="points")
    rid = st.session_state.pop(MAP_CLICKED, None)
    if rid is not None and rid != st.session_state.get(S.EX_RECORD):
        st.session_state[S.URL_VIEW] = {"record": rid}
        st.rerun(scope="app")
    st.caption("Each dot is another test record's final state, squeezed onto two axes (PCA), coloured by what "
               "actually happened; records the model sees as similar lie close together. The path is this record, "
               "step by step. Click a dot to open that record.")


MAP_KEY = "ex_state_map"
MAP_CLICKED = "_ex_map_clicked"     # the record id of the dot last clicked on the state map (one-shot)


def clicked_record(selection) -> str | None:
    """The record id of the clicked cohort dot in a plotly selection event ({points: [{customdata: [id, ...]}]}),
    None when nothing (or only the record's own path, which carries no id) was clicked."""
    for p in (selection or {}).get("points", []) or []:
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)) and cd:
            return str(cd[0])
    return None


def _map_clicked() -> None:
    event = st.session_state.get(MAP_KEY)
    rid = clicked_record(event.get("selection") if event else None)
    if rid is not None:
        st.session_state[MAP_CLICKED] = rid


def data_tab(b, row: int, measured: dict, use) -> None:
    """The record's raw values per modality, with the spec's descriptions and units."""
    spec, rid = b.spec, st.session_state[S.EX_RECORD]
    rec = b.ds.frame.iloc[row]
    colors = F.modality_colors(spec.modality_names)
    grid = st.columns(2, gap="large")
    for gi, m in enumerate(spec.modality_names):
        with grid[gi % 2]:
            mspec = spec.modality(m)
            st.markdown(f"{swatch(colors[m])} **{md(mspec.display)}**")
            if not measured[m]:
                st.caption("**Not measured** for this record")
            elif m not in use:
                st.caption(":orange[**Skipped by you**]: measured, but switched off above, so the predictions "
                           "do not use it")
            if mspec.description:
                st.caption(md(mspec.description))
            if measured[m] and mspec.kind == "tabular":
                st.dataframe(pd.DataFrame({
                    "Measurement": [col_label(mspec, c) for c in mspec.columns],
                    "Value": [raw_text(rec[c], column=c) if not isinstance(rec[c], str) else rec[c]
                              for c in mspec.columns],
                    "Unit": [mspec.units.get(c, "") for c in mspec.columns]}), hide_index=True,
                    key=f"ex_data__{m}")
            elif measured[m]:
                seq = b.ds.sequences[m]
                part = seq[seq[mspec.key].astype(str) == rid][[mspec.time_column, *mspec.columns]]
                part = part.rename(columns={c: f"{col_label(mspec, c)} ({mspec.units[c]})" if mspec.units.get(c)
                                            else col_label(mspec, c) for c in part.columns})
                st.dataframe(part, hide_index=True, key=f"ex_data__{m}", height=min(400, 40 + 35 * len(part)))


def order_caveat(b, focus: str, order) -> None:
    """A caution under the chips when the order is one the model never met in training (nothing otherwise)."""
    from mmn_core.explain.ordering import order_caveat as caveat
    names = b.spec.modality_names
    if list(order) == list(names):
        return
    td = b.spec.task(focus)
    text = caveat(R.order_spread(b.ref, focus), list(order), list(names), td.units,
                  "held-out records" if b.held_out else "records")
    if text:
        st.warning(md(text), icon=":material/swap_vert:")


# --- what if a value were different? ------------------------------------------------------------------------------
WHATIF_HELP = ("Change one measured value of this record and the model reads the record again, step by step, "
               "with everything else as it is (the switches and the order above included). This shows what the "
               "model does with the value; it does not say what would happen to the person.")


def _wi_current(b, row: int, m: str, c: str):
    v = b.ds.frame.iloc[row][c]
    return None if pd.isna(v) else v


def _wi_reset(b, row: int, m: str, c: str) -> None:
    """Both value widgets back to the record's own value of (m, c)."""
    from mmn_core.data import label_str
    ss, cur = st.session_state, _wi_current(b, row, m, c)
    from mmn_core.explain.whatif import feature_kind
    kind = feature_kind(b.trained, m, c)
    ss[S.EX_WI_NUMBER] = float(cur) if cur is not None and kind == "numeric" else None
    ss[S.EX_WI_CATEGORY] = label_str(cur) if cur is not None and kind == "categorical" else None


def _wi_from_link(b, row: int, mods: list[str]) -> bool:
    """Apply a shared link's edit to the what-if widgets (once, for its record); True when applied. A stale
    link (another kind of data, an unknown measurement, a value that is not a number) shows a warning."""
    from mmn_core.explain.whatif import categories, feature_kind
    ss = st.session_state
    link = ss.get(S.EX_WI_PENDING)
    if not link or link.get("record") != b.ds.ids[row]:
        return False
    ss.pop(S.EX_WI_PENDING)
    m, c, v = (link.get(k) for k in S.WI_URL_FIELDS)
    if m is None:
        return False
    if m not in mods or c not in b.spec.modality(m).columns:
        st.warning("The shared link's what-if value is not one of this record's measurements; it is left out.")
        return False
    ss[S.EX_WI_MODALITY], ss[S.EX_WI_FEATURE] = m, c
    ss[S.EX_WI_FOR] = (b.ref, b.ds.ids[row], m, c)
    if feature_kind(b.trained, m, c) == "numeric":
        try:
            ss[S.EX_WI_NUMBER] = float(v)
        except (TypeError, ValueError):
            st.warning(f"The shared link's what-if value {md(v)} is not a number; it is left out.")
            _wi_reset(b, row, m, c)
    elif v in categories(b.trained, m, c):
        ss[S.EX_WI_CATEGORY] = v
    else:
        st.warning(f"The shared link's what-if value {md(v)} is not a category the model knows; it is left out.")
        _wi_reset(b, row, m, c)
    return True


def what_if_link(wi) -> dict:
    """The shareable link's fields of a what-if edit (empty without one)."""
    if wi is None:
        return {}
    e = wi.edits[0]
    return {"wi_data": e.modality, "wi_column": e.column, "wi_value": str(e.new)}


def what_if_panel(b, row: int, focus: str, use, order):
    """The 'What if a value were different?' expander: pick a used kind of data and a measurement, see its value
    with units, enter another. Returns the engine's WhatIf (mmn_core.explain.whatif) when a value differs from
    the record's own, else None; a value the model cannot read is shown with st.error."""
    from mmn_core.explain import whatif as W
    from mmn_core.data import label_str
    spec, ss = b.spec, st.session_state
    mods = [m for m in order if m in use and spec.modality(m).kind == "tabular"]
    shared = _wi_from_link(b, row, mods)
    with st.expander("What if a value were different?", expanded=shared, key=S.EX_WI, icon=":material/tune:"):
        if not mods:
            st.caption("No kind of data with single values is used for this record: switch one on above.")
            return None
        if ss.get(S.EX_WI_MODALITY) not in mods:
            ss[S.EX_WI_MODALITY] = mods[0]
        a, c1, c2 = st.columns([1, 1, 1], gap="small", vertical_alignment="bottom")
        m = a.selectbox("Kind of data", mods, key=S.EX_WI_MODALITY, format_func=lambda x: label_md(mod_label(spec, x)))
        mspec = spec.modality(m)
        if ss.get(S.EX_WI_FEATURE) not in mspec.columns:
            ss[S.EX_WI_FEATURE] = mspec.columns[0]
        c = c1.selectbox("Measurement", mspec.columns, key=S.EX_WI_FEATURE,
                         format_func=lambda x: label_md(col_label(mspec, x)))
        here = (b.ref, b.ds.ids[row], m, c)
        numeric = W.feature_kind(b.trained, m, c) == "numeric"
        fresh = (S.EX_WI_NUMBER if numeric else S.EX_WI_CATEGORY) not in ss     # widget key dropped: page left
        if ss.get(S.EX_WI_FOR) != here or fresh:   # another record or feature: start from its own value
            _wi_reset(b, row, m, c)
            ss[S.EX_WI_FOR] = here
        units, cur = mspec.units.get(c, ""), _wi_current(b, row, m, c)
        if numeric:
            step = W.step_size(b.trained, m, c)
            digits = max(0, -int(np.floor(np.log10(step))))
            new = c2.number_input(f"New value ({label_md(units)})" if units else "New value", key=S.EX_WI_NUMBER,
                                  step=step, format=f"%.{digits}f", placeholder="type a number")
            changed = new is not None and (cur is None or float(new) != float(cur))
        else:
            cats = W.categories(b.trained, m, c)
            new = c2.selectbox("New value", cats, key=S.EX_WI_CATEGORY, placeholder="choose a value",
                               format_func=label_md)
            changed = new is not None and (cur is None or new != label_str(cur))
        st.caption(f"This record's value: **{md(W.raw_words(cur, units))}**. {WHATIF_HELP}")
        st.button("Back to the record's value", key=S.EX_WI_RESET, on_click=_wi_reset, args=(b, row, m, c),
                  icon=":material/restart_alt:", disabled=not changed)
        if not changed:
            return None
        try:
            wi = W.what_if(b.trained, b.ds, row, {(m, c): new}, R._mask(spec, use), list(order))
        except ValueError as err:
            st.error(md(err), icon="⚠️")
            return None
        if numeric:
            lo, hi = W.seen_range(b.trained, b.ds, m, c)
            if not lo <= float(new) <= hi:
                st.warning(f"{md(W.raw_words(float(new), units))} is outside the values of the records the model "
                           f"learned from ({md(W.raw_words(lo, units))} to {md(W.raw_words(hi, units))}): its "
                           f"prediction there is an extrapolation.", icon=":material/warning:")
        st.markdown(f"**{md(W.sentence(b.trained, wi, focus))}**")
        others = [t.name for t in spec.tasks if t.name != focus]
        if others:
            st.caption(" ".join(md(W.sentence(b.trained, wi, t, lead=False)) for t in others))
        st.caption("The focus outcome's chart below draws this path as purple diamonds on a dash-dot line, over "
                   "the record's own path.")
        return wi


def with_what_if(spec, fig, wi, task: str, classes: dict):
    """The step chart `fig` of `task` with the what-if path over it (unchanged when wi is None)."""
    if wi is None:
        return fig
    td = spec.task(task)
    e = wi.edits[0]
    mspec = spec.modality(e.modality)
    from mmn_core.explain.whatif import raw_words
    name = f"what if {col_label(mspec, e.column)} = {raw_words(e.new, mspec.units.get(e.column, ''))}"
    return F.what_if_path(fig, wi.original[task], wi.edited[task], task_type=td.type, units=td.units,
                          classes=class_names(td, classes.get(task)), name=name)
