"""Explorer — "Why does the model say this about this person?"

Pick a record, switch kinds of data on and off, change their order, and read the prediction step by step.

The page has two parts. The full run reads the shared link and builds the sidebar's record picker (1,000+
options). Everything that depends on the switches and the order is one `st.fragment` (`record_body`): a toggle,
an arrow or a tab reruns only that part, so the sidebar and the title are neither recomputed nor re-sent.
"""
from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

from app import figures as F
from app import resources as R
from app import state as S
from app.common import (STATE_HELP, actual_text, class_names, col_label, label_md, md, mod_label, raw_text,
                        require_bundle, swatch, task_label, value_text)

ss = st.session_state
b = require_bundle()
spec, ref = b.spec, b.ref
names = spec.modality_names
colors = F.modality_colors(names)
tasks = {t.name: t for t in spec.tasks}
classes = b.trained.prep.classes                                   # the model's class values (for indices)
plain = {t: class_names(td, classes.get(t)) for t, td in tasks.items()}   # what a reader sees
table = R.cohort_table(ref)
CHART_CONFIG = {"displayModeBar": False}
CHIP_WIDTH = 190                   # px: five chips a row beside the sidebar at 1,500 px

# --- a shared link: applied once, validated against this model's records ---------------------------------------
url = ss.pop(S.URL_VIEW, None)
if url:
    rid = url.get("record")
    if rid is not None and rid in set(table["id"]):
        ss[S.EX_RECORD] = rid
        ss["_ex_pending"] = {"record": rid, "off": url.get("off", []), "order": url.get("order")}
        ss[S.EX_SURPRISING] = False
        for k in (S.EX_SEARCH, S.EX_OUTCOME, S.EX_PATTERN):
            ss.pop(k, None)
    elif rid is not None:
        st.warning(f"The shared record {md(rid)} is not among this model's test records; showing another one.")
    if url.get("task") in tasks:
        ss[S.EX_TASK] = url["task"]
    if url.get("step") in names:
        ss[S.EX_ATTR_MODALITY] = url["step"]


# --- sidebar: choose a record ------------------------------------------------------------------------------------
def pattern_name(p: str) -> str:
    have = set(p.split("|")) if p else set()
    missing = [mod_label(spec, m) for m in names if m not in have]
    return "Everything measured" if not missing else "Missing: " + ", ".join(missing)


with st.sidebar:
    st.subheader("Choose a record")
    focus = st.selectbox("Outcome to focus on", list(tasks), key=S.EX_TASK,
                         persist_state="session", format_func=lambda t: task_label(spec, t),
                         help="Used to filter and sort records, for the record list's percentages, and for the "
                              "'Why', attribution and map views.")
    ft = tasks[focus]
    st.text_input("Search by record id", key=S.EX_SEARCH, persist_state="session", placeholder="e.g. part of an id")
    if ft.type == "regression":
        outcome_opts = ["All", "Lowest third", "Middle third", "Highest third"]
    else:
        outcome_opts = ["All"] + [str(c) for c in classes[focus]]
    if ss.get(S.EX_OUTCOME) not in outcome_opts:
        ss[S.EX_OUTCOME] = "All"
    st.selectbox(f"Actual outcome ({label_md(task_label(spec, focus))})", outcome_opts, key=S.EX_OUTCOME,
                 persist_state="session", format_func=lambda c: c if c == "All" or ft.type == "regression"
                 else ft.class_display(c))
    counts = table["pattern"].value_counts()
    pattern_opts = ["All"] + list(counts.index)
    if ss.get(S.EX_PATTERN) not in pattern_opts:
        ss[S.EX_PATTERN] = "All"
    st.selectbox("Which data were measured", pattern_opts, key=S.EX_PATTERN, persist_state="session",
                 format_func=lambda p: "All patterns" if p == "All" else f"{pattern_name(p)} ({counts[p]})")
    st.toggle("Most surprising first", key=S.EX_SURPRISING, persist_state="session", value=True,
              help="Sort by how far the final prediction is from what actually happened (largest error first).")

    sel = table
    q = (ss.get(S.EX_SEARCH) or "").strip().lower()
    if q:
        sel = sel[sel["id"].str.lower().str.contains(q, regex=False)]
    oc = ss[S.EX_OUTCOME]
    lab = sel[f"{focus}__label"]
    if oc != "All":
        if ft.type == "regression":
            q1, q2 = np.nanquantile(table[f"{focus}__label"], [1 / 3, 2 / 3])
            band = {"Lowest third": lab <= q1, "Middle third": (lab > q1) & (lab <= q2), "Highest third": lab > q2}
            sel = sel[band[oc]]
        else:
            sel = sel[lab == classes[focus].index(oc)]
    if ss[S.EX_PATTERN] != "All":
        sel = sel[sel["pattern"] == ss[S.EX_PATTERN]]
    if ss.get(S.EX_SURPRISING, True):
        sel = sel.sort_values(f"{focus}__surprise", ascending=False, na_position="last", kind="stable")
    options = sel["id"].tolist()
    if not options:
        st.warning("No record matches these filters.")
        st.stop()
    if ss.get(S.EX_RECORD) not in options:
        ss[S.EX_RECORD] = options[0]
    final = R.task_values(ft, sel)
    # The list's percentage is the model's prediction with ALL of the record's data, whatever the switches on
    # the page say; the label says so, so it cannot be mistaken for the headline.
    fmt = {rid: f"{rid} · all its data: {value_text(ft, fv, classes.get(focus))} · "
                f"actual: {actual_text(ft, lv, classes.get(focus))}"
           for rid, lv, fv in zip(options, sel[f"{focus}__label"], final)}
    st.selectbox(f"Record ({len(options):,} match)", options, key=S.EX_RECORD,
                 persist_state="session", format_func=lambda r: fmt.get(r, r),
                 help=f"Each entry: record id · the model's prediction of {md(ft.display)} with **all** of "
                      f"the record's data · what actually happened. Switching data off changes the page, not "
                      f"this list.")

