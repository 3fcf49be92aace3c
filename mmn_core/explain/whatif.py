"""What-if on a value: edit raw values of one record, re-run every step, compare (`what_if`).

The edit is made on the record's raw row (the data's own units, before standardization) and passed through the
model's fitted `Preprocessor.transform`, exactly as the record itself was: standardization and one-hot coding
are never re-implemented here. Both the original and the edited record are traced separately by `steps.trace`
(one forward each through `run.forward`), so an edit that changes nothing gives bit-identical numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..checkpoint import Trained
from ..data import Dataset
from ..fmt import json_safe, percent, points, signed, with_units
from ..validate import HUGE, _is_numeric, label_str
from .steps import trace


@dataclass(frozen=True)
class Edit:
    """One changed value: `old` as in the data (None when not measured), `new` as the model reads it."""
    modality: str
    column: str
    old: object
    new: object


@dataclass(frozen=True)
class WhatIf:
    """One record traced as it is and with `edits`. K steps, S state size, C classes.

    original[t] / edited[t]: (K+1,) binary P(positive) / regression target units, or (K+1, C) class
    probabilities; change[t] = edited − original (zero, exactly, before the first edited step);
    states_original / states_edited: (K+1, S); first_step: the step index (1..K) of the earliest edited
    modality in `steps`, None when every edited modality is switched off (then nothing changes)."""
    record: str
    steps: list[str]
    edits: list[Edit]
    original: dict[str, np.ndarray]
    edited: dict[str, np.ndarray]
    change: dict[str, np.ndarray]
    states_original: np.ndarray
    states_edited: np.ndarray
    skipped: np.ndarray
    first_step: int | None

    def to_json(self) -> dict:
        return json_safe({"record": self.record, "steps": self.steps, "first_step": self.first_step,
                          "edits": [vars(e) for e in self.edits], "original": self.original,
                          "edited": self.edited, "change": self.change})


def feature_kind(trained: Trained, modality: str, column: str) -> str:
    """'numeric' (a number input) or 'categorical' (one of `categories`); ValueError naming an unknown one."""
    spec = trained.spec
    if modality not in spec.modality_names:
        raise ValueError(f"unknown kind of data '{modality}' (the model has: {', '.join(spec.modality_names)})")
    m = spec.modality(modality)
    if column not in m.columns:
        raise ValueError(f"'{column}' is not a measurement of {m.display} (it has: {', '.join(m.columns)})")
    return "numeric" if column in trained.prep.numeric[modality] else "categorical"


def categories(trained: Trained, modality: str, column: str) -> list[str]:
    """The categories of a categorical feature that the model saw in training (its one-hot columns)."""
    return list(trained.prep.categories[modality][column])


def _checked(trained: Trained, modality: str, column: str, value, series: pd.Series):
    """The new raw value in the column's own type; ValueError naming the feature when the model cannot read it."""
    m = trained.spec.modality(modality)
    name = m.column_labels.get(column, column)
    if feature_kind(trained, modality, column) == "numeric":
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} needs a number, not '{value}'") from None
        if not math.isfinite(v) or abs(v) > HUGE:
            raise ValueError(f"{name} needs a finite number, not {value}")
        return v
    cats = categories(trained, modality, column)
    text = label_str(value)
    if text not in cats:
        raise ValueError(f"{name} = '{value}' is a category the model never saw in training "
                         f"(it knows: {', '.join(cats)})")
    if pd.api.types.is_bool_dtype(series):
        return text == "True"
    return float(text) if _is_numeric(series) else text


def edited_dataset(trained: Trained, ds: Dataset, row: int, edits: dict[tuple[str, str], object]
                   ) -> tuple[Dataset, Dataset, list[Edit]]:
    """(the record as a one-row Dataset, the same with `edits` applied, the edits as read).

    edits: {(modality, column): new raw value}. Only tabular modalities the record has are editable: a value of
    a modality that was not measured would invent data (the model skips absent modalities), and a sequence is
    many values over time."""
    one = ds.subset([row])
    frame = one.frame.copy()
    done = []
    for (m, c), value in edits.items():
        feature_kind(trained, m, c)
        mspec = trained.spec.modality(m)
        if mspec.kind != "tabular":
            raise ValueError(f"{mspec.display} is a series over time: a what-if edits single values of "
                             f"tabular data only")
        if not bool(one.presence()[m].iloc[0]):
            raise ValueError(f"{mspec.display} was not measured for this record: there is no value of "
                             f"{mspec.column_labels.get(c, c)} to change")
        new = _checked(trained, m, c, value, frame[c])
        old = frame[c].iloc[0]
        done.append(Edit(m, c, None if pd.isna(old) else (old.item() if hasattr(old, "item") else old), new))
        # the whole (one-row) column is replaced: setting a float into an int column in place is refused
        frame[c] = pd.Series([new], index=frame.index, dtype=object if isinstance(new, str) else None)
    return one, Dataset(one.spec, frame, one.sequences), done


