"""Every cached loader of the dashboard.

- `st.cache_resource` holds shared, never-mutated objects: datasets, trained models (with the tensors they read)
  and the fitted cohort state map. They are keyed by file paths, so two sessions share one copy.
- `st.cache_data` holds results keyed by plain values (dataset key, checkpoint folders, record id, toggles,
  order, method): a modality toggle recomputes one single-record trace; everything else is a cache hit.
- Nothing per-user lives here: the active dataset and models are named in `st.session_state` (see state.py)
  and passed in as a `Ref` (a tuple of strings).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

from mmn_core import CheckpointError, SpecError, load as load_checkpoint_dir, load_dataset, load_spec
from mmn_core.checkpoint import Trained
from mmn_core.data import DATA_DIR, Dataset, TensorData, load_data
from mmn_core.datasets import bundled_names
from mmn_core.kinds import KINDS, MODEL_NAMES  # noqa: F401  (pages read them from here)
from mmn_core.threads import use_threads

from . import uploads as U

# The models are small: one thread is fastest, and extra threads spin against each other on a busy machine
# (measured: cohort order sensitivity 1 s with one thread, 60 s with two under load).
use_threads()
ROOT = Path(__file__).resolve().parent.parent
# Overridable for tests and for people who keep checkpoints elsewhere.
CHECKPOINT_DIR = Path(os.environ.get("MMN_LENS_CHECKPOINTS", str(DATA_DIR / "checkpoints")))
DEFAULT_DATASET = os.environ.get("MMN_LENS_DATASET", "support2")
# Development only: train a small model on the fly when a shipped checkpoint is missing.
DEV_TRAIN = os.environ.get("MMN_LENS_DEV_TRAIN") == "1"


class Ref(NamedTuple):
    """Everything that identifies a (dataset, models) combination; hashable, so it keys st.cache_data."""
    dataset: str            # bundled name or "upload-<hash>"
    spec_path: str          # uploads only ("" for bundled)
    data_path: str          # uploads only
    mmn_dir: str            # MultiModN checkpoint folder ("" = none)
    pf_dir: str             # P-Fusion checkpoint folder ("" = none)


# --- datasets ----------------------------------------------------------------------------------------------
def dataset_choices(uploads: dict) -> list[str]:
    """Bundled datasets (synthetic last) and this session's uploads."""
    return [n for n in bundled_names()] + list(uploads)


@st.cache_resource(show_spinner=False)
def dataset_title(name: str, spec_path: str = "") -> str:
    """Display title of a dataset from its spec (cheap: reads only the YAML)."""
    try:
        if spec_path:
            spec = load_spec(spec_path)
        elif name == "synthetic":
            return "Synthetic cohort (known ground truth)"
        else:
            spec = load_spec(DATA_DIR / name / "spec.yaml")
        return spec.title or spec.name
    except SpecError:
        return name


@st.cache_resource(show_spinner="Loading the dataset…")
def get_dataset(name: str, spec_path: str = "", data_path: str = "") -> Dataset:
    """A bundled dataset (`load_dataset`) or an upload (`load_data`); raises SpecError with one line."""
    if spec_path:
        return load_data(data_path, spec_path)
    return load_dataset(name)


# --- checkpoints -------------------------------------------------------------------------------------------
def shipped_dir(dataset: str, kind: str) -> Path:
    return CHECKPOINT_DIR / f"{dataset}-{kind}"


def _stamp(directory: str) -> float:
    p = Path(directory) / "model.safetensors"
    return p.stat().st_mtime if p.exists() else 0.0


@st.cache_resource(show_spinner="Loading the model…")
def _load_checkpoint(directory: str, stamp: float) -> Trained:
    return load_checkpoint_dir(directory)


def load_trained(directory: str) -> Trained:
    """A checkpoint folder → Trained (cached per folder and file time; raises CheckpointError)."""
    return _load_checkpoint(str(Path(directory).resolve()), _stamp(directory))


@st.cache_resource(show_spinner="No shipped checkpoint: training a small development model…")
def dev_checkpoint(dataset: str, kind: str) -> str:
    """Development fallback (MMN_LENS_DEV_TRAIN=1): train a small model once per process, save it to a
    temporary folder, return the folder."""
    from mmn_core import TrainConfig, save, train_model
    ds = get_dataset(dataset)
    trained = train_model(ds, kind, None, TrainConfig(epochs=8, seed=0))
    out = Path(tempfile.mkdtemp(prefix="mmn-lens-dev-")) / f"{dataset}-{kind}"
    save(trained, out)
    return str(out)


def default_models(dataset: str) -> dict[str, str | None]:
    """The shipped checkpoints of a bundled dataset (None where missing; dev fallback when enabled)."""
    out: dict[str, str | None] = {}
    for kind in KINDS:
        d = shipped_dir(dataset, kind)
        if (d / "config.json").is_file():
            out[kind] = str(d)
        elif DEV_TRAIN and dataset in bundled_names():
            out[kind] = dev_checkpoint(dataset, kind)
        else:
            out[kind] = None
    return out


