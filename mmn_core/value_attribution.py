"""Presence vs value: did a modality's *values* matter, or only the fact that it was there?

The skip game (`faithfulness`, `explain.shapley`) removes a modality by skipping it. For a modality that is
(almost) always present in training, a skip is a state the model never saw, so its credit may reflect
"presence" rather than "values". The value game keeps every modality the record has present and replaces the
inputs of the removed ones by a reference value: the training mean **in the model's input space** (after
standardization and one-hot encoding; numeric columns ≈ 0, one-hot columns = the category frequencies), over
the checkpoint's non-test records that have the modality. For a sequence the reference is the mean feature
vector over those records' observed time steps, repeated over the record's own time steps (its length kept).

Both games score the same oriented output as `faithfulness` (toward the full prediction), with exact Shapley
values (sampled permutations above MAX_EXACT players), so "skip credit" and "value credit" are comparable:
both in probability for classification and in target units for regression (as `explain.shapley`); the
value-removal AOPC is in `faithfulness` units (regression: standardized).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import faithfulness as F
from . import run
from .checkpoint import Trained
from .data import TensorData
from .explain.coalitions import _exact_design, _sampled_design

MAX_EXACT = 10
REFERENCE = "training mean in the model's input space (standardized / one-hot), non-test records with the modality"


def reference_inputs(trained: Trained, data: TensorData) -> dict[str, torch.Tensor]:
    """Modality -> (F,) mean model input over the non-test records of `data` that have it (zeros if none)."""
    test = set(trained.info.get("test_ids") or [])
    keep = torch.as_tensor([i not in test for i in data.ids]) if test else torch.ones(len(data), dtype=torch.bool)
    out = {}
    for m in trained.model.modality_names:
        x, rows = data.x[m].double(), keep & data.present[m]
        if not rows.any():
            rows = data.present[m]
        if x.dim() == 3:          # (N, T, F): observed steps only
            t = torch.arange(x.shape[1])[None, :] < data.lengths[m][:, None]
            valid = t & rows[:, None]
            out[m] = (x * valid[..., None]).sum((0, 1)) / valid.sum().clamp(min=1)
        else:
            out[m] = x[rows].mean(0) if rows.any() else torch.zeros(x.shape[1], dtype=torch.float64)
    return {m: v.float() for m, v in out.items()}


def _value_forward(ctx, ref, rec: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Oriented output of records `rec` (M,) with every own modality present and the inputs of modalities
    NOT in bitmask `codes` (M,) set to the reference. Distinct (record, code ∩ own) pairs run once."""
    trained, data, players = ctx.trained, ctx.data, ctx.players
    e = len(players)
    own = (ctx.has * (1 << np.arange(e))).sum(1)
    rec = np.asarray(rec, np.int64)
    keys, inv = np.unique((rec << e) | (np.asarray(codes, np.int64) & own[rec]), return_inverse=True)
    out = np.empty(len(keys))
    model = trained.model
    with run.eval_mode(model), torch.no_grad():
        for idx in run.batches(len(keys), F.ROWS):
            k = keys[idx.numpy()]
            r, c = torch.as_tensor(k >> e), torch.as_tensor(k & ((1 << e) - 1))
            x, p, lengths = run.inputs(data, r)
            for j, m in enumerate(players):
                keep = ((c >> j) & 1).bool().view(-1, *([1] * (x[m].dim() - 1)))
                x[m] = torch.where(keep, x[m].float(), ref[m].to(x[m].dtype))
            lg = model(x, p, lengths).logits[ctx.task][-1]
            out[idx.numpy()] = F._oriented(trained, ctx.task, lg, ctx.cls[r.numpy()], ctx.sign[r.numpy()])
    return out[inv.ravel()]


