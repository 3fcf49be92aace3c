"""Metrics as pure functions over arrays (scikit-learn), and the per-step × per-task matrix."""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn import metrics as skm

from .model import ModelOutput, probabilities

CLASSIFICATION = ("auroc", "balanced_accuracy", "accuracy")
REGRESSION = ("mae", "rmse", "r2")
def classification_metrics(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """y: (N,) int class codes; prob: (N,) P(positive) for binary or (N, C) for multiclass.
    AUROC is macro one-vs-rest for multiclass; NaN when only one class is present."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=float)
    if prob.ndim == 1:
        pred = (prob >= 0.5).astype(int)
        auroc = skm.roc_auc_score(y, prob) if len(np.unique(y)) == 2 else math.nan
    else:
        pred = prob.argmax(1)
        labels = np.arange(prob.shape[1])
        present = np.unique(y)
        if len(present) < 2:
            auroc = math.nan
        elif len(present) == prob.shape[1]:
            auroc = skm.roc_auc_score(y, prob, multi_class="ovr", average="macro", labels=labels)
        else:  # some class absent from this split: average over the classes that occur
            auroc = float(np.mean([skm.roc_auc_score(y == c, prob[:, c]) for c in present]))
    return {"auroc": float(auroc), "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
            "accuracy": float(skm.accuracy_score(y, pred))}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """y, pred: (N,) in the target's units."""
    return {"mae": float(skm.mean_absolute_error(y, pred)),
            "rmse": float(math.sqrt(skm.mean_squared_error(y, pred))),
            "r2": float(skm.r2_score(y, pred)) if len(y) > 1 else math.nan}


def task_metrics(task_type: str, y: np.ndarray, logits: np.ndarray, target_stats=None) -> dict[str, float]:
    """y: (N,) labels as stored in TensorData; logits: (N, C). Unlabelled records are dropped."""
    y = np.asarray(y)
    keep = (y >= 0) if task_type == "multiclass" else ~np.isnan(y)
    if keep.sum() == 0:
        names = REGRESSION if task_type == "regression" else CLASSIFICATION
        return {k: math.nan for k in names}
    out = probabilities(task_type, torch.as_tensor(logits[keep])).numpy()
    if task_type == "regression":
        mean, std = target_stats or (0.0, 1.0)
        return regression_metrics(y[keep] * std + mean, out * std + mean)
    return classification_metrics(y[keep], out)


def metric_matrix(out: ModelOutput, y: dict, tasks, target_stats: dict | None = None) -> dict:
    """Per-step × per-task metrics: {"steps": [...], "tasks": {task: {metric: [value per step]}}}.

    At step k every record is scored on its prediction after k encoders (a skipped step keeps the previous
    prediction), so the row for the last step is the model's final performance."""
    target_stats = target_stats or {}
    result = {"steps": list(out.steps), "tasks": {}}
    for t in tasks:
        lg = out.logits[t.name].detach().cpu().numpy()
        yt = y[t.name].detach().cpu().numpy()
        per_step = [task_metrics(t.type, yt, lg[k], target_stats.get(t.name)) for k in range(lg.shape[0])]
        result["tasks"][t.name] = {m: [row[m] for row in per_step] for m in per_step[0]}
    return result


def final_metrics(matrix: dict) -> dict[str, dict[str, float]]:
    """The last step's value of every metric, per task."""
    return {t: {m: v[-1] for m, v in ms.items()} for t, ms in matrix["tasks"].items()}
