"""Compare two records — "How do these two differ, and why?"

Two patients side by side, or one patient with and without some kinds of data (pick the same record on both
sides and switch data off on one). Both sides use the dataset's encoding order and one outcome; their step charts
share one value axis and their Why bars one modality order and one scale (`mmn_core.explain.pair.compare_records`),
so a taller bar or a higher dot means a larger number. The view travels in the link:
?dataset=…&record=A&off=…&record2=B&off2=…&task=… (the Explorer's link carries its record and switches as side A).
"""
from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from app import components as C
from app import figures as F
from app import resources as R
from app import state as S
from app.common import actual_text, md, mod_label, require_bundle, task_label, value_text
from mmn_core.explain import browse as B
from mmn_core.explain.pair import compare_records
from mmn_core.fmt import points, signed

ss = st.session_state
b = require_bundle()
spec, ref = b.spec, b.ref
names = spec.modality_names
colors = F.modality_colors(names)
tasks = {t.name: t for t in spec.tasks}
classes = b.trained.prep.classes
table = R.cohort_table(ref)
ids = table["id"].tolist()
known = set(ids)


def measured(rid: str) -> dict[str, bool]:
    return {m: bool(b.data.present[m][b.pos[rid]]) for m in names}


# --- the link: applied at session start, and whenever another page's link brings a new query ----------------------
url = ss.pop(S.URL_VIEW, None)
query_now = S.view_from_query(st.query_params)
if url is None and query_now.get("record") and query_now != ss.get("_pa_written"):
    url = query_now                                   # e.g. the Explorer's "Compare" link (session already open)
if url:
    if url.get("task") in tasks:
        ss[S.PA_TASK] = url["task"]
    stale = []
    for side, rkey, okey in (("record", S.PA_RECORD_A, S.PA_OFF_A), ("record2", S.PA_RECORD_B, S.PA_OFF_B)):
        rid = url.get(side) or (url.get("record") if side == "record2" else None)   # no B: the same record
        if rid is None:
            continue
        if rid in known:
            ss[rkey] = rid
            off = url.get("off" if side == "record" else "off2", [])
            ss[okey] = [m for m in names if m in set(off) and measured(rid)[m]]
        elif rid not in stale:
            stale.append(rid)
            st.warning(f"The shared record {md(rid)} is not among this model's test records; showing another one.")

with st.sidebar:
    st.subheader("Choose two records")
    task = st.selectbox("Outcome to compare", list(tasks), key=S.PA_TASK, persist_state="session",
                        format_func=lambda t: task_label(spec, t))
    td = tasks[task]
    final = B.task_values(td, table)
    fmt = {r: f"{r} · all its data: {value_text(td, v, classes.get(task))} · actual: "
              f"{actual_text(td, y, classes.get(task))}" for r, v, y in zip(ids, final, table[f"{task}__label"])}
    seen = ss.get(S.EX_VIEW) or {}                 # no link: start from the Explorer's record, if any
    first = seen["record"] if seen.get("ref") == ref and seen.get("record") in known else ids[0]
    for k, default in ((S.PA_RECORD_A, first), (S.PA_RECORD_B, ss.get(S.PA_RECORD_A, first))):
        if ss.get(k) not in known:
            ss[k] = default
    rid_a = st.selectbox("Record A", ids, key=S.PA_RECORD_A, persist_state="session",
                         format_func=lambda r: fmt.get(r, r),
                         help="Each entry: record id · the model's prediction with all of the record's data · what "
                              "actually happened.")
    rid_b = st.selectbox("Record B", ids, key=S.PA_RECORD_B, persist_state="session",
                         format_func=lambda r: fmt.get(r, r),
                         help="Choose the same record as A to compare it with and without some kinds of data.")
    st.button("Same record on both sides", key=S.PA_SAME, icon=":material/compare_arrows:",
              on_click=lambda: ss.update({S.PA_RECORD_B: ss[S.PA_RECORD_A], S.PA_OFF_B: []}),
              help="Put record A on side B too, then switch kinds of data off on one side.")

st.markdown("### Compare two records")
summary_box = st.container(key="pa_summary")
cols = st.columns(2, gap="large")
sides = {}
for col, letter, rid, okey in ((cols[0], "A", rid_a, S.PA_OFF_A), (cols[1], "B", rid_b, S.PA_OFF_B)):
    meas = measured(rid)
    have = [m for m in names if meas[m]]
    if ss.get(okey) is not None:
        ss[okey] = [m for m in ss[okey] if m in have]
    with col:
        st.markdown(f"#### {letter} · Record {md(rid)}")
        off = st.multiselect(f"Switch off (side {letter})", have, key=okey, persist_state="session",
                             format_func=lambda m: mod_label(spec, m),
                             placeholder="All measured data used",
                             help="Kinds of data this record has, left out of side "
                                  f"{letter}'s prediction (the model skips them, as if not measured).")
    use = tuple(m for m in names if meas[m] and m not in off)
    sides[letter] = (rid, meas, use, tuple(off), R.record_view(ref, rid, use, tuple(names)))

