"""Shared plumbing of the interpretation layer: eval mode, batching, presence masks, task values."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from ..checkpoint import Trained
from ..data import TensorData
from ..model import probabilities

METHODS = ("ig", "ablation", "shapley")
BATCH_ROWS = 32768          # rows per forward pass when records are tiled over coalitions / orders


# --- shared plumbing ---------------------------------------------------------------------------------------
@contextmanager
def _eval(model):
    """Dropout off while explaining; the caller's train/eval mode is restored afterwards."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


_BLAS = []     # one threadpoolctl controller, created on first use (scanning the loaded libraries costs ms)


@contextmanager
def _one_blas_thread():
    """Captum's Gauss–Legendre nodes come from a tiny eigenproblem per call; multi-threaded BLAS makes that the
    slowest part of an attribution on a busy machine (threadpoolctl ships with scikit-learn)."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())
        except ImportError:
            _BLAS.append(None)
    if _BLAS[0] is None:
        yield
        return
    with _BLAS[0].limit(limits=1, user_api="blas"):
        yield


def _is_sequential(model) -> bool:
    return getattr(model, "kind", "") == "multimodn"


def _order(model, order) -> list[str]:
    names = model.modality_names
    if order is None or not _is_sequential(model):       # P-Fusion is parallel: order has no meaning
        return list(names)
    order = list(order)
    for m in order:
        if m not in names:
            raise ValueError(f"unknown modality '{m}' in order (model has: {', '.join(names)})")
    if len(set(order)) != len(order):
        raise ValueError("order names a modality twice")
    return order


def _present(data: TensorData, present) -> dict[str, torch.Tensor]:
    """The mask used: data.present, with `present` overrides (bool, array or tensor per modality) intersected
    with it — a mask can hide a modality a record has, never invent one it lacks."""
    n = len(data)
    out = dict(data.present)
    for m, p in (present or {}).items():
        if m not in data.present:
            raise ValueError(f"unknown modality '{m}' in present mask (data has: {', '.join(data.present)})")
        t = torch.as_tensor(np.asarray(p), dtype=torch.bool)
        if t.dim() == 0:
            t = t.expand(n)
        if tuple(t.shape) != (n,):
            raise ValueError(f"present['{m}'] has shape {tuple(t.shape)}, expected ({n},)")
        out[m] = data.present[m] & t
    return out


def _rows(data: TensorData, idx: torch.Tensor, present: dict[str, torch.Tensor]):
    return ({k: v[idx] for k, v in data.x.items()}, {k: v[idx] for k, v in present.items()},
            {k: v[idx] for k, v in data.lengths.items()})


def _chunks(n: int, size: int):
    for s in range(0, n, max(1, size)):
        yield torch.arange(s, min(n, s + size))


def _tasks(trained: Trained) -> dict:
    return {t.name: t for t in trained.model.tasks}


def _task(trained: Trained, name: str):
    tasks = _tasks(trained)
    if name not in tasks:
        raise ValueError(f"unknown task '{name}' (model has: {', '.join(tasks)})")
    return tasks[name]


def _values(trained: Trained, task: str, logits: torch.Tensor) -> np.ndarray:
    """(…, C) logits → float64: binary P(positive) (…,); multiclass (…, C); regression target units (…,)."""
    t = _task(trained, task)
    v = probabilities(t.type, logits.detach().cpu().double()).numpy()
    if t.type == "regression":
        v = trained.prep.decode_target(trained.spec.task(task), v)
    return v


def _labels(trained: Trained, data: TensorData) -> dict[str, np.ndarray]:
    out = {}
    for name, t in _tasks(trained).items():
        y = data.y[name].detach().cpu().numpy()
        if t.type == "regression":
            y = trained.prep.decode_target(trained.spec.task(name), y.astype(np.float64))
        out[name] = y
    return out


def _scalar(values: np.ndarray, cls: np.ndarray | None) -> np.ndarray:
    """Multiclass (…, N, C) → (…, N) probability of each record's class `cls` (N,); others unchanged."""
    if cls is None:
        return values
    return np.take_along_axis(values, cls.reshape((1,) * (values.ndim - 2) + (-1, 1)), axis=-1)[..., 0]


