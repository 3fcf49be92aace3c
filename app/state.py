"""Session-state keys, their defaults, and the URL (st.query_params) that carries a shareable view.

Every widget in the app has an explicit `key=`; they are all listed here so tests (AppTest, Playwright) can find
them. Keys with a `__<modality>` suffix exist once per modality of the active dataset (`modality_key`).
Per-user choices live in `st.session_state` only; nothing per-user is stored in a module or a cache.

In the browser, Streamlit gives every keyed element the CSS class `st-key-<key>` (e.g. `.st-key-ex_use__vitals`,
`.st-key-ex_chart__death`). Pages live at /explorer (default, also /), /present, /compare-records, /cohort, /mnar,
/model, /export.
"""
from __future__ import annotations

from typing import Any, MutableMapping

# --- widget keys -----------------------------------------------------------------------------------------
DATASET = "dataset"                 # sidebar selectbox: active dataset (bundled name or uploaded key)

# Explorer
EX_SEARCH = "ex_search"             # text_input: search a record id
EX_OUTCOME = "ex_outcome"           # selectbox: filter by actual outcome of the focus task
EX_PATTERN = "ex_pattern"           # selectbox: filter by missingness pattern
EX_CHOICE = "ex_choice"             # selectbox: order of the record list (typical first, most surprising, …)
EX_RECORD = "ex_record"             # selectbox: the record shown
EX_TASK = "ex_task"                 # selectbox: focus task (filters, surprise, attributions, state map colour)
EX_USE = "ex_use"                   # toggle per modality: f"ex_use__{modality}" (on = encoded, off = skipped)
EX_UP = "ex_up"                     # button per modality: f"ex_up__{modality}" (encode one step earlier)
EX_DOWN = "ex_down"                 # button per modality: f"ex_down__{modality}" (one step later)
EX_RESET = "ex_reset"               # button: back to the record's own data and the dataset's order
EX_TABS = "ex_tabs"                 # tabs (lazy: only the open tab computes)
EX_WHY_MORE = "ex_why_more"         # expander (lazy): the Why bars of the outcomes not in focus
EX_CLASS = "ex_class"               # selectbox: class explained for a multiclass task
EX_ATTR_MODALITY = "ex_attr_modality"  # selectbox: step (modality) whose features are attributed
EX_ATTR_TARGET = "ex_attr_target"   # radio: attribute the prediction right after that step, or the final one
EX_ATTR_METHOD = "ex_attr_method"   # selectbox: Integrated Gradients / Feature ablation / Shapley sampling
EX_MEASURE_MODALITY = "ex_measure_modality"  # selectbox: whose K neighbours' values are listed
EX_MEASURE_MORE = "ex_measure_more"  # expander (lazy): the K neighbours' values
EX_REPORT = "ex_report"             # download_button: HTML report of this view
EX_ORDER = "ex_order"               # (not a widget) list of modality names in encoding order
EX_WI = "ex_wi"                     # expander: "What if a value were different?"
EX_WI_MODALITY = "ex_wi_modality"   # selectbox: the kind of data whose value is edited (used, tabular)
EX_WI_FEATURE = "ex_wi_feature"     # selectbox: the measurement edited
EX_WI_NUMBER = "ex_wi_number"       # number_input: its new value (numeric measurement)
EX_WI_CATEGORY = "ex_wi_category"   # selectbox: its new value (categorical measurement: the model's categories)
EX_WI_RESET = "ex_wi_reset"         # button: back to the record's own value

# Cohort
CO_TASK = "co_task"                 # selectbox
CO_TABS = "co_tabs"                 # tabs (lazy: only the open tab computes)
CO_METRIC = "co_metric"             # selectbox: metric shown in the step × task matrix
CO_FAITH_MEASURE = "co_faith_measure"  # button: measure the explanation methods' faithfulness (about a minute)

# MNAR lab
MN_MODALITY = "mn_modality"         # selectbox
MN_TASK = "mn_task"                 # selectbox (classification tasks)
MN_RATES = "mn_rates"               # multiselect of missingness rates (%)
MN_POSITION = "mn_position"         # selectbox: where the modality sits in MultiModN's order
MN_SEMANTICS = "mn_semantics"       # selectbox: per-record skipping / the paper's batch-wide skipping
MN_MITIGATION = "mn_mitigation"     # selectbox: none / presence balancing / modality dropout
MN_RULE = "mn_rule"                 # selectbox: the paper's random protocol or a rule from the spec
MN_MODELS = "mn_models"             # multiselect: MultiModN, P-Fusion
MN_FOLDS = "mn_folds"               # number_input
MN_EPOCHS = "mn_epochs"             # number_input
MN_RUN = "mn_run"                   # button
MN_CLEAR = "mn_clear"               # button: clear the runs overlaid on the chart

