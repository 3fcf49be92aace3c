"""Present a record — "What did the model make of this person, one kind of data at a time?"

For a presenter in front of an audience: one record, one outcome, large type. The main area has only
"previous step / next step / play"; each step adds one kind of data, moves the prediction on the step chart and
the record's state on the cohort map, and says what happened in one sentence. The last slide sums up what
mattered, how far to trust that, what is missing and what the headline has meant on held-out records.
Everything shown comes from `mmn_core.explain.story.record_story` (a typed Story, cached by
`resources.record_story`); this page only renders it.
The record and the outcome are chosen in the sidebar and travel in the link (?record=…&task=…).
"""
from __future__ import annotations

import time
from urllib.parse import urlencode

import numpy as np
import streamlit as st

from app import figures as F
from app import resources as R
from app import state as S
from app.common import actual_text, class_names, md, require_bundle, task_label, value_text
from mmn_core.explain import browse as B
from mmn_core.explain.choosing import CHOICE_LABELS, rank_records
from mmn_core.explain.story import NOT_MEASURED, RAN, Story

PLAY_EVERY = 2.0            # seconds per step while playing: time to read one sentence aloud
CHART_CONFIG = {"displayModeBar": False, "staticPlot": False}

ss = st.session_state
b = require_bundle()
spec, ref = b.spec, b.ref
names = spec.modality_names
colors = F.modality_colors(names)
tasks = {t.name: t for t in spec.tasks}
classes = b.trained.prep.classes
table = R.cohort_table(ref)


# --- cached engine results (plain values in; typed results out) ----------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=32)
def _figures(ref: R.Ref, rid: str, task: str) -> list:
    """(step chart, map) of every slide of a story, built once: a step then only sends two figures (building
    them, with plotly's validation, was most of a step's server time). Never mutated after this."""
    st_ = R.record_story(ref, rid, task)
    td_ = tasks[task]
    has_truth = st_.task_type != "multiclass" and bool(np.isfinite(st_.truth))
    if st_.path_xy is not None:
        smap = R.state_map(ref)
        at = {r: j for j, r in enumerate(smap.ids)}
        cloud = smap.cloud[-1][[at[r] for r in table["id"]]]
        lab, kinds = table[f"{task}__label"].to_numpy(), class_names(td_, classes.get(task))
        if st_.class_index is not None:      # one class followed: the cohort as that class or not
            lab = np.where(np.isnan(lab), np.nan, (lab == st_.class_index).astype(float))
            kinds = ["another outcome", st_.class_label]
    out = []
    for upto in range(len(st_.slides)):
        chart = F.present_step_chart(st_.step_labels, st_.steps, st_.values, st_.status, upto,
                                     task_type=st_.task_type, units=st_.units, colors=colors,
                                     truth=st_.truth if has_truth else None, truth_text=st_.truth_text)
        smap_fig = None if st_.path_xy is None else F.present_state_map(
            cloud, lab, outcome_type="binary" if st_.class_index is not None else td_.type, classes=kinds,
            path_xy=st_.path_xy, upto=upto, steps=st_.steps, status=st_.status, colors=colors, units=td_.units,
            height=F.present_step_chart_height(len(st_.steps), has_truth))
        out.append((chart, smap_fig))
    return out


# --- the link: record and outcome (applied once per session, then the sidebar owns them) ---------------------
url = ss.pop(S.URL_VIEW, None) or {}
if url.get("task") in tasks:
    ss[S.PR_TASK] = url["task"]
if url.get("record") is not None:
    if url["record"] in b.pos and url["record"] in set(table["id"]):
        ss[S.PR_RECORD] = url["record"]
        ss[S.PR_STEP] = 0
    elif url["record"] in b.pos:
        st.warning(f"Record {md(url['record'])} is one the model was trained on; choose a held-out one below.")
    else:
        st.warning(f"The shared record {md(url['record'])} is not in this dataset; showing another one.")

with st.sidebar:
    st.subheader("Set up the presentation")
    task = st.selectbox("Outcome", list(tasks), key=S.PR_TASK, format_func=lambda t: task_label(spec, t))
    td = tasks[task]
    choices = [c for c in CHOICE_LABELS if not (c == "borderline" and td.type == "regression")]
    how = st.radio("Order the records by", choices, key=S.PR_CHOICE, format_func=CHOICE_LABELS.get,
                   help="Typical: correctly predicted, with the most common data measured. Most surprising: the "
                        "largest error. Borderline: closest to a coin toss. Most data missing: fewest kinds of "
                        "data measured.")
    order = rank_records(B.task_values(td, table), table[f"{task}__label"].to_numpy(), td.type,
                         table["pattern"], how, table[f"{task}__surprise"].to_numpy())
    ranked = table.iloc[order]
    options = ranked["id"].tolist()
    if ss.get(S.PR_RECORD) not in options:
        ss[S.PR_RECORD] = options[0]
    labels = {r: f"{r} · {value_text(td, v, classes.get(task))} · actual: {actual_text(td, y, classes.get(task))}"
              for r, v, y in zip(options, B.task_values(td, ranked), ranked[f"{task}__label"])}
    rid = st.selectbox("Record", options, key=S.PR_RECORD, format_func=lambda r: labels.get(r, r),
                       on_change=lambda: ss.update({S.PR_STEP: 0, S.PR_PLAYING: False}),
                       help="Each entry: record id · the model's final prediction · what actually happened.")

story = R.record_story(ref, rid, task)
last = len(story.slides)                      # slides 0..K are steps; `last` is the summary
if ss.get("_pr_shown") != (ref, rid, task):
    ss[S.PR_STEP], ss[S.PR_PLAYING], ss["_pr_shown"] = 0, False, (ref, rid, task)
