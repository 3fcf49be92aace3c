"""Interpretation: step traces, modality Shapley values over presence masks, Captum feature attributions,
order sensitivity, cohort views and plain-language narratives.

Every number comes from `model.forward` (MultiModN, or P-Fusion where it makes sense); nothing here
re-implements encode → decode. Values are in the units a reader sees: binary P(positive), multiclass class
probabilities, regression the prediction in the target's units. Pure functions, no Streamlit.
"""
from __future__ import annotations

import itertools
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import torch

from .checkpoint import Trained
from .data import Dataset, TensorData
from .metrics import task_metrics
from .model import ModelOutput, probabilities

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
    """Batched forward over all records (eval, no grad), concatenated."""
    model = trained.model
    outs = []
    with _eval(model), torch.no_grad():
        for idx in _chunks(len(data), batch_size):
            out = model(*_rows(data, idx, present), order)
            if not keep_states:
                out.states = None
            outs.append(out)
    first = outs[0]
    states = None if first.states is None else torch.cat([o.states for o in outs], dim=1)
    return ModelOutput(first.steps, states, {t: torch.cat([o.logits[t] for o in outs], dim=1) for t in first.logits},
                       torch.cat([o.ran for o in outs], dim=1))


def trace(trained: Trained, data: TensorData, present: dict | None = None, order: list[str] | None = None,
          batch_size: int = 4096) -> Trace:
    """State and every task's value after every step for every record of `data` (one forward per batch)."""
    if len(data) == 0:
        raise ValueError("no records to trace")
    order = _order(trained.model, order)
    pres = _present(data, present)
    out = _run_all(trained, data, pres, order, batch_size)
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
    with _eval(model), torch.no_grad():
        for s in range(0, len(rec), per):
            r = torch.as_tensor(rec[s:s + per], dtype=torch.long)
            tile = r.repeat_interleave(r_count)
            x, p, lengths = _rows(data, tile, pres)
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


# --- 3. feature attributions inside a modality (Captum) -----------------------------------------------------
@dataclass
class Attribution:
    """Attributions of one modality's inputs for one record, in logit units of `task` at `step`
    (regression: standardized output; multiply by `value_scale` for target units).

    features: model input names (one-hot as 'col=value'); source[j]: the spec column of feature j;
    values: (F,) or, for a sequence, (T, F) over the record's T observed time steps; inputs: the model inputs
    (same shape, standardized); by_column: spec column -> summed attribution (one-hot and time summed back);
    raw: column -> value from the dataset (sequence: list over time); delta: IG convergence delta."""
    record: str
    modality: str
    task: str
    step: int
    method: str
    features: list[str]
    source: list[str]
    columns: list[str]
    values: np.ndarray
    inputs: np.ndarray
    by_column: dict[str, float]
    raw: dict[str, object]
    delta: float | None
    target_logit: float
    baseline_logit: float
    target_class: int | None
    present: bool
    value_scale: float = 1.0


def _groups(source: list[str], columns: list[str]) -> np.ndarray:
    return np.array([columns.index(c) for c in source], dtype=np.int64)


def _raw(frame, record: int, mspec, rid: str, length: int) -> dict:
    if frame is None:
        return {}
    if isinstance(frame, Dataset):
        if mspec.kind == "sequence":
            seq = frame.sequences.get(mspec.name)
            if seq is None:
                return {}
            rows = seq[seq[mspec.key].astype(str) == rid]
            rows = rows[rows[mspec.columns].notna().any(axis=1)].tail(length)
            out = {c: rows[c].tolist() for c in mspec.columns}
            out[mspec.time_column] = rows[mspec.time_column].tolist()
            return out
        frame = frame.frame
    if mspec.kind == "sequence":
        return {}
    row = frame.iloc[record]
    return {c: (None if pd.isna(row[c]) else row[c].item() if hasattr(row[c], "item") else row[c])
            for c in mspec.columns}


