"""Cohort — "What does the model rely on, for whom?" Global importance, the step × task metric matrix,
missingness patterns and order sensitivity, over the held-out records."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import components as C
from app import figures as F
from app import resources as R
from app import state as S
from app.common import md, mod_label, require_bundle, task_label
from mmn_core.explain import browse as B
from mmn_core.explain.cohort import training_order

ss = st.session_state
b = require_bundle()
spec, ref = b.spec, b.ref
names = spec.modality_names
colors = F.modality_colors(names)
tasks = {t.name: t for t in spec.tasks}
classes = b.trained.prep.classes

st.title("Cohort")
st.caption(f"{len(b.rows):,} " + ("held-out test records (never seen in training)" if b.held_out else "records")
           + f" of {md(spec.title or spec.name)}.")
task = st.selectbox("Outcome", list(tasks), key=S.CO_TASK,
                    persist_state="session", format_func=lambda t: task_label(spec, t))
td = tasks[task]

tabs = st.tabs(["Where the prediction settles", "What it relies on", "For whom", "Order of the data",
                "How far to trust the explanations"],
               key=S.CO_TABS, on_change="rerun")
with tabs[0]:
    if tabs[0].open is not False:
        cls_metrics = {"auroc": "AUROC", "balanced_accuracy": "Balanced accuracy", "accuracy": "Accuracy"}
        metric = st.selectbox("Measure for yes/no and category outcomes", list(cls_metrics), key=S.CO_METRIC,
                              persist_state="session",
                              format_func=cls_metrics.get,
                              help="AUROC: how well the risk ranks people who had the outcome above those who did not "
                                   "(0.5 = chance, 1 = perfect). Outcomes measured in units use R² (1 = perfect).")
        mx = b.trained.metrics
        step_labels = ["Prior"] + [mod_label(spec, m) for m in mx["steps"][1:]]
        per_task = {t: (metric if tasks[t].type != "regression" else "r2") for t in tasks}
        st.plotly_chart(F.metric_heatmap(mx, list(tasks), [tasks[t].display for t in tasks], step_labels, per_task),
                        key="co_matrix_chart", config={"displayModeBar": False})
        st.caption("Each cell scores every test record on its prediction after that many steps (a skipped step "
                   "keeps the previous prediction). Reading left to right shows which kinds of data add information.")

with tabs[1]:
    if tabs[1].open:
        imp = R.cohort_importance(ref)
        it = imp[imp["task"] == task].set_index("modality").reindex(names)
        fig = F.importance_ranges(names, [mod_label(spec, m) for m in names], it["q10"], it["q50"], it["q90"],
                                  it["mean_abs_shapley"], colors, task_type=td.type, task_label=td.display,
                                  units=td.units)
        st.plotly_chart(fig, key="co_importance_chart", config={"displayModeBar": False})
        extra = " (for the class each record is finally predicted)" if td.type == "multiclass" else ""
        st.caption(f"Exact Shapley values of each kind of data on a sample of {int(it['n_shapley'].max()):,} records"
                   f"{extra}, counting only records where that data was measured. A bar far from zero in one direction "
                   "means the data consistently pushes the prediction that way; a wide bar means its effect depends on "
                   "the person.")
        with st.expander("Numbers behind the chart"):
            scale = 100.0 if td.type != "regression" else 1.0
            unit = "points" if scale == 100.0 else (td.units or "")
            st.dataframe(pd.DataFrame({
                "Kind of data": [mod_label(spec, m) for m in names],
                "Measured in (records)": it["n_present"].astype(int).to_numpy(),
                f"Mean size of contribution ({unit})": np.round(it["mean_abs_shapley"].to_numpy() * scale, 2),
                f"Median contribution ({unit})": np.round(it["q50"].to_numpy() * scale, 2),
                f"Mean change at its step ({unit})": np.round(it["mean_abs_delta"].to_numpy() * scale, 2),
            }), hide_index=True, key="co_importance_table")

with tabs[2]:
    if tabs[2].open:
        pt = R.pattern_table(ref)
        out = pd.DataFrame({"Data measured": [B.pattern_label(spec, {m: bool(r[m]) for m in names})
                                              for _, r in pt.iterrows()],
                            "Records": pt["n"].astype(int)})
        if td.type == "binary":
            out[f"Share '{td.class_display(classes[task][1])}'"] = (100 * pt[f"{task}_label_rate"]).round(0)
            out["AUROC"] = pt[f"{task}_auroc"].round(3)
            out["Accuracy"] = pt[f"{task}_accuracy"].round(3)
        elif td.type == "multiclass":
            for c in classes[task]:
                out[f"Share '{td.class_display(c)}'"] = (100 * pt[f"{task}_rate_{c}"]).round(0)
            out["AUROC"] = pt[f"{task}_auroc"].round(3)
        else:
            out[f"Mean actual ({td.units})" if td.units else "Mean actual"] = pt[f"{task}_label_mean"].round(2)
            out[f"Mean absolute error ({td.units})" if td.units else "Mean absolute error"] = pt[f"{task}_mae"].round(2)
        share = {c: st.column_config.NumberColumn(format="%.0f%%") for c in out.columns if c.startswith("Share")}
        st.dataframe(out, hide_index=True, key="co_pattern_table",
                     column_config={"Data measured": st.column_config.TextColumn(width="large"), **share})
        st.caption("Shares are percentages of the records with that pattern. Empty cells: too few records, or only one "
                   "outcome among them, to score.")

with tabs[3]:
    if tabs[3].open:
        c1, c2 = st.columns(2)
        with c1:
            om = R.order_metrics(ref, task)
            key = "auroc" if td.type != "regression" else "mae"
            fig = F.order_chart([o["name"] for o in om], [o[key] for o in om],
                                x_title="AUROC" if key == "auroc" else f"Mean absolute error ({td.units})",
                                title="The whole test set under other orders", reference=om[0][key])
            st.plotly_chart(fig, key="co_order_chart", config={"displayModeBar": False})
        with c2:
            sens = R.order_sensitivity(ref, task)
            st.plotly_chart(F.spread_histogram(sens["spread"], task_type=td.type, units=td.units),
                            key="co_spread_chart", config={"displayModeBar": False})
        spread = np.asarray(sens["spread"], dtype=float) * (100 if td.type != "regression" else 1)
        unit = "percentage points" if td.type != "regression" else (td.units or "")
        st.caption(f"{md(training_order(b.trained).sentence)} Changing the order at prediction time moves a typical "
                   f"record's final prediction by "
                   f"{np.median(spread):.1f} {unit} (median; 90% of records move by at most "
                   f"{np.quantile(spread, 0.9):.1f}). "
                   f"Up to {int(np.max(sens['n_orders']))} orders were tried per record.")

with tabs[4]:
    if tabs[4].open:
        n = R.FAITH_RECORDS
        st.markdown("Each explanation method ranks the kinds of data of a record. Removing them in that order "
                    "(skipping them, exactly as the model treats missing data) should move the prediction more, "
                    "and sooner, than removing them in a random order. The checks run on a seeded sample of "
                    f"**{n} records** of the whole dataset.")
        done = ss.setdefault("_co_faith_done", set())
        if (ref, task) not in done:
            slot = st.empty()
            if not slot.button(f"Measure on {n} records (about a minute)", key=S.CO_FAITH_MEASURE, type="primary"):
                st.stop()
            slot.empty()
            done.add((ref, task))
        fa = R.cohort_faithfulness(ref, task, n)
        rep = fa["report"]
        st.plotly_chart(F.faithfulness_curves(fa["curves"], title=f"Removing data, most important first: "
                                                                   f"{td.display}"),
                        key="co_faith_chart", config={"displayModeBar": False})
        st.markdown(md(C.faithfulness_summary(rep)))
        st.dataframe(C.faithfulness_table(rep), hide_index=True, key="co_faith_table")
        st.caption(C.FAITH_TABLE_HELP)
