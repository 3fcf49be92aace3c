"""Plain-language narrative: one sentence per step, numbers written as on screen."""
from __future__ import annotations

import math
import re
from functools import partial

import numpy as np

from ..fmt import percent as _pct, points as _pts, value as _value, with_units as _num
from .steps import Trace


# --- 6. narrative --------------------------------------------------------------------------------------------
def _push(attr, up: bool, spec) -> str:
    """'; the largest push came from high lactate (3.4 mmol/L)' — the column whose attribution is largest in
    the direction of the change (nothing when no column pushed that way)."""
    if attr is None or not attr.present or not attr.by_column:
        return ""
    sign = 1.0 if up else -1.0
    col, val = max(attr.by_column.items(), key=lambda kv: sign * kv[1])
    if sign * val <= 0:
        return ""
    mspec = spec.modality(attr.modality)
    name = mspec.column_labels.get(col, col)
    raw = attr.raw.get(col)
    feats = [j for j, s in enumerate(attr.source) if s == col]
    x = attr.inputs.reshape(-1, attr.inputs.shape[-1])[-1]   # sequences: the most recent time step
    if len(feats) == 1 and "=" not in attr.features[feats[0]]:      # numeric: high / low vs the training mean
        z = float(x[feats[0]])
        level = "high " if z > 0.5 else "low " if z < -0.5 else ""
        if isinstance(raw, list):
            raw = raw[-1] if raw else None
        units = mspec.units.get(col, "")
        value = f" ({_value(float(raw), col, units)})" if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            and math.isfinite(float(raw)) else ""
        return f"; the largest push came from {level}{name}{value}"
    hot = [attr.features[j].split("=", 1)[1] for j in feats if x[j] > 0.5]
    ref = attr.reference.get(col)
    vs = f" (compared with the most common value, {ref})" if ref and (not hot or ref != hot[0]) else ""
    return f"; the largest push came from {name} = {hot[0]}{vs}" if hot else \
        f"; the largest push came from {name}{vs}"


def narrative(trace: Trace, i: int, task: str, spec, attributions: dict | None = None,
              cls: int | None = None) -> list[str]:
    """One sentence per step (the prior first) for record i, from the trace's numbers. Binary: whole
    percentages of P(positive); multiclass: the probability of class `cls` (default: the finally predicted
    one); regression: the prediction in the target's units. `attributions`: modality -> Attribution, to name
    the largest push (for multiclass, attributions of the same class)."""
    tspec = spec.task(task)
    what = tspec.display.lower() if tspec.display[:1].isupper() and not tspec.display[:2].isupper() \
        else tspec.display
    v = trace.value[task][:, i]
    if v.ndim == 2:                                   # multiclass: follow `cls`, else the predicted class
        c = int(v[-1].argmax()) if cls is None else int(cls)
        if not 0 <= c < v.shape[1]:
            raise ValueError(f"class {c} is outside 0..{v.shape[1] - 1}")
        cname = tspec.class_display(trace.classes[task][c])
        v = v[:, c]
        noun, fmt = f"the predicted probability that {what} is '{cname}'", _pct
    elif tspec.type == "regression":
        noun, fmt = f"the predicted {what}", partial(_num, units=tspec.units)
    else:
        noun, fmt = f"the predicted probability of {what}", _pct
    lines = [f"Before any data, {noun} is {fmt(v[0])}." if len(trace.steps) > 1 and trace.steps[0] == "prior"
             else f"Using all modalities together, {noun} is {fmt(v[0])}."]
    attributions = attributions or {}
    for k, m in enumerate(trace.steps[1:], start=1):
        label = spec.modality(m).display
        if trace.skipped[k - 1, i]:
            measured = trace.measured.get(m)
            why = "was switched off" if measured is not None and measured[i] else "was not measured"
            lines.append(f"{label} {why}, so it was skipped and the prediction stayed at {fmt(v[k])}.")
            continue
        before, after = fmt(v[k - 1]), fmt(v[k])
        if before == after:
            lines.append(f"Adding {label} left {noun} at {after}.")
            continue
        up = v[k] > v[k - 1]
        verb = "raised" if up else "lowered"
        lines.append(f"Adding {label} {verb} {noun} from {before} to {after}"
                     f"{_push(attributions.get(m), up, spec)}.")
    return lines


