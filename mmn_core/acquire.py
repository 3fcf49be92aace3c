"""What to measure next: the expected effect of acquiring each modality a record lacks, and its validation.

Method (MultiModN only). For record r with presence pattern P (the modalities it has, after any hiding) and a
modality m ∉ P:
1. r's state s_r (S,) is its final state over P, from `model.forward`.
2. Donors are TRAINING records that have m, never r itself. Each donor d is run with the pattern P ∩ P_d
   (m is not in P, so m never shapes this state) and its final state s_d (S,) is taken; the K donors nearest
   to s_r in Euclidean distance are kept. Distance in the model's own state is the model's notion of "a
   similar record given what is known about r".
3. r is copied K times with m switched on and m's inputs (tabular (F,) vector, or sequence (T, F) with its
   length) replaced by each donor's; one batched forward gives K real predictions of "r after measuring m".
From these K outcomes, per task: expected |Δ| of the final prediction (binary P(positive); multiclass the
probability of the currently predicted class; regression target units), the probability that the predicted
class flips (binary: crossing `threshold`; multiclass: another argmax; regression: undefined, NaN), and the
expected uncertainty reduction (classification: entropy(now) − mean entropy(after), in nats; regression: the
spread (std) of the K outcomes — the predictive spread that measuring m would resolve). Missing modalities
are ranked by expected |Δ|.

Assumption: the unseen value of m for r is distributed like m among training records that look like r in the
model's state. Failure modes: (a) missing-not-at-random — if m is missing *because* of its value (not
measured when it would be normal), donors that have m are systematically different and the estimate is
biased; (b) the state may not encode what predicts m (e.g. m is first in the order and nothing precedes it:
a record with no other modality has the prior state, and every donor ties); (c) few donors with m (K is then
capped at the number available; none at all gives no estimate); (d) the state is built for the tasks, not
for m, so states can be close while m differs. `evaluate_acquisition` measures how much this matters on
held-out records, by hiding a modality that is present and revealing it.

P-Fusion is refused (ValueError): it has no per-record sequential state; its fused embedding depends on which
modalities are present in a way the donor search above would not respect.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import Trained
from .data import Dataset, TensorData, split
from . import run
from .explain import _task, _tasks, _values

CHUNK = 8192          # rows per forward when running the donor pool
MAX_CACHED = 128      # presence patterns whose pool states are kept (SUPPORT2: 0.8 MB each)


# --- results ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskEstimate:
    """One task, one candidate modality. current: the value now (scalar, see module doc); outcomes: (K,) the
    same scalar after measuring m with each donor's value; cls: the currently predicted class (multiclass;
    binary 0/1 at the threshold; regression None)."""
    task: str
    type: str
    current: float
    outcomes: np.ndarray
    expected_abs_change: float
    flip_probability: float
    uncertainty_reduction: float
    cls: int | None


@dataclass(frozen=True)
class ModalityEstimate:
    """neighbours: (K,) row positions in the TensorData the estimate was computed on; neighbour_ids (K,);
    distances: (K,) Euclidean distances in state space, ascending."""
    modality: str
    neighbours: np.ndarray
    neighbour_ids: tuple[str, ...]
    distances: np.ndarray
    tasks: dict[str, TaskEstimate]


@dataclass(frozen=True)
class Acquisition:
    """Per candidate modality of one record; `no_donors`: candidates no training record could stand in for."""
    record: str
    row: int
    candidates: tuple[str, ...]
    modalities: dict[str, ModalityEstimate]
    no_donors: tuple[str, ...] = ()

    def ranked(self, task: str) -> list[str]:
        """Candidates with an estimate, largest expected |Δ| for `task` first (ties: encoding order)."""
        return sorted(self.modalities, key=lambda m: -self.modalities[m].tasks[task].expected_abs_change)


# --- the donor pool -----------------------------------------------------------------------------------------
def _require_multimodn(trained: Trained) -> None:
    if getattr(trained.model, "kind", "") != "multimodn":
        raise ValueError("acquisition estimates need a MultiModN checkpoint: P-Fusion has no sequential state "
                         "to find similar records in")


def training_pool(trained: Trained, ds: Dataset) -> np.ndarray:
    """Row positions of the training records of `trained` in `ds` (sorted).

    The split is re-derived with `data.split(ds, seed)` and accepted when its test rows equal the checkpoint's
    stored `test_ids`; otherwise (other data, or a checkpoint trained on given rows) every record not in
    `test_ids` is used. Without `test_ids`, every record is a possible donor (never the record itself)."""
    ids = ds.ids
    test_ids = trained.info.get("test_ids") or []
    seed = (trained.info.get("train_config") or {}).get("seed", 0)
    if test_ids and trained.info.get("dataset") == ds.spec.name:
        tr, _, te = split(ds, seed=seed)
        if [ids[i] for i in te] == list(test_ids):
            return tr
    if test_ids:
        test = set(map(str, test_ids))
        return np.array([i for i, r in enumerate(ids) if r not in test], dtype=np.int64)
    return np.arange(len(ds), dtype=np.int64)


def held_out_rows(trained: Trained, ds: Dataset) -> np.ndarray:
    """Row positions of the checkpoint's held-out test records in `ds` (empty when it stores none)."""
    pos = {r: i for i, r in enumerate(ds.ids)}
    return np.array(sorted(pos[r] for r in trained.info.get("test_ids") or [] if r in pos), dtype=np.int64)


