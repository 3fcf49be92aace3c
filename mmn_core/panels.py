"""Typed results behind two dashboard panels, shared by the Explorer, the Cohort page, the HTML report and the
CLI: "How much to trust this" (deletion curves of one record, or of a cohort sample, against random orders;
`faithfulness.py` does the measuring) and "What to measure next" (`acquire.py` does the estimating).

Values are in the units a reader sees: binary P(positive), multiclass P(the predicted class), regression the
target's units. Both panels need MultiModN (its steps can be skipped one by one); for P-Fusion they come back
with `available=False` and the reason in words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import acquire as AQ
from . import faithfulness as FA
from .checkpoint import Trained
from .data import TensorData
from .explain._base import _is_sequential, _task
from .explain.narration import acquisition_sentence, trust_sentence

PFUSION_ACQUIRE = ("P-Fusion has no step-by-step state to find similar records in, so it cannot estimate what "
                   "measuring a missing kind of data would change.")


def _with_use(data: TensorData, row: int, use) -> TensorData:
    """`data` with record `row`'s modalities outside `use` switched off (other records unchanged)."""
    if use is None:
        return data
    pres = {m: v.clone() for m, v in data.present.items()}
    for m, v in pres.items():
        v[row] = bool(v[row]) and m in use
    return data.with_present(pres)


# --- how much to trust this ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trust:
    """One record, one task, one method. removed: the present modalities in the method's removal order (p);
    deletion: (p+1,) the prediction after removing the top 0..p; random: (p+1,) the mean over random orders;
    sentence: plain words (display names); reason: why not available (P-Fusion)."""
    task: str
    method: str
    available: bool
    removed: tuple[str, ...] = ()
    deletion: np.ndarray = field(default_factory=lambda: np.zeros(0))
    random: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ood_skips: tuple[str, ...] = ()
    sentence: str = ""
    reason: str = ""

    def to_json(self) -> dict:
        return {"task": self.task, "method": self.method, "available": self.available,
                "removed": list(self.removed), "deletion": self.deletion.tolist(), "random": self.random.tolist(),
                "ood_skips": list(self.ood_skips), "sentence": self.sentence, "reason": self.reason or None}


def _to_shown(trained: Trained, task: str, curve: np.ndarray, final: float, prior: float) -> np.ndarray:
    """faithfulness' oriented scalar → the shown value. Binary: P(predicted class) → P(positive); regression:
    ±standardized → target units (the sign that makes the full prediction's side of the prior positive)."""
    t = _task(trained, task)
    if t.type == "binary":
        return curve if final >= 0.5 else 1.0 - curve
    if t.type == "regression":
        sign = 1.0 if final >= prior else -1.0
        return np.asarray([trained.prep.decode_target(trained.spec.task(task), sign * v) for v in curve])
    return curve


def record_trust(trained: Trained, data: TensorData, row: int, task: str, use=None, method: str = "shapley",
                 random_orders: int = 64, seed: int = 0, shown: tuple[float, float] | None = None) -> Trust:
    """The deletion curve of record `row` of `data` (the whole TensorData: training records give the
    out-of-distribution flags) with only `use` on, for `method`, against `random_orders` random orders.
    shown: (prior, final) of the record's binary/regression value in the dataset's order, if the caller has
    them (a RecordView): they orient the curve; otherwise one more forward computes them."""
    d = _with_use(data, row, use)
    rf = FA.record_faithfulness(trained, d, row, task, method, random_orders=random_orders, seed=seed)
    if shown is None and _task(trained, task).type != "multiclass":
        from .explain.steps import trace
        one = d.subset([row])
        v = np.asarray(trace(trained, one).value[task][:, 0], dtype=float)
        if not _is_sequential(trained.model):      # P-Fusion has no prior step: its prior is "nothing present"
            none = {m: False for m in trained.model.modality_names}
            v = np.r_[trace(trained, one, present=none).value[task][-1, 0], v[-1]]
        shown = (float(v[0]), float(v[-1]))
    prior, final = shown if shown is not None else (0.0, 1.0)
    return Trust(task, method, True, tuple(rf.removed), _to_shown(trained, task, rf.deletion, final, prior),
                 _to_shown(trained, task, rf.random, final, prior), tuple(rf.ood_skips),
                 trust_sentence(rf, trained.spec))


@dataclass(frozen=True)
class CohortCurves:
    """Mean deletion curves over a seeded sample of `records` records: curves[method] (E+1,) of the oriented
    output (faithfulness' scalar: toward each record's prediction), 'random' averaged over random orders.
    Past a record's own p modalities its curve stays at its prior."""
    task: str
    records: int
    curves: dict[str, np.ndarray]


