"""Load bundled or user data (checks in `validate`), fit preprocessing on train only, build tensors, split.

Shapes: a tabular modality is `x[m]: (N, F_m)`; a sequence modality is `x[m]: (N, T_m, F_m)` with
`lengths[m]: (N,)`. `present[m]: (N,) bool`. Targets: binary and regression `(N,) float` with NaN for a
missing label (regression standardized); multiclass `(N,) long` with -1 for a missing label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedKFold, StratifiedGroupKFold, KFold, train_test_split

from .spec import DatasetSpec, ModalitySpec, SpecError, TaskSpec, load_spec
from .validate import (HUGE, MAX_CATEGORIES, MAX_FILE_BYTES, MAX_INPUT_CELLS, MAX_SEQ_LEN,  # noqa: F401
                       MIN_SPLIT_ROWS, MOSTLY_NUMERIC, _is_numeric, _labels, check_dataset, check_folds,
                       label_str, read_table)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MISSING_CAT = "(missing)"
Z_CLIP = 1e6                         # standardized inputs are clipped here: float32-safe when the training
                                     # split never saw an extreme value that another split holds


@dataclass
class Dataset:
    """A spec with its main table and, per sequence modality, its long table (sorted by key, time)."""
    spec: DatasetSpec
    frame: pd.DataFrame
    sequences: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> list[str]:
        if self.spec.id_column:
            return self.frame[self.spec.id_column].astype(str).tolist()
        return [str(i) for i in range(len(self.frame))]

    def presence(self) -> pd.DataFrame:
        """(N, E) bool frame: a modality is present when at least one of its values is observed."""
        out = {}
        for m in self.spec.modalities:
            if m.kind == "tabular":
                out[m.name] = self.frame[m.columns].notna().any(axis=1).to_numpy()
            else:
                seq = self.sequences[m.name]
                has = seq.loc[seq[m.columns].notna().any(axis=1), m.key].astype(str)
                out[m.name] = pd.Index(self.ids).isin(has.unique())  # hashed: np.isin on strings is quadratic
        return pd.DataFrame(out, index=self.frame.index)

    def subset(self, rows) -> "Dataset":
        """Rows by position; sequence tables keep only the selected records."""
        frame = self.frame.iloc[rows].reset_index(drop=True)
        seqs = {}
        if self.sequences:
            keep = set(frame[self.spec.id_column].astype(str))
            for m in self.spec.modalities:
                if m.kind == "sequence":
                    s = self.sequences[m.name]
                    seqs[m.name] = s[s[m.key].astype(str).isin(keep)].reset_index(drop=True)
        return Dataset(self.spec, frame, seqs)


# --- loading ---------------------------------------------------------------------------------------
def load_data(data: str | Path | pd.DataFrame, spec: DatasetSpec | str | Path) -> Dataset:
    """User data + spec → checked Dataset. Raises SpecError with one clear line on any problem."""
    if not isinstance(spec, DatasetSpec):
        spec = load_spec(spec)
    frame = data if isinstance(data, pd.DataFrame) else read_table(data, spec.id_column)
    source = "data" if isinstance(data, pd.DataFrame) else str(data)
    seqs = {}
    for m in spec.modalities:
        if m.kind == "sequence":
            seq = read_table(spec.resolve(m.table), m.key)
            seqs[m.name] = seq
    ds = Dataset(spec, frame.reset_index(drop=True), seqs)
    check_dataset(ds, source)
    for m in spec.modalities:
        if m.kind == "sequence":
            ds.sequences[m.name] = (seqs[m.name].assign(**{m.key: seqs[m.name][m.key].astype(str)})
                                   .sort_values([m.key, m.time_column], kind="stable").reset_index(drop=True))
    return ds


# --- tensors -------------------------------------------------------------------------------------------
@dataclass
class TensorData:
    x: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx) -> "TensorData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        pick = lambda d: {k: v[idx] for k, v in d.items()}
        return TensorData(pick(self.x), pick(self.present), pick(self.lengths), pick(self.y),
                          [self.ids[i] for i in idx.tolist()])

    def to(self, device) -> "TensorData":
        mv = lambda d: {k: v.to(device) for k, v in d.items()}
        return TensorData(mv(self.x), mv(self.present), mv(self.lengths), mv(self.y), self.ids)

    def with_present(self, present: dict[str, torch.Tensor]) -> "TensorData":
        """Same data under another presence mask (absent rows are zero-filled by the model)."""
        return TensorData(self.x, {**self.present, **present}, self.lengths, self.y, self.ids)


def class_values(t: TaskSpec, y: pd.Series) -> list[str]:
    """Class values in model order: binary [negative, positive]; multiclass the spec's `classes` or sorted."""
    values = sorted(set(_labels(y)))
    if t.type == "binary":
        pos = label_str(t.positive) if t.positive is not None else ("1" if set(values) == {"0", "1"} else values[-1])
        return [v for v in values if v != pos] + [pos]
    if t.classes:
        return [c for c in t.classes if c in values] + [v for v in values if v not in t.classes]
    return values