rid = ss[S.EX_RECORD]
row = b.pos[rid]
measured = {m: bool(b.data.present[m][row]) for m in names}


# --- toggles and order: reset when the record changes --------------------------------------------------------
def reset_view(off=(), order=None) -> None:
    for m in names:
        ss[S.modality_key(S.EX_USE, m)] = measured[m] and m not in off
    ok = order is not None and sorted(order) == sorted(names)
    ss[S.EX_ORDER] = list(order) if ok else list(names)


applied = (ref, rid)
if ss.get(S.APPLIED_RECORD) != applied or S.EX_ORDER not in ss:
    pending = ss.pop("_ex_pending", None)
    if pending and pending["record"] == rid:
        reset_view(pending["off"], pending["order"])
    else:
        reset_view()
    ss[S.APPLIED_RECORD] = applied
last = ss.get(S.EX_VIEW) or {}
for m in names:                       # widget keys are dropped when the page is left: restore the last view
    if S.modality_key(S.EX_USE, m) not in ss:
        was = last.get("record") == rid and last.get("ref") == ref
        ss[S.modality_key(S.EX_USE, m)] = measured[m] and (m in last["use"] if was else True)


def move(m: str, step: int) -> None:
    order = list(ss[S.EX_ORDER])
    i = order.index(m)
    j = min(max(i + step, 0), len(order) - 1)
    order[i], order[j] = order[j], order[i]
    ss[S.EX_ORDER] = order


st.title(f"Record {md(rid)}")


def status_of(m: str, use) -> str:
    """'' when the step runs, else why not: F.NOT_MEASURED (no such data) or F.SKIPPED_BY_YOU (switched off)."""
    return "" if m in use else F.NOT_MEASURED if not measured[m] else F.SKIPPED_BY_YOU


def class_choice(t: str, v_final) -> int | None:
    if tasks[t].type != "multiclass":
        return None
    opts = list(range(len(classes[t])))
    default = int(np.asarray(v_final).argmax())
    if ss.get(S.EX_CLASS) not in opts:
        ss[S.EX_CLASS] = default
    return st.selectbox(f"Class explained for {label_md(tasks[t].display)}", opts, key=S.EX_CLASS,
                        persist_state="session", format_func=lambda c: plain[t][c])


def shapley_figure(t: str, view: dict, use, ci: int | None):
    """The Why bars of task t (multiclass: of class ci, default the predicted one)."""
    td = tasks[t]
    vals = np.asarray(view.shapley[t])
    sm = view.shapley_modalities
    idx = [sm.index(m) for m in names]
    cl = None
    if td.type == "multiclass":
        ci = int(np.asarray(view.value[t][-1]).argmax()) if ci is None else ci
        vals, cl = vals[:, ci], plain[t][ci]
    return F.shapley_bars(names, [mod_label(spec, m) for m in names], vals[idx], colors, task_type=td.type,
                          task_label=td.display, units=td.units, status={m: status_of(m, use) for m in names},
                          class_label=cl)


