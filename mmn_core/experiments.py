"""Experiments over whole datasets: k-fold comparison of MultiModN and P-Fusion."""
from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import train_test_split

from .data import Dataset, _strata, kfold
from .metrics import final_metrics
from .train import Progress, TrainConfig, train_model


def _summary(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fold_rows(ds: Dataset, folds: int, seed: int):
    """(train, val, test) positions per fold: the fold's test part, and a stratified validation split taken
    from the rest for early stopping (never the test part)."""
    groups = ds.frame[ds.spec.id_column].astype(str).to_numpy() if ds.spec.id_column else None
    for rest, test in kfold(ds, folds, seed, groups):
        strata = _strata(ds)
        tr, va = train_test_split(rest, test_size=0.15, random_state=seed,
                                  stratify=strata[rest] if strata is not None else None)
        yield np.sort(tr), np.sort(va), np.sort(test)


def cross_validate(ds: Dataset, kinds=("multimodn", "pfusion"), folds: int = 5, config: TrainConfig = TrainConfig(),
                   model_config=None, progress: Progress | None = None) -> dict:
    """k-fold CV of each model kind on identical folds; final-step test metrics per fold, then mean and sd.

    Returns {"folds": k, "tasks": {task: {"type": ..., kind: {metric: mean, metric_std: sd}, ...}},
             "per_fold": {kind: [{task: {metric: value}}]}}."""
    per_fold: dict[str, list] = {k: [] for k in kinds}
    for i, rows in enumerate(fold_rows(ds, folds, config.seed)):
        for kind in kinds:
            trained = train_model(ds, kind, model_config, config, rows=rows)
            per_fold[kind].append(final_metrics(trained.metrics))
            if progress is not None:
                progress({"fold": i + 1, "folds": folds, "model": kind})
    tasks = {}
    for t in ds.spec.tasks:
        entry = {"type": t.type}
        for kind in kinds:
            names = per_fold[kind][0][t.name].keys()
            stats = {}
            for m in names:
                mean, sd = _summary([f[t.name][m] for f in per_fold[kind]])
                stats[m], stats[f"{m}_std"] = mean, sd
            entry[kind] = stats
        tasks[t.name] = entry
    return {"folds": folds, "tasks": tasks, "per_fold": per_fold}