class Donors:
    """Training rows of `data` and their final states per presence pattern (cached: records share patterns;
    the cache holds the MAX_CACHED most recently used)."""

    def __init__(self, trained: Trained, data: TensorData, pool):
        _require_multimodn(trained)
        self.trained, self.data = trained, data
        self.names = list(trained.model.modality_names)
        self.pool = np.unique(np.asarray(pool, dtype=np.int64))
        if len(self.pool) == 0:
            raise ValueError("no training records to borrow values from")
        self.idx = torch.as_tensor(self.pool)
        self.x, self.present, self.lengths = run.inputs(data, self.idx)
        self._states: dict[tuple[bool, ...], torch.Tensor] = {}

    def _encoders_only(self):
        """The same MultiModN (shared encoder weights, the same forward) without task decoders: the pool needs
        states only, and decoding all K+1 states of thousands of rows was two thirds of the time. A shallow
        copy, so the caller's model is never modified."""
        model = self.trained.model
        lite = copy.copy(model)
        lite.__dict__["_modules"] = {**model._modules, "decoders": torch.nn.ModuleDict()}
        lite.tasks = []
        return lite

    def states(self, pattern: tuple[bool, ...]) -> torch.Tensor:
        """(P, S) final states of the pool under `pattern` ∩ each donor's own presence."""
        if pattern not in self._states:
            model, parts = self._encoders_only(), []
            with run.eval_mode(model), torch.no_grad():
                for idx in run.batches(len(self.pool), CHUNK):
                    sl = slice(int(idx[0]), int(idx[-1]) + 1)
                    p = {m: self.present[m][sl] & bool(b) for m, b in zip(self.names, pattern)}
                    out = model(run.rows(self.x, sl), p, run.rows(self.lengths, sl))
                    parts.append(out.states[-1])
            if len(self._states) >= MAX_CACHED:
                self._states.pop(next(iter(self._states)))       # the least recently used pattern
            self._states[pattern] = torch.cat(parts)
        self._states[pattern] = self._states.pop(pattern)        # most recently used last
        return self._states[pattern]

    def nearest(self, state: torch.Tensor, modality: str, pattern: tuple[bool, ...], k: int, exclude: int):
        """The k donors having `modality` nearest to `state` (S,): (rows (k,), distances (k,)) ascending;
        row `exclude` (the record itself) is never returned."""
        ok = self.present[modality] & (self.idx != exclude)
        n_ok = int(ok.sum())
        if n_ok == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        d = (self.states(pattern) - state).pow(2).sum(-1).masked_fill_(~ok, math.inf)
        top = torch.topk(d, min(k, n_ok), largest=False, sorted=True)
        return self.pool[top.indices.numpy()], top.values.double().sqrt().numpy()


# --- per-task summaries -------------------------------------------------------------------------------------
def _entropy(p: np.ndarray, binary: bool) -> np.ndarray:
    """Binary: p (…,) P(positive); multiclass: p (…, C). Nats."""
    if binary:
        p = np.stack([1 - p, p], axis=-1)
    p = np.clip(p, 1e-12, 1.0)
    return -(p * np.log(p)).sum(-1)


def _summarize(task, now: np.ndarray, after: np.ndarray, threshold: float) -> TaskEstimate:
    """now: binary/regression () or multiclass (C,); after: (K,) or (K, C)."""
    if task.type == "binary":
        cls = int(now >= threshold)
        flips = ((after >= threshold).astype(int) != cls)
        cur, out = float(now), after
        unc = float(_entropy(now, True) - _entropy(after, True).mean())
    elif task.type == "multiclass":
        cls = int(now.argmax())
        flips = after.argmax(-1) != cls
        cur, out = float(now[cls]), after[:, cls]
        unc = float(_entropy(now, False) - _entropy(after, False).mean())
    else:
        cls, flips, cur, out = None, None, float(now), after
        unc = float(np.std(after))
    return TaskEstimate(task.name, task.type, cur, out.astype(np.float64), float(np.mean(np.abs(out - cur))),
                        math.nan if flips is None else float(np.mean(flips)), unc, cls)