def attribute(trained: Trained, data: TensorData, record: int, modality: str, task: str, step: int | None = None,
              method: str = "ig", present: dict | None = None, order: list[str] | None = None,
              target_class: int | None = None, n_steps: int = 64, frame: Dataset | pd.DataFrame | None = None,
              n_samples: int = 25) -> Attribution:
    """Captum attributions of `modality`'s input of record `record` (a position in `data`) to `task`'s logit
    at `step` (default: last; binary/regression output 0, multiclass `target_class`, default the class
    predicted at that step). The forward function is MultiModN.forward with the record's other inputs, mask
    and order fixed: the earlier modalities set the incoming state, so the attribution is conditioned on it.
    Baseline: zeros = the training mean after standardization (one-hot: no category)."""
    from captum.attr import FeatureAblation, IntegratedGradients, ShapleyValueSampling
    if method not in METHODS:
        raise ValueError(f"unknown attribution method '{method}' (choose: {', '.join(METHODS)})")
    model = trained.model
    if not 0 <= record < len(data):
        raise ValueError(f"record position {record} is outside the data (0..{len(data) - 1})")
    if modality not in model.modality_names:
        raise ValueError(f"unknown modality '{modality}' (model has: {', '.join(model.modality_names)})")
    tdef = _task(trained, task)
    order = _order(model, order)
    pres = _present(data, present)
    n_out = len(order) + 1 if _is_sequential(model) else 1
    step = n_out - 1 if step is None else step
    if not -n_out <= step < n_out:
        raise ValueError(f"step {step} is outside 0..{n_out - 1}")
    step %= n_out
    mspec = trained.spec.modality(modality)
    one = torch.tensor([record])
    x1, p1, l1 = _rows(data, one, pres)
    # Only the encoders up to `step` can change the logits there: run that prefix of the order (same forward)
    run_order = order[:step] if _is_sequential(model) else order
    is_present = bool(p1[modality][0])
    in_graph = is_present and modality in run_order

    def logits(xm: torch.Tensor) -> torch.Tensor:
        b = xm.shape[0]
        x = {k: v.expand(b, *v.shape[1:]) for k, v in x1.items()}
        x[modality] = xm
        out = model(x, {k: v.expand(b) for k, v in p1.items()}, {k: v.expand(b) for k, v in l1.items()}, run_order)
        return out.logits[task][-1]                                    # (b, C) at `step`

    def forward(xm: torch.Tensor) -> torch.Tensor:
        return logits(xm)[:, cls]

    inp = x1[modality].detach().clone().float()
    base = torch.zeros_like(inp)
    with _eval(model), _one_blas_thread():
        with torch.no_grad():
            both = logits(torch.cat([inp, base]))                      # (2, C): the input and the baseline
        cls = 0
        if tdef.type == "multiclass":
            cls = int(both[0].argmax()) if target_class is None else int(target_class)
            if not 0 <= cls < tdef.n_outputs:
                raise ValueError(f"target_class {cls} is outside 0..{tdef.n_outputs - 1}")
        target_logit, baseline_logit = float(both[0, cls]), float(both[1, cls])
        features = trained.prep.feature_names(mspec)
        source = trained.prep.source_columns(mspec)
        groups = torch.as_tensor(_groups(source, mspec.columns))
        delta = None
        if not in_graph:   # absent, or encoded after `step`: nothing in this input can matter there
            attr = torch.zeros_like(inp)
        elif method == "ig":
            attr = IntegratedGradients(forward).attribute(inp, baselines=base, n_steps=n_steps)
            # Captum's convergence delta, Σ attributions − (F(x) − F(baseline)), from the logits we already have
            delta = float(attr.double().sum()) - (target_logit - baseline_logit)
        else:
            if inp.dim() == 3:          # one group per (time step, column)
                t_len = inp.shape[1]
                mask = (torch.arange(t_len)[:, None] * len(mspec.columns) + groups[None, :])[None]
            else:
                mask = groups[None, :]
            n_groups = int(mask.max()) + 1
            if method == "ablation":
                attr = FeatureAblation(forward).attribute(inp, baselines=base, feature_mask=mask,
                                                          perturbations_per_eval=min(n_groups, 64))
            else:
                attr = ShapleyValueSampling(forward).attribute(inp, baselines=base, feature_mask=mask,
                                                               n_samples=n_samples,
                                                               perturbations_per_eval=min(n_groups, 64))
            # Captum gives every member of a group the group's value; spread it so columns sum back
            sizes = torch.bincount(mask.reshape(-1), minlength=n_groups).to(attr.dtype)
            attr = attr / sizes[mask].expand_as(attr)
    values = attr.detach()[0].double().numpy()
    inputs = inp[0].double().numpy()
    length = values.shape[0]
    if mspec.kind == "sequence":        # only the record's own time steps carry data
        length = int(l1[modality][0]) if modality in l1 else values.shape[0]
        values, inputs = values[:length], inputs[:length]
    g = groups.numpy()
    flat = values.reshape(-1, values.shape[-1]).sum(0)
    by_column = {c: float(flat[g == j].sum()) for j, c in enumerate(mspec.columns)}
    scale = 1.0
    if tdef.type == "regression":
        scale = float(trained.prep.target_stats[task][1])
    return Attribution(record=data.ids[record], modality=modality, task=task, step=step, method=method,
                       features=features, source=source, columns=list(mspec.columns), values=values,
                       inputs=inputs, by_column=by_column, raw=_raw(frame, record, mspec, data.ids[record], length),
                       delta=delta, target_logit=target_logit, baseline_logit=baseline_logit,
                       target_class=cls if tdef.type == "multiclass" else None, present=is_present,
                       value_scale=scale)


