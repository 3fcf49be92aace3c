"""Two records side by side (`compare_records`): two patients, or one patient with and without some kinds of
data, for one task, on shared axes.

Both sides are `RecordView`s in the same encoding order, so step k means the same kind of data on both; the pair
adds what a reader needs to compare them honestly: one value-axis range for both step charts, one modality order
and one x range for both sets of Why bars, the per-step difference and one sentence in words. Nothing here runs
the model: `record_pair` builds the two views with `record_view` (hence `MultiModN.forward`), `compare_records`
only aligns views it is given (the dashboard passes its cached ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checkpoint import Trained
from ..data import TensorData
from ..fmt import json_safe, percent, points, signed, with_units
from .record import RecordView, record_view

PAD = 0.10          # regression: the shared axis extends 10 % of the span beyond the lowest and highest value


@dataclass(frozen=True)
class RecordPair:
    """Side A and side B of one task. K steps (same encoding order on both sides), E modalities.

    values_a / values_b: (K+1,) the task's scalar after each step (binary P(positive), multiclass P(class
    `class_index`), regression target units); difference: (K+1,) values_b − values_a; step_difference: (K,)
    B's change at each step minus A's; modalities: (E,) the Why bars' order on both sides (spec order, union of
    both sides' players); shapley_a / shapley_b: (E,) the scalar's exact Shapley values (NaN where a side has no
    such player); value_range: (lo, hi) one value axis for both step charts (classification 0..1; regression every
    value and actual outcome of both sides, padded); shapley_span: the largest |Shapley| of either side (both Why
    charts share it); parts_at: first step (index into `steps`) where the two differ, None when they never do;
    truth_a / truth_b: the actual outcome (class index or value; NaN unknown)."""
    a: RecordView
    b: RecordView
    record_a: str
    record_b: str
    off_a: tuple[str, ...]
    off_b: tuple[str, ...]
    task: str
    task_type: str
    units: str
    class_index: int | None
    steps: list[str]
    values_a: np.ndarray
    values_b: np.ndarray
    difference: np.ndarray
    step_difference: np.ndarray
    modalities: list[str]
    shapley_a: np.ndarray
    shapley_b: np.ndarray
    value_range: tuple[float, float]
    shapley_span: float
    parts_at: int | None
    truth_a: float
    truth_b: float
    name_a: str
    name_b: str
    sentence: str

    @property
    def same_record(self) -> bool:
        return self.record_a == self.record_b

    def to_json(self) -> dict:
        keep = ("record_a", "record_b", "off_a", "off_b", "task", "task_type", "units", "class_index", "steps",
                "values_a", "values_b", "difference", "step_difference", "modalities", "shapley_a", "shapley_b",
                "value_range", "shapley_span", "parts_at", "truth_a", "truth_b", "name_a", "name_b", "sentence")
        return json_safe({k: getattr(self, k) for k in keep})


def _scalar(v, ci: int | None) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v[..., ci] if v.ndim >= 2 and ci is not None else v


def _truth(view: RecordView, task: str, kind: str) -> float:
    y = float(view.label[task])
    return y if np.isfinite(y) and (kind == "regression" or y >= 0) else float("nan")   # class -1: unknown


def _shapley(view: RecordView, task: str, ci: int | None, modalities: list[str]) -> np.ndarray:
    phi = _scalar(view.shapley[task], ci)
    at = {m: j for j, m in enumerate(view.shapley_modalities)}
    return np.array([float(phi[at[m]]) if m in at else np.nan for m in modalities])


def side_name(spec, record: str, off) -> str:
    """'Record 1042' or 'Record 1042 without Vital signs (day 3) and Urine output (day 3)'."""
    off = [spec.modality(m).display for m in spec.modality_names if m in set(off)]
    if not off:
        return f"Record {record}"
    return f"Record {record} without " + (off[0] if len(off) == 1 else ", ".join(off[:-1]) + " and " + off[-1])


def _sentence(p: dict, spec) -> str:
    kind, units = p["task_type"], p["units"]
    td = spec.task(p["task"])
    what = td.display
    if p["class_index"] is not None:
        what += f" (probability of '{td.class_display(p['class_label'])}')"
    val = (lambda v: percent(v)) if kind != "regression" else (lambda v: with_units(v, units))
    fa, fb = float(p["values_a"][-1]), float(p["values_b"][-1])
    a, b = p["name_a"], p["name_b"]
    if p["parts_at"] is None:
        return f"{what}: {a} and {b} get the same prediction at every step ({val(fa)} at the end)."
    d = fb - fa
    gap = (points(d).lstrip("+−") if kind != "regression" else signed(abs(d), units).lstrip("+"))
    rel = "no different from" if val(fa) == val(fb) else ("higher than" if d > 0 else "lower than")
    label = lambda m: spec.modality(m).display  # noqa: E731
    s = f"{what}: {b} ends at {val(fb)}, {rel} {a} at {val(fa)}"
    s += f" ({gap} apart)" if rel != "no different from" else ""
    step = p["steps"][p["parts_at"]]
    s += "; they differ from the start (the prior)" if step == "prior" else f"; they first differ at {label(step)}"
    gaps = np.nan_to_num(np.abs(p["shapley_b"] - p["shapley_a"]), nan=0.0)
    if gaps.size and gaps.max() > 0:
        j = int(gaps.argmax())
        m = p["modalities"][j]

        def bar(side: str) -> str:
            if m in p[f"off_{side}"]:
                return "switched off"
            if not getattr(p[side], "measured", {}).get(m, True):
                return "not measured"
            v = p[f"shapley_{side}"][j]
            return points(v) if kind != "regression" else signed(v, units)
        s += f", and the Why bars differ most for {label(m)} ({bar('b')} for B, {bar('a')} for A)"
    return s + "."


def compare_records(spec, a: RecordView, b: RecordView, task: str, *, record_a: str, record_b: str,
                    off_a=(), off_b=(), class_index: int | None = None) -> RecordPair:
    """Align two RecordViews of `spec`'s model for `task`. They must share the encoding order (`steps`).
    Multiclass: `class_index` is the class followed on both sides (default: the one A finally predicts)."""
    if list(a.steps) != list(b.steps):
        raise ValueError(f"the two sides use different encoding orders ({a.steps} vs {b.steps})")
    td = spec.task(task)
    ci = None
    if td.type == "multiclass":
        ci = int(np.asarray(a.value[task][-1]).argmax()) if class_index is None else int(class_index)
    va, vb = _scalar(a.value[task], ci), _scalar(b.value[task], ci)
    ta, tb = _truth(a, task, td.type), _truth(b, task, td.type)
    diff = vb - va
    moved = np.flatnonzero(np.abs(diff) > 1e-12)
    modalities = [m for m in spec.modality_names if m in set(a.shapley_modalities) | set(b.shapley_modalities)]
    sa, sb = _shapley(a, task, ci, modalities), _shapley(b, task, ci, modalities)
    if td.type == "regression":
        shown = [x for x in (*va, *vb, ta, tb) if np.isfinite(x)]
        lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
        pad = PAD * (hi - lo) or max(abs(hi) * 0.05, 1.0)
        rng = (float(lo - pad), float(hi + pad))
    else:
        rng = (0.0, 1.0)
    both = np.concatenate([sa, sb])
    span = float(np.nanmax(np.abs(both))) if np.isfinite(both).any() else 0.0
    classes = a.classes.get(task) or []
    p = dict(record_a=str(record_a), record_b=str(record_b), off_a=tuple(off_a), off_b=tuple(off_b), task=task,
             task_type=td.type, units=td.units, class_index=ci, steps=list(a.steps), values_a=va, values_b=vb,
             difference=diff, step_difference=np.diff(vb) - np.diff(va), modalities=modalities, shapley_a=sa,
             shapley_b=sb, value_range=rng, shapley_span=span if span > 0 else 1e-12,
             parts_at=int(moved[0]) if len(moved) else None, truth_a=ta, truth_b=tb,
             name_a=side_name(spec, record_a, off_a), name_b=side_name(spec, record_b, off_b))
    sentence = _sentence({**p, "a": a, "b": b, "class_label": classes[ci] if ci is not None and ci < len(classes)
                          else ""}, spec)
    return RecordPair(a=a, b=b, sentence=sentence, **p)


def _off_mask(data: TensorData, row: int, off) -> dict[str, np.ndarray]:
    return {m: np.array([bool(data.present[m][row]) and m not in set(off)]) for m in data.present}


def record_pair(trained: Trained, data: TensorData, row_a: int, row_b: int, task: str, off_a=(), off_b=(),
                order: list[str] | None = None, class_index: int | None = None) -> RecordPair:
    """Rows `row_a` and `row_b` of `data` (may be the same row), each with the modalities in `off_*` switched
    off, in one encoding order (default the dataset's), compared for `task`."""
    order = list(order) if order is not None else list(trained.spec.modality_names)
    va = record_view(trained, data.subset([row_a]), _off_mask(data, row_a, off_a), order)
    vb = record_view(trained, data.subset([row_b]), _off_mask(data, row_b, off_b), order)
    return compare_records(trained.spec, va, vb, task, record_a=data.ids[row_a], record_b=data.ids[row_b],
                           off_a=off_a, off_b=off_b, class_index=class_index)