def value_shapley(ctx, ref, samples: int = 64, seed: int = 0) -> np.ndarray:
    """(N, E) Shapley values of the value game toward each prediction (0 for modalities a record lacks);
    Σ_m φ_m = f(record) − f(record with every own modality at its reference value)."""
    e, n = len(ctx.players), len(ctx.data)
    codes, coef = _exact_design(e) if e <= MAX_EXACT else _sampled_design(e, samples, seed)
    rec = np.repeat(np.arange(n), len(codes))
    v = _value_forward(ctx, ref, rec, np.tile(codes, n)).reshape(n, len(codes))
    return (v @ coef) * ctx.has


def _unit(trained: Trained, task: str) -> float:
    """Standardized → target units for a regression task (explain.shapley's units), else 1."""
    t = F.E._task(trained, task)
    return float(trained.prep.target_stats[task][1]) if t.type == "regression" else 1.0


def _value_aopc(ctx, ref, ranks: np.ndarray) -> np.ndarray:
    """ranks (R, N, E) → (R, N) AOPC when the top-k modalities are set to the reference (kept present)."""
    r_count, n, e = ranks.shape
    bit = 1 << np.arange(e)
    own = (ctx.has * bit).sum(1)
    top = ((ranks[..., None] < np.arange(e + 1)) * bit[:, None]).sum(2)           # (R, N, E+1)
    rec = np.broadcast_to(np.arange(n)[None, :, None], top.shape).reshape(-1)
    dele = _value_forward(ctx, ref, rec, (own[None, :, None] & ~top).reshape(-1)).reshape(top.shape)
    return F._aopc(dele, ctx.has.sum(1))


@dataclass(frozen=True)
class ModalityCredit:
    absent_in_training: float   # share of non-test records without the modality
    ood_skip: bool              # absent in < faithfulness.OOD_ABSENT of them: skipping it is unseen
    skip_credit: float          # mean |skip Shapley| over the sampled records that have it
    value_credit: float         # mean |value Shapley| over the same records
    value_share: float          # value_credit / skip_credit (NaN when the skip credit is 0)


@dataclass(frozen=True)
class ValueVsPresence:
    """Per modality credits; ood_explanations: share of records whose top skip-Shapley modality is an OOD
    skip; value_deletion_aopc: AOPC when removal = reference value, for the value ranking, the skip ranking
    and random orders. per_record: "skip", "value" (N, E), "ood" (N,) bool, "ids"."""
    task: str
    records: int
    reference: str
    modalities: dict[str, ModalityCredit]
    ood_explanations: float
    value_deletion_aopc: dict[str, float]
    per_record: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {"task": self.task, "records": self.records, "reference": self.reference,
                "ood_threshold": F.OOD_ABSENT, "ood_explanations": self.ood_explanations,
                "value_deletion_aopc": dict(self.value_deletion_aopc),
                "modalities": {m: vars(c).copy() for m, c in self.modalities.items()}}


def _credits(trained, data, ctx, skip, value) -> dict[str, ModalityCredit]:
    absent = F.absent_in_training(trained, data)
    out = {}
    for j, m in enumerate(ctx.players):
        rows = ctx.has[:, j]
        s = float(np.abs(skip[rows, j]).mean()) if rows.any() else 0.0
        v = float(np.abs(value[rows, j]).mean()) if rows.any() else 0.0
        out[m] = ModalityCredit(absent[m], absent[m] < F.OOD_ABSENT, s, v, v / s if s > 0 else float("nan"))
    return out