def attribute_modalities(trained: Trained, data: TensorData, record: int, task: str, method: str = "ig",
                         present: dict | None = None, order: list[str] | None = None, own_step: bool = False,
                         **kwargs) -> dict[str, Attribution]:
    """Attributions for every modality present in record `record`. own_step=True targets the task's logit
    right after that modality's step (the change the narrative describes); otherwise the final step."""
    order = _order(trained.model, order)
    pres = _present(data, present)
    out = {}
    for m in _players(trained, order):
        if not bool(pres[m][record]):
            continue
        step = order.index(m) + 1 if own_step and _is_sequential(trained.model) else None
        out[m] = attribute(trained, data, record, m, task, step, method, present, order, **kwargs)
    return out


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
    final0 = _values(trained, task, _run_all(trained, data, pres, base, batch_size, False).logits[task][-1])
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
                out = _run_all(trained, sub, sub_pres, orders[-1], batch_size, False)
                v = _scalar(_values(trained, task, out.logits[task][-1]), None if cls is None else cls[rec])
                low, high = v < lo[rec], v > hi[rec]
                lo[rec[low]], lo_i[rec[low]] = v[low], len(orders) - 1
                hi[rec[high]], hi_i[rec[high]] = v[high], len(orders) - 1
    lo_ord, hi_ord = [orders[j] for j in lo_i], [orders[j] for j in hi_i]
    return {"ids": list(data.ids), "task": task, "spread": hi - lo, "min": lo, "max": hi, "default": default,
            "n_orders": n_orders, "exhaustive": exhaustive, "min_order": lo_ord, "max_order": hi_ord}


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
        output = _run_all(trained, data, pres, order, batch_size, keep_states=False)
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
    names = [trained.spec.modality(m).display for m, b in pattern.items() if b]
    return " + ".join(names) if names else "(none)"