def cohort_curves(trained: Trained, data: TensorData, task: str, records: int = 100, seed: int = 0,
                  methods=FA.METHODS, random_orders: int = 16) -> CohortCurves:
    """The curves behind `faithfulness.cohort_faithfulness` (the same seeded sample for the same arguments)."""
    data = FA._prepare(trained, data, task)
    has_any = np.flatnonzero(np.stack([data.present[m].numpy() for m in trained.model.modality_names]).any(0))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(has_any, size=min(records, len(has_any)), replace=False))
    ctx = FA._context(trained, data.subset(pick), task)
    imp = FA.importances(ctx, FA._applicable(trained, methods)[0], seed=seed)      # P-Fusion: no step_delta
    ranks = np.stack([FA._ranks(imp[m], ctx.has) for m in imp] + list(FA._random_ranks(ctx.has, random_orders, seed)))
    dele = FA._curves(ctx, ranks)[0].mean(1)                                # (R, E+1)
    k = len(imp)
    return CohortCurves(task, len(pick), {**{m: dele[j] for j, m in enumerate(imp)}, "random": dele[k:].mean(0)})


# --- what to measure next ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasureRow:
    """One candidate modality for one task: the acquire estimate (see acquire.TaskEstimate), the K outcomes,
    the donors; `actual`: the true final value (hindsight mode only, else NaN)."""
    modality: str
    expected_abs_change: float
    flip_probability: float
    uncertainty_reduction: float
    current: float
    outcomes: np.ndarray
    neighbour_ids: tuple[str, ...]
    actual: float = math.nan


@dataclass(frozen=True)
class MeasureNext:
    """One record, one task. mode: "missing" (estimate each modality it lacks or that is switched off),
    "hindsight" (everything measured and on: what if each had not been measured) or "unavailable"
    (P-Fusion: `reason`). rows: ranked by expected |change|, largest first."""
    task: str
    type: str
    mode: str
    k: int
    rows: tuple[MeasureRow, ...] = ()
    no_donors: tuple[str, ...] = ()
    sentence: str = ""
    reason: str = ""


def measure_next(trained: Trained, data: TensorData, row: int, donors: AQ.Donors | None, use=None,
                 k: int = 50, threshold: float = 0.5) -> dict[str, MeasureNext]:
    """task -> MeasureNext for record `row` of `data` with only `use` on (None: its own data). A measured
    modality switched off counts as not measured; two batched forwards for every task at once."""
    tasks = {t.name: t for t in trained.spec.tasks}
    if not _is_sequential(trained.model) or donors is None:
        return {t: MeasureNext(t, d.type, "unavailable", k, reason=PFUSION_ACQUIRE) for t, d in tasks.items()}
    hide = tuple(m for m in donors.names if bool(data.present[m][row]) and use is not None and m not in use)
    est = AQ.estimate(trained, data, row, donors, k, hide=hide, threshold=threshold)
    out = {}
    if est.candidates:
        for t, d in tasks.items():
            rows = tuple(_row(est.modalities[m], t) for m in est.ranked(t))
            out[t] = MeasureNext(t, d.type, "missing", k, rows, est.no_donors,
                                 acquisition_sentence(trained.spec, t, rows, "missing", k))
        return out
    hs = AQ.what_if_not_measured(trained, data, row, donors, k, threshold=threshold)
    for t, d in tasks.items():
        rows = tuple(sorted((_row(h.estimate, t, h.actual[t]) for h in hs.values()),
                            key=lambda r: -r.expected_abs_change))
        out[t] = MeasureNext(t, d.type, "hindsight", k, rows, (),
                             acquisition_sentence(trained.spec, t, rows, "hindsight", k))
    return out


def _row(me: AQ.ModalityEstimate, task: str, actual: float = math.nan) -> MeasureRow:
    e = me.tasks[task]
    return MeasureRow(me.modality, e.expected_abs_change, e.flip_probability, e.uncertainty_reduction, e.current,
                      np.asarray(e.outcomes, dtype=float), tuple(me.neighbour_ids), float(actual))


def explain_faithfulness(trained: Trained, data: TensorData, row: int, tasks, method: str = "shapley") -> dict:
    """The CLI's `explain --json` "faithfulness" field: {task: Trust.to_json()} (P-Fusion: its own zero-fill
    ablation)."""
    return {t: record_trust(trained, data, row, t, method=method).to_json() for t in tasks}
