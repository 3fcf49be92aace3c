"""MultiModN Lens: `streamlit run app/streamlit_app.py`.

Entry point: page config, session defaults, the link (URL) read once per session, the dataset picker and
st.navigation. Pages live in app/views/ (not "pages/": a folder of that name switches Streamlit to its older
multipage mode, which runs a page file without this entry script) and are thin: read widgets, call functions, render.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # `streamlit run` puts app/ on the path, not the repository root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="MultiModN Lens", page_icon="🔎", layout="wide")

from app import resources as R  # noqa: E402
from app import state as S  # noqa: E402
from app.common import md  # noqa: E402


def _on_dataset_change() -> None:
    """A new dataset starts a fresh view: the Explorer's record, toggles and order belong to the old one."""
    for k in list(ss.keys()):
        if k.startswith(("ex_", "co_", "mn_", "pr_", "_pr_", "pa_", "_pa_")) or \
                k in (S.APPLIED_RECORD, S.URL_VIEW, S.EX_CHOSEN):
            del ss[k]


# --- session defaults and the shared link (read once per session) ----------------------------------------------
ss = st.session_state
ss.setdefault(S.MODELS, {})
ss.setdefault(S.UPLOADS, {})
_before = ss.get(S.DATASET)
if not ss.get(S.URL_READ):
    ss[S.URL_READ] = True
    view = S.view_from_query(st.query_params)
    choices = R.dataset_choices(ss[S.UPLOADS])
    if view.get("dataset") in choices:
        ss[S.DATASET] = view["dataset"]
    elif view.get("dataset"):          # another session's upload, or a dataset this installation lacks
        ss["_foreign_link"] = view["dataset"]
        view = {}                      # its record, switches and order belong to that data: none is applied
    if view:
        ss[S.URL_VIEW] = view
if ss.get("_pending_dataset"):           # set by the Model page after an upload (before the picker exists)
    ss[S.DATASET] = ss.pop("_pending_dataset")
    _on_dataset_change()
if ss.get(S.DATASET) not in R.dataset_choices(ss[S.UPLOADS]):
    ss[S.DATASET] = R.DEFAULT_DATASET if R.DEFAULT_DATASET in R.dataset_choices(ss[S.UPLOADS]) \
        else R.dataset_choices(ss[S.UPLOADS])[0]


# Titles resolved now: a format_func must not read session state (AppTest calls it outside a run).
_titles = {n: (f"{ss[S.UPLOADS][n]['title']} (uploaded)" if n in ss[S.UPLOADS] else R.dataset_title(n))
           for n in R.dataset_choices(ss[S.UPLOADS])}


pages = [
    st.Page("views/explorer.py", title="Explorer", icon=":material/person_search:", url_path="explorer", default=True),
    st.Page("views/present.py", title="Present a record", icon=":material/slideshow:", url_path="present"),
    st.Page("views/pair.py", title="Compare two records", icon=":material/compare:", url_path="compare-records"),
    st.Page("views/cohort.py", title="Cohort", icon=":material/groups:", url_path="cohort"),
    st.Page("views/mnar_lab.py", title="MNAR lab", icon=":material/science:", url_path="mnar"),
    st.Page("views/model.py", title="Model", icon=":material/model_training:", url_path="model"),
    st.Page("views/export.py", title="Report & downloads", icon=":material/download:", url_path="export"),
]
nav = st.navigation(pages)

with st.sidebar:
    # index = the active dataset: a page link clicked while the first run is still going makes the frontend
    # re-mount the picker at its default index, which it then sends back as a switch to that dataset (seen in
    # the browser tests). In a run that wrote the key above, index 0: the written value reaches the frontend
    # anyway, and Streamlit logs a warning when a widget has both.
    _choices = R.dataset_choices(ss[S.UPLOADS])
    st.selectbox("Dataset", _choices, key=S.DATASET, format_func=lambda n: _titles.get(n, n),
                 index=0 if ss[S.DATASET] != _before else _choices.index(ss[S.DATASET]),
                 on_change=_on_dataset_change,
                 help="The bundled datasets open with a small model trained on them; an uploaded dataset needs "
                      "a model trained on the Model page.")
    ref = R.active_ref(ss)
    if ref is not None:
        try:
            trained = R.load_trained(ref.mmn_dir)
            rows = trained.info.get("rows", {})
            src = "shipped with the app" if Path(ref.mmn_dir).parent == R.CHECKPOINT_DIR.resolve() or \
                Path(ref.mmn_dir).parent == R.CHECKPOINT_DIR else "loaded in this session"
            st.caption(f"Model: MultiModN ({src}), trained on {rows.get('train', '?'):,} records"
                       + (" · P-Fusion for comparison" if ref.pf_dir else "") if isinstance(rows.get("train"), int)
                       else f"Model: MultiModN ({src})")
        except Exception as err:  # noqa: BLE001 — the page itself reports the problem in full
            st.caption(f"Model: cannot be opened ({md(type(err).__name__)})")

if ss.get(S.NOTICE):
    st.toast(ss.pop(S.NOTICE))
if ss.get("_foreign_link"):            # shown once, on the page the link opened
    st.warning(md(S.foreign_dataset_message(ss.pop("_foreign_link"), _titles.get(ss[S.DATASET], ss[S.DATASET]))),
               icon=":material/link_off:")
nav.run()
