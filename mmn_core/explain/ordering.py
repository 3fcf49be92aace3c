"""Order sensitivity: how much the predictions move when the encoders run in another order."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import run
from ..checkpoint import Trained
from ..data import TensorData
from ..fmt import number, with_units
from ._base import _is_sequential, _present, _scalar, _task, _values
from .coalitions import _patterns


# --- 4. order sensitivity ------------------------------------------------------------------------------------
def order_sensitivity(trained: Trained, data: TensorData, task: str, max_orders: int = 720, seed: int = 0,
                      present: dict | None = None, batch_size: int = 4096) -> dict:
    """Spread (max − min) of each record's final value over encoder orders. Only the order of a record's
    present modalities matters (absent ones are skipped wherever they sit), so records are grouped by
    presence pattern and all p! orders of the present modalities are run when p! ≤ max_orders (always the
    case for ≤ 6 modalities), else `max_orders` seeded random ones (the default order included).
    Multiclass: the probability of the class predicted in the default order.

    Returns {"ids", "task", "spread" (N,), "min" (N,), "max" (N,), "default" (N,), "n_orders" (N,),
    "exhaustive" (N,) bool, "min_order" / "max_order": per record the order reaching min / max}."""
    tdef = _task(trained, task)
    model = trained.model
    base = list(model.modality_names)
    pres = _present(data, present)
    n = len(data)
    out0 = run.forward(model, data, batch_size, pres, base, keep_states=False)
    final0 = _values(trained, task, out0.logits[task][-1])
    cls = final0.argmax(-1) if tdef.type == "multiclass" else None
    default = _scalar(final0, cls)
    lo, hi = default.copy(), default.copy()
    orders: list[list[str]] = [list(base)]             # candidate orders; records point into this list
    lo_i, hi_i = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    n_orders, exhaustive = np.ones(n, dtype=np.int64), np.ones(n, dtype=bool)
    if _is_sequential(model):
        pats, inv = _patterns(pres, base, n)
        for g, pat in enumerate(pats):
            rec = np.flatnonzero(inv.ravel() == g)
            here = [m for m, b in zip(base, pat) if b]
            absent = [m for m, b in zip(base, pat) if not b]
            if math.factorial(len(here)) <= max_orders:
                perms = [list(q) for q in itertools.permutations(here)]
            else:
                rng = np.random.default_rng(seed)
                perms = [here] + [[here[j] for j in rng.permutation(len(here))] for _ in range(max_orders - 1)]
                exhaustive[rec] = False
            n_orders[rec] = len(perms)
            sub = data.subset(rec)
            sub_pres = {m: v[torch.as_tensor(rec)] for m, v in pres.items()}
            for perm in perms:
                orders.append(perm + absent)
                out = run.forward(model, sub, batch_size, sub_pres, orders[-1], keep_states=False)
                v = _scalar(_values(trained, task, out.logits[task][-1]), None if cls is None else cls[rec])
                low, high = v < lo[rec], v > hi[rec]
                lo[rec[low]], lo_i[rec[low]] = v[low], len(orders) - 1
                hi[rec[high]], hi_i[rec[high]] = v[high], len(orders) - 1
    lo_ord, hi_ord = [orders[j] for j in lo_i], [orders[j] for j in hi_i]
    return {"ids": list(data.ids), "task": task, "spread": hi - lo, "min": lo, "max": hi, "default": default,
            "n_orders": n_orders, "exhaustive": exhaustive, "min_order": lo_ord, "max_order": hi_ord}




# --- the Explorer's caveat: an order the model never saw, and how far orders move this model ---------------------
@dataclass(frozen=True)
class OrderSpread:
    """How far encoder orders move one task's final prediction, measured by `order_sensitivity` on a seeded
    sample of records. median / q90: of the per-record spread (max − min over orders), in probability
    (classification) or the target's units (regression)."""
    task: str
    task_type: str
    median: float
    q90: float
    n_records: int
    max_orders: int                 # the most orders tried for one record
    trained_in_random_orders: bool  # the checkpoint's train config had shuffle_order


def order_spread(trained: Trained, data: TensorData, task: str, n_records: int = 400, seed: int = 0,
                 max_orders: int = 24) -> OrderSpread:
    """OrderSpread of `task` on at most `n_records` records of `data` drawn without replacement (seeded)."""
    n = len(data)
    rows = np.arange(n) if n <= n_records else np.sort(np.random.default_rng(seed).choice(n, n_records, False))
    r = order_sensitivity(trained, data.subset(rows), task, max_orders=max_orders, seed=seed)
    spread = np.asarray(r["spread"], dtype=float)
    shuffled = bool((trained.info.get("train_config") or {}).get("shuffle_order", False))
    return OrderSpread(task, _task(trained, task).type, float(np.median(spread)), float(np.quantile(spread, 0.9)),
                       len(rows), int(np.max(r["n_orders"])), shuffled)


def order_caveat(spread: OrderSpread, order: list[str], training_order: list[str], units: str = "",
                 records: str = "held-out records") -> str:
    """'' when `order` is the training order or the model was trained in random orders; else a caution that
    the model never saw this order in training, with how far orders move its predictions (measured)."""
    if spread.trained_in_random_orders or list(order) == list(training_order):
        return ""
    if spread.task_type == "regression":
        med, q90 = with_units(spread.median, units), with_units(spread.q90, units)
    else:
        med, q90 = f"{number(100 * spread.median)} percentage points", number(100 * spread.q90)
    return (f"The model was trained in one fixed order and never saw this one. On this model, changing the "
            f"order moves a typical record's final prediction by {med} (median over {spread.n_records} "
            f"{records}, up to {spread.max_orders} orders each; 90% move by at most {q90}), so read a "
            f"change after reordering as the model's sensitivity to order, not as evidence about the person.")