# --- everything that follows the switches: one fragment -----------------------------------------------------------
@st.fragment
def record_body() -> None:
    order = list(ss[S.EX_ORDER])
    use = tuple(m for m in order if measured[m] and ss.get(S.modality_key(S.EX_USE, m)))
    view = R.record_view(ref, rid, use, tuple(order))
    n_meas = sum(measured.values())
    n_off = n_meas - len(use)
    st.caption(("A held-out test record: the model never saw it during training. " if b.held_out else "")
               + f"{n_meas} of {len(names)} kinds of data were measured for this record"
               + (f"; you switched {n_off} off, so {len(use)} are used below." if n_off
                  else "; all of them are used below."))

    # headline predictions
    cols = st.columns(len(tasks))
    for c, (t, td) in zip(cols, tasks.items()):
        v = view.value[t]
        if td.type == "multiclass":
            k = int(v[-1].argmax())
            d = v[-1][k] - v[0][k]
            delta = F.points(d)
        elif td.type == "binary":
            d = v[-1] - v[0]
            delta = F.points(d)
        else:
            d = v[-1] - v[0]
            delta = F.signed(d, td.units)
        arrow = "off" if delta == "no change" else "up" if d > 0 else "down"
        shown = plain[t][k] if td.type == "multiclass" else value_text(td, v[-1], classes.get(t))
        c.metric(label_md(td.display), label_md(shown), delta=delta, delta_color="off", delta_arrow=arrow,
                 delta_description="since the prior (no data)", help=md(td.description) if td.description else None)
        prob = f"Probability {F.pct(v[-1][k])} · " if td.type == "multiclass" else ""
        c.caption(f"{prob}Actual outcome: {md(actual_text(td, view.label[t], classes.get(t)))}")

    # the kinds of data as chips in encoding order (the order of the charts' x-axis): switch, status, arrows
    st.markdown("**Data, in encoding order** — switch a kind of data off to see the prediction without it; "
                "the arrows move it one step earlier or later.")
    with st.container(horizontal=True, gap="small", key="ex_chips"):
        for pos, m in enumerate(order):
            mspec = spec.modality(m)
            why = status_of(m, use)
            with st.container(border=True, width=CHIP_WIDTH, gap=None, key=f"ex_row__{m}"):
                with st.container(horizontal=True, gap="small", vertical_alignment="top", wrap=False):
                    # the colour dot is decoration: a separate element hidden from screen readers, so the
                    # switch's accessible name is the modality's name alone
                    st.html(f'<span aria-hidden="true" style="color:{colors[m]};font-size:1.1rem;'
                            f'line-height:1.5">●</span>', width="content")
                    st.toggle(label_md(mspec.display), key=S.modality_key(S.EX_USE, m), disabled=not measured[m],
                              persist_state="session", wrap=True, width="stretch")
                with st.container(horizontal=True, gap=None, vertical_alignment="center", wrap=False):
                    st.caption("used" if not why else "**not measured**" if why == F.NOT_MEASURED
                               else ":orange[**skipped by you**]", width="stretch",
                               help=md(mspec.description) if mspec.description else None)
                    st.button("←", key=S.modality_key(S.EX_UP, m), on_click=move, args=(m, -1), disabled=pos == 0,
                              help="Encode one step earlier", type="tertiary")
                    st.button("→", key=S.modality_key(S.EX_DOWN, m), on_click=move, args=(m, 1),
                              disabled=pos == len(order) - 1, help="Encode one step later", type="tertiary")
        st.button("Reset to the record's data", key=S.EX_RESET, on_click=reset_view, icon=":material/restart_alt:",
                  help="Every measured kind of data on, in the dataset's order.")

    steps = view.steps
    step_labels = ["Prior"] + [mod_label(spec, m) for m in steps[1:]]
    reasons = [status_of(m, use) or F.SKIPPED_BY_YOU for m in steps[1:]]
    for t, td in tasks.items():
        fig = F.step_chart(steps, step_labels, view.value[t], view.skipped, task_type=td.type,
                           task_label=td.display, colors=colors, units=td.units, classes=plain.get(t),
                           truth=view.label[t], skip_reasons=reasons, sentences=view.narrative[t])
        st.plotly_chart(fig, key=f"ex_chart__{t}", config=CHART_CONFIG)
    st.caption("Filled dots: the step ran. Hollow dot on a dashed line and a grey band: data you switched off. "
               "Grey crossed dot on a dotted line: not measured for this record. A skipped step leaves the "
               "prediction unchanged. The last column (★) is what actually happened. Hover a dot for the step's "
               "change.")

    # details, computed only for the open tab
    tab_names = ["Why", "Inside a step", "State", "Compare with P-Fusion", "Data"]
    tabs = st.tabs(tab_names, key=S.EX_TABS, on_change="rerun")

    with tabs[0]:
        if tabs[0].open is not False:
            st.caption("Each bar is an exact Shapley value: how much that kind of data moved this record's final "
                       "prediction, averaged over every order in which it could have been added. The bars add up "
                       "to the change from the prior to the final prediction.")
            a, bcol = st.columns([1.2, 1], gap="large")
            with a:
                ci = class_choice(focus, view.value[focus][-1])
                st.plotly_chart(shapley_figure(focus, view, use, ci), key=f"ex_shap__{focus}", config=CHART_CONFIG)
            with bcol:
                st.markdown(f"**In words — {md(ft.display)}**")
                st.markdown("\n".join(f"{k + 1}. {md(s)}" for k, s in enumerate(view.narrative[focus])))
            others = [t for t in tasks if t != focus]
            if others:
                # the other outcomes' bars only when asked for: each chart costs the browser a redraw per toggle
                more = st.expander("The same for the other outcomes", key=S.EX_WHY_MORE, on_change="rerun")
                with more:
                    if more.open:
                        for t in others:
                            a, bcol = st.columns([1.2, 1], gap="large")
                            a.plotly_chart(shapley_figure(t, view, use, None), key=f"ex_shap__{t}",
                                           config=CHART_CONFIG)
                            bcol.markdown(f"**In words — {md(tasks[t].display)}**")
                            bcol.markdown("\n".join(f"{k + 1}. {md(s)}" for k, s in enumerate(view.narrative[t])))

    with tabs[1]:
        if tabs[1].open:
            inside_a_step(view, use, order)

    with tabs[2]:
        if tabs[2].open:
            st.subheader("State", help=STATE_HELP)
            st.plotly_chart(F.state_heatmap(view.states, step_labels, view.skipped, reasons),
                            key="ex_state_heat", config=CHART_CONFIG)
            smap = R.state_map(ref)
            path = smap.transform(view.states)
            td = tasks[focus]
            lab = table[f"{focus}__label"].to_numpy()
            ids_pos = {r: j for j, r in enumerate(smap.ids)}
            order_idx = [ids_pos[r] for r in table["id"]]
            cloud = smap.cloud[-1][order_idx]
            fig = F.state_map(cloud, lab, outcome_type=td.type, outcome_label=td.display, classes=plain.get(focus),
                              path_xy=path, steps=steps, step_labels=step_labels, colors=colors,
                              skipped=view.skipped, units=td.units)
            st.plotly_chart(fig, key="ex_state_map", config=CHART_CONFIG)
            st.caption("Each grey dot is another test record's final state, squeezed onto two axes (PCA); records "
                       "the model sees as similar lie close together. The coloured path is this record, step by "
                       "step.")

    with tabs[3]:
        if tabs[3].open:
            compare(view, use, order)

    with tabs[4]:
        if tabs[4].open:
            data_tab(use)

    ss[S.EX_VIEW] = {"ref": ref, "record": rid, "use": use, "order": tuple(order), "focus": focus}

    # the shareable link and the report (in the sidebar, rewritten by each fragment run)
    off = [m for m in names if measured[m] and m not in use]
    link = {"dataset": ss.get(S.DATASET), "record": rid, "off": off, "order": order, "task": focus,
            "step": ss.get(S.EX_ATTR_MODALITY) if ss.get(S.EX_ATTR_MODALITY) in names else None}
    query = S.view_to_query(link)
    if dict(st.query_params) != query:
        st.query_params.from_dict(query)
    with st.sidebar:
        st.divider()
        base = st.context.url or ""
        st.caption("Share this view (record, switches, order, outcome) with this link:")
        st.code(f"{base}?{urlencode(query)}", language=None, wrap_lines=True)
        from app import report
        st.download_button("Download the report (HTML)", key=S.EX_REPORT, on_click="ignore",
                           icon=":material/description:",
                           data=lambda: report.build_html(ref, rid, use, tuple(order), focus),
                           file_name=f"record-{report.safe_file_part(rid)}.html", mime="text/html")


