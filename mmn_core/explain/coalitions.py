"""Modality contributions over presence masks: exact / sampled Shapley values and leave-one-out."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import run
from ..checkpoint import Trained
from ..data import TensorData
from ._base import BATCH_ROWS, _is_sequential, _order, _present, _tasks, _values


# --- 2. modality contributions: coalitions over presence masks ----------------------------------------------
def _players(trained, order) -> list[str]:
    """Shapley players: the modalities the model runs, in the order used."""
    return order if _is_sequential(trained.model) else list(trained.model.modality_names)


def _coalition_values(trained, data, pres, order, players, rec: np.ndarray, coal: np.ndarray,
                      batch_rows: int = BATCH_ROWS) -> dict[str, np.ndarray]:
    """Final value of every record in `rec` under every coalition row of `coal` (R, E) bool over `players`,
    intersected with the record's own presence. Records are tiled over coalitions, so one forward pass covers
    many coalitions. Returns task -> (n, R) or (n, R, C) float64."""
    model = trained.model
    r_count = coal.shape[0]
    coal_t = torch.as_tensor(coal, dtype=torch.bool)
    per = max(1, batch_rows // r_count)
    parts: dict[str, list] = {t: [] for t in _tasks(trained)}
    rec_t = torch.as_tensor(rec, dtype=torch.long)
    with run.eval_mode(model), torch.no_grad():
        for chunk in run.batches(len(rec), per):
            r = rec_t[chunk]
            tile = r.repeat_interleave(r_count)
            x, p, lengths = run.inputs(data, tile, pres)
            for j, m in enumerate(players):
                p[m] = p[m] & coal_t[:, j].repeat(len(r))
            out = model(x, p, lengths, order)
            for t, lg in out.logits.items():
                v = _values(trained, t, lg[-1])
                parts[t].append(v.reshape(len(r), r_count, *v.shape[1:]))
    return {t: np.concatenate(v) for t, v in parts.items()}


def _bits(masks: np.ndarray, p: int) -> np.ndarray:
    """int coalition codes (R,) → (R, p) bool membership."""
    return ((masks[:, None] >> np.arange(p)[None, :]) & 1).astype(bool)


def _exact_design(p: int) -> tuple[np.ndarray, np.ndarray]:
    """All 2^p coalitions (codes) and the (2^p, p) matrix C with φ = v @ C (classical Shapley weights)."""
    codes = np.arange(2 ** p, dtype=np.int64)
    member = _bits(codes, p)
    size = member.sum(1)
    w = np.array([math.factorial(s) * math.factorial(p - s - 1) / math.factorial(p) for s in range(p)] + [0.0])
    coef = np.where(member, w[np.clip(size - 1, 0, p)][:, None], -w[np.minimum(size, p)][:, None])
    return codes, coef


def _sampled_design(p: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Permutation sampling: the distinct prefix coalitions of `samples` seeded permutations and the matrix C
    averaging marginal contributions. Each permutation telescopes, so efficiency still holds exactly."""
    if p > 62:
        raise ValueError(f"Shapley sampling supports at most 62 modalities, got {p}")
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(p) for _ in range(samples)])            # (M, p)
    prefix = np.concatenate([np.zeros((samples, 1), np.int64),
                             np.cumsum(np.left_shift(np.int64(1), perms), axis=1)], axis=1)  # (M, p+1)
    codes, inv = np.unique(prefix, return_inverse=True)
    inv = inv.reshape(prefix.shape)
    coef = np.zeros((len(codes), p))
    rows = np.repeat(np.arange(samples), p)
    cols = np.tile(np.arange(p), samples)
    np.add.at(coef, (inv[rows, cols + 1], perms[rows, cols]), 1.0 / samples)
    np.add.at(coef, (inv[rows, cols], perms[rows, cols]), -1.0 / samples)
    return codes, coef