query = S.view_to_query({"dataset": ss.get(S.DATASET), "record": rid, "task": task})
if dict(st.query_params) != query:
    st.query_params.from_dict(query)
with st.sidebar:
    st.caption("Share this presentation (record and outcome) with this link:")
    st.code(f"{st.context.url or ''}?{urlencode(query)}", language=None, wrap_lines=True)

# Large type for the audience: the slide's sentence and the summary; nothing else is styled.
st.html("""<style>
.st-key-pr_slide p {font-size: 1.55rem; line-height: 1.35;}
.st-key-pr_slide h3 {font-size: 1.25rem; padding: 0.4rem 0 0.1rem 0;}
.st-key-pr_slide [data-testid="stColumn"] p, .st-key-pr_slide li {font-size: 1.15rem; line-height: 1.35;}
[data-testid="stMainBlockContainer"] {padding-top: 2.5rem;}
</style>""")
what = f"{task_label(spec, task)}" + (f" · probability of “{story.class_label}”" if story.class_label else "")
st.markdown(f"#### Record {md(rid)} · {md(what)}")


# --- controls ---------------------------------------------------------------------------------------------------
def go(step: int) -> None:
    ss[S.PR_STEP] = min(max(step, 0), last)
    if ss.get(S.PR_PLAYING):
        ss[S.PR_PLAYING] = False
        ss["_pr_full"] = True                     # stop the timer: a full run redefines the fragment


def play() -> None:
    playing = not ss.get(S.PR_PLAYING)
    ss[S.PR_PLAYING] = playing
    if playing:
        if ss.get(S.PR_STEP, 0) >= last:
            ss[S.PR_STEP] = 0
        ss[S.PR_TICK] = 0.0                       # advance at once, then every PLAY_EVERY seconds
    ss["_pr_full"] = True


def words(st_: Story, upto: int) -> str:
    """The step chart in words (its text alternative)."""
    shown = [f"{st_.step_labels[j]}: {st_.slides[j].value_text}" + ("" if st_.status[j] in ("prior", RAN)
                                                                     else f" ({st_.status[j]})")
             for j in range(upto + 1)]
    return "Chart in words — " + " → ".join(shown) + "."


def summary(st_: Story) -> None:
    """The last slide: two columns of short sections, then the full chart and map below."""
    sm = st_.summary
    a, c = st.columns(2, gap="large")
    with a:
        st.markdown("### What mattered most")
        st.markdown("\n".join(f"- {md(mv.sentence)}" for mv in sm.movers) or md(sm.mattered))
        st.markdown("### How sure")
        st.markdown(md(sm.final) + (f" {md(sm.how_sure)}" if sm.how_sure else ""))
    with c:
        if sm.trust:
            st.markdown("### Can we trust this ranking?")
            st.markdown(md(sm.trust))
        st.markdown("### What is missing")
        st.markdown("\n".join(f"- {md(m.sentence)}" for m in sm.missing[:3]) if sm.missing
                    else "Nothing: every kind of data was measured for this record.")


@st.fragment(run_every=PLAY_EVERY if ss.get(S.PR_PLAYING) else None)
def stage() -> None:
    if ss.pop("_pr_full", False):
        st.rerun()
    k = int(ss.get(S.PR_STEP, 0))
    if ss.get(S.PR_PLAYING) and time.monotonic() - ss.get(S.PR_TICK, 0.0) >= 0.9 * PLAY_EVERY:
        k = min(k + 1, last)
        ss[S.PR_STEP], ss[S.PR_TICK] = k, time.monotonic()
        if k >= last:
            ss[S.PR_PLAYING] = False
            ss["_pr_full"] = True
    upto = min(k, last - 1)
    with st.container(horizontal=True, gap="small", vertical_alignment="center"):
        st.button("Previous step", key=S.PR_PREV, icon=":material/arrow_back:", on_click=go, args=(k - 1,),
                  disabled=k == 0, shortcut="Left")
        st.button("Next step", key=S.PR_NEXT, icon=":material/arrow_forward:", on_click=go, args=(k + 1,),
                  disabled=k >= last, type="primary", shortcut="Right")
        st.button("Pause" if ss.get(S.PR_PLAYING) else "Play", key=S.PR_PLAY, on_click=play, shortcut="P",
                  icon=":material/pause:" if ss.get(S.PR_PLAYING) else ":material/play_arrow:")
        pos = "Summary" if k >= last else f"Step {k} of {last - 1}" if k else "Before any data"
        with st.container(key="pr_position", width="content"):
            st.markdown(f"**{pos}**")
    with st.container(key="pr_slide"):
        if k < last:
            st.markdown(md(story.slides[k].sentence))
        else:
            summary(story)
    chart, smap_fig = _figures(ref, rid, task)[upto]
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.plotly_chart(chart, key="pr_chart", config=CHART_CONFIG)
        st.caption(md(words(story, upto)))
    with right:
        if smap_fig is not None:
            fig = smap_fig
            st.plotly_chart(fig, key="pr_map", config=CHART_CONFIG)
            moved = sum(1 for s in story.status[1:upto + 1] if s == RAN)
            skipped = sum(1 for s in story.status[1:upto + 1] if s == NOT_MEASURED)
            key_ = (f"dark dots are records that had {md(td.display.lower())}, light dots did not"
                    if td.type == "binary" else f"dark dots are records whose actual outcome was "
                    f"“{md(story.class_label)}”, light dots had another" if story.class_index is not None
                    else "dots are coloured by their actual outcome")
            st.caption(f"Map in words — the ring is this record's state (the model's memory) after "
                       f"{moved} kind{'s' if moved != 1 else ''} of data"
                       + (f" ({skipped} not measured, skipped)" if skipped else "")
                       + f"; the other dots are held-out records' final states: {key_}.")


stage()