def inside_a_step(view: dict, use, order) -> None:
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
    methods = {"ig": "Integrated Gradients", "ablation": "Feature ablation", "shapley": "Shapley sampling"}
    method = c3.selectbox("Method", list(methods), key=S.EX_ATTR_METHOD,
                          persist_state="session", format_func=methods.get,
                          help="Integrated Gradients: fast and exact up to the 'convergence delta'. "
                               "Feature ablation: replace one value at a time by the average. "
                               "Shapley sampling: slower, averages over random orders of the values.")
    td = tasks[focus]
    ci = class_choice(focus, view.value[focus][-1]) if td.type == "multiclass" else None
    a = R.record_attribution(ref, rid, use, tuple(order), am, focus, target.startswith("The change"), method, ci)
    mspec = spec.modality(am)
    labels, raws, vals = [], [], []
    for col in a["columns"]:
        labels.append(col_label(mspec, col))
        rv = a["raw"].get(col)
        if isinstance(rv, list):
            rv = f"{raw_text(rv[-1], mspec.units.get(col, ''))} (latest of {len(rv)})" if rv else "—"
        else:
            rv = raw_text(rv, mspec.units.get(col, ""))
        raws.append(rv)
        vals.append(a["by_column"][col] * (a["scale"] if td.type == "regression" else 1.0))
    if td.type == "regression":
        xt = f"Effect on the predicted {td.display} ({td.units})" if td.units else "Effect on the prediction"
    elif td.type == "binary":
        xt = f"Push on the log-odds of '{plain[focus][1]}' (right = more likely)"
    else:
        xt = f"Push on the score of '{plain[focus][ci]}' (right = more likely)"
    where = f"after {mod_label(spec, am)}" if target.startswith("The change") else "final prediction"
    fig = F.attribution_bars(labels, np.asarray(vals), raws, colors[am],
                             title=f"{mod_label(spec, am)} → {td.display} ({where})", x_title=xt)
    st.plotly_chart(fig, key="ex_attr_chart", config=CHART_CONFIG)
    st.caption("Each bar compares this record's value with an average record (the training mean); "
               "categories are compared with 'no category'. Values earlier steps added are held fixed.")
    if a["delta"] is not None:
        st.caption(f"Integrated Gradients check (convergence delta): the bars add up to the change in "
                   f"score from an average record within {abs(a['delta']):.2g} "
                   f"(total change {a['target_logit'] - a['baseline_logit']:+.3f}).")
    st.dataframe(pd.DataFrame({"Value": labels, "This record": raws, "Attribution": np.round(vals, 4)}),
                 hide_index=True, key="ex_attr_table")