# --- the active bundle -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bundle:
    """The active dataset with its models and the tensors they read. Shared across sessions; never mutated.

    data: TensorData of every record under the MultiModN preprocessing; rows: positions of the records the
    Explorer shows (the model's test split when known: records it never trained on)."""
    ref: Ref
    ds: Dataset
    trained: Trained
    data: TensorData
    rows: np.ndarray
    pos: dict                       # record id -> row position
    pf: Trained | None
    pf_data: TensorData | None

    @property
    def spec(self):
        return self.ds.spec

    @property
    def held_out(self) -> bool:
        return len(self.rows) < len(self.ds)


def _check_spec(trained: Trained, ds: Dataset, directory: str) -> None:
    if trained.spec.to_json() != ds.spec.to_json():
        raise CheckpointError(f"the model in {Path(directory).name} was trained on a different dataset "
                              f"description ('{trained.spec.title or trained.spec.name}') than the one selected")


@st.cache_resource(show_spinner="Preparing the model and data…")
def get_bundle(ref: Ref) -> Bundle:
    """Raises SpecError / CheckpointError with one line."""
    ds = get_dataset(ref.dataset, ref.spec_path, ref.data_path)
    trained = load_trained(ref.mmn_dir)
    _check_spec(trained, ds, ref.mmn_dir)
    if trained.kind != "multimodn":
        raise CheckpointError(f"{Path(ref.mmn_dir).name} holds a {MODEL_NAMES[trained.kind]} model, "
                              f"not MultiModN")
    data = trained.prep.transform(ds)
    pos = {rid: i for i, rid in enumerate(data.ids)}
    test_ids = trained.info.get("test_ids") or []
    rows = np.asarray([pos[r] for r in test_ids if r in pos], dtype=int)
    if len(rows) == 0:
        rows = np.arange(len(ds))
    pf = pf_data = None
    if ref.pf_dir:
        pf = load_trained(ref.pf_dir)
        _check_spec(pf, ds, ref.pf_dir)
        pf_data = pf.prep.transform(ds)
    return Bundle(ref, ds, trained, data, rows, pos, pf, pf_data)


def active_ref(session) -> Ref | None:
    """The Ref of this session's active dataset and models (None when no MultiModN model is available)."""
    from . import state as S
    name = session.get(S.DATASET) or DEFAULT_DATASET
    up = session.get(S.UPLOADS, {}).get(name)
    chosen = session.get(S.MODELS, {}).get(name) or (default_models(name) if not up else {})
    mmn, pf = chosen.get("multimodn"), chosen.get("pfusion")
    if not mmn:
        return None
    return Ref(name, up["spec"] if up else "", up["data"] if up else "", mmn, pf or "")


# --- cohort-level results (cache_data: plain values in, plain values out) ------------------------------------
@st.cache_data(show_spinner="Scoring the cohort…", max_entries=8)
def cohort_table(ref: Ref) -> pd.DataFrame:
    """The Explorer records' table (mmn_core.explain.browse.record_table): id, pattern, per task prediction,
    label and surprise."""
    from mmn_core.explain.browse import record_table
    b = get_bundle(ref)
    return record_table(b.trained, b.data.subset(b.rows))


# --- MNAR results: a small on-disk cache so a second visit (or a restart) is instant ---------------------------
def mnar_cache_path(config: dict) -> Path:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return U.CACHE_DIR / "mnar" / f"{hashlib.sha256(blob).hexdigest()[:16]}.json"


def mnar_cached(config: dict) -> dict | None:
    """A stored result, only if it is ours, well-formed and was stored for exactly this configuration."""
    blob = U.read_private(mnar_cache_path(config), limit=64 * 2**20)
    if blob is None:
        return None
    try:
        stored = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    want = json.loads(json.dumps(config, sort_keys=True, default=str))
    if not isinstance(stored, dict) or stored.get("config") != want or not isinstance(stored.get("result"), dict) \
            or not isinstance(stored["result"].get("results"), list):
        return None
    return stored["result"]


def mnar_store(config: dict, result: dict) -> None:
    p = mnar_cache_path(config)
    U.private_dir(p.parent)
    body = {"config": json.loads(json.dumps(config, sort_keys=True, default=str)), "result": result}
    U.write_private(p, json.dumps(body, default=float).encode())


# --- record-level results (cache_data; a toggle or a reorder recomputes one single-record trace) ---------------
def _mask(spec, use) -> dict[str, np.ndarray]:
    """Presence overrides for one record: a modality is on only if listed in `use` (the engine also intersects
    with what the record has, so a toggle can never invent data)."""
    return {m: np.array([m in use]) for m in spec.modality_names}


