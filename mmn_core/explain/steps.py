"""Step traces: each task's value after every step of one or more records (`trace`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import run
from ..checkpoint import Trained
from ..data import TensorData
from ..model import ModelOutput
from ._base import _is_sequential, _labels, _order, _present, _tasks, _values


# --- 1. trace ----------------------------------------------------------------------------------------------
@dataclass
class Trace:
    """A batch of records followed step by step (numpy arrays, ready for plotting).

    K steps, N records, S state size. value[t]: (K+1, N) — binary P(positive), regression target units —
    or (K+1, N, C) class probabilities; delta[t] = value[1:] - value[:-1] (telescopes: value[0] + Σ delta =
    value[-1]). P-Fusion has K = 0 and an empty state."""
    ids: list[str]
    steps: list[str]
    present: dict[str, np.ndarray]
    skipped: np.ndarray
    states: np.ndarray
    value: dict[str, np.ndarray]
    delta: dict[str, np.ndarray]
    label: dict[str, np.ndarray]
    classes: dict[str, list[str]]
    task_types: dict[str, str] = field(default_factory=dict)    # task -> binary / multiclass / regression
    measured: dict[str, np.ndarray] = field(default_factory=dict)  # the data's own presence (before a mask)


def _run_all(trained, data, present, order, batch_size: int, keep_states: bool = True) -> ModelOutput:
    """Batched forward over all records (eval, no grad), concatenated: `run.forward` on the trained model."""
    return run.forward(trained.model, data, batch_size, present, order, keep_states=keep_states)


def trace(trained: Trained, data: TensorData, present: dict | None = None, order: list[str] | None = None,
          batch_size: int = 4096) -> Trace:
    """State and every task's value after every step for every record of `data` (one forward per batch)."""
    if len(data) == 0:
        raise ValueError("no records to trace")
    order = _order(trained.model, order)
    pres = _present(data, present)
    out = run.forward(trained.model, data, batch_size, pres, order)
    n, k = len(data), len(out.steps) - 1
    states = (out.states.detach().cpu().numpy() if out.states is not None
              else np.zeros((1, n, 0), dtype=np.float32))
    skipped = (~out.ran).cpu().numpy() if _is_sequential(trained.model) else np.zeros((k, n), dtype=bool)
    value = {t: _values(trained, t, lg) for t, lg in out.logits.items()}
    # A skipped step leaves the state bit-identical, so its value is the previous one; the decoder's batched
    # matmul can differ in the last bits for identical rows at other positions, so copy instead of recompute.
    for j in range(1, k + 1):
        same = (states[j] == states[j - 1]).all(-1) if states.shape[-1] else np.zeros(n, dtype=bool)
        for v in value.values():
            v[j][same] = v[j - 1][same]
    return Trace(ids=list(data.ids), steps=list(out.steps),
                 present={m: p.cpu().numpy().copy() for m, p in pres.items()}, skipped=skipped, states=states,
                 value=value, delta={t: np.diff(v, axis=0) for t, v in value.items()},
                 label=_labels(trained, data),
                 classes={t: list(trained.prep.classes[t]) for t in value if t in trained.prep.classes},
                 task_types={t: d.type for t, d in _tasks(trained).items()},
                 measured={m: p.cpu().numpy().copy() for m, p in data.present.items()})