def compare(view: dict, use, order) -> None:
    if b.pf is None:
        st.info("No P-Fusion model is available for this dataset, so there is nothing to compare with.")
        return
    st.markdown("P-Fusion reads all kinds of data **at once**. When one is missing (or switched off here) "
                "it fills in the average value and still uses it; MultiModN skips that step instead.")
    pf_now = R.pfusion_view(ref, rid, use)
    all_use = tuple(m for m in order if measured[m])
    pf_all = R.pfusion_view(ref, rid, all_use)
    mmn_all = R.record_view(ref, rid, all_use, tuple(order)).value
    rows = []
    for t, td in tasks.items():
        rows.append({"Outcome": td.display, "Actual": actual_text(td, view.label[t], classes.get(t)),
                     "MultiModN (your choices)": value_text(td, view.value[t][-1], classes.get(t)),
                     "P-Fusion (your choices)": value_text(td, pf_now[t], classes.get(t)),
                     "MultiModN (all measured data)": value_text(td, mmn_all[t][-1], classes.get(t)),
                     "P-Fusion (all measured data)": value_text(td, pf_all[t], classes.get(t))})
    binary = [t for t, td in tasks.items() if td.type == "binary"]
    if binary:
        fig = F.compare_bars([tasks[t].display for t in binary], [view.value[t][-1] for t in binary],
                             [pf_now[t] for t in binary], [mmn_all[t][-1] for t in binary],
                             [pf_all[t] for t in binary])
        st.plotly_chart(fig, key="ex_compare_chart", config=CHART_CONFIG)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ex_compare_table")


def data_tab(use) -> None:
    rec = b.ds.frame.iloc[row]
    grid = st.columns(2, gap="large")
    for gi, m in enumerate(names):
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
            if not measured[m]:
                pass
            elif mspec.kind == "tabular":
                st.dataframe(pd.DataFrame({
                    "Measurement": [col_label(mspec, c) for c in mspec.columns],
                    "Value": [raw_text(rec[c]) if not isinstance(rec[c], str) else rec[c] for c in mspec.columns],
                    "Unit": [mspec.units.get(c, "") for c in mspec.columns]}), hide_index=True,
                    key=f"ex_data__{m}")
            else:
                seq = b.ds.sequences[m]
                part = seq[seq[mspec.key].astype(str) == rid][[mspec.time_column, *mspec.columns]]
                part = part.rename(columns={c: f"{col_label(mspec, c)} ({mspec.units[c]})" if mspec.units.get(c)
                                            else col_label(mspec, c) for c in part.columns})
                st.dataframe(part, hide_index=True, key=f"ex_data__{m}", height=min(400, 40 + 35 * len(part)))


record_body()