def pattern_metrics(trained: Trained, data: TensorData, batch_size: int = 4096,
                    output: ModelOutput | None = None) -> pd.DataFrame:
    """One row per missingness pattern (which modalities a record has): the pattern's name, one bool column
    per modality, n, per task the label rate (binary: positive share; multiclass: share per class as
    `<task>_rate_<class>`; regression: `<task>_label_mean`) and the final-step metric (classification
    `<task>_auroc` and `<task>_accuracy`, regression `<task>_mae`). Sorted by n, largest first."""
    names = list(trained.model.modality_names)
    pres = {m: data.present[m].cpu().numpy() for m in names}
    if output is None:
        output = _run_all(trained, data, data.present, None, batch_size, keep_states=False)
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
        out = _run_all(trained, data, _present(data, present), order, batch_size)
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


# --- 6. narrative --------------------------------------------------------------------------------------------
def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def _num(v: float, units: str = "") -> str:
    """3 significant figures in plain notation; whole numbers stay whole; a unit that is a range ('0-7') is a
    scale."""
    a = abs(v)
    s = f"{v:.0f}" if a >= 100 or float(v).is_integer() else f"{v:.1f}" if a >= 10 else f"{v:.2f}"
    if units[:1].isdigit():
        return f"{s} on a {units} scale"
    return f"{s} {units}".strip()


def _push(attr, up: bool, spec) -> str:
    """'; the largest push came from high lactate (3.4 mmol/L)' — the column whose attribution is largest in
    the direction of the change (nothing when no column pushed that way)."""
    if attr is None or not attr.present or not attr.by_column:
        return ""
    sign = 1.0 if up else -1.0
    col, val = max(attr.by_column.items(), key=lambda kv: sign * kv[1])
    if sign * val <= 0:
        return ""
    mspec = spec.modality(attr.modality)
    name = mspec.column_labels.get(col, col)
    raw = attr.raw.get(col)
    feats = [j for j, s in enumerate(attr.source) if s == col]
    x = attr.inputs.reshape(-1, attr.inputs.shape[-1])[-1]   # sequences: the most recent time step
    if len(feats) == 1 and "=" not in attr.features[feats[0]]:      # numeric: high / low vs the training mean
        z = float(x[feats[0]])
        level = "high " if z > 0.5 else "low " if z < -0.5 else ""
        if isinstance(raw, list):
            raw = raw[-1] if raw else None
        units = mspec.units.get(col, "")
        value = f" ({_num(float(raw), units)})" if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            and math.isfinite(float(raw)) else ""
        return f"; the largest push came from {level}{name}{value}"
    hot = [attr.features[j].split("=", 1)[1] for j in feats if x[j] > 0.5]
    return f"; the largest push came from {name} = {hot[0]}" if hot else f"; the largest push came from {name}"


def narrative(trace: Trace, i: int, task: str, spec, attributions: dict | None = None) -> list[str]:
    """One sentence per step (the prior first) for record i, from the trace's numbers. Binary: whole
    percentages of P(positive); multiclass: the probability of the finally predicted class; regression: the
    prediction in the target's units. `attributions`: modality -> Attribution, to name the largest push."""
    tspec = spec.task(task)
    what = tspec.display.lower() if tspec.display[:1].isupper() and not tspec.display[:2].isupper() \
        else tspec.display
    v = trace.value[task][:, i]
    if v.ndim == 2:                                   # multiclass: follow the finally predicted class
        c = int(v[-1].argmax())
        cname = tspec.class_display(trace.classes[task][c])
        v = v[:, c]
        noun, fmt = f"the predicted probability that {what} is '{cname}'", _pct
    elif tspec.type == "regression":
        noun, fmt = f"the predicted {what}", partial(_num, units=tspec.units)
    else:
        noun, fmt = f"the predicted probability of {what}", _pct
    lines = [f"Before any data, {noun} is {fmt(v[0])}." if len(trace.steps) > 1 and trace.steps[0] == "prior"
             else f"Using all modalities together, {noun} is {fmt(v[0])}."]
    attributions = attributions or {}
    for k, m in enumerate(trace.steps[1:], start=1):
        label = spec.modality(m).display
        if trace.skipped[k - 1, i]:
            measured = trace.measured.get(m)
            why = "was switched off" if measured is not None and measured[i] else "was not measured"
            lines.append(f"{label} {why}, so it was skipped and the prediction stayed at {fmt(v[k])}.")
            continue
        before, after = fmt(v[k - 1]), fmt(v[k])
        if before == after:
            lines.append(f"Adding {label} left {noun} at {after}.")
            continue
        up = v[k] > v[k - 1]
        verb = "raised" if up else "lowered"
        lines.append(f"Adding {label} {verb} {noun} from {before} to {after}"
                     f"{_push(attributions.get(m), up, spec)}.")
    return lines


