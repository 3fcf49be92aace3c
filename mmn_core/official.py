"""The official code's semantics, taken apart one factor at a time.

The official MultiModN MNAR pipeline differs from per-record skipping in four ways at once: an encoder is
skipped for the whole batch when any record lacks its modality, batches are 16 records, batches are not
shuffled (file order), and M is removed from the *first* label-1 records in file order. `factor_study`
trains MultiModN with each factor changed alone from that official configuration, on gap-free,
labelled-only data (so that the only absences are the injected ones), and scores every model both the
official way (batch-wide at batch 16, file order) and per record. `BatchWide` makes batch-wide skipping a
property of the model's forward, so that batch size and shuffling can vary independently of it (the
engine's `semantics="paper"` fixes both).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from .checkpoint import build_model
from .data import Dataset, Preprocessor
from .metrics import task_metrics
from .missingness import inject_mnar, reverse_mnar
from .model import ModelConfig
from .train import PAPER_BATCH, TrainConfig, batch_wide, fit, predict


class BatchWide(nn.Module):
    """A MultiModN whose forward skips modality m for the whole batch when any record of the batch lacks it
    (`wide=False`: per record, unchanged). While training it counts, per modality, the batches in which the
    encoder ran for at least one record and the records that have m whose encoder ran."""

    def __init__(self, inner: nn.Module, wide: bool = True):
        super().__init__()
        self.inner, self.wide, self.kind = inner, wide, inner.kind
        self.counts = {m: [0, 0, 0, 0] for m in inner.modality_names}  # ran batches, batches, ran recs, recs

    @property
    def modality_names(self) -> list[str]:
        return self.inner.modality_names

    def forward(self, x, present, lengths, order=None):
        used = batch_wide(present) if self.wide else present
        if self.training:
            for m, p in used.items():
                c = self.counts[m]
                c[0], c[1] = c[0] + int(p.any()), c[1] + 1
                c[2], c[3] = c[2] + int(p.sum()), c[3] + int(present[m].sum())
        return self.inner(x, used, lengths, order)

    def loss(self, out, y):
        return self.inner.loss(out, y)


@dataclass(frozen=True)
class Factors:
    """One configuration of the four factors (the official code: all defaults)."""
    batch_wide: bool = True         # skip for the whole batch (False: per record)
    batch_size: int = PAPER_BATCH   # 16 in the official pipeline
    shuffle: bool = False           # the official loaders are unshuffled (file order)
    file_order: bool = True         # M removed from the first label-1 records in file order (False: random)


FACTOR_SETTINGS = {
    "official": Factors(),
    "per-record skip": Factors(batch_wide=False),
    "batch 1": Factors(batch_size=1),
    "batch 64": Factors(batch_size=64),
    "shuffled batches": Factors(shuffle=True),
    "random removal": Factors(file_order=False),
}


def gap_free(ds: Dataset, task: str) -> Dataset:
    """The records that have every modality and a label for `task` (file order kept)."""
    keep = ds.presence().all(axis=1).to_numpy() & ds.frame[ds.spec.task(task).column].notna().to_numpy()
    return ds.subset(np.flatnonzero(keep))


def _auroc(model, data, task: str, batch: int | None) -> float:
    """Final-step AUROC; `batch` = None scores per record, else in file order at that batch size."""
    out = predict(model, data, batch_size=batch or 1024)
    return task_metrics("binary", data.y[task].numpy(), out.logits[task][-1].detach().cpu().numpy())["auroc"]


def factor_cell(ds: Dataset, modality: str, task: str, factors: Factors, rate: float, rows: tuple,
                reversed_test: Dataset, clean_test: Dataset, seed: int, epochs: int, kind: str = "multimodn",
                model_config: ModelConfig | None = None) -> dict:
    """Train one model at `rate` under `factors` on `rows` = (train, val, test) of `ds` and score it on the
    clean and reversed test splits the official way (batch-wide at the training batch size, file order: for
    MultiModN with batch-wide skipping; otherwise per record) and per record. P-Fusion zero-fills per record."""
    tr, va, te = rows
    trva = np.sort(np.concatenate([tr, va]))
    inj = inject_mnar(ds, modality, task, rate, rows=trva, seed=seed, file_order=factors.file_order)
    prep = Preprocessor.fit(inj.subset(tr))
    torch.manual_seed(seed)
    inner = build_model(kind, ds.spec, prep, model_config or ModelConfig())
    model = BatchWide(inner, factors.batch_wide) if kind == "multimodn" else inner
    data = prep.transform(inj)
    cfg = TrainConfig(epochs=epochs, seed=seed, batch_size=factors.batch_size, shuffle=factors.shuffle)
    history = fit(model, data.subset(tr), data.subset(va), cfg)
    out = {"rate": rate, "model": kind, "epochs": len(history)}
    if isinstance(model, BatchWide):
        ran, batches, ran_rec, rec = model.counts[modality]
        out["m_run_share"] = ran / max(batches, 1)          # training batches in which M's encoder ran
        out["m_record_share"] = ran_rec / max(rec, 1)       # records with M whose M encoder ran
    official = isinstance(model, BatchWide) and factors.batch_wide
    for test_name, test_ds in (("clean", clean_test), ("reversed", reversed_test)):
        td = prep.transform(test_ds)
        # the official code scores as it trains: batch-wide at the training batch size, in file order
        out[f"{test_name}_official"] = _auroc(model, td, task, factors.batch_size if official and
                                              factors.batch_size > 1 else None)
        out[f"{test_name}_per_record"] = _auroc(inner, td, task, None)
    return out


def factor_study(ds: Dataset, modality: str, task: str, folds_rows: list[tuple], seed: int = 0,
                 rate: float = 0.8, epochs: int = 20, settings: dict[str, Factors] | None = None,
                 progress=None) -> list[dict]:
    """Per-fold rows {seed, fold, setting, model, rate, clean_official, clean_per_record, reversed_official,
    reversed_per_record, m_run_share, epochs} for every setting at p = 0 and p = `rate`, plus P-Fusion
    (official baseline: per record, batch 16, unshuffled, file-order removal) and MultiModN without M
    (official factors). `ds` should be gap-free (see `gap_free`); `folds_rows`: (train, val, test) positions."""
    settings = settings or FACTOR_SETTINGS
    without = replace(ds, spec=ds.spec.model_copy(update={
        "modalities": [m for m in ds.spec.modalities if m.name != modality]}))
    rows_out = []
    for f, rows in enumerate(folds_rows):
        te, fold_seed = rows[2], seed + 1000 * f
        clean = ds.subset(te)
        rev = {fo: reverse_mnar(ds, modality, task, rate, rows=te, seed=fold_seed + 1, file_order=fo).subset(te)
               for fo in (True, False)}
        cells = [(name, fac, "multimodn") for name, fac in settings.items()] + [("P-Fusion (official)",
                                                                                 Factors(), "pfusion")]
        for name, fac, kind in cells:
            for r in (0.0, rate):
                cell = factor_cell(ds, modality, task, fac, r, rows, rev[fac.file_order], clean, fold_seed, epochs,
                                   kind)
                rows_out.append({"seed": seed, "fold": f, "setting": name, **cell})
                if progress is not None:
                    progress(rows_out[-1])
        w = factor_cell(without, without.spec.modality_names[0], task, Factors(), 0.0, rows,
                        replace(rev[True], spec=without.spec), replace(clean, spec=without.spec), fold_seed,
                        epochs)
        w = {k: v for k, v in w.items() if not k.startswith("m_")}
        rows_out.append({"seed": seed, "fold": f, "setting": "without M", **w})
    return rows_out


def summarize_factor_rows(rows: list[dict], key: str) -> dict[tuple, list[float]]:
    """{(setting, rate): [value per (seed, fold)]} in (seed, fold) order, for pairing across settings."""
    out: dict[tuple, list] = {}
    for r in sorted(rows, key=lambda r: (r["seed"], r["fold"])):
        out.setdefault((r["setting"], r["rate"]), []).append(r.get(key, math.nan))
    return out
