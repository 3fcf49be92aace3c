"""The batch driver: every caller that runs `MultiModN.forward` over many records goes through here.

`batches` yields row indices, `rows` slices a dict of per-record tensors, `inputs` gives the (x, present,
lengths) of a batch, `mask` applies a presence override (it can hide a modality, never invent one) and
`forward` runs the model over a whole TensorData in batches and concatenates the outputs. Training
(`train.fit` / `train_epoch`, `train.predict`), interpretation (`explain`), `faithfulness` and `acquire` all
use these, so batching, eval-mode handling and paper semantics are defined once.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import numpy as np
import torch

from .data import TensorData
from .model import ModelOutput

Semantics = Literal["per-record", "paper"]
PAPER_BATCH = 16   # the official MIMIC/MNAR pipelines: batch 16, unshuffled loaders, batch-wide skipping


@contextmanager
def eval_mode(model):
    """Dropout off inside; the caller's train/eval mode is restored afterwards. A model already in eval mode
    is left alone (switching every submodule's mode twice per call costs milliseconds on small calls)."""
    was = model.training
    if was:
        model.eval()
    try:
        yield
    finally:
        if was:
            model.train(True)


def batches(n: int, size: int, shuffle: bool = False, gen: torch.Generator | None = None
            ) -> Iterator[torch.Tensor]:
    """Row indices (long) of consecutive batches of `size` over n rows; shuffled with `gen` if asked."""
    size = max(1, int(size))
    idx = torch.randperm(n, generator=gen) if shuffle else None
    for s in range(0, n, size):
        yield idx[s:s + size] if idx is not None else torch.arange(s, min(n, s + size))


def rows(d: dict[str, torch.Tensor], idx) -> dict[str, torch.Tensor]:
    """The rows `idx` (index tensor or slice) of every tensor in a dict (x, present, lengths or y)."""
    return {k: v[idx] for k, v in d.items()}


def inputs(data: TensorData, idx, present: dict[str, torch.Tensor] | None = None):
    """(x, present, lengths) of rows `idx` of `data`, with `present` (full-length masks) in place of
    data.present when given — the three positional arguments of `model.forward`."""
    return rows(data.x, idx), rows(data.present if present is None else present, idx), rows(data.lengths, idx)


def mask(data: TensorData, present=None) -> dict[str, torch.Tensor]:
    """data.present with `present` overrides (bool, array or tensor per modality) intersected with it: a mask
    can hide a modality a record has, never invent one it lacks."""
    n = len(data)
    out = dict(data.present)
    for m, p in (present or {}).items():
        if m not in data.present:
            raise ValueError(f"unknown modality '{m}' in present mask (data has: {', '.join(data.present)})")
        t = p.to(torch.bool) if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p), dtype=torch.bool)
        if t.dim() == 0:
            t = t.expand(n)
        if tuple(t.shape) != (n,):
            raise ValueError(f"present['{m}'] has shape {tuple(t.shape)}, expected ({n},)")
        out[m] = data.present[m] & t.to(data.present[m].device)
    return out


def batch_wide(present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official code's skipping: a modality counts as present for a batch only if every record has it."""
    return {m: p.all().expand_as(p) for m, p in present.items()}


def concat(outs: list[ModelOutput]) -> ModelOutput:
    """Batch outputs → one ModelOutput over all their records (states None if any batch dropped them)."""
    first = outs[0]
    keep = all(o.states is not None for o in outs)
    return ModelOutput(first.steps, torch.cat([o.states for o in outs], dim=1) if keep else None,
                       {t: torch.cat([o.logits[t] for o in outs], dim=1) for t in first.logits},
                       torch.cat([o.ran for o in outs], dim=1))


@torch.no_grad()
def forward(model, data: TensorData, batch_size: int = 4096, present: dict | None = None,
            order: list[str] | None = None, semantics: Semantics = "per-record",
            keep_states: bool = True) -> ModelOutput:
    """`model.forward` over every record of `data` in batches (eval mode, no autograd), concatenated:
    states (K+1, N, S) (None unless keep_states), logits[t] (K+1, N, C), ran (K, N).

    present: overrides intersected with data.present (see `mask`). semantics="paper": batch-wide skipping at
    batch PAPER_BATCH, as the official code — there the batch size changes the predictions, so it is fixed."""
    if len(data) == 0:
        raise ValueError("no records to run")
    pres = mask(data, present) if present else data.present
    if semantics == "paper":
        batch_size = PAPER_BATCH
    outs = []
    with eval_mode(model):
        for idx in batches(len(data), batch_size):
            sl = slice(int(idx[0]), int(idx[-1]) + 1)       # consecutive rows: views, no copy
            x, p, lengths = inputs(data, sl, pres)
            out = model(x, batch_wide(p) if semantics == "paper" else p, lengths, order)
            if not keep_states:
                out.states = None
            outs.append(out)
    return concat(outs)
