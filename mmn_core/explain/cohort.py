"""Cohort views: importance per modality, metrics per missingness pattern, the PCA map of states."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch

from .. import run
from ..checkpoint import Trained
from ..data import TensorData
from ..metrics import task_metrics
from ..model import ModelOutput
from ._base import _is_sequential, _order, _present, _scalar, _tasks, _values
from .coalitions import _players, shapley


# --- 5. cohort views -----------------------------------------------------------------------------------------
def cohort_importance(trained: Trained, data: TensorData, batch_size: int = 4096, shapley_sample: int = 2000,
                      seed: int = 0, output: ModelOutput | None = None, present: dict | None = None,
                      order: list[str] | None = None) -> pd.DataFrame:
    """Global importance, one row per (task, modality), over the records that have the modality:
    step deltas on every record (mean_abs_delta, sd_abs_delta, mean_delta, n_present) and exact Shapley values
    on a seeded sample of `shapley_sample` records (mean_shapley, sd_shapley, mean_abs_shapley, q10, q50,
    q90, n_shapley) — 2^E forward rows per record is too costly for a whole large cohort. Multiclass tasks
    use the probability of each record's finally predicted class. `output`: a precomputed forward of `data`
    with the same mask and order (e.g. from train.predict, reused for the metric matrix)."""
    model = trained.model
    order = _order(model, order)
    pres = _present(data, present)
    players = _players(trained, order)
    tasks = _tasks(trained)
    if output is None:
        output = run.forward(model, data, batch_size, pres, order, keep_states=False)
    final_cls = {}
    deltas = {}
    for t, d in tasks.items():
        v = _values(trained, t, output.logits[t])                       # (K+1, N[, C])
        final_cls[t] = v[-1].argmax(-1) if d.type == "multiclass" else None
        deltas[t] = np.diff(_scalar(v, final_cls[t]), axis=0)            # (K, N)
    n = len(data)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, shapley_sample), replace=False)) if shapley_sample > 0 else \
        np.zeros(0, dtype=np.int64)
    sh = shapley(trained, data.subset(sample), {m: p[torch.as_tensor(sample)] for m, p in pres.items()},
                 order) if len(sample) else None
    rows = []
    for t, d in tasks.items():
        for j, m in enumerate(players):
            has = pres[m].cpu().numpy()
            row = {"task": t, "modality": m, "label": trained.spec.modality(m).display, "n_present": int(has.sum())}
            if _is_sequential(model):
                dm = deltas[t][order.index(m)][has]
                row.update(mean_abs_delta=_mean(np.abs(dm)), sd_abs_delta=_sd(np.abs(dm)), mean_delta=_mean(dm))
            else:
                row.update(mean_abs_delta=math.nan, sd_abs_delta=math.nan, mean_delta=math.nan)
            if sh is not None:
                phi = sh.values[t][:, j]
                if d.type == "multiclass":
                    phi = np.take_along_axis(phi, final_cls[t][sample][:, None], axis=1)[:, 0]
                phi = phi[has[sample]]
                q = np.quantile(phi, [0.1, 0.5, 0.9]) if len(phi) else [math.nan] * 3
                row.update(n_shapley=int(len(phi)), mean_shapley=_mean(phi), sd_shapley=_sd(phi),
                           mean_abs_shapley=_mean(np.abs(phi)), q10=float(q[0]), q50=float(q[1]), q90=float(q[2]))
            rows.append(row)
    return pd.DataFrame(rows)


def _mean(a) -> float:
    return float(np.mean(a)) if len(a) else math.nan


def _sd(a) -> float:
    return float(np.std(a, ddof=1)) if len(a) > 1 else math.nan


def pattern_name(trained: Trained, pattern: dict[str, bool]) -> str:
    from .browse import pattern_label          # the one vocabulary of pattern names (missingness.PATTERN_NAMES)
    return pattern_label(trained.spec, pattern)


def pattern_metrics(trained: Trained, data: TensorData, batch_size: int = 4096,
                    output: ModelOutput | None = None) -> pd.DataFrame:
    """One row per missingness pattern (which modalities a record has): the pattern's name, one bool column
    per modality, n, per task the label rate (binary: positive share; multiclass: share per class as
    `<task>_rate_<class>`; regression: `<task>_label_mean`) and the final-step metric (classification
    `<task>_auroc` and `<task>_accuracy`, regression `<task>_mae`). Sorted by n, largest first."""
    names = list(trained.model.modality_names)
    pres = {m: data.present[m].cpu().numpy() for m in names}
    if output is None:
        output = run.forward(trained.model, data, batch_size, keep_states=False)
    labels = {t: data.y[t].cpu().numpy() for t in _tasks(trained)}
    logits = {t: output.logits[t][-1].detach().cpu().numpy() for t in _tasks(trained)}
    mat = np.stack([pres[m] for m in names], axis=1)
    pats, inv = np.unique(mat, axis=0, return_inverse=True)
    rows = []
    for g, pat in enumerate(pats):
        rec = inv.ravel() == g
        row = {"pattern": pattern_name(trained, dict(zip(names, pat))), **dict(zip(names, map(bool, pat))),
               "n": int(rec.sum()), "n_modalities": int(pat.sum())}
        for t, d in _tasks(trained).items():
            y = labels[t][rec]
            if d.type == "binary":
                row[f"{t}_label_rate"] = _mean(y[~np.isnan(y)])
            elif d.type == "multiclass":
                yl = y[y >= 0]
                for c, cname in enumerate(trained.prep.classes[t]):
                    row[f"{t}_rate_{cname}"] = _mean(yl == c)
            else:
                yl = y[~np.isnan(y)]
                row[f"{t}_label_mean"] = _mean(trained.prep.decode_target(trained.spec.task(t), yl))
            with warnings.catch_warnings():     # small patterns often lack a class: the metric says NaN
                warnings.simplefilter("ignore", UserWarning)
                m = task_metrics(d.type, y, logits[t][rec], trained.prep.target_stats.get(t))
            if d.type == "regression":
                row[f"{t}_mae"] = m["mae"]
            else:
                row[f"{t}_auroc"], row[f"{t}_accuracy"] = m["auroc"], m["accuracy"]
        rows.append(row)
    return pd.DataFrame(rows).sort_values("n", ascending=False, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class TrainingOrder:
    """How a model met its modalities in training, read from its checkpoint's train settings
    (info["train_config"]["shuffle_order"]). random: a new random encoder order per batch; None = not recorded
    (an older checkpoint, or one built outside train.fit). order: the fixed order when there was one."""
    random: bool | None
    order: tuple[str, ...]
    sentence: str                       # for people, e.g. "The model was trained in one order: A → B → C."


def training_order(trained: Trained) -> TrainingOrder:
    """The training order of `trained` as a TrainingOrder (a model trained with random orders is never called
    'trained in one order')."""
    cfg = (trained.info or {}).get("train_config") or {}
    names = tuple(trained.model.modality_names)
    labels = " → ".join(trained.spec.modality(m).display for m in names)
    if "shuffle_order" not in cfg:
        return TrainingOrder(None, (), "The order the model was trained in is not recorded in its checkpoint.")
    if bool(cfg["shuffle_order"]) and _is_sequential(trained.model):
        return TrainingOrder(True, (), "The model was trained in random orders (a new order of the kinds of data "
                                       "for every batch), so it has no single order of its own.")
    return TrainingOrder(False, names, f"The model was trained in one order: {labels}.")


class _fit_anywhere:
    """Lets `StateMap.fit(trained, data)` and `StateMap().fit(trained, data)` both work (sklearn style)."""

    def __init__(self, fn):
        self.fn = fn

    def __get__(self, obj, cls):
        return partial(self.fn, obj if obj is not None else cls())


class StateMap:
    """A 2-D PCA map of MultiModN states, fitted once on every step state of a cohort.

    After fit: `cloud` (K+1, N, 2) the cohort's states on the map, `steps`, `ids`, `explained` (2,) variance
    ratios; transform(states (…, S)) → (…, 2) for a record's path."""

    def __init__(self, max_points: int = 100_000, seed: int = 0):
        self.max_points, self.seed = max_points, seed
        self.pca = None

    def _fit(self, trained: Trained, data: TensorData, present: dict | None = None, order: list[str] | None = None,
             batch_size: int = 4096) -> "StateMap":
        from sklearn.decomposition import PCA
        if not _is_sequential(trained.model):
            raise ValueError("P-Fusion has no step-by-step state to map")
        order = _order(trained.model, order)
        out = run.forward(trained.model, data, batch_size, _present(data, present), order)
        states = out.states.detach().cpu().numpy()                    # (K+1, N, S)
        flat = states.reshape(-1, states.shape[-1])
        if len(flat) > self.max_points:     # PCA of a seeded subsample: the map is for orientation, not inference
            flat = flat[np.random.default_rng(self.seed).choice(len(flat), self.max_points, replace=False)]
        self.pca = PCA(n_components=2, random_state=self.seed).fit(flat)
        self.explained = self.pca.explained_variance_ratio_.copy()
        self.steps, self.ids = list(out.steps), list(data.ids)
        self.cloud = self.transform(states)
        return self

    fit = _fit_anywhere(_fit)

    def transform(self, states) -> np.ndarray:
        if self.pca is None:
            raise ValueError("StateMap is not fitted: call fit(trained, data) first")
        s = np.asarray(states, dtype=np.float64)
        return self.pca.transform(s.reshape(-1, s.shape[-1])).reshape(*s.shape[:-1], 2)