def _scalar(task, v: np.ndarray, cls: int | None) -> float:
    """A value (binary/regression () or multiclass (C,)) in the estimate's scalar for class `cls`."""
    return float(v[cls]) if task.type == "multiclass" else float(v)


# --- the estimator ------------------------------------------------------------------------------------------
def _run_jobs(trained: Trained, data: TensorData, row: int, donors: Donors, jobs: list[tuple[tuple, str]],
              k: int, threshold: float, extra: tuple[tuple, ...] = ()):
    """jobs: (pattern, modality) pairs, pattern an E-tuple of bools with the modality off. Forward 1: the record
    under every distinct pattern (and `extra` patterns); forward 2: all jobs' donor copies in one batch.
    Returns ({job index: ModalityEstimate} for jobs with donors, {extra pattern: {task: value}})."""
    names, model, tasks = donors.names, trained.model, _tasks(trained)
    pats = list(dict.fromkeys([p for p, _ in jobs] + list(extra)))
    n1 = len(pats)
    if n1 == 0:
        return {}, {}
    x, _, lengths = run.inputs(data, torch.full((n1,), row))
    with run.eval_mode(model), torch.no_grad():
        p1 = {m: torch.tensor([p[j] for p in pats]) for j, m in enumerate(names)}
        out = model(x, p1, lengths)
        vals = {t: _values(trained, t, lg[-1]) for t, lg in out.logits.items()}     # (n1[, C])
        picks = {}
        for i, (pat, m) in enumerate(jobs):
            rows, dist = donors.nearest(out.states[-1, pats.index(pat)], m, pat, k, row)
            if len(rows):
                picks[i] = (rows, dist)
        result = {}
        if picks:
            n = sum(len(r) for r, _ in picks.values())
            src_pat = np.concatenate([[pats.index(jobs[i][0])] * len(r) for i, (r, _) in picks.items()])
            bx = {m: v[:1].expand(n, *v.shape[1:]).clone() for m, v in x.items()}
            bl = {m: v[:1].expand(n).clone() for m, v in lengths.items()}
            bp = {m: p1[m][torch.as_tensor(src_pat)].clone() for m in names}
            start = 0
            for i, (rows, _) in picks.items():
                m, sl, src = jobs[i][1], slice(start, start + len(rows)), torch.as_tensor(rows)
                bx[m][sl] = data.x[m][src]
                if m in bl:
                    bl[m][sl] = data.lengths[m][src]
                bp[m][sl] = True
                start += len(rows)
            after = {t: _values(trained, t, lg[-1]) for t, lg in model(bx, bp, bl).logits.items()}
            start = 0
            for i, (rows, dist) in picks.items():
                sl, j = slice(start, start + len(rows)), pats.index(jobs[i][0])
                start += len(rows)
                result[i] = ModalityEstimate(jobs[i][1], rows, tuple(data.ids[r] for r in rows), dist,
                                             {t: _summarize(d, vals[t][j], after[t][sl], threshold)
                                              for t, d in tasks.items()})
    return result, {p: {t: vals[t][pats.index(p)] for t in tasks} for p in extra}


def _check(donors: Donors, k: int, modalities) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    for m in modalities:
        if m not in donors.names:
            raise ValueError(f"unknown modality '{m}' (model has: {', '.join(donors.names)})")


def estimate(trained: Trained, data: TensorData, row: int, donors: Donors, k: int = 50,
             hide: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
             threshold: float = 0.5) -> Acquisition:
    """Estimate, for record `row` of `data`, the effect of measuring each modality it lacks (after hiding
    `hide`; restricted to `only` when given). Two forwards: the record (1 row), then every candidate's K
    donor copies in one batch. A record with every modality present (and nothing hidden) gets no candidates."""
    _check(donors, k, (*hide, *(only or ())))
    pattern = tuple(bool(data.present[m][row]) and m not in hide for m in donors.names)
    cands = tuple(m for m, b in zip(donors.names, pattern) if not b and (only is None or m in only))
    res, _ = _run_jobs(trained, data, row, donors, [(pattern, m) for m in cands], k, threshold)
    return Acquisition(data.ids[row], row, cands, {cands[i]: e for i, e in sorted(res.items())},
                       tuple(m for i, m in enumerate(cands) if i not in res))


