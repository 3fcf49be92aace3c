"""A seeded synthetic cohort with a known missing-not-at-random mechanism and known ground truth.

A latent severity z ~ N(0, 1) drives the outcomes and which modalities are measured:
- `outcome` (binary): logit = 1.5·z + 1.5·labs.lactate − 0.3 — `lactate` is the planted feature that carries
  signal beyond z (attribution tests expect it on top); `notes` carries no signal at all.
- `score` (regression) = 10 + 3·z + noise; `stage` (multiclass): z in thirds.
- MNAR: labs are measured with probability sigmoid(mnar · z + 0.5), imaging with sigmoid(mnar · z − 0.2):
  the sicker, the more often measured, as in clinical practice. `gaps=False` measures everything (no natural
  missingness: the gap-free cohort of the official-semantics study).
- z itself is never a column: `latent_severity(n, seed)` returns it (the same draw), so that experiments can
  remove a modality by an *unobserved* variable (truly MNAR, `missingness.inject_latent`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data import Dataset
from .spec import spec_from_dict


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def latent_severity(n: int = 3000, seed: int = 0) -> np.ndarray:
    """(n,) the hidden severity z of `make_synthetic(n, seed)` (record i ↔ id S{i:05d}); not an input column."""
    return np.random.default_rng(seed).normal(size=n)


def make_synthetic(n: int = 3000, seed: int = 0, mnar: float = 1.5, extra_modalities: int = 0,
                   sequence: bool = True, gaps: bool = True) -> Dataset:
    """n records; `extra_modalities` adds pure-noise tabular modalities (for scaling benchmarks); `gaps=False`:
    no natural missingness in any modality (every record has 1–8 visits)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)                 # first draw: latent_severity() repeats it
    lactate = rng.normal(size=n)
    ids = [f"S{i:05d}" for i in range(n)]
    f = pd.DataFrame({"id": ids})
    f["age"] = np.round(62 + 6 * z + rng.normal(0, 10, n), 1)
    f["sex"] = rng.choice(["female", "male"], n)
    f["heart_rate"] = np.round(85 + 8 * z + rng.normal(0, 8, n), 1)
    f["resp_rate"] = np.round(18 + 2 * z + rng.normal(0, 3, n), 1)
    f["temperature"] = np.round(37 + rng.normal(0, 0.5, n), 2)
    f["lactate"] = np.round(2 + lactate, 2)
    f["creatinine"] = np.round(1.1 + 0.3 * z + rng.normal(0, 0.3, n), 2)
    f["sodium"] = np.round(139 + rng.normal(0, 3, n), 1)
    f["opacity"] = np.round(0.5 * z + rng.normal(0, 1, n), 2)
    f["effusion"] = rng.choice(["none", "small", "large"], n, p=[0.6, 0.3, 0.1])
    f["note_length"] = rng.integers(50, 500, n)
    f["note_words"] = rng.integers(10, 100, n)
    labs = ["lactate", "creatinine", "sodium"]
    imaging = ["opacity", "effusion"]
    # the draws happen with or without gaps, so that gaps=False changes nothing but the missingness
    lab_gap, img_gap = rng.random(n) >= _sigmoid(mnar * z + 0.5), rng.random(n) >= _sigmoid(mnar * z - 0.2)
    if gaps:
        f.loc[lab_gap, labs] = np.nan
        f.loc[img_gap, imaging] = np.nan
    f["outcome"] = (rng.random(n) < _sigmoid(1.5 * z + 1.5 * lactate - 0.3)).astype(int)
    f["score"] = np.round(10 + 3 * z + rng.normal(0, 1, n), 2)
    f["stage"] = np.select([z < -0.43, z < 0.43], ["early", "middle"], "late")
    modalities = [
        {"name": "demographics", "label": "Demographics", "columns": ["age", "sex"],
         "description": "Age and sex (weakly related to severity)", "units": {"age": "years"}},
        {"name": "vitals", "label": "Vital signs", "columns": ["heart_rate", "resp_rate", "temperature"],
         "description": "Always measured; heart and respiratory rate rise with severity"},
        {"name": "labs", "label": "Laboratory", "columns": labs,
         "description": "Measured more often for sicker patients (MNAR); lactate is the planted driver"},
        {"name": "imaging", "label": "Imaging", "columns": imaging,
         "description": "Chest imaging, ordered more often for sicker patients (MNAR)"},
        {"name": "notes", "label": "Notes", "columns": ["note_length", "note_words"],
         "description": "Pure noise: should receive no importance"},
    ]
    for j in range(extra_modalities):
        cols = [f"noise{j}_{k}" for k in range(4)]
        for c in cols:
            f[c] = np.round(rng.normal(size=n), 3)
        gap = rng.random(n) < 0.1
        if gaps:
            f.loc[gap, cols] = np.nan
        modalities.append({"name": f"extra{j}", "label": f"Extra {j}", "columns": cols,
                           "description": "Pure noise (scaling benchmark)"})
    seqs = {}
    if sequence:
        lens = rng.integers(0, 9, n)          # 0 visits = modality absent
        if not gaps:
            lens = np.maximum(lens, 1)
        rows = [(ids[i], d, round(float(z[i] * (0.3 + 0.1 * d) + rng.normal(0, 1)), 3))
                for i in range(n) for d in range(lens[i])]
        seqs["visits"] = pd.DataFrame(rows, columns=["id", "day", "marker"])
        modalities.append({"name": "visits", "label": "Visits", "kind": "sequence", "table": "(generated)",
                           "key": "id", "time_column": "day", "columns": ["marker"],
                           "description": "0–8 follow-up visits; the marker drifts with severity over time"})
    spec = spec_from_dict({
        "name": "synthetic", "title": "Synthetic cohort (known ground truth)",
        "description": "A generated cohort whose missingness depends on a hidden severity: for tests and teaching.",
        "id_column": "id", "modalities": modalities,
        "tasks": [{"name": "outcome", "label": "Adverse outcome", "column": "outcome", "type": "binary",
                   "positive": 1},
                  {"name": "score", "label": "Severity score", "column": "score", "type": "regression",
                   "units": "points"},
                  {"name": "stage", "label": "Stage", "column": "stage", "type": "multiclass",
                   "classes": ["early", "middle", "late"]}],
        "mnar_rules": [{"name": "labs_if_tachycardic", "modality": "labs", "column": "heart_rate", "op": ">=",
                        "value": 90, "description": "Labs drawn only when heart rate is at least 90/min"}],
    }, "synthetic")
    return Dataset(spec, f, seqs)
