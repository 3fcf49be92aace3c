"""Explorer — "Why does the model say this about this person?"

Pick a record, switch kinds of data on and off, change their order, and read the prediction step by step.

The page has two parts. The full run reads the shared link and builds the sidebar's record picker (1,000+
options). Everything that depends on the switches and the order is one `st.fragment` (`record_body`): a toggle,
an arrow or a tab reruns only that part, so the sidebar and the title are neither recomputed nor re-sent.
"""
from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from app import components as C
from app import figures as F
from app import resources as R
from app import state as S
from app.common import actual_text, label_md, md, require_bundle, task_label, value_text
from mmn_core.explain import browse as B
from mmn_core.explain.choosing import CHOICE_LABELS, rank_records

ss = st.session_state
b = require_bundle()
spec, ref = b.spec, b.ref
names = spec.modality_names
colors = F.modality_colors(names)
tasks = {t.name: t for t in spec.tasks}
classes = b.trained.prep.classes                                   # the model's class values (for indices)
table = R.cohort_table(ref)
CHART_CONFIG = C.CHART_CONFIG
CHIP_WIDTH = 190                   # px: five chips a row beside the sidebar at 1,500 px

# --- a shared link: applied once, validated against this model's records ---------------------------------------
url = ss.pop(S.URL_VIEW, None)
if url:
    rid = url.get("record")
    if rid is not None and rid in set(table["id"]):
        ss[S.EX_RECORD] = ss[S.EX_CHOSEN] = rid
        ss["_ex_pending"] = {"record": rid, "off": url.get("off", []), "order": url.get("order")}
        ss[S.EX_WI_PENDING] = {"record": rid, **{k: url[k] for k in S.WI_URL_FIELDS if k in url}}
        for k in (S.EX_SEARCH, S.EX_OUTCOME, S.EX_PATTERN):
            ss.pop(k, None)
    elif rid is not None:
        st.warning(f"The shared record {md(rid)} is not among this model's test records; showing another one.")
    if url.get("task") in tasks:
        ss[S.EX_TASK] = url["task"]
    if url.get("step") in names:
        ss[S.EX_ATTR_MODALITY] = url["step"]
    if url.get("tab") in S.EX_TAB_NAMES:
        ss[S.EX_TABS] = S.EX_TAB_NAMES[url["tab"]]
    if url.get("method") in C.METHODS:
        ss[S.EX_ATTR_METHOD] = url["method"]
    if url.get("explain") in S.EX_EXPLAIN_NAMES:
        ss[S.EX_ATTR_TARGET] = S.EX_EXPLAIN_NAMES[url["explain"]]
    values = [str(c) for c in classes.get(ss.get(S.EX_TASK) or list(tasks)[0]) or []]
    if url.get("class") is not None and url["class"] in values:
        ss[S.EX_CLASS] = values.index(url["class"])


# --- sidebar: choose a record (the filtering is the engine's: mmn_core.explain.browse) --------------------------
with st.sidebar:
    st.subheader("Choose a record")
    focus = st.selectbox("Outcome to focus on", list(tasks), key=S.EX_TASK,
                         persist_state="session", format_func=lambda t: task_label(spec, t),
                         help="Used to filter and sort records, for the record list's percentages, and for the "
                              "'Why', attribution and map views.")
    ft = tasks[focus]
    st.text_input("Search by record id", key=S.EX_SEARCH, persist_state="session", placeholder="e.g. part of an id")
    outcome_opts = B.outcome_options(ft, classes.get(focus))
    if ss.get(S.EX_OUTCOME) not in outcome_opts:
        ss[S.EX_OUTCOME] = B.ALL
    st.selectbox(f"Actual outcome ({label_md(task_label(spec, focus))})", outcome_opts, key=S.EX_OUTCOME,
                 persist_state="session", format_func=lambda c: c if c == B.ALL or ft.type == "regression"
                 else ft.class_display(c))
    counts = B.pattern_options(table)
    pattern_opts = [B.ALL, *counts]
    if ss.get(S.EX_PATTERN) not in pattern_opts:
        ss[S.EX_PATTERN] = B.ALL
    st.selectbox("Which data were measured", pattern_opts, key=S.EX_PATTERN, persist_state="session",
                 format_func=lambda p: "All patterns" if p == B.ALL else
                 f"{B.pattern_key_label(spec, p)} ({counts[p]})")
    choices = [c for c in CHOICE_LABELS if not (c == "borderline" and ft.type == "regression")]
    if ss.get(S.EX_CHOICE) not in choices:
        ss[S.EX_CHOICE] = "typical"
    st.selectbox("Order the records by", choices, key=S.EX_CHOICE, format_func=CHOICE_LABELS.get,
                 on_change=lambda: ss.update({S.EX_CHOSEN: ""}),         # a new order: show its first record
                 help="Typical: correctly predicted, with the most common data measured, first. Most surprising: "
                      "the largest error first. Borderline: closest to a coin toss first. Most data missing: "
                      "fewest kinds of data measured first.")
    sel = B.filter_records(table, ft, classes.get(focus), query=ss.get(S.EX_SEARCH) or "", outcome=ss[S.EX_OUTCOME],
                           pattern=ss[S.EX_PATTERN], surprising=False)
    options = sel["id"].tolist()
    if not options:
        st.warning("No record matches these filters.")
        st.stop()
    sel = sel.iloc[rank_records(B.task_values(ft, sel), sel[f"{focus}__label"].to_numpy(), ft.type, sel["pattern"],
                                ss[S.EX_CHOICE], sel[f"{focus}__surprise"].to_numpy())]
    options = sel["id"].tolist()
    # The chosen record stays chosen while it matches the filters, whatever else changes: the list is rebuilt
    # for another outcome (new labels), and a rebuilt selectbox would otherwise fall back to its first entry.
    chosen = ss[S.EX_CHOSEN] if S.EX_CHOSEN in ss else ss.get(S.EX_RECORD)
    ss[S.EX_RECORD] = chosen if chosen in options else options[0]
    final = B.task_values(ft, sel)
    # The list's percentage is the model's prediction with ALL of the record's data, whatever the switches on
    # the page say; the label says so, so it cannot be mistaken for the headline.
    fmt = {rid: f"{rid} · all its data: {value_text(ft, fv, classes.get(focus))} · "
                f"actual: {actual_text(ft, lv, classes.get(focus))}"
           for rid, lv, fv in zip(options, sel[f"{focus}__label"], final)}
    st.selectbox(f"Record ({len(options):,} match)", options, key=S.EX_RECORD,
                 persist_state="session", format_func=lambda r: fmt.get(r, r),
                 on_change=lambda: ss.update({S.EX_CHOSEN: ss[S.EX_RECORD]}),
                 help=f"Each entry: record id · the model's prediction of {md(ft.display)} with **all** of "
                      f"the record's data · what actually happened. Switching data off changes the page, not "
                      f"this list.")