@dataclass(frozen=True)
class Preprocessor:
    """Statistics fitted on the training split only; JSON round-trips exactly."""
    numeric: dict[str, dict[str, list[float]]]      # modality -> column -> [mean, std]
    categories: dict[str, dict[str, list[str]]]     # modality -> column -> categories seen in train
    classes: dict[str, list[str]]                   # classification task -> class values (binary: [neg, pos])
    target_stats: dict[str, list[float]]            # regression task -> [mean, std]
    seq_len: dict[str, int]                         # sequence modality -> time steps kept

    @staticmethod
    def fit(ds: Dataset) -> "Preprocessor":
        numeric, categories, seq_len = {}, {}, {}
        for m in ds.spec.modalities:
            table = ds.frame if m.kind == "tabular" else ds.sequences[m.name]
            numeric[m.name], categories[m.name] = {}, {}
            for c in m.columns:
                s = table[c]
                if _is_numeric(s):
                    v = s.to_numpy(dtype=float, na_value=np.nan)
                    mean = float(np.nanmean(v)) if np.isfinite(v).any() else 0.0
                    std = float(np.nanstd(v)) if np.isfinite(v).sum() > 1 else 1.0
                    numeric[m.name][c] = [mean, std if std > 1e-12 else 1.0]
                else:
                    categories[m.name][c] = sorted(s.dropna().astype(str).unique().tolist())
            if m.kind == "sequence":
                counts = table.groupby(m.key).size()
                seq_len[m.name] = int(min(MAX_SEQ_LEN, counts.max() if len(counts) else 1))
        classes, target_stats = {}, {}
        for t in ds.spec.tasks:
            y = ds.frame[t.column]
            if t.type == "regression":
                v = y.to_numpy(dtype=float, na_value=np.nan)
                target_stats[t.name] = [float(np.nanmean(v)), float(np.nanstd(v)) or 1.0]
            else:
                classes[t.name] = class_values(t, y)
        return Preprocessor(numeric, categories, classes, target_stats, seq_len)

    def to_json(self) -> dict:
        return {"numeric": self.numeric, "categories": self.categories, "classes": self.classes,
                "target_stats": self.target_stats, "seq_len": self.seq_len}

    @staticmethod
    def from_json(d: dict) -> "Preprocessor":
        return Preprocessor(d["numeric"], d["categories"], d["classes"], d["target_stats"], d["seq_len"])

    # --- feature layout ---
    def feature_names(self, m: ModalitySpec) -> list[str]:
        """Names of the model's input features for modality m, one-hot columns as 'col=value'."""
        out = []
        for c in m.columns:
            if c in self.numeric[m.name]:
                out.append(c)
            else:
                out += [f"{c}={v}" for v in self.categories[m.name][c] + [MISSING_CAT]]
        return out

    def source_columns(self, m: ModalitySpec) -> list[str]:
        """For each input feature, the spec column it came from (sums one-hot attributions back)."""
        out = []
        for c in m.columns:
            n = 1 if c in self.numeric[m.name] else len(self.categories[m.name][c]) + 1
            out += [c] * n
        return out

    def n_features(self, m: ModalitySpec) -> int:
        return len(self.source_columns(m))

    def n_outputs(self, t: TaskSpec) -> int:
        return len(self.classes[t.name]) if t.type == "multiclass" else 1

    def _encode(self, m: ModalitySpec, table: pd.DataFrame) -> np.ndarray:
        blocks = []
        for c in m.columns:
            s = table[c]
            if c in self.numeric[m.name]:
                mean, std = self.numeric[m.name][c]
                v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                z = np.clip((v - mean) / std, -Z_CLIP, Z_CLIP)
                blocks.append(np.nan_to_num(z, nan=0.0)[:, None])
            else:
                cats = self.categories[m.name][c] + [MISSING_CAT]
                v = s.astype(object).where(s.notna(), MISSING_CAT).astype(str)
                if len(set(cats)) < len(cats):     # a real value '(missing)': keep the plain comparison
                    blocks.append((v.to_numpy()[:, None] == np.asarray(cats)[None, :]).astype(np.float32))
                    continue
                codes = pd.Index(cats).get_indexer(v.to_numpy())     # -1: a value not seen in training
                hot = np.zeros((len(v), len(cats)), dtype=np.float32)  # filled in place: no (N, K) temporaries
                seen = np.flatnonzero(codes >= 0)
                hot[seen, codes[seen]] = 1.0
                blocks.append(hot)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def decode_target(self, t: TaskSpec, value: float) -> float:
        """Regression output (standardized) → target units."""
        mean, std = self.target_stats[t.name]
        return value * std + mean

    def transform(self, ds: Dataset) -> TensorData:
        n = len(ds)
        ids = ds.ids
        pres = ds.presence()
        x, present, lengths, y = {}, {}, {}, {}
        for m in ds.spec.modalities:
            present[m.name] = torch.as_tensor(pres[m.name].to_numpy().copy(), dtype=torch.bool)
            if m.kind == "tabular":
                x[m.name] = torch.from_numpy(self._encode(m, ds.frame))
                continue
            T, F = self.seq_len[m.name], self.n_features(m)
            arr = np.zeros((n, T, F), dtype=np.float32)
            lens = np.zeros(n, dtype=np.int64)
            seq = ds.sequences[m.name]
            seq = seq[seq[m.columns].notna().any(axis=1)]
            enc = self._encode(m, seq)
            pos = {rid: i for i, rid in enumerate(ids)}
            keys = seq[m.key].astype(str).to_numpy()
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, int)
            ends = np.r_[starts[1:], len(keys)]
            for s, e in zip(starts, ends):
                i = pos.get(keys[s])
                if i is None:
                    continue
                rows = enc[max(s, e - T):e]       # keep the most recent T steps
                arr[i, :len(rows)] = rows
                lens[i] = len(rows)
            x[m.name] = torch.from_numpy(arr)
            lengths[m.name] = torch.from_numpy(lens)
        for t in ds.spec.tasks:
            col = ds.frame[t.column]
            if t.type == "regression":
                mean, std = self.target_stats[t.name]
                v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                y[t.name] = torch.as_tensor((v - mean) / std, dtype=torch.float32)
            else:
                lookup = {c: i for i, c in enumerate(self.classes[t.name])}
                codes = [lookup.get(label_str(v), -1) if pd.notna(v) else -1 for v in col.tolist()]
                codes_t = torch.as_tensor(codes, dtype=torch.long)
                if t.type == "binary":
                    f = codes_t.to(torch.float32)
                    y[t.name] = torch.where(codes_t < 0, torch.tensor(math.nan), f)
                else:
                    y[t.name] = codes_t
        return TensorData(x, present, lengths, y, ids)