@dataclass(frozen=True)
class Hindsight:
    """'What if we had not measured m': the estimate made with m hidden, and what m's true value did.
    actual[t]: the true final value (estimate's scalar); actual_abs_change[t]: |actual − current|."""
    modality: str
    estimate: ModalityEstimate
    actual: dict[str, float]
    actual_abs_change: dict[str, float]


def what_if_not_measured(trained: Trained, data: TensorData, row: int, donors: Donors, k: int = 50,
                         modalities: tuple[str, ...] | None = None, threshold: float = 0.5
                         ) -> dict[str, Hindsight]:
    """For each modality the record HAS (or those of `modalities` it has): hide it alone, estimate it as if
    missing, and compare with its true effect. Two forwards for all of them; a modality no donor has is left
    out of the result."""
    _check(donors, k, modalities or ())
    full = tuple(bool(data.present[m][row]) for m in donors.names)
    have = [m for m, b in zip(donors.names, full) if b and (modalities is None or m in modalities)]
    jobs = [(tuple(b and n != m for n, b in zip(donors.names, full)), m) for m in have]
    res, extra = _run_jobs(trained, data, row, donors, jobs, k, threshold, extra=(full,))
    out = {}
    for i, me in sorted(res.items()):
        actual, change = {}, {}
        for t, d in _tasks(trained).items():
            actual[t] = _scalar(d, extra[full][t], me.tasks[t].cls)
            change[t] = abs(actual[t] - me.tasks[t].current)
        out[me.modality] = Hindsight(me.modality, me, actual, change)
    return out


# --- validation ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AcquisitionEvaluation:
    """Over held-out (record, present modality) pairs for `task`: expected (n_pairs,) and actual (n_pairs,)
    |Δ|; spearman between them; calibration_slope of actual on expected (least squares with intercept);
    top-1 hit rates over `records_ranked` records with ≥ 2 present modalities — the estimator's top modality,
    and the baseline's (mean leave-one-out |Δ| over training records, `cohort_importance`), versus the
    modality whose true value moved the prediction most; chance: the mean of 1 / (present modalities);
    baseline_spearman: the same Spearman with each pair's cohort importance in place of the estimate."""
    task: str
    records: int
    pairs: int
    records_ranked: int
    spearman: float
    top1_hit_rate: float
    baseline_top1_hit_rate: float
    chance_top1_hit_rate: float
    calibration_slope: float
    calibration_intercept: float
    expected: np.ndarray
    actual: np.ndarray
    cohort_importance: dict[str, float]
    baseline_spearman: float = math.nan


def cohort_importance(trained: Trained, data: TensorData, donors: Donors, task: str) -> dict[str, float]:
    """Modality -> mean |f(P) − f(P \\ m)| for `task` over the training records having m (estimate's scalar,
    multiclass class taken from f(P \\ m))."""
    d = _task(trained, task)
    model, names = trained.model, donors.names
    with run.eval_mode(model), torch.no_grad():
        def final(drop):
            p = {m: v & (m != drop) for m, v in donors.present.items()}
            return _values(trained, task, model(donors.x, p, donors.lengths).logits[task][-1])
        full = final(None)
        out = {}
        for m in names:
            has = donors.present[m].numpy()
            if not has.any():
                out[m] = 0.0
                continue
            v = final(m)
            if d.type == "multiclass":
                c = v.argmax(-1)
                diff = np.take_along_axis(full, c[:, None], 1)[:, 0] - np.take_along_axis(v, c[:, None], 1)[:, 0]
            else:
                diff = full - v
            out[m] = float(np.abs(diff[has]).mean())
    return out


def evaluate_acquisition(trained: Trained, ds: Dataset, records: int = 1000, seed: int = 0, k: int = 50,
                         task: str | None = None, threshold: float = 0.5,
                         data: TensorData | None = None) -> AcquisitionEvaluation:
    """Hide each present modality of up to `records` seeded held-out test records one at a time, estimate it,
    reveal the truth (see AcquisitionEvaluation) for `task` (default: the first). Records with no present
    modality are skipped."""
    task = _task(trained, task).name if task else trained.model.tasks[0].name
    return evaluate_all_tasks(trained, ds, records, seed, k, threshold, data)[task]


