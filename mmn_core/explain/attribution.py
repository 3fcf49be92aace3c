"""Feature attributions inside one modality's step, with Captum (IG, feature ablation, Shapley sampling)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .. import run
from ..checkpoint import Trained
from ..data import MISSING_CAT, Dataset, TensorData
from ._base import METHODS, _is_sequential, _one_blas_thread, _order, _present, _task
from .coalitions import _players


# --- 3. feature attributions inside a modality (Captum) -----------------------------------------------------
@dataclass
class Attribution:
    """Attributions of one modality's inputs for one record, in logit units of `task` at `step`
    (regression: standardized output; multiply by `value_scale` for target units).

    features: model input names (one-hot as 'col=value'); source[j]: the spec column of feature j;
    values: (F,) or, for a sequence, (T, F) over the record's T observed time steps; inputs: the model inputs
    (same shape, standardized); by_column: spec column -> summed attribution (one-hot and time summed back);
    raw: column -> value from the dataset (sequence: list over time); delta: IG convergence delta;
    target_value / baseline_value: the prediction (binary P(positive), multiclass P(target_class); None for
    regression) of the record and of the reference input; reference: categorical column -> the category the
    reference input holds (empty: 'no category', the all-zero one-hot)."""
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
    target_value: float | None = None
    baseline_value: float | None = None
    reference: dict[str, str] = field(default_factory=dict)


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


# --- the reference input: the training mean, and for a category the most common one --------------------------------
def reference_categories(trained: Trained, data: TensorData, rows=None) -> dict[str, dict[str, str]]:
    """modality -> categorical column -> its most common category among `rows` of `data` (default: every
    record not in the checkpoint's test split, i.e. the training and validation records) that have the
    modality (sequences: over their observed time steps). The '(missing)' category never wins unless it is
    all there is."""
    if rows is None:
        test = set(map(str, trained.info.get("test_ids") or []))
        rows = [i for i, r in enumerate(data.ids) if str(r) not in test] or list(range(len(data)))
    idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    out: dict[str, dict[str, str]] = {}
    for m in trained.model.modality_names:
        mspec = trained.spec.modality(m)
        cats = trained.prep.categories.get(m, {})
        if not cats:
            continue
        x = data.x[m][idx].double()
        keep = data.present[m][idx].bool()
        if x.dim() == 3:                  # (N, T, F): the observed time steps of present records
            t = torch.arange(x.shape[1])[None, :] < data.lengths[m][idx][:, None]
            x = x[t & keep[:, None]]
        else:
            x = x[keep]
        counts = x.sum(0).numpy()                                         # (F,) one-hot counts
        names = trained.prep.feature_names(mspec)
        out[m] = {}
        for c, values in cats.items():
            n = np.array([counts[names.index(f"{c}={v}")] for v in values])
            if len(values) and n.max() > 0:
                out[m][c] = values[int(n.argmax())]
            else:
                out[m][c] = MISSING_CAT
    return out


def reference_input(trained: Trained, modality: str, like: torch.Tensor,
                    categories: dict[str, str] | None) -> torch.Tensor:
    """The reference of `modality`'s input, shaped like `like` ((1, F) or (1, T, F)): zeros (the training mean
    after standardization), with each categorical column's one-hot set to `categories[column]`."""
    base = torch.zeros_like(like)
    names = trained.prep.feature_names(trained.spec.modality(modality))
    for c, v in (categories or {}).items():
        if f"{c}={v}" in names:
            base[..., names.index(f"{c}={v}")] = 1.0
    return base


def attribute(trained: Trained, data: TensorData, record: int, modality: str, task: str, step: int | None = None,
              method: str = "ig", present: dict | None = None, order: list[str] | None = None,
              target_class: int | None = None, n_steps: int = 64, frame: Dataset | pd.DataFrame | None = None,
              n_samples: int = 25, reference: dict[str, dict[str, str]] | None = None) -> Attribution:
    """Captum attributions of `modality`'s input of record `record` (a position in `data`) to `task`'s logit
    at `step` (default: last; binary/regression output 0, multiclass `target_class`, default the class
    predicted at that step). The forward function is MultiModN.forward with the record's other inputs, mask
    and order fixed: the earlier modalities set the incoming state, so the attribution is conditioned on it.
    Baseline: zeros = the training mean after standardization; a categorical column holds
    `reference[modality][column]` (see `reference_categories`: the training mode), or no category at all
    when `reference` is None."""
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
    x1, p1, l1 = run.inputs(data, one, pres)
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
    ref_cats = dict((reference or {}).get(modality, {}))
    base = reference_input(trained, modality, inp, ref_cats)
    with run.eval_mode(model), _one_blas_thread():
        with torch.no_grad():
            both = logits(torch.cat([inp, base]))                      # (2, C): the input and the baseline
        cls = 0
        if tdef.type == "multiclass":
            cls = int(both[0].argmax()) if target_class is None else int(target_class)
            if not 0 <= cls < tdef.n_outputs:
                raise ValueError(f"target_class {cls} is outside 0..{tdef.n_outputs - 1}")
        target_logit, baseline_logit = float(both[0, cls]), float(both[1, cls])
        probs = None
        if tdef.type == "binary":
            probs = torch.sigmoid(both[:, 0].double())
        elif tdef.type == "multiclass":
            probs = torch.softmax(both.double(), -1)[:, cls]
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
                       value_scale=scale, target_value=None if probs is None else float(probs[0]),
                       baseline_value=None if probs is None else float(probs[1]), reference=ref_cats)


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