# --- splits --------------------------------------------------------------------------------------------
def _strata(ds: Dataset) -> np.ndarray | None:
    """Stratify on the first classification task (missing label = its own stratum)."""
    for t in ds.spec.tasks:
        if t.type != "regression":
            s = ds.frame[t.column].astype(str).where(ds.frame[t.column].notna(), "?").to_numpy()
            _, counts = np.unique(s, return_counts=True)
            return s if counts.min() >= 10 else None
    return None


def split(ds: Dataset, seed: int = 0, val: float = 0.15, test: float = 0.15) -> tuple[np.ndarray, ...]:
    """Stratified train / validation / test row positions."""
    if len(ds) < MIN_SPLIT_ROWS:
        raise SpecError(f"{len(ds)} record(s) are too few to split into training, validation and test parts "
                        f"(needs at least {MIN_SPLIT_ROWS}): add records")
    idx = np.arange(len(ds))
    strata = _strata(ds)
    rest, te = train_test_split(idx, test_size=test, random_state=seed, stratify=strata)
    st_rest = strata[rest] if strata is not None else None
    tr, va = train_test_split(rest, test_size=val / (1 - test), random_state=seed, stratify=st_rest)
    return np.sort(tr), np.sort(va), np.sort(te)


def kfold(ds: Dataset, k: int = 5, seed: int = 0, groups: np.ndarray | None = None):
    """Yield (train, test) row positions: stratified, and grouped when `groups` (e.g. patient ids) repeat."""
    check_folds(ds, k)
    idx = np.arange(len(ds))
    strata = _strata(ds)
    if groups is not None and len(np.unique(groups)) < len(groups):
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        yield from splitter.split(idx, strata if strata is not None else np.zeros(len(idx)), groups)
    elif strata is not None:
        yield from StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, strata)
    else:
        yield from KFold(k, shuffle=True, random_state=seed).split(idx)
