"""How sure, in plain terms: what a headline prediction has meant on the model's held-out records.

Reliability bins over the checkpoint's test split (records it never trained on). Binary: the predicted
P(positive) in equal-width bins, and per bin the share of records that actually had the outcome. Multiclass:
the probability of the predicted class ("confidence") in bins, and per bin the share where that class was the
actual one. Regression: records in bins of their prediction (deciles), and per bin the median absolute error in
the target's units. `how_sure` turns one headline value into a sentence ("Of 143 held-out records given
90–100%, 87% had the outcome.") with the bin's numbers, so a 99 % is not read as certainty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checkpoint import Trained
from .data import Dataset
from .fmt import number, percent, with_units

BINS = 10
FEW = 20            # a bin with fewer records is reported, with a warning that it is a rough guide


@dataclass(frozen=True)
class Reliability:
    """B bins of one task on held-out records. edges: (B+1,) probability (classification) or prediction
    (regression, quantile edges) bounds; n: (B,) records per bin; mean_pred: (B,) mean predicted value;
    observed: (B,) classification the share with the outcome / right class, regression the median |error|
    (NaN in an empty bin); records: held-out records used (labelled ones)."""
    task: str
    type: str
    edges: np.ndarray
    n: np.ndarray
    mean_pred: np.ndarray
    observed: np.ndarray
    records: int

    def bin_of(self, value: float) -> int:
        """The bin holding `value` (values outside the edges go to the first / last bin)."""
        j = int(np.searchsorted(self.edges, float(value), side="right")) - 1
        return min(max(j, 0), len(self.n) - 1)

    def to_json(self) -> dict:
        from .fmt import json_safe
        return json_safe({"task": self.task, "type": self.type, "edges": self.edges, "n": self.n,
                          "mean_pred": self.mean_pred, "observed": self.observed, "records": self.records})


@dataclass(frozen=True)
class HowSure:
    """One headline value read against its bin: lo / hi the bin's bounds, n its records, observed the bin's
    outcome share (classification) or median |error| (regression); sentence: what a reader sees."""
    value: float
    lo: float
    hi: float
    n: int
    observed: float
    sentence: str


def reliability_bins(pred: np.ndarray, outcome: np.ndarray, bins: int = BINS, task: str = "",
                     kind: str = "binary") -> Reliability:
    """pred (N,): probabilities in [0, 1] (classification) or predictions (regression); outcome (N,): 0/1 had the
    outcome / was right (classification) or the actual value (regression). NaN outcomes are left out.
    Classification bins are [0, 0.1), …, [0.9, 1.0] (the last one closed); regression bins are prediction
    quantiles, so each holds about N / bins records."""
    pred, outcome = np.asarray(pred, dtype=float), np.asarray(outcome, dtype=float)
    if pred.shape != outcome.shape or pred.ndim != 1:
        raise ValueError(f"pred {pred.shape} and outcome {outcome.shape} must be the same 1-D shape")
    ok = np.isfinite(pred) & np.isfinite(outcome)
    pred, outcome = pred[ok], outcome[ok]
    if kind == "regression":
        edges = np.quantile(pred, np.linspace(0, 1, bins + 1)) if len(pred) else np.zeros(bins + 1)
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
    j = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, bins - 1)
    n = np.bincount(j, minlength=bins)
    mean_pred = np.full(bins, math.nan)
    observed = np.full(bins, math.nan)
    for b in range(bins):
        sel = j == b
        if sel.any():
            mean_pred[b] = pred[sel].mean()
            observed[b] = (np.median(np.abs(outcome[sel] - pred[sel])) if kind == "regression"
                           else outcome[sel].mean())
    return Reliability(task, kind, edges, n, mean_pred, observed, int(len(pred)))


def held_out_reliability(trained: Trained, ds: Dataset, task: str, bins: int = BINS) -> Reliability:
    """Reliability of `task`'s final prediction (every modality a record has) on the checkpoint's test split
    in `ds` (every record when the checkpoint stores no test ids — then it is not held out: say so)."""
    from . import explain as E
    from .acquire import held_out_rows
    tdef = E._task(trained, task)
    rows = held_out_rows(trained, ds)
    if len(rows) == 0:
        rows = np.arange(len(ds))
    data = trained.prep.transform(ds.subset(rows))
    out = E._run_all(trained, data, data.present, None, 4096, keep_states=False)
    v = E._values(trained, task, out.logits[task][-1])                 # (N,) or (N, C)
    y = E._labels(trained, data)[task].astype(float)
    if tdef.type == "multiclass":
        y[y < 0] = np.nan
        cls = v.argmax(-1)
        pred = v[np.arange(len(v)), cls]
        outcome = np.where(np.isnan(y), np.nan, (y == cls).astype(float))
        return reliability_bins(pred, outcome, bins, task, "multiclass")
    return reliability_bins(v, y, bins, task, tdef.type)


def _range(lo: float, hi: float) -> str:
    return f"{100 * lo:.0f}–{100 * hi:.0f}%"


def how_sure(rel: Reliability, value, outcome_label: str, units: str = "", class_label: str = "") -> HowSure:
    """The sentence beside a headline. value: binary P(positive), multiclass the (C,) class probabilities or
    the predicted class's probability, regression the prediction in units."""
    v = np.asarray(value, dtype=float)
    v = float(v.max()) if v.ndim else float(v)
    b = rel.bin_of(v)
    lo, hi, n, obs = float(rel.edges[b]), float(rel.edges[b + 1]), int(rel.n[b]), float(rel.observed[b])
    if n == 0:
        sentence = (f"No held-out record got a prediction in the {_range(lo, hi)} range, so there is nothing "
                    f"to compare this one with." if rel.type != "regression" else
                    "No held-out record got a prediction in this range, so there is nothing to compare with.")
        return HowSure(v, lo, hi, 0, obs, sentence)
    recs = f"{n:,} held-out record{'s' if n != 1 else ''}"
    if rel.type == "binary":
        sentence = f"Of {recs} given {_range(lo, hi)}, {percent(obs)} actually had {outcome_label}."
    elif rel.type == "multiclass":
        answer = f"'{class_label}'" if class_label else "its top answer"
        sentence = (f"Of {recs} where the model's top answer had {_range(lo, hi)}, it was right for "
                    f"{percent(obs)} (this one's top answer: {answer}).")
    else:
        sentence = (f"For {recs} predicted between {with_units(lo, units)} and {with_units(hi, units)}, half were "
                    f"within {number(obs)}{(' ' + units) if units and not units[:1].isdigit() else ''} of the "
                    f"prediction.")
    if n < FEW:
        sentence += " Only a few records: a rough guide."
    return HowSure(v, lo, hi, n, obs, sentence)


def how_sure_for(rel: Reliability, task_spec, value, classes=None) -> HowSure:
    """`how_sure` with the outcome named as inside a sentence (lower-cased unless it starts with an acronym) and,
    for multiclass, the predicted class of `value` (C,) named from `classes` (the task's class values)."""
    v = np.asarray(value, dtype=float)
    cl = task_spec.class_display(classes[int(v.argmax())]) if task_spec.type == "multiclass" else ""
    d = task_spec.display
    what = d.lower() if d[:1].isupper() and not d[:2].isupper() else d
    return how_sure(rel, v, what, task_spec.units, cl)
