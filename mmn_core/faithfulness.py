"""How far to trust a modality-level explanation: deletion / insertion curves, a model-parameter
randomization check, agreement between methods and out-of-distribution skips.

Every number comes from the model's `forward` with modified presence masks: for MultiModN absent = skipped,
exactly as the model treats missing data; for P-Fusion absent = its own zero-fill (plus presence bits if it
was trained with them), again exactly what it does with missing data. P-Fusion has no steps, so `step_delta`
does not apply to it: the report lists it under `not_applicable` with the reason.
The output scalar follows the prediction of the full record: binary the probability of the predicted class,
multiclass the probability of the predicted class, regression the
standardized value oriented so that the full prediction's side of the prior is positive. Importances are
oriented the same way (toward the predicted output), so a larger deletion AOPC is always more faithful.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import rankdata

from . import explain as E
from . import run
from .checkpoint import Trained
from .data import Dataset, TensorData
from .model import probabilities

METHODS = ("shapley", "leave_one_out", "step_delta", "ig", "shapley_sampling")
ROWS = 4096                 # rows per forward pass: smaller than explain.BATCH_ROWS, about 2x less CPU here
OOD_ABSENT = 0.01           # a modality absent in < 1% of training records: skipping it is out of distribution


# --- the output scalar on (record, coalition) pairs --------------------------------------------------------
@dataclass(frozen=True)
class _Ctx:
    """Sampled records (N) of one task: cls (N,) predicted class (binary / multiclass), sign (N,) orientation,
    has (N, E) bool present players, full / prior (N,) oriented output."""
    trained: Trained
    data: TensorData
    task: str
    players: tuple
    cls: np.ndarray
    sign: np.ndarray
    has: np.ndarray
    full: np.ndarray
    prior: np.ndarray


def _oriented(trained, task, logits: torch.Tensor, cls: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Final logits (M, C) → (M,) output toward each row's prediction."""
    t = E._task(trained, task)
    v = probabilities(t.type, logits.detach().double()).numpy()
    if t.type == "multiclass":
        return np.take_along_axis(v, cls[:, None], axis=1)[:, 0]
    if t.type == "binary":
        return np.where(cls == 1, v, 1.0 - v)
    return sign * v


def _forward(trained, data, rec: np.ndarray, codes: np.ndarray, task, cls, sign) -> np.ndarray:
    """Oriented output of records `rec` (M,) with only the players in bitmask `codes` (M,) present (∩ own
    presence). Distinct (record, code) pairs run once, in chunks of ROWS rows."""
    model, players = trained.model, E._players(trained, list(trained.model.modality_names))
    e = len(players)
    keys, inv = np.unique((np.asarray(rec, np.int64) << e) | np.asarray(codes, np.int64), return_inverse=True)
    out = np.empty(len(keys))
    with run.eval_mode(model), torch.no_grad():
        for idx in run.batches(len(keys), ROWS):
            r = torch.as_tensor(keys[idx.numpy()] >> e)
            c = torch.as_tensor(keys[idx.numpy()] & ((1 << e) - 1))
            x, p, lengths = run.inputs(data, r)
            for j, m in enumerate(players):
                p[m] = p[m] & ((c >> j) & 1).bool()
            lg = model(x, p, lengths).logits[task][-1]
            rr = r.numpy()
            out[idx.numpy()] = _oriented(trained, task, lg, cls[rr], sign[rr])
    return out[inv.ravel()]