@st.cache_data(show_spinner=False, max_entries=512)
def record_view(ref: Ref, record: str, use: tuple[str, ...], order: tuple[str, ...]):
    """mmn_core.explain.RecordView of one record under the given toggles and order (cached)."""
    from mmn_core import explain as E
    b = get_bundle(ref)
    return E.record_view(b.trained, b.data.subset([b.pos[record]]), _mask(b.spec, use), list(order))


@st.cache_data(show_spinner=False, max_entries=256)
def pfusion_view(ref: Ref, record: str, use: tuple[str, ...]) -> dict | None:
    """P-Fusion's final value per task for one record with the given modalities on ({t: value})."""
    from mmn_core import explain as E
    b = get_bundle(ref)
    if b.pf is None:
        return None
    one = b.pf_data.subset([b.pos[record]])
    tr = E.trace(b.pf, one, _mask(b.spec, use))
    return {t: v[-1, 0].copy() for t, v in tr.value.items()}


@st.cache_data(show_spinner="Computing feature attributions…", max_entries=256)
def record_attribution(ref: Ref, record: str, use: tuple[str, ...], order: tuple[str, ...], modality: str,
                       task: str, own_step: bool, method: str, target_class: int | None):
    """mmn_core.explain.Attribution of one modality's values of one record (see mmn_core.explain.attribute)."""
    from mmn_core import explain as E
    b = get_bundle(ref)
    i = b.pos[record]
    step = (list(order).index(modality) + 1) if own_step else None
    return E.attribute(b.trained, b.data.subset([i]), 0, modality, task, step=step, method=method,
                       present=_mask(b.spec, use), order=list(order), target_class=target_class,
                       frame=b.ds.subset([i]), reference=reference_categories(ref))


@st.cache_resource(show_spinner="Preparing similar records…")
def donors(ref: Ref):
    """acquire.Donors of the active model: its training records and their states (fitted object)."""
    from mmn_core import acquire as AQ
    b = get_bundle(ref)
    return AQ.Donors(b.trained, b.data, AQ.training_pool(b.trained, b.ds))


@st.cache_data(show_spinner=False, max_entries=256)
def record_trust(ref: Ref, record: str, use: tuple[str, ...], task: str, order: tuple[str, ...] = (),
                 method: str = "shapley"):
    """mmn_core.panels.Trust: the record's deletion curve for `method` against random orders (always in the
    dataset's order). When the page shows that order, its cached RecordView orients the curve (no forward)."""
    from mmn_core import panels as P
    b = get_bundle(ref)
    shown = None
    if list(order) == list(b.spec.modality_names):
        v = np.asarray(record_view(ref, record, use, order).value[task], dtype=float)
        shown = (float(v[0]), float(v[-1])) if v.ndim == 1 else None
    return P.record_trust(b.trained, b.data, b.pos[record], task, use=use, method=method, shown=shown)


@st.cache_data(show_spinner="Estimating what to measure next…", max_entries=256)
def measure_next(ref: Ref, record: str, use: tuple[str, ...], k: int = 50) -> dict:
    """task -> mmn_core.panels.MeasureNext of one record with only `use` on."""
    from mmn_core import panels as P
    b = get_bundle(ref)
    return P.measure_next(b.trained, b.data, b.pos[record], donors(ref), use=use, k=k)


@st.cache_data(show_spinner=False, max_entries=64)
def neighbour_values(ref: Ref, modality: str, ids: tuple[str, ...]) -> pd.DataFrame:
    from mmn_core.explain.browse import neighbour_values as nv
    return nv(get_bundle(ref).ds, modality, ids)


# --- cohort-level interpretation ---------------------------------------------------------------------------
def explorer_data(ref: Ref) -> TensorData:
    b = get_bundle(ref)
    return b.data.subset(b.rows)


@st.cache_resource(show_spinner="Mapping the cohort's states…")
def state_map(ref: Ref):
    """A StateMap fitted on every step state of the Explorer records (fitted object: cache_resource)."""
    from mmn_core import explain as E
    return E.StateMap.fit(get_bundle(ref).trained, explorer_data(ref))


@st.cache_data(show_spinner="Measuring what the model relies on…", max_entries=8)
def cohort_importance(ref: Ref, sample: int = 300) -> pd.DataFrame:
    from mmn_core import explain as E
    return E.cohort_importance(get_bundle(ref).trained, explorer_data(ref), shapley_sample=sample)


@st.cache_data(show_spinner="Scoring each missingness pattern…", max_entries=8)
def pattern_table(ref: Ref) -> pd.DataFrame:
    import warnings
    from mmn_core import explain as E
    with warnings.catch_warnings():          # tiny patterns have a single class: metrics are NaN, by design
        warnings.simplefilter("ignore")
        return E.pattern_metrics(get_bundle(ref).trained, explorer_data(ref))