(ra, ma, ua, oa, va), (rb, mb, ub, ob, vb) = sides["A"], sides["B"]
pair = compare_records(spec, va, vb, task, record_a=ra, record_b=rb, off_a=oa, off_b=ob)

with summary_box:
    st.markdown(md(pair.sentence))

key_caption = ("Both sides use the dataset's encoding order and the same scales: the same height is the same "
               "prediction, the same bar length the same contribution. Filled dot: the step ran; hollow dot on a "
               "dashed line: switched off; grey crossed dot: not measured (a skipped step changes nothing); ★: "
               "what actually happened.")

is_pct = td.type != "regression"
cl = classes.get(task)
class_label = td.class_display(cl[pair.class_index]) if pair.class_index is not None else None
labels = ["Prior"] + [mod_label(spec, m) for m in pair.steps[1:]]
for col, letter, (rid, meas, use, off, view), values, truth in (
        (cols[0], "A", sides["A"], pair.values_a, pair.truth_a), (cols[1], "B", sides["B"], pair.values_b,
                                                                  pair.truth_b)):
    reasons = [C.status_of(meas, use, m) or F.SKIPPED_BY_YOU for m in pair.steps[1:]]
    kind, kinds, shown_truth = td.type, None, truth
    if pair.class_index is not None:     # multiclass: one class followed on both sides, as a yes / no outcome
        other = actual_text(td, truth, cl) if truth == truth and truth != pair.class_index else "another outcome"
        kind, kinds = "binary", [other, class_label]
        shown_truth = float(truth == pair.class_index) if truth == truth else None
    elif td.type == "binary":
        kinds = [td.class_display(c) for c in cl] if cl else None
    with col:
        st.caption(f"Actual: {md(actual_text(td, view.label[task], cl))} · {sum(meas.values())} of "
                   f"{len(names)} measured" + (f" · {len(off)} switched off" if off else ""))
        fig = F.aligned_step_chart(pair.steps, labels, values, view.skipped, value_range=pair.value_range,
                                   task_type=kind, task_label=td.display + (f": {class_label}" if class_label else ""),
                                   colors=colors, units=td.units, classes=kinds, truth=shown_truth,
                                   skip_reasons=reasons, sentences=view.narrative[task] if not class_label else None,
                                   y_title="Predicted probability (%)" if class_label else None)
        st.plotly_chart(fig, key=f"pa_chart_{letter.lower()}", config=C.CHART_CONFIG)
st.caption(key_caption)
why_cols = st.columns(2, gap="large")
for col, letter, (rid, meas, use, off, view), shap in ((why_cols[0], "A", sides["A"], pair.shapley_a),
                                                      (why_cols[1], "B", sides["B"], pair.shapley_b)):
    bars = F.aligned_shapley_bars(pair.modalities, [mod_label(spec, m) for m in pair.modalities], shap, colors,
                                  span=pair.shapley_span, task_type=td.type, task_label=td.display,
                                  units=td.units, class_label=class_label,
                                  status={m: C.status_of(meas, use, m) for m in pair.modalities})
    col.plotly_chart(bars, key=f"pa_why_{letter.lower()}", config=C.CHART_CONFIG)

# the charts in numbers (their text alternative, and the exact differences)
val = (lambda v: F.pct(v)) if is_pct else (lambda v: F.with_units(v, td.units))
chg = (lambda d: points(d)) if is_pct else (lambda d: signed(d, td.units))
st.markdown(f"**Step by step — {md(td.display)}**" + (f" (probability of “{md(class_label)}”)" if class_label else ""))
st.dataframe(pd.DataFrame({"Step": labels, "A": [val(v) for v in pair.values_a], "B": [val(v) for v in pair.values_b],
                           "B − A": [chg(d) for d in pair.difference]}), hide_index=True, key="pa_diff_table")

# the shareable link
query = S.view_to_query({"dataset": ss.get(S.DATASET), "record": ra, "off": list(oa), "record2": rb,
                         "off2": list(ob), "task": task})
if dict(st.query_params) != query:
    st.query_params.from_dict(query)
ss["_pa_written"] = S.view_from_query(query)
with st.sidebar:
    st.divider()
    st.caption("Share this comparison (both records, their switches, the outcome) with this link:")
    st.code(f"{st.context.url or ''}?{urlencode(query)}", language=None, wrap_lines=True)