def _context(trained: Trained, data: TensorData, task: str) -> _Ctx:
    tdef = E._task(trained, task)
    players = tuple(trained.model.modality_names)
    n, e = len(data), len(players)
    has = np.stack([data.present[m].numpy() for m in players], 1)
    codes = (has * (1 << np.arange(e))).sum(1).astype(np.int64)
    out = run.forward(trained.model, data, 4096, keep_states=False).logits[task]
    v = probabilities(tdef.type, out.double()).numpy()
    if tdef.type == "multiclass":
        cls = v[-1].argmax(-1)
    elif tdef.type == "binary":
        cls = (v[-1] >= 0.5).astype(np.int64)
    else:
        cls = np.zeros(n, dtype=np.int64)
    sign = np.where(v[-1] >= v[0], 1.0, -1.0) if tdef.type == "regression" else np.ones(n)
    rec = np.arange(n)
    full = _forward(trained, data, rec, codes, task, cls, sign)
    prior = _forward(trained, data, rec, np.zeros(n, np.int64), task, cls, sign)
    return _Ctx(trained, data, task, players, cls, sign, has, full, prior)


# --- importances (N, E), oriented toward the prediction; absent players 0 -------------------------------------
def _toward(ctx: _Ctx, values: np.ndarray) -> np.ndarray:
    """(N, E) or multiclass (N, E, C) in output units → (N, E) toward each record's prediction."""
    if values.ndim == 3:
        return np.take_along_axis(values, ctx.cls[:, None, None], axis=2)[..., 0]
    if E._task(ctx.trained, ctx.task).type == "binary":
        return values * np.where(ctx.cls == 1, 1.0, -1.0)[:, None]
    return values * ctx.sign[:, None]


def _ig(ctx: _Ctx, n_steps: int) -> np.ndarray:
    """Captum IG on all modality inputs at once (zero baseline = training mean, presence fixed), summed per
    modality: Σ_m φ_m = g(x) − g(0) for the oriented final logit g. One batched Captum call for the cohort."""
    from captum.attr import IntegratedGradients
    trained, data, players = ctx.trained, ctx.data, ctx.players
    model = trained.model
    names = list(data.x)
    pres = [data.present[m] for m in players]
    seq = [m for m in players if m in data.lengths]
    tdef = E._task(trained, ctx.task)
    sgn = torch.as_tensor(np.where(ctx.cls == 1, 1.0, -1.0) if tdef.type == "binary" else ctx.sign).float()
    cls = torch.as_tensor(ctx.cls)

    def forward(*args):
        k = len(names)
        x = dict(zip(names, args[:k]))
        p = dict(zip(players, args[k:k + len(players)]))
        s, c = args[-2], args[-1]
        ln = dict(zip(seq, args[k + len(players):k + len(players) + len(seq)]))
        lg = model(x, p, ln).logits[ctx.task][-1]
        return lg.gather(1, c[:, None])[:, 0] * s if tdef.type == "multiclass" else lg[:, 0] * s

    inputs = tuple(data.x[m].float() for m in names)
    extra = tuple(pres) + tuple(data.lengths[m] for m in seq) + (sgn, cls)
    with run.eval_mode(model), E._one_blas_thread():
        attr = IntegratedGradients(forward).attribute(inputs, baselines=tuple(torch.zeros_like(t) for t in inputs),
                                                      additional_forward_args=extra, n_steps=n_steps,
                                                      internal_batch_size=ROWS)
    per = {m: a.detach().double().reshape(len(data), -1).sum(1).numpy() for m, a in zip(names, attr)}
    return np.stack([per[m] for m in players], 1) * ctx.has


def _shapley_sampling(ctx: _Ctx, n_samples: int, seed: int) -> np.ndarray:
    """Captum ShapleyValueSampling on the presence game: the input is the (N, E) presence as float, the
    baseline 0 = skipped; the forward runs the model with presence ∩ (input > 0.5)."""
    from captum.attr import ShapleyValueSampling
    trained, data, players = ctx.trained, ctx.data, ctx.players
    rows = torch.arange(len(data))

    def forward(mask, r):
        code = (mask > 0.5).long() @ (1 << torch.arange(len(players)))
        return torch.as_tensor(_forward(trained, data, r.numpy(), code.numpy(), ctx.task, ctx.cls, ctx.sign))

    inp = torch.as_tensor(ctx.has, dtype=torch.float64)
    with torch.random.fork_rng():              # seeded permutations; the caller's RNG state is left alone
        torch.manual_seed(seed)
        attr = ShapleyValueSampling(forward).attribute(inp, baselines=0.0, additional_forward_args=(rows,),
                                                       n_samples=n_samples, perturbations_per_eval=len(players))
    return attr.double().numpy() * ctx.has


