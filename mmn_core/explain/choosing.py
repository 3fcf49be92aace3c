"""Choosing a record as a clinician would: `rank_records` orders a cohort for one task by a named choice.

CHOICES: "typical" (correctly predicted, with the cohort's most common missingness pattern first, and a final
prediction close to what is usual for records with the same outcome); "surprising" (largest error first);
"borderline" (closest to a coin toss: binary |P − 0.5|, multiclass the gap between the two most likely classes;
not defined for regression); "most_missing" (fewest kinds of data measured first). Pure numpy on the arrays the
dashboard's cohort table already holds; ties keep the input order, so a ranking is reproducible.
"""
from __future__ import annotations

import numpy as np

CHOICES = ("typical", "surprising", "borderline", "most_missing")
CHOICE_LABELS = {"typical": "Typical, correctly predicted", "surprising": "Most surprising (largest error)",
                 "borderline": "Borderline (near a coin toss)", "most_missing": "Most data missing"}


def correct(values: np.ndarray, labels: np.ndarray, task_type: str, error_scale: float = 1.0) -> np.ndarray:
    """(N,) bool: binary P ≥ 0.5 matches the label; multiclass the most likely class is the label; regression
    |error| at most the median |error| of the cohort. Unknown labels are never correct."""
    labels = np.asarray(labels, dtype=float)
    known = np.isfinite(labels)
    if task_type == "binary":
        return known & ((np.asarray(values) >= 0.5) == (labels == 1))
    if task_type == "multiclass":
        return known & (np.asarray(values).argmax(-1) == np.where(known, labels, -1))
    err = np.abs(np.asarray(values, dtype=float) - labels)
    med = np.nanmedian(err[known]) if known.any() else np.nan
    return known & (err <= med)


def _usual_distance(values: np.ndarray, labels: np.ndarray, task_type: str, ok: np.ndarray) -> np.ndarray:
    """How far each record's final prediction is from the median prediction of correctly predicted records
    with the same outcome (regression: the median prediction of correctly predicted records)."""
    v = np.asarray(values, dtype=float)
    score = v.max(-1) if task_type == "multiclass" else v
    out = np.full(len(score), np.inf)
    if task_type == "regression":
        if ok.any():
            out = np.abs(score - np.median(score[ok]))
        return out
    for c in np.unique(labels[np.isfinite(labels)]):
        grp = ok & (labels == c)
        if grp.any():
            sel = labels == c
            out[sel] = np.abs(score[sel] - np.median(score[grp]))
    return out


def rank_records(values: np.ndarray, labels: np.ndarray, task_type: str, patterns, how: str,
                 surprise: np.ndarray | None = None) -> np.ndarray:
    """Positions of the N records, best match of `how` first (an (N,) permutation).

    values: (N,) binary P(positive) / regression prediction, or (N, C) class probabilities; labels: (N,) class
    index or actual value (NaN unknown); patterns: (N,) strings naming each record's measured kinds of data
    joined by '|' (the cohort table's `pattern`); surprise: (N,) error (default |label − P| / 1 − P(true))."""
    v = np.asarray(values, dtype=float)
    y = np.asarray(labels, dtype=float)
    pats = np.asarray(list(patterns), dtype=object)
    n = len(y)
    if v.shape[0] != n or len(pats) != n:
        raise ValueError(f"values ({v.shape[0]}), labels ({n}) and patterns ({len(pats)}) must match")
    if how not in CHOICES:
        raise ValueError(f"unknown choice '{how}' (choose: {', '.join(CHOICES)})")
    if surprise is None:
        if task_type == "binary":
            surprise = np.abs(y - v)
        elif task_type == "multiclass":
            surprise = np.full(n, np.nan)
            k = np.isfinite(y)
            surprise[k] = 1 - v[k, y[k].astype(int)]
        else:
            surprise = np.abs(y - v)
    s = np.where(np.isfinite(surprise), surprise, -np.inf)
    idx = np.arange(n)
    if how == "surprising":
        return np.lexsort((idx, -s))
    if how == "most_missing":
        n_have = np.array([len(p.split("|")) if p else 0 for p in pats])
        return np.lexsort((idx, -s, n_have))
    if how == "borderline":
        if task_type == "regression":
            raise ValueError("'borderline' needs a classification task (a regression has no coin toss)")
        gap = np.abs(v - 0.5) if task_type == "binary" else np.diff(np.sort(v, axis=-1)[:, -2:], axis=-1)[:, 0]
        return np.lexsort((idx, gap))
    ok = correct(v, y, task_type)
    values_, counts = np.unique(pats, return_counts=True)
    common = values_[np.argmax(counts)] if n else ""
    dist = _usual_distance(v, y, task_type, ok)
    # keys (last = primary): correct first, then the most common pattern, then the usual prediction
    return np.lexsort((idx, dist, pats != common, ~ok))