@st.cache_data(show_spinner="Trying other encoding orders…", max_entries=16)
def order_sensitivity(ref: Ref, task: str, max_orders: int = 24) -> dict:
    from mmn_core import explain as E
    r = E.order_sensitivity(get_bundle(ref).trained, explorer_data(ref), task, max_orders=max_orders)
    return {k: (np.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in r.items()}


@st.cache_data(show_spinner="Scoring other encoding orders…", max_entries=16)
def order_metrics(ref: Ref, task: str, n_random: int = 6, seed: int = 0) -> list[dict]:
    """mmn_core.explain.browse.order_metrics on the Explorer records."""
    from mmn_core.explain.browse import order_metrics as om
    return om(get_bundle(ref).trained, explorer_data(ref), task, n_random, seed)


FAITH_RECORDS = int(os.environ.get("MMN_LENS_FAITH_RECORDS", "100"))   # the Cohort page's sample (speed)


@st.cache_data(show_spinner="Measuring how faithful each explanation method is…", max_entries=8)
def cohort_faithfulness(ref: Ref, task: str, records: int = FAITH_RECORDS) -> dict:
    """faithfulness.cohort_faithfulness(...).to_json() on a seeded sample of `records` records of the whole
    dataset (training records give the out-of-distribution flags), and the mean deletion curves."""
    from mmn_core import faithfulness as FA, panels as P
    b = get_bundle(ref)
    rep = FA.cohort_faithfulness(b.trained, b.data, task, records=records, randomization_records=min(24, records))
    curves = P.cohort_curves(b.trained, b.data, task, records=records)
    return {"report": rep.to_json(), "curves": {m: np.asarray(v) for m, v in curves.curves.items()}}


@st.cache_data(show_spinner="Reading how the model did on held-out records…", max_entries=16)
def reliability(ref: Ref, task: str):
    """mmn_core.calibration.Reliability of one task on the model's held-out (test) records."""
    from mmn_core.calibration import held_out_reliability
    b = get_bundle(ref)
    return held_out_reliability(b.trained, b.ds, task)


def how_sure(ref: Ref, task: str, value, classes: dict) -> str:
    """The plain sentence beside a headline value ("Of 217 held-out records given 80–90%, 79% actually had …")."""
    from mmn_core.calibration import how_sure_for
    td = get_bundle(ref).spec.task(task)
    return how_sure_for(reliability(ref, task), td, value, classes.get(task)).sentence


@st.cache_data(show_spinner="Preparing the story…", max_entries=64)
def record_story(ref: Ref, record: str, task: str):
    """mmn_core.explain.story.Story of one record (all its measured data, the dataset's order) for one task."""
    from mmn_core.explain.story import record_story as _record_story
    b = get_bundle(ref)
    row, names = b.pos[record], tuple(b.spec.modality_names)
    view = record_view(ref, record, tuple(m for m in names if bool(b.data.present[m][row])), names)
    return _record_story(b.trained, b.data, row, task, view, record, path_xy=state_map(ref).transform(view.states),
                         donors=donors(ref), reliability=reliability(ref, task))


# --- the Why tab's sentences and the order caveat (mmn_core.explain.narration) ------------------------------------
@st.cache_data(show_spinner="Finding what drove each step…", max_entries=256)
def why_narrative(ref: Ref, record: str, use: tuple[str, ...], order: tuple[str, ...], task: str,
                  cls: int | None = None) -> list[str]:
    """mmn_core.explain.narration.explained_narrative: one sentence per step for class `cls` (multiclass),
    each naming the value that pushed most, in the spec's units."""
    from mmn_core.explain.narration import explained_narrative
    b = get_bundle(ref)
    i = b.pos[record]
    return explained_narrative(b.trained, b.data.subset([i]), task, _mask(b.spec, use), list(order), cls,
                               frame=b.ds.subset([i]), reference=reference_categories(ref))


@st.cache_data(show_spinner=False, max_entries=16)
def reference_categories(ref: Ref) -> dict[str, dict[str, str]]:
    """The attribution baseline's categories: each categorical column's most common value among the
    non-test records (mmn_core.explain.attribution.reference_categories)."""
    from mmn_core.explain.attribution import reference_categories as rc
    b = get_bundle(ref)
    return rc(b.trained, b.data)


@st.cache_data(show_spinner="Measuring how far orders move this model…", max_entries=16)
def order_spread(ref: Ref, task: str, n_records: int = 400):
    """mmn_core.explain.ordering.OrderSpread on a seeded sample of the Explorer records (the Cohort page's
    order_sensitivity, bounded so the Explorer's caveat stays fast)."""
    from mmn_core.explain.ordering import order_spread as osp
    return osp(get_bundle(ref).trained, explorer_data(ref), task, n_records=n_records)
