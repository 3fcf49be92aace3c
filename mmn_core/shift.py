"""A natural shift: train on some sites (or periods), test on held-out records of those sites and on every record
of the others. Unlike the injected MNAR splits, nothing is removed: each site's own missingness comes with it
(e.g. STAR's inner-city schools, where fewer pupils have a kindergarten year), so the out-of-site test measures
what a model trained elsewhere meets in practice.

    result = natural_shift(ds, groups, held_out=["inner-city"], seed=0)
    result.auroc["multimodn"]["star.pass3"]    # {"in": ..., "out": ...}
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .data import Dataset, split
from .kinds import KINDS
from .metrics import metric_matrix
from .sweep import train_models
from .train import TrainConfig, predict


@dataclass
class ShiftResult:
    """One seed of a site split. auroc[kind][task] = {"in": held-out records of the training sites, "out": the
    held-out sites}, final step; presence[modality] = {"in": share present in training, "out": in the held-out
    sites}; sizes: {"train", "validation", "in_test", "out_test"} records."""
    held_out: list[str]
    seed: int
    sizes: dict[str, int]
    presence: dict[str, dict[str, float]]
    auroc: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def test_train_ratio(self) -> float:
        """n_in_test / n_train, for the Nadeau-Bengio correction across seeds (the training sets overlap)."""
        return self.sizes["in_test"] / max(self.sizes["train"], 1)

    def to_json(self) -> dict:
        return {"held_out": self.held_out, "seed": self.seed, "sizes": self.sizes, "presence": self.presence,
                "auroc": self.auroc, "test_train_ratio": self.test_train_ratio}


def site_rows(groups: np.ndarray, held_out: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the training sites, rows of the held-out sites); groups: (N,) site of each record (str)."""
    groups = np.asarray(groups).astype(str)
    unknown = sorted(set(held_out) - set(groups))
    if unknown:
        raise ValueError(f"held-out site(s) {unknown} do not occur (sites: {sorted(set(groups))})")
    out = np.isin(groups, list(held_out))
    if out.all() or not out.any():
        raise ValueError("a site split needs records on both sides")
    return np.flatnonzero(~out), np.flatnonzero(out)


def natural_shift(ds: Dataset, groups: np.ndarray, held_out: Sequence[str], seed: int = 0,
                  config: TrainConfig | None = None, kinds: Sequence[str] = KINDS, model_config=None,
                  workers: int | None = None) -> ShiftResult:
    """Train each model kind on a stratified train / validation split of the training sites' records (`seed`),
    score its binary tasks on those sites' own test part and on the held-out sites (every record there)."""
    groups = np.asarray(groups).astype(str)
    if groups.shape != (len(ds),):
        raise ValueError(f"groups has shape {groups.shape}, expected ({len(ds)},)")
    inside, outside = site_rows(groups, held_out)
    tr, va, te = (inside[p] for p in split(ds.subset(inside), seed=seed))
    config = config or TrainConfig(seed=seed)
    trained = train_models(ds, [(kind, (tr, va, te)) for kind in kinds], model_config, config, workers)
    binary = [t.name for t in ds.spec.tasks if t.type == "binary"]
    present = {m: ds.presence()[m].to_numpy(dtype=bool) for m in ds.spec.modality_names}
    result = ShiftResult(list(held_out), seed, {"train": len(tr), "validation": len(va), "in_test": len(te),
                                                "out_test": len(outside)},
                         {m: {"in": float(p[tr].mean()), "out": float(p[outside].mean())} for m, p in present.items()})
    for kind, t in zip(kinds, trained):
        data = t.prep.transform(ds.subset(outside))
        out = metric_matrix(predict(t.model, data), data.y, t.model.tasks, t.prep.target_stats)
        result.auroc[kind] = {task: {"in": float(t.metrics["tasks"][task]["auroc"][-1]),
                                     "out": float(out["tasks"][task]["auroc"][-1])} for task in binary}
    return result
