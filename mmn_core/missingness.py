"""Missingness injection: three mechanisms that remove a modality M, named by what the removal depends on.

- **label MNAR** (the paper's protocol): removal depends on the label of task T (`inject_mnar`, `reverse_mnar`);
- **latent MNAR**: removal depends on an *unobserved* variable, e.g. the synthetic cohort's hidden severity z
  (`inject_latent`): not a function of any input column, so a truly missing-not-at-random mechanism;
- **rule (MAR)**: removal depends on an *observed* column through a spec rule (`apply_rule`): this is missing
  *at random* in Rubin's sense (the spec field is still called `mnar_rules`), kept as the "clinical policy" case;
- `random_removal`: label-independent removal of a given number of records (the control split).

Pure functions: they never modify the input Dataset and return a new one. "Removing" modality M from a record
sets its columns to NaN (tabular) or drops the record's rows from M's long table (sequence), so the record
shows M as absent (`Dataset.presence()`). Which records were chosen is exposed by the `select_*` functions and
`removed_rows`, so tests can check exact counts.

The paper's protocol (official code, MNAR pipeline): among the training + validation records, M is removed
from ⌈p · n_pos⌉ records with label 1 of task T — the first ones in file order, or a seeded random choice; the
test split is scored clean and **reversed** (⌈p · n_neg⌉ label-0 test records lose M).
"""
from __future__ import annotations

import math
import operator
from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd

from .data import Dataset, class_values, label_str
from .spec import MnarRule, SpecError

Predicate = Callable[[pd.DataFrame], "np.ndarray | pd.Series"]
# The one vocabulary for a presence pattern (which modalities a record has), used by the engine, the pages and
# the report (mmn_core.explain.browse.pattern_label fills in the display names).
PATTERN_NAMES = {"all": "Everything measured", "none": "Nothing measured", "missing": "Missing: {modalities}"}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
        "!=": operator.ne}


def n_chosen(rate: float, n: int) -> int:
    """⌈rate · n⌉, robust to float noise (0.6 · 5 is 3, not 4)."""
    if not 0 <= rate <= 1:
        raise ValueError(f"MNAR rate must lie in [0, 1], got {rate}")
    return min(n, math.ceil(round(rate * n, 9)))


def class_mask(ds: Dataset, task: str, label: int) -> np.ndarray:
    """(N,) bool: records whose label for binary task `task` is the positive (1) or negative (0) class;
    unlabelled records are in neither."""
    t = ds.spec.task(task)
    if t.type != "binary":
        raise ValueError(f"task '{task}' is {t.type}; the MNAR protocol needs a binary task")
    col = ds.frame[t.column]
    target = class_values(t, col)[label]
    return np.array([pd.notna(v) and label_str(v) == target for v in col.tolist()], dtype=bool)


def _rows(ds: Dataset, rows) -> np.ndarray:
    return np.arange(len(ds)) if rows is None else np.asarray(rows, dtype=int)


def select_records(candidates: np.ndarray, rate: float, seed: int = 0, file_order: bool = False) -> np.ndarray:
    """⌈rate · len(candidates)⌉ of the candidate positions: the first ones in file order, or a seeded random
    choice. Random choices are nested across rates (same seed: the 0.4 choice is inside the 0.8 choice)."""
    cand = np.sort(np.asarray(candidates, dtype=int))
    k = n_chosen(rate, len(cand))
    if file_order:
        return cand[:k]
    return np.sort(np.random.default_rng(seed).permutation(cand)[:k])


def select_mnar(ds: Dataset, task: str, rate: float, rows=None, label: int = 1, seed: int = 0,
                file_order: bool = False) -> np.ndarray:
    """Positions (sorted) among `rows` chosen to lose the modality: rate of the records with class `label`."""
    rows = _rows(ds, rows)
    cand = rows[class_mask(ds, task, label)[rows]]
    return select_records(cand, rate, seed, file_order)


def remove_modality(ds: Dataset, modality: str, positions) -> Dataset:
    """A new Dataset where the records at `positions` lack `modality` (input untouched)."""
    m = ds.spec.modality(modality)
    positions = np.asarray(positions, dtype=int)
    frame, seqs = ds.frame, dict(ds.sequences)
    if m.kind == "tabular":
        frame = ds.frame.copy()
        if len(positions):
            # astype(object) would change dtypes of untouched rows; .iloc assignment of NaN upcasts as needed
            for c in m.columns:
                col = frame[c]
                if pd.api.types.is_integer_dtype(col) or pd.api.types.is_bool_dtype(col):
                    col = col.astype("float64" if pd.api.types.is_integer_dtype(col) else "object")
                col = col.copy()
                col.iloc[positions] = np.nan
                frame[c] = col
    else:
        drop = set(ds.frame[ds.spec.id_column].astype(str).to_numpy()[positions])
        s = ds.sequences[m.name]
        seqs[m.name] = s[~s[m.key].astype(str).isin(drop)].reset_index(drop=True)
    return replace(ds, frame=frame, sequences=seqs)


def removed_rows(before: Dataset, after: Dataset, modality: str) -> np.ndarray:
    """Positions where `modality` was present in `before` and is absent in `after`."""
    a, b = before.presence()[modality].to_numpy(), after.presence()[modality].to_numpy()
    return np.flatnonzero(a & ~b)


def inject_mnar(ds: Dataset, modality: str, task: str, rate: float, rows=None, seed: int = 0,
                file_order: bool = False) -> Dataset:
    """The paper's training-side MNAR: `rate` of the label-1 records of `task` among `rows` (default: all;
    pass the train + validation positions) lose `modality`. ⌈rate · n_pos⌉ records are chosen (see
    `select_mnar`); those already lacking the modality stay as they are."""
    return remove_modality(ds, modality, select_mnar(ds, task, rate, rows, 1, seed, file_order))


