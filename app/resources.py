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
import re
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st
import torch

from mmn_core import CheckpointError, SpecError, load as load_checkpoint_dir, load_dataset, load_spec
from mmn_core.checkpoint import Trained
from mmn_core.data import DATA_DIR, MAX_FILE_BYTES, Dataset, TensorData, load_data
from mmn_core.datasets import bundled_names
from mmn_core.model import probabilities
from mmn_core.threads import use_threads
from mmn_core.train import predict

# The models are small: one thread is fastest, and extra threads spin against each other on a busy machine
# (measured: cohort order sensitivity 1 s with one thread, 60 s with two under load).
use_threads()
ROOT = Path(__file__).resolve().parent.parent
# Overridable for tests and for people who keep checkpoints elsewhere.
CHECKPOINT_DIR = Path(os.environ.get("MMN_LENS_CHECKPOINTS", str(DATA_DIR / "checkpoints")))
DEFAULT_DATASET = os.environ.get("MMN_LENS_DATASET", "support2")
# Development only: train a small model on the fly when a shipped checkpoint is missing.
DEV_TRAIN = os.environ.get("MMN_LENS_DEV_TRAIN") == "1"
# Private per-user cache (uploads, MNAR results, models trained in the app): never a shared temp folder.
CACHE_DIR = Path(os.environ.get("MMN_LENS_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmn-lens")
KINDS = ("multimodn", "pfusion")
MODEL_NAMES = {"multimodn": "MultiModN", "pfusion": "P-Fusion"}


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
def _values(task, prep, logits: torch.Tensor) -> np.ndarray:
    """(…, C) logits → binary P(positive) (…,), multiclass (…, C), regression in the target's units (…,)."""
    v = probabilities(task.type, logits).detach().cpu().numpy()
    if task.type == "regression":
        mean, std = prep.target_stats[task.name]
        v = v * std + mean
    return v


def _labels(task, prep, y: torch.Tensor) -> np.ndarray:
    """Stored labels → binary/multiclass class codes (float, NaN = missing), regression in units."""
    y = y.detach().cpu().numpy().astype(float)
    if task.type == "multiclass":
        y[y < 0] = np.nan
    if task.type == "regression":
        mean, std = prep.target_stats[task.name]
        y = y * std + mean
    return y


def surprise(task_type: str, value: np.ndarray, label: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """How wrong the final prediction is, per record (NaN when the label is missing).

    binary: |y − P(pos)|; multiclass: 1 − P(true class); regression: |y − ŷ| / scale."""
    label = np.asarray(label, dtype=float)
    if task_type == "binary":
        return np.abs(label - value)
    if task_type == "multiclass":
        out = np.full(len(label), np.nan)
        ok = ~np.isnan(label)
        out[ok] = 1 - value[ok, label[ok].astype(int)]
        return out
    return np.abs(label - value) / (scale or 1.0)


@st.cache_data(show_spinner="Scoring the cohort…", max_entries=8)
def cohort_table(ref: Ref) -> pd.DataFrame:
    """One row per Explorer record: id, pattern (present modalities, spec order), and per task
    `<task>__pred` (binary/regression) or `<task>__p<k>` (multiclass), `<task>__label`, `<task>__surprise`."""
    b = get_bundle(ref)
    sub = b.data.subset(b.rows)
    out = predict(b.trained.model, sub)
    pres = {m: sub.present[m].numpy() for m in b.spec.modality_names}
    cols = {"id": sub.ids,
            "pattern": ["|".join(m for m in b.spec.modality_names if pres[m][i]) for i in range(len(sub))]}
    for t in b.spec.tasks:
        v = _values(t, b.trained.prep, out.logits[t.name][-1])
        y = _labels(t, b.trained.prep, sub.y[t.name])
        if t.type == "multiclass":
            for k in range(v.shape[1]):
                cols[f"{t.name}__p{k}"] = v[:, k]
        else:
            cols[f"{t.name}__pred"] = v
        cols[f"{t.name}__label"] = y
        scale = b.trained.prep.target_stats.get(t.name, [0, 1])[1]
        cols[f"{t.name}__surprise"] = surprise(t.type, v, y, scale)
    return pd.DataFrame(cols)


def task_values(task, frame: pd.DataFrame) -> np.ndarray:
    """Final predictions of one task from cohort_table: (N,) or (N, C)."""
    if task.type == "multiclass":
        k = len([c for c in frame.columns if c.startswith(f"{task.name}__p")])
        return frame[[f"{task.name}__p{j}" for j in range(k)]].to_numpy()
    return frame[f"{task.name}__pred"].to_numpy()


# --- the private cache folder --------------------------------------------------------------------------------
def private_dir(path: Path) -> Path:
    """`path` (under CACHE_DIR) as a folder only this user can read, creating it with mode 0700. Refuses a
    symlink or a folder owned by someone else (a planted folder would otherwise be written to and read from)."""
    path = Path(path)
    for p in [*reversed(path.relative_to(CACHE_DIR).parents), path.relative_to(CACHE_DIR)]:
        d = CACHE_DIR / p
        try:
            d.mkdir(mode=0o700, parents=d == CACHE_DIR)
        except FileExistsError:
            pass
        info = os.lstat(d)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise SpecError(f"the cache folder {d} is a link, not a folder, or not yours; remove it or set "
                            "MMN_LENS_CACHE")
        if info.st_mode & 0o077:
            os.chmod(d, 0o700)
    return path


def write_private(path: Path, blob: bytes) -> None:
    """Write a file readable by this user only, atomically, never through a symlink."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)


def read_private(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None if missing, a symlink, not ours or larger than `limit`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > limit:
            return None
        return f.read(limit)


# --- uploads -----------------------------------------------------------------------------------------------
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(name: str) -> str:
    """A file name that cannot leave the upload folder or carry markup (used only on disk)."""
    base = _SAFE.sub("_", Path(name).name).strip("._") or "file"
    return base[:80]


def register_upload(spec_file: tuple[str, bytes], tables: list[tuple[str, bytes]]) -> tuple[str, dict]:
    """Write an uploaded spec and its table(s) to a private folder, validate them, and return
    (dataset key, {"spec", "data", "title"}). Raises SpecError with one clear line.

    The main table is the file named by the spec's `data` key, or the only file not used by a sequence
    modality; sequence tables must be uploaded under the names the spec gives them."""
    if not tables:
        raise SpecError("upload the data table (CSV or Parquet) together with its spec")
    for name, blob in [spec_file, *tables]:
        if len(blob) > MAX_FILE_BYTES:
            raise SpecError(f"{name}: file is {len(blob) / 2**20:.0f} MB, over the "
                            f"{MAX_FILE_BYTES // 2**20} MB cap")
    digest = hashlib.sha256(spec_file[1] + b"".join(b for _, b in sorted(tables))).hexdigest()[:12]
    key = f"upload-{digest}"
    folder = private_dir(CACHE_DIR / "uploads" / key)
    write_private(folder / "spec.yaml", spec_file[1])
    spec = load_spec(folder / "spec.yaml")
    by_name = {}
    for name, blob in tables:
        if not name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq")):
            raise SpecError(f"{name}: tables must be .csv, .csv.gz or .parquet")
        by_name[_safe_name(name)] = blob
    seq_names = set()
    for m in spec.modalities:
        if m.kind == "sequence":
            target = (folder / m.table).resolve()
            if folder.resolve() not in target.parents:
                raise SpecError(f"spec: table '{m.table}' of modality '{m.name}' must be a plain file name")
            wanted = _safe_name(m.table)
            if wanted not in by_name:
                raise SpecError(f"spec: modality '{m.name}' needs its table '{Path(m.table).name}'; upload it too")
            if target.parent != folder.resolve():
                raise SpecError(f"spec: table '{m.table}' of modality '{m.name}' must be a plain file name")
            write_private(folder / target.name, by_name[wanted])
            seq_names.add(wanted)
    main = [n for n in by_name if n not in seq_names]
    if spec.data and _safe_name(spec.data) in by_name:
        main_name = _safe_name(spec.data)
    elif len(main) == 1:
        main_name = main[0]
    else:
        raise SpecError("more than one table uploaded: name the main one in the spec's 'data' key")
    suffix = ".parquet" if main_name.lower().endswith((".parquet", ".pq")) else (
        ".csv.gz" if main_name.lower().endswith(".gz") else ".csv")
    data_path = folder / f"main-table{suffix}"
    write_private(data_path, by_name[main_name])
    load_data(data_path, spec)          # validate now: the message appears where the user uploaded
    return key, {"spec": str(folder / "spec.yaml"), "data": str(data_path),
                 "title": spec.title or spec.name}


# --- MNAR results: a small on-disk cache so a second visit (or a restart) is instant ---------------------------
def mnar_cache_path(config: dict) -> Path:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return CACHE_DIR / "mnar" / f"{hashlib.sha256(blob).hexdigest()[:16]}.json"


def mnar_cached(config: dict) -> dict | None:
    """A stored result, only if it is ours, well-formed and was stored for exactly this configuration."""
    blob = read_private(mnar_cache_path(config), limit=64 * 2**20)
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
    private_dir(p.parent)
    body = {"config": json.loads(json.dumps(config, sort_keys=True, default=str)), "result": result}
    write_private(p, json.dumps(body, default=float).encode())


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
                       task: str, own_step: bool, method: str, target_class: int | None) -> dict:
    """Captum attributions of one modality's values of one record (see mmn_core.explain.attribute).

    Returns {columns, by_column {col: value}, raw {col: value or list}, delta, step, scale (target units per
    output unit; 1 for classification logits), target_class, target_logit, baseline_logit, present}."""
    from mmn_core import explain as E
    b = get_bundle(ref)
    i = b.pos[record]
    one = b.data.subset([i])
    step = (list(order).index(modality) + 1) if own_step else None
    a = E.attribute(b.trained, one, 0, modality, task, step=step, method=method, present=_mask(b.spec, use),
                    order=list(order), target_class=target_class, frame=b.ds.subset([i]))
    return {"columns": list(a.columns), "by_column": dict(a.by_column), "raw": dict(a.raw), "delta": a.delta,
            "step": a.step, "scale": a.value_scale, "target_class": a.target_class,
            "target_logit": a.target_logit, "baseline_logit": a.baseline_logit, "present": a.present,
            "features": list(a.features), "values": np.asarray(a.values).copy()}


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
    """The final-step metric of `task` on the Explorer records under the dataset's order, the reversed order
    and `n_random` seeded random orders: [{"name", "order", metric: value, ...}]."""
    from mmn_core.metrics import task_metrics
    b = get_bundle(ref)
    sub = explorer_data(ref)
    t = b.spec.task(task)
    names = list(b.spec.modality_names)
    rng = np.random.default_rng(seed)
    orders = [("Dataset order", names), ("Reversed", names[::-1])]
    orders += [(f"Random order {i + 1}", [names[j] for j in rng.permutation(len(names))]) for i in range(n_random)]
    out = []
    for name, order in orders:
        o = predict(b.trained.model, sub, order=order)
        m = task_metrics(t.type, sub.y[task].numpy(), o.logits[task][-1].numpy(), b.trained.prep.target_stats.get(task))
        out.append({"name": name, "order": order, **m})
    return out
