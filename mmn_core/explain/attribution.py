"""Feature attributions inside one modality's step, with Captum (IG, feature ablation, Shapley sampling)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import run
from ..checkpoint import Trained
from ..data import Dataset, TensorData
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
    base = torch.zeros_like(inp)
    with run.eval_mode(model), _one_blas_thread():
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