# --- 7. one record, as the CLI prints it ---------------------------------------------------------------------
def _json(v):
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_json(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def explain_record(trained: Trained, ds: Dataset, record_id: str, task: str | None = None,
                   method: str = "ig") -> dict:
    """Everything about one record as JSON-ready data (the CLI's `explain --json`):
    {"record", "model", "steps", "present", "skipped", "tasks": {t: {"type", "prob": [per step], "delta":
    [per step], "label"}}, "shapley": {t: {m: v}}, "f_all": {t: v}, "f_none": {t: v},
    "features": {t: {m: {column: attribution}}}, "convergence_delta": {t: {m: d}}, "narrative": {t: [...]}}.
    Every number is a plain float: binary P(positive); regression target units; multiclass the probability
    of the finally predicted class `tasks[t]["class"]` (per-class lists in "probs", "shapley_by_class",
    "classes"). Feature attributions target the task's logit right after the modality's step (the change
    each narrative sentence describes)."""
    ids = ds.ids
    try:
        row = ids.index(str(record_id))
    except ValueError:
        sample = ", ".join(ids[:3])
        raise ValueError(f"record '{record_id}' is not in dataset '{ds.spec.name}' (ids look like: {sample})") \
            from None
    tasks = [t.name for t in trained.model.tasks] if task is None else [_task(trained, task).name]
    sub = ds.subset([row])
    data = trained.prep.transform(sub)
    tr = trace(trained, data)
    sh = shapley(trained, data)
    out = {"record": str(record_id), "model": trained.kind, "steps": tr.steps,
           "present": {m: bool(p[0]) for m, p in tr.present.items()},
           "skipped": [bool(s) for s in tr.skipped[:, 0]], "tasks": {}, "shapley": {}, "f_all": {}, "f_none": {},
           "features": {}, "convergence_delta": {}, "narrative": {}}
    for t in tasks:
        v, phi = tr.value[t][:, 0], sh.values[t][0]
        f_all, f_none = sh.f_all[t][0], sh.f_none[t][0]
        entry = {"type": _task(trained, t).type}
        cls = None
        if v.ndim == 2:                  # multiclass: narrate, attribute and summarize the predicted class
            cls = int(v[-1].argmax())
            entry.update(classes=tr.classes[t], probs=v, shapley_by_class={m: phi[j] for j, m in
                                                                            enumerate(sh.modalities)})
            entry["class"] = tr.classes[t][cls]
            v, phi, f_all, f_none = v[:, cls], phi[:, cls], f_all[cls], f_none[cls]
            label = int(tr.label[t][0])
            entry["label"] = tr.classes[t][label] if label >= 0 else None
        else:
            entry["label"] = tr.label[t][0]
        entry.update(prob=v, delta=np.diff(v))
        out["tasks"][t] = entry
        out["shapley"][t] = {m: phi[j] for j, m in enumerate(sh.modalities)}
        out["f_all"][t], out["f_none"][t] = f_all, f_none
        attrs = attribute_modalities(trained, data, 0, t, method, own_step=True, frame=sub, target_class=cls)
        out["features"][t] = {m: a.by_column for m, a in attrs.items()}
        out["convergence_delta"][t] = {m: a.delta for m, a in attrs.items()}
        out["narrative"][t] = narrative(tr, 0, t, trained.spec, attrs)
    return _json(out)