rid = ss[S.EX_CHOSEN] = ss[S.EX_RECORD]
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
    return C.status_of(measured, use, m)


def link_class(task: str) -> str | None:
    """The class explained (multiclass focus task) as its value, for the shareable link; None otherwise."""
    values = classes.get(task)
    i = ss.get(S.EX_CLASS)
    if tasks[task].type != "multiclass" or not values or not isinstance(i, int) or not 0 <= i < len(values):
        return None
    return str(values[i])


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

    C.headline(spec, view, classes, {t: R.how_sure(ref, t, view.value[t][-1], classes) for t in tasks})

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
    C.order_caveat(b, focus, order)

    wi = C.what_if_panel(b, row, focus, use, order)
    C.overview(spec, view, classes)
    figs = C.step_figures(spec, view, measured, use, classes)
    st.plotly_chart(C.with_what_if(spec, figs[focus], wi, focus, classes), key=f"ex_chart__{focus}",
                    config=CHART_CONFIG)
    others = [t for t in figs if t != focus]
    if others:
        with st.expander("Step charts of the other outcomes"):
            for t in others:
                st.plotly_chart(figs[t], key=f"ex_chart__{t}", config=CHART_CONFIG)
    st.caption("Filled dots: the step ran. Hollow dot on a dashed line and a grey band: data you switched off. "
               "Grey crossed dot on a dotted line: not measured for this record. A skipped step leaves the "
               "prediction unchanged. The last column (★) is what actually happened. Hover a dot for the step's "
               "change.")

    # details, computed only for the open tab
    tab_names = list(S.EX_TAB_NAMES.values())
    tabs = st.tabs(tab_names, key=S.EX_TABS, on_change="rerun")

    with tabs[0]:
        if tabs[0].open is not False:
            C.why_panel(b, view, focus, measured, use, order)

    with tabs[1]:
        if tabs[1].open:
            C.measure_panel(b, focus, use)

    with tabs[2]:
        if tabs[2].open:
            C.inside_a_step(b, view, focus, use, order)

    with tabs[3]:
        if tabs[3].open:
            C.state_tab(b, view, focus, table, use)

    with tabs[4]:
        if tabs[4].open:
            C.compare(b, view, use, order)

    with tabs[5]:
        if tabs[5].open:
            C.data_tab(b, row, measured, use)

    ss[S.EX_VIEW] = {"ref": ref, "record": rid, "use": use, "order": tuple(order), "focus": focus}

    # the shareable link and the report (in the sidebar, rewritten by each fragment run)
    off = [m for m in names if measured[m] and m not in use]
    link = {"dataset": ss.get(S.DATASET), "record": rid, "off": off, "order": order, "task": focus,
            "step": ss.get(S.EX_ATTR_MODALITY) if ss.get(S.EX_ATTR_MODALITY) in names else None,
            "tab": {v: k for k, v in S.EX_TAB_NAMES.items()}.get(ss.get(S.EX_TABS)),
            "method": ss.get(S.EX_ATTR_METHOD) if ss.get(S.EX_ATTR_METHOD) in C.METHODS else None,
            "explain": {v: k for k, v in S.EX_EXPLAIN_NAMES.items()}.get(ss.get(S.EX_ATTR_TARGET)),
            "class": link_class(focus)}
    link.update(C.what_if_link(wi))
    query = S.view_to_query(link)
    if dict(st.query_params) != query:
        st.query_params.from_dict(query)
    with st.sidebar:
        st.divider()
        base = st.context.url or ""
        st.caption("Share this view (record, switches, order, outcome, open tab) with this link:")
        st.code(f"{base}?{urlencode(query)}", language=None, wrap_lines=True)
        st.page_link("views/pair.py", label="Compare with another record", icon=":material/compare:",
                     query_params={k: v for k, v in query.items() if k in ("dataset", "record", "off", "task")})
        from app import report
        st.download_button("Download the report (HTML)", key=S.EX_REPORT, on_click="ignore",
                           icon=":material/description:",
                           data=lambda: report.build_html(ref, rid, use, tuple(order), focus),
                           file_name=f"record-{report.safe_file_part(rid)}.html", mime="text/html")


record_body()