def importances(ctx: _Ctx, methods=METHODS, ig_steps: int = 32, samples: int = 8, seed: int = 0) -> dict:
    """method -> (N, E) modality importance toward each record's prediction (0 where absent)."""
    tr, data = ctx.trained, ctx.data
    out = {}
    for m in methods:
        if m == "shapley":
            out[m] = _toward(ctx, E.shapley(tr, data, batch_rows=ROWS).values[ctx.task])
        elif m == "leave_one_out":
            out[m] = _toward(ctx, E.leave_one_out(tr, data, batch_rows=ROWS)[ctx.task])
        elif m == "step_delta":
            out[m] = _toward(ctx, np.moveaxis(E.trace(tr, data).delta[ctx.task], 0, 1)) * ctx.has
        elif m == "ig":
            out[m] = _ig(ctx, ig_steps)
        elif m == "shapley_sampling":
            out[m] = _shapley_sampling(ctx, samples, seed)
        else:
            raise ValueError(f"unknown method '{m}' (choose: {', '.join(METHODS)})")
    return out


# --- deletion / insertion curves -----------------------------------------------------------------------------
def _ranks(imp: np.ndarray, has: np.ndarray) -> np.ndarray:
    """(N, E) → rank position of each present player (0 = most important; ties keep encoding order), E if absent."""
    order = np.argsort(np.where(has, -imp, np.inf), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(imp.shape[1])[None, :].repeat(len(imp), 0), axis=1)
    return np.where(has, ranks, imp.shape[1])