# Model
MD_SOURCE = "md_source"             # radio: shipped / from disk / train here / upload data
MD_PATH = "md_path"                 # text_input: checkpoint folder on disk
MD_LOAD = "md_load"                 # button: load the folder
MD_UPLOAD_CKPT = "md_upload_ckpt"   # file_uploader: a checkpoint .zip (as MD_DOWNLOAD gives it)
MD_LOAD_ZIP = "md_load_zip"         # button: load the uploaded checkpoint .zip
MD_UPLOAD_DATA = "md_upload_data"   # file_uploader: CSV / Parquet table(s)
MD_UPLOAD_SPEC = "md_upload_spec"   # file_uploader: spec.yaml
MD_USE_UPLOAD = "md_use_upload"     # button: check the upload and make it the active dataset
MD_KINDS = "md_kinds"               # multiselect: which models to train
MD_EPOCHS = "md_epochs"             # number_input
MD_STATE = "md_state"               # number_input: state size
MD_SEED = "md_seed"                 # number_input
MD_MITIGATION = "md_mitigation"     # selectbox
MD_TRAIN = "md_train"               # button
MD_CANCEL = "md_cancel"             # button (interrupts the run; the previous model stays active)
MD_SAVE_PATH = "md_save_path"       # text_input
MD_SAVE = "md_save"                 # button
MD_DOWNLOAD = "md_download"         # download_button: checkpoint as .zip
MD_METRIC = "md_metric"             # selectbox: metric of the model card's heatmap

# Presentation mode (/present): one record, one task, step by step
PR_RECORD = "pr_record"             # selectbox (sidebar): the record presented
PR_TASK = "pr_task"                 # selectbox (sidebar): the outcome presented
PR_CHOICE = "pr_choice"             # radio (sidebar): how the record list is ordered (typical first, ...)
PR_PREV = "pr_prev"                 # button: previous step (shortcut: Left)
PR_NEXT = "pr_next"                 # button: next step (shortcut: Right)
PR_PLAY = "pr_play"                 # button: play / pause (shortcut: P)

# Compare two records (/compare-records): side A and side B, one outcome
PA_TASK = "pa_task"                 # selectbox (sidebar): the outcome compared
PA_RECORD_A = "pa_record_a"         # selectbox (sidebar): side A's record
PA_RECORD_B = "pa_record_b"         # selectbox (sidebar): side B's record (may be A's: then compare switches)
PA_SAME = "pa_same"                 # button (sidebar): put side A's record on side B too
PA_OFF_A = "pa_off_a"               # multiselect: side A's measured kinds of data switched off
PA_OFF_B = "pa_off_b"               # multiselect: side B's

# Export
RP_HTML = "rp_html"                 # download_button: HTML report
RP_TRACE_CSV = "rp_trace_csv"       # download_button
RP_SHAPLEY_CSV = "rp_shapley_csv"   # download_button
RP_ATTR_CSV = "rp_attr_csv"         # download_button

# --- keyed elements that are not widgets (charts, tables), for browser tests -------------------------------------
ELEMENT_KEYS = {
    "ex_chart__<task>": "Explorer step chart of one task (one per task, in spec order)",
    "ex_shap__<task>": "Explorer, Why tab: modality Shapley bars of one task (the focus outcome; the others "
                       "inside the ex_why_more expander once it is opened)",
    "ex_chips": "Explorer: the row of modality chips, in encoding order",
    "ex_row__<modality>": "Explorer: one modality's chip (colour dot, switch, status caption, arrows)",
    "ex_attr_chart": "Explorer, Inside a step tab: feature attributions", "ex_attr_table": "the same as a table",
    "ex_state_heat": "Explorer, State tab: heatmap", "ex_state_map": "Explorer, State tab: cohort map + path",
    "ex_compare_chart": "Explorer, Compare tab (binary tasks)", "ex_compare_table": "Compare tab, all tasks",
    "ex_data__<modality>": "Explorer, Data tab: the record's raw values of one modality",
    "ex_trust": "Explorer, Why tab: the 'How much to trust this' element (ex_trust_chart: its deletion curve)",
    "ex_measure": "Explorer: the 'What to measure next' tab's panel", "ex_measure_chart": "its outcome spread",
    "ex_measure_table": "its ranked modalities, every task", "ex_neighbours_table": "the K neighbours' values",
    "co_faith_table": "Cohort: faithfulness per explanation method", "co_faith_chart": "its mean deletion curves",
    "co_matrix_chart": "Cohort: step × task metric matrix", "co_importance_chart": "Cohort: importance ranges",
    "co_importance_table": "its numbers", "co_pattern_table": "Cohort: metrics per missingness pattern",
    "co_order_chart": "Cohort: metric per encoder order", "co_spread_chart": "Cohort: per-record order spread",
    "mn_chart": "MNAR lab: AUROC vs rate", "mn_table": "MNAR lab: all numbers",
    "md_presence_chart": "Model: present fractions", "md_task_table": "Model: tasks",
    "md_modality_table": "Model: modalities", "md_matrix_chart": "Model card: metric matrix",
    "md_compare_table": "Model card: MultiModN vs P-Fusion", "md_history_chart": "Model card: history",
    "pr_chart": "Presentation: the prediction after each step so far", "pr_map": "Presentation: cohort map",
    "pr_slide": "Presentation: the slide's sentence (or the summary)", "pr_position": "Presentation: step n of N",
    "pa_chart_a": "Compare two records: side A's step chart (pa_chart_b: side B's)",
    "pa_why_a": "Compare two records: side A's Why bars (pa_why_b: side B's)",
    "pa_summary": "Compare two records: the difference in one sentence", "pa_diff_table": "its step-by-step table",
    "rp_trace_table": "Export: step-by-step predictions", "rp_shapley_table": "Export: Shapley values",
}

