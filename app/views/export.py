"""Report & downloads — the Explorer's current view as a self-contained HTML report and CSV tables."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from app import report
from app import resources as R
from app import state as S
from app.common import md, mod_label, require_bundle, task_label
from mmn_core.explain import browse as B

ss = st.session_state
b = require_bundle()
spec, ref = b.spec, b.ref
names = spec.modality_names

view = ss.get(S.EX_VIEW)
if not view or view.get("ref") != ref or view.get("record") not in b.pos:
    # No Explorer view yet: the record the Explorer opens on (largest error on the first outcome), all its data.
    first = spec.tasks[0].name
    rid = B.filter_records(R.cohort_table(ref), spec.tasks[0], b.trained.prep.classes.get(first))["id"].iloc[0]
    row = b.pos[rid]
    use = tuple(m for m in names if bool(b.data.present[m][row]))
    view = {"ref": ref, "record": rid, "use": use, "order": tuple(names), "focus": first}
rid, use, order, focus = view["record"], tuple(view["use"]), tuple(view["order"]), view["focus"]

st.title("Report & downloads")
st.markdown(f"Record **{md(rid)}**, as set up in the Explorer: outcome in focus "
            f"*{md(task_label(spec, focus))}*.")
st.caption("Data used, in order: " + md(", ".join(mod_label(spec, m) for m in order if m in use) or "none")
           + ". Change the record, the switches or the order in the Explorer; this page follows.")

g_view = R.record_view(ref, rid, use, order)
row = b.pos[rid]
measured = {m: bool(b.data.present[m][row]) for m in names}
trace_df = report.trace_frame(b, g_view, measured)
shap_df = report.shapley_frame(b, g_view, measured, use)

c1, c2, c3, c4 = st.columns(4)
c1.download_button("HTML report", key=S.RP_HTML, on_click="ignore", icon=":material/description:", type="primary",
                   data=lambda: report.build_html(ref, rid, use, order, focus),
                   file_name=f"record-{report.safe_file_part(rid)}.html", mime="text/html",
                   help="One file with the charts, the narrative and the values; opens offline in any browser.")
c2.download_button("Step-by-step predictions (CSV)", key=S.RP_TRACE_CSV, on_click="ignore",
                   data=report.to_csv(trace_df), file_name=f"trace-{report.safe_file_part(rid)}.csv",
                   mime="text/csv")
c3.download_button("Contributions (CSV)", key=S.RP_SHAPLEY_CSV, on_click="ignore", data=report.to_csv(shap_df),
                   file_name=f"shapley-{report.safe_file_part(rid)}.csv", mime="text/csv")
c4.download_button("Feature attributions (CSV)", key=S.RP_ATTR_CSV, on_click="ignore",
                   data=lambda: report.to_csv(report.attribution_frame(b, ref, rid, use, order, focus)),
                   file_name=f"attributions-{report.safe_file_part(rid)}.csv", mime="text/csv",
                   help="Integrated Gradients for every kind of data used, each at its own step.")



def on_screen(df: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """The CSV table as a reader sees it: probability columns ('… P(x)' and classification Shapley values) in
    % / points (the CSV keeps 0–1), class names without the dataset's codes, the Explorer's words for a step
    that did not run."""
    out = df.copy()
    prob = {t.display for t in spec.tasks if t.type != "regression"}
    names = {}
    for c in df.columns:
        new = re.sub(r" \[[^\[\]]*\]\)$", ")", c)        # "P(No severe disability [no(M2…)])" -> "P(…)"
        if "P(" in c or c in prob:
            out[c] = (100 * df[c]).round(1)
            new = f"{new} ({suffix})"
        names[c] = new
    out["status"] = out["status"].map(lambda v: STATUS.get(v, v))
    return out.rename(columns={**names, "step": "Step", "modality": "Kind of data", "status": "Status"})


STATUS = {f"skipped: {report.OFF}": "skipped by you", report.OFF: "skipped by you",
          "skipped: not measured": "not measured"}
COLUMNS = {"Kind of data": st.column_config.TextColumn(width="medium")}

st.subheader("Step-by-step predictions")
st.dataframe(on_screen(trace_df, "%"), hide_index=True, key="rp_trace_table", column_config=COLUMNS)
st.caption("Risks in %; outcomes measured in units are in those units. The CSV gives probabilities from 0 to 1 "
           "and names each class also by its code in the data.")
st.subheader("Contribution of each kind of data (Shapley values)")
st.dataframe(on_screen(shap_df, "points"), hide_index=True, key="rp_shapley_table", column_config=COLUMNS)