def what_if(trained: Trained, ds: Dataset, row: int, edits: dict[tuple[str, str], object],
            present: dict | None = None, order: list[str] | None = None) -> WhatIf:
    """Every task's value after every step of record `row` of `ds`, as it is and with `edits` (see
    `edited_dataset`), under the presence overrides `present` ({m: (1,) bool}) and `order`."""
    if not edits:
        raise ValueError("no value to change")
    one, changed, done = edited_dataset(trained, ds, row, edits)
    a = trace(trained, trained.prep.transform(one), present, order)
    b = trace(trained, trained.prep.transform(changed), present, order)
    ran = [j + 1 for j, s in enumerate(a.steps[1:]) if s in {e.modality for e in done} and not a.skipped[j, 0]]
    orig = {t: v[:, 0].copy() for t, v in a.value.items()}
    new = {t: v[:, 0].copy() for t, v in b.value.items()}
    return WhatIf(record=str(one.ids[0]), steps=list(a.steps), edits=done, original=orig, edited=new,
                  change={t: new[t] - orig[t] for t in orig}, states_original=a.states[:, 0, :].copy(),
                  states_edited=b.states[:, 0, :].copy(), skipped=a.skipped[:, 0].copy(),
                  first_step=min(ran) if ran else None)


def raw_words(value, units: str = "") -> str:
    """A raw value as a reader sees it ('112 beats/min', 'female', 'not measured')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return with_units(float(value), units)
    return f"{value} {units}".strip()


def sentence(trained: Trained, result: WhatIf, task: str, lead: bool = True) -> str:
    """'With Heart rate = 140 beats/min instead of 88 beats/min, the final death prediction moves from 23% to
    31%.' Multiclass: the class predicted first and its probability, before and after. lead=False: without the
    'With … instead of …,' part ('The final death prediction moves from 23% to 31%.')."""
    spec, td = trained.spec, trained.spec.task(task)
    parts = []
    for e in result.edits:
        m = spec.modality(e.modality)
        units = m.units.get(e.column, "")
        parts.append((m.column_labels.get(e.column, e.column), raw_words(e.new, units), raw_words(e.old, units)))
    head = ("With " + " and ".join(f"{n} = {new}" for n, new, _ in parts) + " instead of "
            + " and ".join(old for _, _, old in parts) + ", the") if lead else "The"
    a, b = result.original[task][-1], result.edited[task][-1]
    if td.type == "multiclass":
        cls = trained.prep.classes[task]
        ca, cb = int(np.argmax(a)), int(np.argmax(b))
        x = f"{td.class_display(cls[ca])} ({percent(a[ca])})"
        y = f"{td.class_display(cls[cb])} ({percent(b[cb])})"
        size = points(b[ca] - a[ca])
    elif td.type == "binary":
        x, y, size = percent(a), percent(b), points(b - a)
    else:
        x, y, size = with_units(a, td.units), with_units(b, td.units), signed(b - a, td.units)
    what = td.display.lower() if td.display[:1].isupper() and not td.display[:2].isupper() else td.display
    if x == y:                          # equal once rounded: say how small the change is
        return f"{head} final {what} prediction stays at {x} ({size})."
    return f"{head} final {what} prediction moves from {x} to {y}."


def step_size(trained: Trained, modality: str, column: str) -> float:
    """A sensible +/- step for a numeric feature's input: a power of ten near a tenth of its training spread."""
    std = trained.prep.numeric[modality][column][1]
    return float(10.0 ** math.floor(math.log10(std / 10))) if std > 0 else 1.0


def seen_range(trained: Trained, ds: Dataset, modality: str, column: str) -> tuple[float, float]:
    """(lowest, highest) value of a numeric feature among the records the model was trained on (NaN, NaN when
    none has it): outside it the model extrapolates."""
    from ..acquire import training_pool      # here, not at the top: acquire reads the explain package
    if feature_kind(trained, modality, column) != "numeric":
        raise ValueError(f"'{column}' is not a numeric measurement")
    v = pd.to_numeric(ds.frame[column].iloc[training_pool(trained, ds)], errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if len(v) else (math.nan, math.nan)
