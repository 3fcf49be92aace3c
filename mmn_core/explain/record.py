"""One record as every screen shows it: `RecordView` (Explorer, HTML report, CSV export) and `explain_record`
(the CLI's `explain --json`), both built from the same trace and Shapley values."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checkpoint import Trained
from ..data import Dataset, TensorData
from ..fmt import json_safe
from ._base import _task
from .attribution import attribute_modalities, reference_categories
from .coalitions import shapley
from .narration import narrative
from .steps import trace


@dataclass(frozen=True)
class RecordView:
    """One record under given switches and order. K steps, S state size, E Shapley players, C classes.

    value[t]: (K+1,) binary P(positive) / regression target units, or (K+1, C) class probabilities;
    skipped: (K,) the step did not run (not measured, or switched off); measured: the record's own data;
    states: (K+1, S); shapley[t]: (E,) or (E, C) over `shapley_modalities`; f_all / f_none: the value with
    every player on / off; narrative[t]: K+1 sentences."""
    steps: list[str]
    skipped: np.ndarray
    measured: dict[str, bool]
    states: np.ndarray
    value: dict[str, np.ndarray]
    label: dict[str, float]
    classes: dict[str, list[str]]
    shapley: dict[str, np.ndarray]
    shapley_modalities: list[str]
    f_all: dict[str, np.ndarray]
    f_none: dict[str, np.ndarray]
    narrative: dict[str, list[str]]

    def delta(self, task: str) -> np.ndarray:
        """(K,) or (K, C): the change each step made (telescopes to final − prior)."""
        return np.diff(self.value[task], axis=0)


def record_view(trained: Trained, one: TensorData, present: dict | None = None,
                order: list[str] | None = None) -> RecordView:
    """The RecordView of a one-record TensorData; `present` switches modalities off ({m: (1,) bool})."""
    if len(one) != 1:
        raise ValueError(f"record_view takes one record, got {len(one)}")
    tr = trace(trained, one, present, order)
    sh = shapley(trained, one, present, order)
    return RecordView(
        steps=list(tr.steps), skipped=tr.skipped[:, 0].copy(),
        measured={m: bool(v[0]) for m, v in tr.measured.items()}, states=tr.states[:, 0, :].copy(),
        value={t: v[:, 0].copy() for t, v in tr.value.items()},
        label={t: float(v[0]) for t, v in tr.label.items()}, classes=dict(tr.classes),
        shapley={t: v[0].copy() for t, v in sh.values.items()}, shapley_modalities=list(sh.modalities),
        f_all={t: np.asarray(v[0]).copy() for t, v in sh.f_all.items()},
        f_none={t: np.asarray(v[0]).copy() for t, v in sh.f_none.items()},
        narrative={t: narrative(tr, 0, t, trained.spec) for t in tr.value})


# --- one record, as the CLI prints it ---------------------------------------------------------------------
def explain_record(trained: Trained, ds: Dataset, record_id: str, task: str | None = None,
                   method: str = "ig") -> dict:
    """Everything about one record as JSON-ready data (the CLI's `explain --json`):
    {"record", "model", "steps", "present", "skipped", "tasks": {t: {"type", "prob": [per step], "delta":
    [per step], "label"}}, "shapley": {t: {m: v}}, "f_all": {t: v}, "f_none": {t: v},
    "features": {t: {m: {column: attribution}}}, "convergence_delta": {t: {m: d}}, "narrative": {t: [...]}}.
    Every number is a plain float: binary P(positive); regression target units; multiclass the probability
    of the finally predicted class `tasks[t]["class"]` (per-class lists in "probs", "shapley_by_class",
    "classes"). Feature attributions target the task's logit right after the modality's step (the change
    each narrative sentence describes)."""
    ids = ds.ids
    try:
        row = ids.index(str(record_id))
    except ValueError:
        sample = ", ".join(ids[:3])
        raise ValueError(f"record '{record_id}' is not in dataset '{ds.spec.name}' (ids look like: {sample})") \
            from None
    tasks = [t.name for t in trained.model.tasks] if task is None else [_task(trained, task).name]
    sub = ds.subset([row])
    data = trained.prep.transform(sub)
    tr = trace(trained, data)
    sh = shapley(trained, data)
    out = {"record": str(record_id), "model": trained.kind, "steps": tr.steps,
           "present": {m: bool(p[0]) for m, p in tr.present.items()},
           "skipped": [bool(s) for s in tr.skipped[:, 0]], "tasks": {}, "shapley": {}, "f_all": {}, "f_none": {},
           "features": {}, "convergence_delta": {}, "narrative": {}}
    reference = reference_categories(trained, trained.prep.transform(ds))   # categories: the training mode
    for t in tasks:
        v, phi = tr.value[t][:, 0], sh.values[t][0]
        f_all, f_none = sh.f_all[t][0], sh.f_none[t][0]
        entry = {"type": _task(trained, t).type}
        cls = None
        if v.ndim == 2:                  # multiclass: narrate, attribute and summarize the predicted class
            cls = int(v[-1].argmax())
            entry.update(classes=tr.classes[t], probs=v, shapley_by_class={m: phi[j] for j, m in
                                                                            enumerate(sh.modalities)})
            entry["class"] = tr.classes[t][cls]
            v, phi, f_all, f_none = v[:, cls], phi[:, cls], f_all[cls], f_none[cls]
            label = int(tr.label[t][0])
            entry["label"] = tr.classes[t][label] if label >= 0 else None
        else:
            entry["label"] = tr.label[t][0]
        entry.update(prob=v, delta=np.diff(v))
        out["tasks"][t] = entry
        out["shapley"][t] = {m: phi[j] for j, m in enumerate(sh.modalities)}
        out["f_all"][t], out["f_none"][t] = f_all, f_none
        attrs = attribute_modalities(trained, data, 0, t, method, own_step=True, frame=sub, target_class=cls,
                                     reference=reference)
        out["features"][t] = {m: a.by_column for m, a in attrs.items()}
        out["convergence_delta"][t] = {m: a.delta for m, a in attrs.items()}
        out["narrative"][t] = narrative(tr, 0, t, trained.spec, attrs)
    return json_safe(out)