def explained_narrative(trained, one, task: str, present: dict | None = None, order: list[str] | None = None,
                        cls: int | None = None, frame=None, method: str = "ig",
                        reference: dict | None = None) -> list[str]:
    """The narrative of the single record in `one` (a one-record TensorData) under switches `present` and
    `order`, each changed step naming the value that pushed most (Captum attributions of the task's logit
    right after that step, for class `cls` when multiclass): the CLI's sentence, for the dashboard too.
    `frame`: the record's raw Dataset row(s), so the value is written in the spec's units; `reference`: the
    categories of the attribution baseline (attribution.reference_categories)."""
    from .attribution import attribute_modalities
    from .steps import trace
    tr = trace(trained, one, present, order)
    v = tr.value[task][:, 0]
    if v.ndim == 2 and cls is None:
        cls = int(v[-1].argmax())
    attrs = attribute_modalities(trained, one, 0, task, method, present=present, order=order, own_step=True,
                                 frame=frame, target_class=cls, reference=reference)
    return narrative(tr, 0, task, trained.spec, attrs, cls)


# --- the trust element and what to measure next ----------------------------------------------------------------
def trust_sentence(rf, spec) -> str:
    """faithfulness.RecordFaithfulness.sentence with display names: the engine's comparison with random orders
    (no modality names in it), then the out-of-distribution caution naming the modalities as the spec does."""
    head = rf.sentence.split(" Caution:", 1)[0]
    head = head.replace("the two modalities", "the two kinds of data").replace("the modality", "the kind of data")
    head = head.replace("has no modality", "has no data").replace("has one modality", "has one kind of data")
    head = re.sub(r"(\d)x as much", r"\1 times as much", head)
    k = min(2, max(len(rf.removed) - 1, 0))
    top = [spec.modality(m).display for m in rf.removed[:k]]
    if top:
        head = head.replace(" ranks highest ", f" ranks highest ({' and '.join(top)}) ", 1)
    flagged = [spec.modality(m).display for m in rf.removed[:k] if m in rf.ood_skips]
    if not flagged:
        return head
    one = len(flagged) == 1
    return (f"{head} Caution: {' and '.join(flagged)} {'was' if one else 'were'} almost never missing in training, "
            f"so the model has rarely seen a record without {'it' if one else 'them'}.")


def _size(task, x: float) -> str:
    """An unsigned change: '4 points' / '<1 point' (probabilities) or '1.2 kg' (regression)."""
    return _pts(x).lstrip("+") if task.type != "regression" else _num(abs(x), task.units)


def acquisition_sentence(spec, task: str, rows, mode: str, k: int) -> str:
    """What to measure next, read aloud: the top candidate's expected change and how often the prediction
    would flip; for a fully measured record, what the estimate would have said for its most telling data."""
    t = spec.task(task)
    what = t.display.lower() if t.display[:1].isupper() and not t.display[:2].isupper() else t.display
    val = _pct if t.type != "regression" else partial(_num, units=t.units)
    if not rows:
        return (f"No similar training record has the missing data, so nothing can be estimated for {what}."
                if mode == "missing" else f"No estimate is possible for {what}.")
    r = rows[0]
    name = spec.modality(r.modality).display
    if mode == "hindsight":
        return (f"Everything was measured. Had {name} not been measured, borrowing it from the {k} most similar "
                f"training records would have expected the prediction of {what} to move by "
                f"{_size(t, r.expected_abs_change)} on average; its real value moved it by "
                f"{_size(t, abs(r.actual - r.current))}.")
    s = (f"Measuring {name} is expected to change the prediction of {what} the most: by "
         f"{_size(t, r.expected_abs_change)} on average, from {val(r.current)} now")
    if t.type == "binary":
        s += f"; in {_pct(r.flip_probability)} of the {len(r.outcomes)} most similar records it would cross 50%."
    elif t.type == "multiclass":
        s += f"; in {_pct(r.flip_probability)} of the {len(r.outcomes)} most similar records the predicted " \
             f"category would change."
    else:
        lo, hi = np.quantile(r.outcomes, [0.1, 0.9]) if len(r.outcomes) else (math.nan, math.nan)
        s += f"; with the {len(r.outcomes)} most similar records' values it would lie between {val(lo)} and {val(hi)}."
    if len(rows) > 1:
        s += f" Next: {spec.modality(rows[1].modality).display} ({_size(t, rows[1].expected_abs_change)})."
    return s


def biggest_movers(values, skipped, k: int = 3, cls: int | None = None) -> list[int]:
    """The steps (1..K) that moved the prediction most, largest |change| first, at most `k`, never a step that
    did not run or changed nothing. values: (K+1,) or (K+1, C) per step (multiclass: class `cls`, default
    the finally predicted one); skipped: (K,) bool."""
    import numpy as np
    v = np.asarray(values, dtype=float)
    if v.ndim == 2:
        v = v[:, int(v[-1].argmax()) if cls is None else int(cls)]
    d = np.abs(np.diff(v))
    ran = ~np.asarray(skipped, dtype=bool)
    steps = [j for j in np.argsort(-d, kind="stable") if ran[j] and d[j] > 0]
    return [int(j) + 1 for j in steps[:k]]