def _curves(ctx: _Ctx, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ranks (R, N, E) → deletion, insertion (R, N, E+1): depth k removes / adds the top-k players; past a
    record's p present players the curve stays at its end (prior / full). Every (record, mask) that any
    depth, order or curve needs runs once, all in one batched pass."""
    r_count, n, e = ranks.shape
    bit = 1 << np.arange(e)
    has_code = (ctx.has * bit).sum(1)
    top = ((ranks[..., None] < np.arange(e + 1)) * bit[:, None]).sum(2)       # (R, N, E+1) top-k bitmasks
    rec = np.broadcast_to(np.arange(n)[None, :, None], top.shape).reshape(-1)
    v = _forward(ctx.trained, ctx.data, np.concatenate([rec, rec]),
                 np.concatenate([(has_code[None, :, None] & ~top).reshape(-1), top.reshape(-1)]),
                 ctx.task, ctx.cls, ctx.sign)
    return v[:len(rec)].reshape(top.shape), v[len(rec):].reshape(top.shape)


def _random_ranks(has: np.ndarray, orders: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([_ranks(rng.random(has.shape), has) for _ in range(orders)])


def _aopc(dele: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(…, N, E+1), p (N,) → (…, N): mean over k = 1..p of f(full) − f(top k removed)."""
    k = np.arange(dele.shape[-1])
    use = (k[None, :] >= 1) & (k[None, :] <= p[:, None])
    return ((dele[..., :1] - dele) * use).sum(-1) / np.maximum(p, 1)


def _auc(ins: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(…, N, E+1) → (…, N): mean of the insertion curve over k = 0..p."""
    use = np.arange(ins.shape[-1])[None, :] <= p[:, None]
    return (ins * use).sum(-1) / (p + 1)


# --- agreement and randomization --------------------------------------------------------------------------
def _row_spearman(a: np.ndarray, b: np.ndarray, has: np.ndarray, per_record: bool = False):
    """Mean over records (≥ 2 present, neither constant) of the Spearman correlation over present players
    (per_record: the (N,) correlations instead, NaN where undefined)."""
    rhos, rows_of = [], []
    pats, inv = np.unique(has, axis=0, return_inverse=True)
    for g, pat in enumerate(pats):
        if pat.sum() < 2:
            continue
        rows = inv.ravel() == g
        ra, rb = rankdata(a[rows][:, pat], axis=1), rankdata(b[rows][:, pat], axis=1)
        ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
        den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
        ok = den > 0
        rhos.append((ra * rb).sum(1)[ok] / den[ok])
        rows_of.append(np.flatnonzero(rows)[ok])
    if per_record:
        out = np.full(len(has), np.nan)
        for r, i in zip(rhos, rows_of):
            out[i] = r
        return out
    r = np.concatenate(rhos) if rhos else np.zeros(0)
    return float(r.mean()) if len(r) else float("nan")


def randomization_cascade(trained: Trained, data: TensorData, task: str, methods=METHODS, seed: int = 0,
                          base: dict | None = None, **kw) -> dict:
    """Cascading model-parameter randomization (Adebayo et al. 2018) on a deep copy: decoders (P-Fusion: its
    heads) first, then the encoders (P-Fusion: embedders) from the last to the first. `base`: the trained
    model's importances of `data`, if known. Returns {"stages": [...], method: [mean Spearman per stage]}
    and "per_record": {method: (N,) Spearman on the fully randomized model}."""
    base = base or importances(_context(trained, data, task), methods, seed=seed, **kw)
    rnd = copy.deepcopy(trained)
    seq = E._is_sequential(rnd.model)
    heads, encs = (rnd.model.decoders, rnd.model.encoders) if seq else (rnd.model.heads, rnd.model.embedders)
    stages = ["decoders" if seq else "heads",
              *[f"{'encoder' if seq else 'embedder'}:{m}" for m in reversed(rnd.model.modality_names)]]
    out = {"stages": stages, **{m: [] for m in methods}}
    for i, st in enumerate(stages):
        mod = heads if i == 0 else encs[st.split(":", 1)[1]]
        with torch.random.fork_rng():          # stage i re-initializes from seed + i, whatever ran before
            torch.manual_seed(seed + i)
            for sub in mod.modules():
                if hasattr(sub, "reset_parameters") and sub is not mod:
                    sub.reset_parameters()
        ctx = _context(rnd, data, task)
        got = importances(ctx, methods, seed=seed, **kw)
        for m in methods:
            out[m].append(_row_spearman(base[m], got[m], ctx.has))
    out["per_record"] = {m: _row_spearman(base[m], got[m], ctx.has, per_record=True) for m in methods}
    return out


# --- training-time missingness -----------------------------------------------------------------------------
def absent_in_training(trained: Trained, data: TensorData) -> dict[str, float]:
    """Fraction of records without each modality among the records of `data` outside the checkpoint's test
    split (its training + validation records when `data` is the data it was trained on)."""
    test = set(trained.info.get("test_ids") or [])
    keep = np.array([i not in test for i in data.ids]) if test else np.ones(len(data), bool)
    if not keep.any():
        keep[:] = True
    return {m: float(1.0 - data.present[m].numpy()[keep].mean()) for m in trained.model.modality_names}


# --- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodScore:
    deletion_aopc: float            # mean over records of mean_k (f(full) − f(top k removed)); larger = better
    insertion_auc: float            # mean over records of the mean insertion curve (prior … full)
    randomization_spearman: float | None   # trained vs fully randomized model (None for the random baseline)
    ood_top_skip: float             # share of records whose top-ranked modality was (almost) never absent


@dataclass(frozen=True)
class FaithfulnessReport:
    """per_record (not in to_json): "aopc" / "auc" {method: (N,)} (random: mean over orders), "ood_top_skip"
    {method: (N,) bool}, "randomization_spearman" {method: (n,) on the cascade's records}, "ids" (N,)."""
    task: str
    records: int
    methods: dict[str, MethodScore]
    agreement: dict[str, float]
    absent_in_training: dict[str, float]
    randomization: dict = field(default_factory=dict)
    model_kind: str = "multimodn"
    not_applicable: dict[str, str] = field(default_factory=dict)    # method -> why it was not run
    per_record: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {"task": self.task, "records": self.records, "model_kind": self.model_kind,
                "not_applicable": dict(self.not_applicable),
                "methods": {m: {"deletion_aopc": s.deletion_aopc, "insertion_auc": s.insertion_auc,
                                "randomization_spearman": s.randomization_spearman, "ood_top_skip": s.ood_top_skip}
                            for m, s in self.methods.items()},
                "agreement": dict(self.agreement), "absent_in_training": dict(self.absent_in_training),
                "ood_threshold": OOD_ABSENT,
                "randomization_cascade": {k: v for k, v in self.randomization.items() if k != "per_record"}}


STEP_DELTA_NA = "P-Fusion encodes every modality at once: it has no per-modality steps, so no step deltas"


def _prepare(trained: Trained, data, task: str) -> TensorData:
    E._task(trained, task)
    return trained.prep.transform(data) if isinstance(data, Dataset) else data


def _applicable(trained: Trained, methods) -> tuple[list[str], dict[str, str]]:
    """(methods that apply to this model, {method: why not} for the others)."""
    if E._is_sequential(trained.model):
        return list(methods), {}
    return [m for m in methods if m != "step_delta"], ({"step_delta": STEP_DELTA_NA} if "step_delta" in methods
                                                        else {})


def _ood_rows(ranks: np.ndarray, has: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """(N,) bool: the record's top-ranked present modality is (almost) never absent in training."""
    return ((ranks == 0) & has & (absent < OOD_ABSENT)[None, :]).any(1)


def _ood(ranks: np.ndarray, has: np.ndarray, absent: np.ndarray) -> float:
    """Share of records with ≥ 1 present modality whose top-ranked one is never absent in training."""
    rows = has.any(1)
    return float(_ood_rows(ranks, has, absent)[rows].mean()) if rows.any() else float("nan")


def cohort_faithfulness(trained: Trained, data, task: str, records: int = 500, seed: int = 0,
                        methods=METHODS, random_orders: int = 16, randomization_records: int = 24,
                        ig_steps: int = 32, samples: int = 8) -> FaithfulnessReport:
    """Faithfulness of every method on a seeded sample of `records` records of `data` (Dataset or TensorData)
    that have at least one modality; the randomization cascade uses the first `randomization_records` of them.
    Methods that do not apply to the model (P-Fusion: step_delta) are listed in `not_applicable`."""
    data = _prepare(trained, data, task)
    methods, skipped = _applicable(trained, methods)
    if records < 1:
        raise ValueError(f"records must be at least 1, got {records}")
    absent = absent_in_training(trained, data)
    has_any = np.flatnonzero(np.stack([data.present[m].numpy() for m in trained.model.modality_names]).any(0))
    if not len(has_any):
        raise ValueError("no record has any modality")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(has_any, size=min(records, len(has_any)), replace=False))
    sub = data.subset(pick)
    ctx = _context(trained, sub, task)
    p = ctx.has.sum(1)
    imp = importances(ctx, methods, ig_steps, samples, seed)
    names = list(imp)
    ranks = np.stack([_ranks(imp[m], ctx.has) for m in names] + list(_random_ranks(ctx.has, random_orders, seed)))
    dele, ins = _curves(ctx, ranks)
    aopc, auc = _aopc(dele, p), _auc(ins, p)                              # (R, N)
    head = np.arange(min(randomization_records, len(sub)))
    casc = randomization_cascade(trained, sub.subset(head), task, names, seed, {m: v[head] for m, v in imp.items()},
                                 ig_steps=ig_steps, samples=samples)
    a = np.array([absent[m] for m in ctx.players])
    scores = {m: MethodScore(float(aopc[j].mean()), float(auc[j].mean()), casc[m][-1], _ood(ranks[j], ctx.has, a))
              for j, m in enumerate(names)}
    k = len(names)
    scores["random"] = MethodScore(float(aopc[k:].mean()), float(auc[k:].mean()), None,
                                   float(np.mean([_ood(r, ctx.has, a) for r in ranks[k:]])))
    agree = {f"{m1}|{m2}": _row_spearman(imp[m1], imp[m2], ctx.has)
             for i, m1 in enumerate(names) for m2 in names[i + 1:]}
    per = {"ids": list(sub.ids),
           "aopc": {**{m: aopc[j] for j, m in enumerate(names)}, "random": aopc[k:].mean(0)},
           "auc": {**{m: auc[j] for j, m in enumerate(names)}, "random": auc[k:].mean(0)},
           "ood_top_skip": {m: _ood_rows(ranks[j], ctx.has, a) for j, m in enumerate(names)},
           "randomization_spearman": casc["per_record"]}
    return FaithfulnessReport(task, len(pick), scores, agree, absent, casc, trained.model.kind, skipped, per)


@dataclass(frozen=True)
class RecordFaithfulness:
    """One record: deletion curve (p+1,) in the method's order, the mean random-order curve (p+1,),
    the modalities in removal order, which removals skip a modality (almost) never absent in training."""
    record: str
    task: str
    method: str
    removed: list[str]
    deletion: np.ndarray
    random: np.ndarray
    ood_skips: list[str]
    sentence: str


def record_faithfulness(trained: Trained, data, record_index: int, task: str, method: str = "shapley",
                        random_orders: int = 64, seed: int = 0, ig_steps: int = 32,
                        samples: int = 8) -> RecordFaithfulness:
    """The deletion curve of one record (a position in `data`) for one method, against random orders."""
    data = _prepare(trained, data, task)
    if method in _applicable(trained, [method])[1]:
        raise ValueError(STEP_DELTA_NA)
    if not 0 <= record_index < len(data):
        raise ValueError(f"record position {record_index} is outside the data (0..{len(data) - 1})")
    ctx = _context(trained, data.subset([record_index]), task)
    p = int(ctx.has.sum())
    imp = importances(ctx, [method], ig_steps, samples, seed)[method]
    ranks = np.concatenate([_ranks(imp, ctx.has)[None], _random_ranks(ctx.has, random_orders, seed)])
    dele = _curves(ctx, ranks)[0][:, 0, :p + 1]
    removed = [ctx.players[j] for j in np.argsort(ranks[0, 0])[:p]]
    absent = absent_in_training(trained, data)
    ood = [m for m in removed if absent[m] < OOD_ABSENT]
    rnd = dele[1:].mean(0)
    if p < 2:
        sentence = ("This record has no modality to remove: the prediction is the prior." if p == 0 else
                    "This record has one modality: removing it returns the prior whatever the order.")
    else:
        k = min(2, p - 1)
        what, at_random = ("the modality", "one at random") if k == 1 else ("the two modalities", "two at random")
        ours, theirs = abs(dele[0, 0] - dele[0, k]), float(np.mean(np.abs(dele[1:, 0] - dele[1:, k])))
        if theirs < 1e-12:
            sentence = f"Removing {what} this method ranks highest moves the prediction by {ours:.3f}; removing " \
                       f"{at_random} does not move it."
        else:
            sentence = (f"Removing {what} this method ranks highest moves the prediction {ours / theirs:.1f}x "
                        f"as much as removing {at_random}.")
        flagged = [m for m in removed[:k] if m in ood]
        if flagged:
            one = len(flagged) == 1
            sentence += (f" Caution: {' and '.join(flagged)} {'was' if one else 'were'} almost never missing in "
                         f"training, so skipping {'it' if one else 'them'} is out of distribution.")
    return RecordFaithfulness(data.ids[record_index], task, method, removed, dele[0], rnd, ood, sentence)