@dataclass
class ShapleyResult:
    """values[t]: (N, E) — multiclass (N, E, C) — Σ over modalities = f_all − f_none; a modality a record
    lacks gets exactly 0. exact[i]: whether record i's values are exact (else permutation-sampled)."""
    ids: list[str]
    modalities: list[str]
    values: dict[str, np.ndarray]
    f_all: dict[str, np.ndarray]
    f_none: dict[str, np.ndarray]
    exact: np.ndarray


def _patterns(pres, players, n) -> tuple[np.ndarray, np.ndarray]:
    mat = np.stack([pres[m].cpu().numpy() for m in players], axis=1) if players else np.zeros((n, 0), bool)
    return np.unique(mat, axis=0, return_inverse=True)


def shapley(trained: Trained, data: TensorData, present: dict | None = None, order: list[str] | None = None,
            max_exact: int = 10, samples: int = 2000, seed: int = 0, batch_rows: int = BATCH_ROWS) -> ShapleyResult:
    """Modality Shapley values of every record's final value. The value of a coalition is the model run with
    only those modalities present (∩ the record's presence), in the given order — absent = skipped, exactly
    as the model treats missing data. Records are grouped by presence pattern; a pattern with p ≤ max_exact
    present modalities evaluates its 2^p coalitions tiled in one batched forward pass, larger ones sample
    `samples` seeded permutations. A record's values never depend on which other records are in the batch."""
    if len(data) == 0:
        raise ValueError("no records to explain")
    order = _order(trained.model, order)
    pres = _present(data, present)
    players = _players(trained, order)
    n, e = len(data), len(players)
    tasks = _tasks(trained)
    pats, inv = _patterns(pres, players, n)
    values, f_all, f_none = {}, {}, {}
    for t, d in tasks.items():
        tail = (d.n_outputs,) if d.type == "multiclass" else ()
        values[t] = np.zeros((n, e, *tail))
        f_all[t], f_none[t] = np.zeros((n, *tail)), np.zeros((n, *tail))
    exact = np.zeros(n, dtype=bool)
    for g, pat in enumerate(pats):
        rec = np.flatnonzero(inv.ravel() == g)
        idx = np.flatnonzero(pat)
        p = len(idx)
        codes, coef = _exact_design(p) if p <= max_exact else _sampled_design(p, samples, seed)
        coal = np.zeros((len(codes), e), dtype=bool)
        coal[:, idx] = _bits(codes, p)
        v = _coalition_values(trained, data, pres, order, players, rec, coal, batch_rows)
        full = int(np.flatnonzero(codes == (1 << p) - 1)[0])
        empty = int(np.flatnonzero(codes == 0)[0])
        for t, vt in v.items():
            phi = np.moveaxis(np.tensordot(vt, coef, axes=([1], [0])), -1, 1)   # (n_g, p[, C])
            values[t][np.ix_(rec, idx)] = phi
            f_all[t][rec], f_none[t][rec] = vt[:, full], vt[:, empty]
        exact[rec] = p <= max_exact
    return ShapleyResult(list(data.ids), list(players), values, f_all, f_none, exact)


def leave_one_out(trained: Trained, data: TensorData, present: dict | None = None,
                  order: list[str] | None = None, batch_rows: int = BATCH_ROWS) -> dict[str, np.ndarray]:
    """task -> (N, E) (multiclass (N, E, C)): f(all present) − f(all present but m); exactly 0 where m is
    absent. Columns follow `order` (the Shapley players)."""
    order = _order(trained.model, order)
    pres = _present(data, present)
    players = _players(trained, order)
    e = len(players)
    coal = np.ones((e + 1, e), dtype=bool)
    coal[np.arange(1, e + 1), np.arange(e)] = False
    v = _coalition_values(trained, data, pres, order, players, np.arange(len(data)), coal, batch_rows)
    has = np.stack([pres[m].cpu().numpy() for m in players], axis=1)          # (N, E)
    out = {}
    for t, vt in v.items():
        diff = vt[:, :1] - vt[:, 1:]
        mask = has.reshape(has.shape + (1,) * (diff.ndim - 2))
        out[t] = np.where(mask, diff, 0.0)       # absent: the two runs are the same run
    return out


