"""The record list a page browses, and the small summaries it shows about one record, computed here so that
pages only render: the cohort table (final prediction, label, surprise per task), record filtering (by outcome,
including regression terciles, by missingness pattern, by id), the one name of a missingness pattern, the
headline (prior → final per task), attributions in the target's units, and a neighbour's raw values."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..checkpoint import Trained
from ..data import Dataset, TensorData
from ..missingness import PATTERN_NAMES
from ..train import predict
from ._base import _labels, _tasks, _values

ALL = "All"                                    # the "no filter" choice of every filter
TERCILES = ("Lowest third", "Middle third", "Highest third")


# --- missingness patterns: one vocabulary ----------------------------------------------------------------------
def pattern_label(spec, present: dict[str, bool]) -> str:
    """'Everything measured', 'Nothing measured' or 'Missing: Blood gas, Urine' (display names, spec order)."""
    missing = [spec.modality(m).display for m in spec.modality_names if not present.get(m, False)]
    if not missing:
        return PATTERN_NAMES["all"]
    if len(missing) == len(spec.modality_names):
        return PATTERN_NAMES["none"]
    return PATTERN_NAMES["missing"].format(modalities=", ".join(missing))


def pattern_key_label(spec, key: str) -> str:
    """The label of a cohort-table pattern key ('demographics|vitals': the present modalities joined by '|')."""
    have = set(key.split("|")) if key else set()
    return pattern_label(spec, {m: m in have for m in spec.modality_names})


# --- the cohort table ----------------------------------------------------------------------------------------
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


def record_table(trained: Trained, data: TensorData) -> pd.DataFrame:
    """One row per record of `data`: id, pattern (present modalities in spec order, joined by '|'), and per task
    `<task>__pred` (binary P(positive) / regression units) or `<task>__p<k>` (multiclass), `<task>__label`
    (class index as float, NaN = missing; regression units) and `<task>__surprise`."""
    names = trained.spec.modality_names
    out = predict(trained.model, data)
    pres = {m: data.present[m].numpy() for m in names}
    cols = {"id": list(data.ids),
            "pattern": ["|".join(m for m in names if pres[m][i]) for i in range(len(data))]}
    labels = _labels(trained, data)
    for t, d in _tasks(trained).items():
        v = _values(trained, t, out.logits[t][-1])
        y = labels[t].astype(float)
        if d.type == "multiclass":
            y[y < 0] = np.nan
            for k in range(v.shape[1]):
                cols[f"{t}__p{k}"] = v[:, k]
        else:
            cols[f"{t}__pred"] = v
        cols[f"{t}__label"] = y
        scale = trained.prep.target_stats.get(t, [0, 1])[1]
        cols[f"{t}__surprise"] = surprise(d.type, v, y, scale)
    return pd.DataFrame(cols)


def task_values(task, frame: pd.DataFrame) -> np.ndarray:
    """Final predictions of one task from record_table: (N,) or (N, C)."""
    if task.type == "multiclass":
        k = len([c for c in frame.columns if c.startswith(f"{task.name}__p")])
        return frame[[f"{task.name}__p{j}" for j in range(k)]].to_numpy()
    return frame[f"{task.name}__pred"].to_numpy()


def outcome_options(task, classes: list[str] | None) -> list[str]:
    """The choices of the 'actual outcome' filter: All, then the terciles (regression) or the class values."""
    return [ALL, *TERCILES] if task.type == "regression" else [ALL, *map(str, classes or [])]


def pattern_options(frame: pd.DataFrame) -> dict[str, int]:
    """Pattern key -> number of records, most common first."""
    return {str(k): int(v) for k, v in frame["pattern"].value_counts().items()}


def filter_records(frame: pd.DataFrame, task, classes: list[str] | None, *, query: str = "", outcome: str = ALL,
                   pattern: str = ALL, surprising: bool = True) -> pd.DataFrame:
    """The rows of record_table `frame` that match: id contains `query` (case-insensitive), actual outcome of
    `task` is `outcome` (a class value, or a tercile of the whole table for regression), the pattern key is
    `pattern`; sorted by surprise (largest error first, stable) when `surprising`."""
    sel = frame
    q = (query or "").strip().lower()
    if q:
        sel = sel[sel["id"].str.lower().str.contains(q, regex=False)]
    lab = sel[f"{task.name}__label"]
    if outcome != ALL:
        if task.type == "regression":
            q1, q2 = np.nanquantile(frame[f"{task.name}__label"], [1 / 3, 2 / 3])
            band = {TERCILES[0]: lab <= q1, TERCILES[1]: (lab > q1) & (lab <= q2), TERCILES[2]: lab > q2}
            sel = sel[band[outcome]]
        else:
            sel = sel[lab == list(map(str, classes)).index(outcome)]
    if pattern != ALL:
        sel = sel[sel["pattern"] == pattern]
    if surprising:
        sel = sel.sort_values(f"{task.name}__surprise", ascending=False, na_position="last", kind="stable")
    return sel


# --- one record: the headline and attributions ----------------------------------------------------------------
@dataclass(frozen=True)
class Headline:
    """One task's headline: the shown value (binary/regression the value, multiclass P(predicted class)) before
    any data and after the last step, its change, and the predicted class (multiclass; else None)."""
    task: str
    type: str
    prior: float
    final: float
    change: float
    cls: int | None
    direction: str               # "up", "down" or "off" (no visible change)


def headlines(view, tasks) -> dict[str, Headline]:
    """task -> Headline of a RecordView; `tasks`: the spec's TaskSpecs. A change below half a percentage point
    (classification) or exactly 0 (regression) is 'off', as the formatter writes it 'no change'."""
    out = {}
    for td in tasks:
        v = np.asarray(view.value[td.name], dtype=float)
        cls = int(v[-1].argmax()) if td.type == "multiclass" else None
        prior, final = (v[0][cls], v[-1][cls]) if cls is not None else (v[0], v[-1])
        d = float(final - prior)
        still = abs(100 * d) < 0.05 if td.type != "regression" else d == 0
        out[td.name] = Headline(td.name, td.type, float(prior), float(final), d, cls,
                                "off" if still else "up" if d > 0 else "down")
    return out


def attribution_in_units(attr, task_type: str) -> dict[str, float]:
    """column -> attribution in the units the Why bars use: regression in the target's units
    (Attribution.value_scale); classification in probability (shown as percentage points), the logit
    attributions rescaled by (p(record) − p(reference)) / (logit(record) − logit(reference)), so they keep their
    signs and ratios and add up to the probability change from the reference input to the record (up to the IG
    convergence delta). When the two logits are equal, the slope p(1 − p) at the record is used instead."""
    if task_type == "regression":
        return {c: float(v) * attr.value_scale for c, v in attr.by_column.items()}
    return {c: float(v) * probability_scale(attr) for c, v in attr.by_column.items()}


def probability_scale(attr) -> float:
    """d probability / d logit of an Attribution, as a secant from its reference input to the record (1.0 when
    the Attribution carries no probabilities, e.g. an old pickled one)."""
    p1, p0 = attr.target_value, attr.baseline_value
    if p1 is None or p0 is None:
        return 1.0
    gap = attr.target_logit - attr.baseline_logit
    if abs(gap) > 1e-9:
        return float((p1 - p0) / gap)
    return float(p1 * (1 - p1))


def neighbour_values(ds: Dataset, modality: str, ids) -> pd.DataFrame:
    """The raw values of `modality` of the records `ids` (one row each, in that order; sequences: the latest
    time step), columns the modality's columns; `id` first."""
    spec = ds.spec.modality(modality)
    pos = {r: i for i, r in enumerate(ds.ids)}
    rows = [pos[str(r)] for r in ids]
    if spec.kind == "tabular":
        out = ds.frame.iloc[rows][list(spec.columns)].reset_index(drop=True)
    else:
        seq = ds.sequences[modality]
        key = seq[spec.key].astype(str)
        last = seq.assign(_k=key).sort_values(spec.time_column).groupby("_k").tail(1).set_index("_k")
        out = last.reindex([str(r) for r in ids])[list(spec.columns)].reset_index(drop=True)
    out.insert(0, "id", [str(r) for r in ids])
    return out