def reverse_mnar(ds: Dataset, modality: str, task: str, rate: float, rows=None, seed: int = 0,
                 file_order: bool = False) -> Dataset:
    """The reversed test split: `rate` of the label-0 records among `rows` lose `modality`."""
    return remove_modality(ds, modality, select_mnar(ds, task, rate, rows, 0, seed, file_order))


# --- latent (unobserved) MNAR and the random control -----------------------------------------------------
def select_latent(latent, rate: float, rows=None, seed: int = 0, high: bool = True, strength: float = 2.0
                  ) -> np.ndarray:
    """Positions (sorted) among `rows` that lose the modality, driven by an unobserved score `latent` (N,):
    ⌈rate · len(rows) / 2⌉ records (at rate 1, half of them) drawn without replacement with probability
    ∝ exp(±strength · standardized latent) (+ for `high`: the highest scores lose it most often). Seeded
    (Gumbel top-k), nested across rates for the same seed."""
    latent = np.asarray(latent, dtype=float)
    rows = np.arange(len(latent)) if rows is None else np.asarray(rows, dtype=int)
    k = n_chosen(rate, len(rows) // 2)
    z = latent[rows]
    z = (z - z.mean()) / (z.std() or 1.0)
    keys = (strength if high else -strength) * z + np.random.default_rng(seed).gumbel(size=len(rows))
    return np.sort(rows[np.argsort(-keys, kind="stable")[:k]])


def inject_latent(ds: Dataset, modality: str, latent, rate: float, rows=None, seed: int = 0, high: bool = True,
                  strength: float = 2.0) -> Dataset:
    """Latent MNAR: `modality` removed by the unobserved `latent` score (see `select_latent`); `high=False`
    is the reversed policy (the lowest scores lose it)."""
    if len(latent) != len(ds):
        raise ValueError(f"latent score has {len(latent)} values for {len(ds)} records")
    return remove_modality(ds, modality, select_latent(latent, rate, rows, seed, high, strength))


def random_removal(ds: Dataset, modality: str, count: int, rows=None, seed: int = 0) -> Dataset:
    """The control split: `modality` removed from `count` records of `rows` that have it, chosen uniformly at
    random whatever their label (so exactly `count` records lose it, as many as a label-driven split)."""
    rows = _rows(ds, rows)
    rows = rows[ds.presence()[modality].to_numpy()[rows]]
    count = min(max(int(count), 0), len(rows))
    chosen = np.sort(np.random.default_rng(seed).permutation(rows)[:count])
    return remove_modality(ds, modality, chosen)


# --- rule-based ("clinical") missingness: MAR, since the rule reads an observed column
def rule_mask(ds: Dataset, rule: MnarRule | Predicate) -> np.ndarray:
    """(N,) bool: where the rule fires. A spec rule `column op value` does not fire on a missing value (a test
    is not ordered on a value nobody measured); a predicate gets the frame and returns a bool mask."""
    if isinstance(rule, MnarRule):
        if rule.column not in ds.frame.columns:
            raise SpecError(f"mnar rule '{rule.name}': column '{rule.column}' is not in the table")
        col = ds.frame[rule.column]
        value = rule.value
        if pd.api.types.is_numeric_dtype(col) and not isinstance(value, str):
            fired = _OPS[rule.op](col.to_numpy(dtype=float, na_value=np.nan), float(value))
        elif rule.op in ("==", "!="):
            fired = _OPS[rule.op](col.astype(str).to_numpy(), str(value))
        else:
            raise SpecError(f"mnar rule '{rule.name}': '{rule.op}' needs a numeric column and value")
        return np.asarray(fired, dtype=bool) & col.notna().to_numpy()
    mask = np.asarray(rule(ds.frame.copy()), dtype=bool)     # a copy: a predicate cannot edit the input
    if mask.shape != (len(ds),):
        raise ValueError(f"MNAR predicate returned shape {mask.shape}, expected ({len(ds)},)")
    return mask


def select_rule(ds: Dataset, rule: MnarRule | Predicate, rows=None, rate: float = 1.0, seed: int = 0,
                invert: bool = False) -> np.ndarray:
    """Positions that lose the modality: the rule is enforced on ⌈rate · len(rows)⌉ records of `rows`
    (seeded, nested across rates), and those of them where the rule does not fire (`invert`: where it
    fires — the reversed policy) lose it."""
    enforced = select_records(_rows(ds, rows), rate, seed)
    fired = rule_mask(ds, rule)
    return enforced[fired[enforced] == invert]


def apply_rule(ds: Dataset, rule: MnarRule | Predicate, modality: str | None = None, rows=None,
               rate: float = 1.0, seed: int = 0, invert: bool = False) -> Dataset:
    """Rule-based (MAR) missingness: the modality (the rule's own, or `modality` for a predicate) stays observed only
    where the rule fires, on `rate` of `rows` (default: everywhere). `invert=True` keeps it only where the
    rule does not fire (the reversed test policy)."""
    if modality is None:
        if not isinstance(rule, MnarRule):
            raise ValueError("a predicate rule needs the modality it controls")
        modality = rule.modality
    return remove_modality(ds, modality, select_rule(ds, rule, rows, rate, seed, invert))


def presence_by_class(ds: Dataset, modality: str, task: str, rows=None) -> dict[str, float]:
    """P(modality present | y = 1) and P(present | y = 0) among `rows`: the size of the shortcut."""
    rows = _rows(ds, rows)
    present = ds.presence()[modality].to_numpy()[rows]
    out = {}
    for name, label in (("pos", 1), ("neg", 0)):
        cls = class_mask(ds, task, label)[rows]
        out[name] = float(present[cls].mean()) if cls.any() else math.nan
    return out