def value_vs_presence(trained: Trained, data, task: str, records: int = 500, seed: int = 0,
                      random_orders: int = 16, samples: int = 64) -> ValueVsPresence:
    """Skip vs value credit of every modality on a seeded sample of records with ≥ 1 modality (MultiModN
    or P-Fusion; `data` a Dataset or the TensorData the checkpoint's preprocessing produced)."""
    data = F._prepare(trained, data, task)
    if records < 1:
        raise ValueError(f"records must be at least 1, got {records}")
    has_any = np.flatnonzero(np.stack([data.present[m].numpy() for m in trained.model.modality_names]).any(0))
    if not len(has_any):
        raise ValueError("no record has any modality")
    pick = np.sort(np.random.default_rng(seed).choice(has_any, size=min(records, len(has_any)), replace=False))
    ref = reference_inputs(trained, data)          # from all of `data`'s non-test records, not the sample
    sub = data.subset(pick)
    ctx = F._context(trained, sub, task)
    skip = F.importances(ctx, ["shapley"])["shapley"]
    value = value_shapley(ctx, ref, samples, seed) * _unit(trained, task)
    credits = _credits(trained, data, ctx, skip, value)
    ood_mod = np.array([credits[m].ood_skip for m in ctx.players])
    ranks_skip = F._ranks(skip, ctx.has)
    ood = ((ranks_skip == 0) & ctx.has & ood_mod[None, :]).any(1)
    ranks = np.stack([F._ranks(value, ctx.has), ranks_skip, *F._random_ranks(ctx.has, random_orders, seed)])
    aopc = _value_aopc(ctx, ref, ranks)
    return ValueVsPresence(task, len(pick), REFERENCE, credits, float(ood.mean()),
                           {"value_shapley": float(aopc[0].mean()), "shapley": float(aopc[1].mean()),
                            "random": float(aopc[2:].mean())},
                           {"skip": skip, "value": value, "ood": ood, "ids": list(sub.ids)})


@dataclass(frozen=True)
class RecordValueVsPresence:
    """One record: skip and value Shapley per present modality (toward the prediction), OOD-skip modalities,
    whether its top skip-ranked modality is one, and a plain sentence."""
    record: str
    task: str
    skip: dict[str, float]
    value: dict[str, float]
    ood_skips: list[str]
    rests_on_ood_skip: bool
    sentence: str


def record_value_vs_presence(trained: Trained, data, record_index: int, task: str,
                             reference_data=None) -> RecordValueVsPresence:
    """Skip vs value credit for the record at position `record_index` of `data`; the reference comes from
    `reference_data` (default: `data`) — pass the full cohort when `data` is a slice."""
    data = F._prepare(trained, data, task)
    if not 0 <= record_index < len(data):
        raise ValueError(f"record position {record_index} is outside the data (0..{len(data) - 1})")
    full = F._prepare(trained, reference_data, task) if reference_data is not None else data
    ref = reference_inputs(trained, full)
    ctx = F._context(trained, data.subset([record_index]), task)
    skip = F.importances(ctx, ["shapley"])["shapley"][0]
    value = value_shapley(ctx, ref)[0] * _unit(trained, task)
    absent = F.absent_in_training(trained, full)
    present = [m for j, m in enumerate(ctx.players) if ctx.has[0, j]]
    pos = {m: j for j, m in enumerate(ctx.players)}
    ood = [m for m in present if absent[m] < F.OOD_ABSENT]
    if not present:
        return RecordValueVsPresence(data.ids[record_index], task, {}, {}, [], False,
                                     "This record has no modality: the prediction is the prior.")
    top = max(present, key=lambda m: skip[pos[m]])
    s, v = skip[pos[top]], value[pos[top]]
    sentence = (f"Skipping {top} (the modality the skip-Shapley ranks highest) moves the prediction by "
                f"{abs(s):.3f}; keeping it with its training-mean value moves it by {abs(v):.3f}")
    sentence += (": its presence, more than its values, carries that credit." if abs(v) < 0.5 * abs(s) else
                 ": its values carry most of that credit.")
    if top in ood:
        sentence += (f" Caution: {top} was almost never missing in training, so skipping it is out of "
                     "distribution; trust the value-only figure more.")
    return RecordValueVsPresence(data.ids[record_index], task, {m: float(skip[pos[m]]) for m in present},
                                 {m: float(value[pos[m]]) for m in present}, ood, top in ood, sentence)