def order_metrics(trained: Trained, data: TensorData, task: str, n_random: int = 6, seed: int = 0) -> list[dict]:
    """The final-step metrics of `task` on `data` under the dataset's order, the reversed order and `n_random`
    seeded random orders: [{"name", "order", metric: value, ...}]."""
    from ..metrics import task_metrics
    t = trained.spec.task(task)
    names = list(trained.spec.modality_names)
    rng = np.random.default_rng(seed)
    orders = [("Dataset order", names), ("Reversed", names[::-1])]
    orders += [(f"Random order {i + 1}", [names[j] for j in rng.permutation(len(names))]) for i in range(n_random)]
    out = []
    for name, order in orders:
        o = predict(trained.model, data, order=order)
        m = task_metrics(t.type, data.y[task].numpy(), o.logits[task][-1].numpy(), trained.prep.target_stats.get(task))
        out.append({"name": name, "order": order, **m})
    return out


@dataclass(frozen=True)
class StepOverview:
    """Every outcome × every step of one record, for a compact overview. change: (T, K) what step k did to
    outcome t, in the outcome's unit (percentage points of P(positive) / of the finally predicted class's
    probability for multiclass; the target's units for regression); NaN where the step did not run.
    relative: (T, K) change / the row's largest |change| (colour scale per outcome; 0 for an all-zero row);
    final: (T,) the final prediction in the same unit (percent, or the target's units)."""
    tasks: list[str]
    steps: list[str]              # the K modality steps (no prior)
    change: np.ndarray
    relative: np.ndarray
    final: np.ndarray
    units: list[str]              # per outcome: "points" or the regression target's units
    classes: list[int | None]     # multiclass: the class followed; else None


def step_overview(view, tasks) -> StepOverview:
    """The StepOverview of a RecordView; `tasks`: the spec's TaskSpecs in display order."""
    rows, finals, units, followed = [], [], [], []
    ran = ~np.asarray(view.skipped, dtype=bool)
    for t in tasks:
        v = np.asarray(view.value[t.name], dtype=float)
        c = None
        if t.type == "multiclass":
            c = int(v[-1].argmax())
            v = v[:, c]
        scale = 1.0 if t.type == "regression" else 100.0
        d = np.diff(v) * scale
        rows.append(np.where(ran, d, np.nan))
        finals.append(v[-1] * scale)
        units.append((t.units or "") if t.type == "regression" else "points")
        followed.append(c)
    change = np.vstack(rows) if rows else np.zeros((0, len(view.steps) - 1))
    peak = np.nanmax(np.abs(change), axis=1, initial=0.0)[:, None] if change.size else np.zeros((len(rows), 1))
    relative = np.where(peak > 0, change / np.where(peak > 0, peak, 1.0), np.where(np.isnan(change), np.nan, 0.0))
    return StepOverview([t.name for t in tasks], list(view.steps[1:]), change, relative, np.asarray(finals), units,
                        followed)