# --- non-widget session keys -------------------------------------------------------------------------------
MODELS = "models"                   # {dataset key: {"multimodn": dir | None, "pfusion": dir | None}}
UPLOADS = "uploads"                 # {dataset key: {"spec": path, "data": path, "title": str}}
APPLIED_RECORD = "_ex_applied"      # (dataset, record) whose toggles/order are set up
URL_VIEW = "_url_view"              # view read from the URL at session start, consumed by the Explorer
URL_READ = "_url_read"              # the URL has been read once this session
MNAR_LAST = "_mn_last"              # config of the last MNAR run shown
MNAR_RUNS = "_mn_runs"              # {dataset key: [mmn_core.mnar_runs.MnarRun]}: runs overlaid in the MNAR lab
TRAIN_LOG = "_md_train_log"         # last training: {"kind": [history rows]}
EX_VIEW = "_ex_view"                # the Explorer's current view {ref, record, use, order, focus} (Export page)
EX_CHOSEN = "_ex_chosen"            # the Explorer's chosen record, kept when the list is rebuilt (other outcome)
PR_STEP = "_pr_step"                # presentation: the slide shown (0 = before any data … K + 1 = summary)
PR_PLAYING = "_pr_playing"          # presentation: playing (the fragment advances on a timer)
PR_TICK = "_pr_tick"                # presentation: time of the last advance (monotonic seconds)
EX_WI_FOR = "_ex_wi_for"            # (ref, record, modality, feature) the what-if widgets were set up for
EX_WI_PENDING = "_ex_wi_pending"    # a shared link's what-if edit {record, wi_data, wi_column, wi_value}
NOTICE = "_notice"                  # one-shot message shown on the next run (e.g. "model loaded")

URL_FIELDS = ("dataset", "record", "off", "order", "task", "step", "tab", "method", "explain", "class",
              "wi_data", "wi_column", "wi_value", "record2", "off2")     # *2: Compare's side B
WI_URL_FIELDS = ("wi_data", "wi_column", "wi_value")   # the what-if edit: modality, column, new raw value
_LIST_FIELDS = ("off", "order", "off2")
# The Explorer's open tab in a link: a short name for each tab's label (renaming a label keeps old links working)
EX_TAB_NAMES = {"why": "Why", "measure": "What to measure next", "inside": "Inside a step", "state": "State",
                "compare": "Compare with P-Fusion", "data": "Data"}
# "explain" in a link: the Inside-a-step tab's EX_ATTR_TARGET radio (the change at the step, or the final value)
EX_EXPLAIN_NAMES = {"change": "The change at this step", "final": "The final prediction"}


def modality_key(prefix: str, modality: str) -> str:
    """Widget key of a per-modality widget, e.g. modality_key(EX_USE, "vitals") == "ex_use__vitals"."""
    return f"{prefix}__{modality}"


WIDGET_KEYS = sorted(v for k, v in globals().items() if k.isupper() and isinstance(v, str)
                     and not v.startswith("_") and k not in ("MODELS", "UPLOADS", "EX_ORDER", "EX_VIEW"))


# --- URL ---------------------------------------------------------------------------------------------------
def view_from_query(params: MutableMapping[str, Any]) -> dict:
    """Parse query parameters into a view {dataset, record, off: [...], order: [...], task, step, tab, method,
    explain, class, wi_data, wi_column, wi_value, record2, off2: [...]} (tab: a key of EX_TAB_NAMES; method: an
    attribution method; explain: a key of EX_EXPLAIN_NAMES; class: a class value of the focus task; wi_*: the
    what-if edit; *2: side B of Compare two records).

    Unknown names are validated later against the dataset (a stale link shows a warning, not an error)."""
    view: dict = {}
    for f in URL_FIELDS:
        v = params.get(f)
        if isinstance(v, list):
            v = v[-1] if v else None
        if v is None:
            continue
        v = str(v)[:2000]
        view[f] = [p for p in v.split(",") if p] if f in _LIST_FIELDS else v
    return view


def foreign_dataset_message(name: str, shown: str) -> str:
    """What a link to a dataset this session does not have says (Markdown; `name` escaped by the caller)."""
    if name.startswith("upload-"):
        return (f"This link points to data that was uploaded in another browser session. Uploads stay private to "
                f"the session that uploaded them, so that record cannot be shown here; you are looking at "
                f"{shown} instead. To see it, upload the same files on the Model page.")
    return f"This link names a dataset ({name}) that this installation does not have; you are looking at {shown}."


def view_to_query(view: dict) -> dict[str, str]:
    """The inverse of view_from_query, for st.query_params.from_dict (empty lists are dropped)."""
    out = {}
    for f in URL_FIELDS:
        v = view.get(f)
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            if not v and f in ("off", "off2"):
                continue
            v = ",".join(v)
        out[f] = str(v)
    return out