def evaluate_all_tasks(trained: Trained, ds: Dataset, records: int = 1000, seed: int = 0, k: int = 50,
                       threshold: float = 0.5, data: TensorData | None = None) -> dict[str, AcquisitionEvaluation]:
    """`evaluate_acquisition` for every task from one pass (the estimates cover all tasks at once)."""
    _require_multimodn(trained)
    data = data if data is not None else trained.prep.transform(ds)
    donors = Donors(trained, data, training_pool(trained, ds))
    test = held_out_rows(trained, ds)
    if len(test) == 0:
        test = np.setdiff1d(np.arange(len(ds)), donors.pool)
    if len(test) == 0:
        raise ValueError("the checkpoint stores no held-out test records for this data")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(test, size=min(records, len(test)), replace=False))
    pats = np.stack([data.present[m].numpy()[chosen] for m in donors.names], 1)
    chosen = chosen[np.lexsort((chosen, *pats.T))]          # records of one pattern together: cache hits
    tasks = list(_tasks(trained))
    base = {t: cohort_importance(trained, data, donors, t) for t in tasks}
    acc = {t: {"e": [], "a": [], "b": [], "hit": [], "base": [], "chance": []} for t in tasks}
    used = 0
    for row in chosen.tolist():
        hs = what_if_not_measured(trained, data, row, donors, k, threshold=threshold)
        if not hs:
            continue
        used += 1
        mods = list(hs)
        for t in tasks:
            e_r = [hs[m].estimate.tasks[t].expected_abs_change for m in mods]
            a_r = [hs[m].actual_abs_change[t] for m in mods]
            acc[t]["e"] += e_r
            acc[t]["a"] += a_r
            acc[t]["b"] += [base[t][m] for m in mods]
            if len(mods) >= 2:
                best = int(np.argmax(a_r))
                acc[t]["hit"].append(int(np.argmax(e_r)) == best)
                acc[t]["base"].append(int(np.argmax([base[t][m] for m in mods])) == best)
                acc[t]["chance"].append(1 / len(mods))
    rate = lambda h: float(np.mean(h)) if h else math.nan
    out = {}
    for t in tasks:
        exp_a, act_a = np.asarray(acc[t]["e"]), np.asarray(acc[t]["a"])
        if len(exp_a) >= 2 and np.ptp(exp_a) > 0 and np.ptp(act_a) > 0:
            from scipy.stats import spearmanr
            rho = float(spearmanr(exp_a, act_a).statistic)
            rho_base = float(spearmanr(acc[t]["b"], act_a).statistic)
            slope, intercept = (float(v) for v in np.polyfit(exp_a, act_a, 1))
        else:
            rho = rho_base = slope = intercept = math.nan
        out[t] = AcquisitionEvaluation(t, used, len(exp_a), len(acc[t]["hit"]), rho, rate(acc[t]["hit"]),
                                       rate(acc[t]["base"]), rate(acc[t]["chance"]), slope, intercept, exp_a,
                                       act_a, base[t], rho_base)
    return out


# --- one record, as the CLI prints it -----------------------------------------------------------------------
def acquire_record(trained: Trained, ds: Dataset, record_id: str, task: str | None = None, k: int = 50,
                   threshold: float = 0.5, data: TensorData | None = None) -> dict:
    """JSON-ready: {"record", "missing": [ranked by the first requested task], "no_donors": [...], "tasks": {t:
    {m: {"expected_abs_change", "flip_probability", "uncertainty_reduction", "current", "outcomes",
    "neighbours"}}}}; flip_probability is None for regression."""
    _require_multimodn(trained)
    ids = ds.ids
    if str(record_id) not in set(ids):
        raise ValueError(f"record '{record_id}' is not in dataset '{ds.spec.name}'")
    tasks = [t.name for t in trained.model.tasks] if task is None else [_task(trained, task).name]
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    data = data if data is not None else trained.prep.transform(ds)
    row = ids.index(str(record_id))
    est = estimate(trained, data, row, Donors(trained, data, training_pool(trained, ds)), k, threshold=threshold)
    clean = lambda v: None if not math.isfinite(v) else float(v)
    out = {"record": str(record_id), "missing": est.ranked(tasks[0]) + list(est.no_donors),
           "no_donors": list(est.no_donors), "tasks": {}}
    for t in tasks:
        out["tasks"][t] = {m: {"expected_abs_change": clean(e.tasks[t].expected_abs_change),
                               "flip_probability": clean(e.tasks[t].flip_probability),
                               "uncertainty_reduction": clean(e.tasks[t].uncertainty_reduction),
                               "current": clean(e.tasks[t].current),
                               "outcomes": [float(v) for v in e.tasks[t].outcomes],
                               "neighbours": list(e.neighbour_ids)}
                           for m, e in ((m, est.modalities[m]) for m in est.ranked(t))}
    return out
