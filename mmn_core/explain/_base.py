"""Shared plumbing of the interpretation layer: eval mode, batching, presence masks, task values."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .. import run
from ..checkpoint import Trained
from ..data import TensorData
from ..model import probabilities

METHODS = ("ig", "ablation", "shapley")
BATCH_ROWS = 32768          # rows per forward pass when records are tiled over coalitions / orders


# --- shared plumbing ---------------------------------------------------------------------------------------
# The batch driver lives in mmn_core/run.py; these names are kept for the modules (and tests) that use them.
_eval = run.eval_mode
_present = run.mask
_rows = run.inputs        # (data, idx, present) -> (x, present, lengths)
_chunks = run.batches     # (n, size) -> consecutive index batches


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


