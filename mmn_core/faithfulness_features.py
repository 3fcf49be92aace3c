"""How far to trust a feature attribution inside one modality (Captum), per cohort sample.

For records that have modality m, the explained function is the model's final output for the task with every
other input, the presence mask and (MultiModN) the order fixed: g(x_m), the logit toward the record's
prediction (as `faithfulness`). Attributions per spec column (one-hot and time steps summed back):
Captum IntegratedGradients and FeatureAblation, both against the reference input of `value_attribution`
(the training mean in the model's input space). Three checks:

- **deletion**: replace the record's columns by their reference one at a time in attribution order, and in
  random orders; AOPC = mean over k = 1..C of f(x) − f(top k replaced), f the oriented output of
  `faithfulness` (probability of the predicted class; regression standardized). Larger = more faithful.
- **infidelity** (Captum `captum.metrics.infidelity`, Yeh et al. 2019): Gaussian perturbations of the
  modality's inputs (σ = `noise`, standardized units) through `infidelity_perturb_func_decorator(True)`, so a
  completeness-style attribution (IG) is compared with f(x) − f(x̃) exactly; `normalize=True` (the optimal
  rescaling of the attribution), so a method is not penalized for its scale. A random attribution of the same
  shape is the baseline. Lower = more faithful. On a model linear in x_m, IG's infidelity is 0.
- **max-sensitivity** (Captum `captum.metrics.sensitivity_max`): the largest relative change of the
  attribution under uniform perturbations in an L∞ ball of radius `radius`. Lower = more stable.

Works for MultiModN and P-Fusion (both take (x, present, lengths)). One-hot inputs are perturbed like numbers
by infidelity / sensitivity: there the figures are off the data manifold; deletion stays on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import faithfulness as F
from . import run
from .checkpoint import Trained
from .explain.attribution import _groups
from .value_attribution import reference_inputs

METHODS = ("ig", "ablation")


@dataclass(frozen=True)
class _Setup:
    trained: Trained
    ctx: object               # faithfulness._Ctx of the sampled records
    modality: str
    inputs: torch.Tensor      # (N, F) or (N, T, F)
    base: torch.Tensor        # same shape: the reference
    mask: torch.Tensor        # (1, F) or (1, T, F) column group of every input
    extra: tuple              # additional forward args (other inputs, presence, lengths, sign, class)
    forward: object           # (xm, *extra) -> (b,) oriented logit
    logits: object            # (xm, *extra) -> (b, C) final logits
    columns: list


def _setup(trained: Trained, data, task: str, modality: str, pick: np.ndarray, ref) -> _Setup:
    model, sub = trained.model, data.subset(pick)
    ctx = F._context(trained, sub, task)
    tdef = F.E._task(trained, task)
    players, other = list(ctx.players), [n for n in sub.x if n != modality]
    seq = [m for m in players if m in sub.lengths]
    sgn = torch.as_tensor(np.where(ctx.cls == 1, 1.0, -1.0) if tdef.type == "binary" else ctx.sign).float()

    def logits(xm, *args):
        k, e = len(other), len(players)
        x = dict(zip(other, args[:k]))
        x[modality] = xm
        return model(x, dict(zip(players, args[k:k + e])), dict(zip(seq, args[k + e:k + e + len(seq)]))
                     ).logits[task][-1]

    def forward(xm, *args):
        lg, s, c = logits(xm, *args), args[-2], args[-1]
        return (lg.gather(1, c[:, None])[:, 0] if tdef.type == "multiclass" else lg[:, 0]) * s

    inp = sub.x[modality].float()
    mspec = trained.spec.modality(modality)
    g = torch.as_tensor(_groups(trained.prep.source_columns(mspec), mspec.columns))
    mask = (g[None, None, :].expand(1, inp.shape[1], -1) if inp.dim() == 3 else g[None, :])
    extra = (tuple(sub.x[o].float() for o in other) + tuple(sub.present[m] for m in players)
             + tuple(sub.lengths[m] for m in seq) + (sgn, torch.as_tensor(ctx.cls)))
    base = ref[modality].expand_as(inp).contiguous()
    return _Setup(trained, ctx, modality, inp, base, mask, extra, forward, logits, list(mspec.columns))


def _attribute(s: _Setup, method: str, ig_steps: int):
    from captum.attr import FeatureAblation, IntegratedGradients
    if method == "ig":
        return IntegratedGradients(s.forward).attribute(s.inputs, baselines=s.base, additional_forward_args=s.extra,
                                                        n_steps=ig_steps, internal_batch_size=F.ROWS)
    if method == "ablation":
        attr = FeatureAblation(s.forward).attribute(s.inputs, baselines=s.base, additional_forward_args=s.extra,
                                                    feature_mask=s.mask)
        # Captum gives every member of a group the group's value: spread it so a group sums to it once
        sizes = torch.bincount(s.mask.reshape(-1)).to(attr.dtype)
        return attr / sizes[s.mask].expand_as(attr)
    raise ValueError(f"unknown feature attribution method '{method}' (choose: {', '.join(METHODS)})")


def _by_column(s: _Setup, attr: torch.Tensor) -> np.ndarray:
    """(N, F) / (N, T, F) attributions → (N, C) per spec column (one-hot and time steps summed)."""
    a = attr.detach().double().reshape(len(attr), -1)
    g = s.mask.expand_as(s.inputs[:1]).reshape(-1).numpy()
    out = np.zeros((len(a), len(s.columns)))
    for j in range(len(s.columns)):
        out[:, j] = a[:, g == j].sum(1).numpy()
    return out


def _deletion(s: _Setup, ranks: np.ndarray) -> np.ndarray:
    """ranks (R, N, C) (0 = most important) → deletion curves (R, N, C+1) of the oriented output."""
    r_count, n, c = ranks.shape
    g = torch.as_tensor(s.mask.expand_as(s.inputs[:1]).reshape(-1).numpy())
    out = np.empty((r_count, n, c + 1))
    ctx = s.ctx
    with run.eval_mode(s.trained.model), torch.no_grad():
        for r in range(r_count):
            for k in range(c + 1):
                drop = torch.as_tensor(ranks[r] < k)                                   # (N, C) columns removed
                per_in = drop[:, g].reshape(s.inputs.shape)
                xm = torch.where(per_in, s.base, s.inputs)
                lg = s.logits(xm, *s.extra)
                out[r, :, k] = F._oriented(s.trained, ctx.task, lg, ctx.cls, ctx.sign)
    return out


def _perturb(noise: float, gen: torch.Generator):
    from captum.metrics import infidelity_perturb_func_decorator

    @infidelity_perturb_func_decorator(True)
    def perturb(inputs, baselines):
        return inputs + noise * torch.randn(inputs.shape, generator=gen)
    return perturb


@dataclass(frozen=True)
class FeatureFaithfulness:
    """One task × modality on `records` records that have it. deletion_aopc / infidelity per method and
    "random"; sensitivity_max per method. per_record: "aopc", "infidelity" {method: (N,)}, "sensitivity_max"
    {method: (N,)}, "attributions" {method: (N, C)}, "ids"."""
    task: str
    modality: str
    records: int
    columns: list[str]
    reference: str
    deletion_aopc: dict[str, float]
    infidelity: dict[str, float]
    sensitivity_max: dict[str, float]
    settings: dict
    per_record: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("task", "modality", "records", "columns", "reference",
                                              "deletion_aopc", "infidelity", "sensitivity_max", "settings")}


def feature_faithfulness(trained: Trained, data, task: str, modality: str, records: int = 200, seed: int = 0,
                         methods=METHODS, random_orders: int = 16, ig_steps: int = 32, n_perturb: int = 10,
                         noise: float = 0.2, radius: float = 0.02, rows=None) -> FeatureFaithfulness:
    """Feature-level deletion AOPC, Captum infidelity and max-sensitivity for `modality`'s attributions, on a
    seeded sample of up to `records` records (among positions `rows`) that have the modality."""
    from captum.metrics import infidelity, sensitivity_max
    from captum.attr import FeatureAblation, IntegratedGradients
    from .value_attribution import REFERENCE
    data = F._prepare(trained, data, task)
    if modality not in trained.model.modality_names:
        raise ValueError(f"unknown modality '{modality}' (model has: {', '.join(trained.model.modality_names)})")
    if records < 1:
        raise ValueError(f"records must be at least 1, got {records}")
    has = data.present[modality].numpy()
    cand = np.flatnonzero(has) if rows is None else np.asarray(rows)[has[np.asarray(rows)]]
    if not len(cand):
        raise ValueError(f"no record has modality '{modality}'")
    pick = np.sort(np.random.default_rng(seed).choice(cand, size=min(records, len(cand)), replace=False))
    s = _setup(trained, data, task, modality, pick, reference_inputs(trained, data))
    n, c = len(pick), len(s.columns)
    gen = torch.Generator().manual_seed(seed)
    attrs, cols = {}, {}
    with run.eval_mode(trained.model), F.E._one_blas_thread():
        for m in methods:
            attrs[m] = _attribute(s, m, ig_steps).detach()
            cols[m] = _by_column(s, attrs[m])
        attrs["random"] = torch.randn(s.inputs.shape, generator=gen) * float(attrs[methods[0]].std() or 1.0)
        rng = np.random.default_rng(seed)
        ranks = np.stack([F._ranks(cols[m], np.ones((n, c), bool)) for m in methods]
                         + [F._ranks(rng.random((n, c)), np.ones((n, c), bool)) for _ in range(random_orders)])
        aopc = F._aopc(_deletion(s, ranks), np.full(n, c))                                 # (R, N)
        inf, sens = {}, {}
        for m in [*methods, "random"]:
            inf[m] = infidelity(s.forward, _perturb(noise, gen), s.inputs, attrs[m], baselines=s.base,
                                additional_forward_args=s.extra, n_perturb_samples=n_perturb,
                                normalize=True).detach().double().numpy()
        for m in methods:
            expl = IntegratedGradients(s.forward).attribute if m == "ig" else FeatureAblation(s.forward).attribute
            kw = {"n_steps": ig_steps} if m == "ig" else {"feature_mask": s.mask}
            with torch.random.fork_rng():          # Captum draws the ball perturbations from torch's global RNG
                torch.manual_seed(seed)
                sens[m] = sensitivity_max(expl, s.inputs, perturb_radius=radius, n_perturb_samples=n_perturb,
                                          baselines=s.base, additional_forward_args=s.extra,
                                          **kw).detach().double().numpy()
    k = len(methods)
    per_aopc = {**{m: aopc[j] for j, m in enumerate(methods)}, "random": aopc[k:].mean(0)}
    mean = lambda v: float(np.nanmean(v)) if len(v) else float("nan")
    return FeatureFaithfulness(task, modality, n, s.columns, REFERENCE, {m: mean(v) for m, v in per_aopc.items()},
                               {m: mean(v) for m, v in inf.items()}, {m: mean(v) for m, v in sens.items()},
                               {"random_orders": random_orders, "ig_steps": ig_steps, "n_perturb": n_perturb,
                                "noise": noise, "radius": radius, "infidelity_normalized": True},
                               {"aopc": per_aopc, "infidelity": inf, "sensitivity_max": sens, "attributions": cols,
                                "ids": [data.ids[i] for i in pick]})
