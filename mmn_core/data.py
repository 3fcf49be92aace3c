"""Load bundled or user data, check it against the spec, fit preprocessing on train only, build tensors.

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

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MAX_FILE_BYTES = 200 * 1024 * 1024   # refuse bigger uploads: the dashboard and CLI hold data in memory
MAX_SEQ_LEN = 64                     # keep the last 64 time steps of a sequence
MISSING_CAT = "(missing)"
MAX_CATEGORIES = 1000                # distinct values of one categorical column (each becomes a one-hot input)
MAX_INPUT_CELLS = 100_000_000        # records x input features (x time steps): 400 MB of float32 model input
HUGE = 1e150                         # |x| above this overflows when squared (std, losses): refused like inf
MOSTLY_NUMERIC = 0.95                # a text column whose values are at least this share numbers is a typo
Z_CLIP = 1e6                         # standardized inputs are clipped here: float32-safe when the training
                                     # split never saw an extreme value that another split holds
MIN_SPLIT_ROWS = 3                   # train / validation / test need one record each


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


# --- reading files -------------------------------------------------------------------------------------
def _size(n: int) -> str:
    """Bytes for people: '1.5 MB', '12 KB', '300 bytes' (a small cap must not print as '0 MB')."""
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB".replace(".0 MB", " MB")
    return f"{n / 2**10:.0f} KB" if n >= 2**10 else f"{n} bytes"


def read_table(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    """Read CSV (optionally gzip) or Parquet; every failure becomes a SpecError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise SpecError(f"{path}: file is empty")
    if size > MAX_FILE_BYTES:
        raise SpecError(f"{path}: file is {_size(size)}, over the {_size(MAX_FILE_BYTES)} cap")
    dtype = {id_column: str} if id_column else None
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            header = [str(c) for c in frame.columns]
        else:
            frame = pd.read_csv(path, dtype=dtype, encoding="utf-8", encoding_errors="strict")
            # read_csv renames a repeated header name ("a" -> "a.1"), so look at the raw header row
            header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False,
                                 encoding="utf-8", encoding_errors="strict").iloc[0].tolist()
    except UnicodeDecodeError:
        raise SpecError(f"{path}: file is not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise SpecError(f"{path}: file has no columns") from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"{path}: cannot parse table ({first})") from None
    except Exception as err:  # pyarrow raises its own types for corrupt parquet
        raise SpecError(f"{path}: cannot read table ({type(err).__name__})") from None
    if len(frame) == 0:
        raise SpecError(f"{path}: table has a header but no rows")
    dup_cols = [c for i, c in enumerate(header) if c in header[:i]]
    if dup_cols:
        raise SpecError(f"{path}: column '{dup_cols[0]}' appears twice in the header")
    frame.columns = [str(c) for c in frame.columns]
    return frame


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


# --- checks --------------------------------------------------------------------------------------------
def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _not_finite(s: pd.Series) -> int:
    """Rows of a numeric column holding inf or a number so large that its square overflows."""
    v = s.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return int((np.isinf(v) | (np.abs(v) > HUGE)).sum())


def _numeric_typos(s: pd.Series) -> tuple[int, list[str]]:
    """A text column that is mostly numbers: (count of non-numeric values, up to 3 examples); (0, []) else."""
    text = s.dropna().astype(str).str.strip()
    text = text[text != ""]
    if len(text) == 0:
        return 0, []
    bad = pd.to_numeric(text, errors="coerce").isna()
    n_bad = int(bad.sum())
    if n_bad == 0 or 1 - n_bad / len(text) < MOSTLY_NUMERIC:
        return 0, []
    return n_bad, list(dict.fromkeys(text[bad].tolist()))[:3]


def check_dataset(ds: Dataset, source: str = "data") -> None:
    spec, frame = ds.spec, ds.frame
    dup_cols = frame.columns[frame.columns.duplicated()]
    if len(dup_cols):
        raise SpecError(f"{source}: column '{dup_cols[0]}' appears twice in the table")
    cols = set(frame.columns)
    if spec.id_column is not None:
        if spec.id_column not in cols:
            raise SpecError(f"{source}: id column '{spec.id_column}' is not in the table")
        ids = frame[spec.id_column]
        if ids.isna().any():
            raise SpecError(f"{source}: id column '{spec.id_column}' has empty values")
        dup = ids[ids.astype(str).duplicated()]
        if len(dup):
            raise SpecError(f"{source}: duplicate id '{dup.iloc[0]}' in column '{spec.id_column}'")
    for m in spec.modalities:
        table = frame if m.kind == "tabular" else ds.sequences[m.name]
        where = source if m.kind == "tabular" else str(spec.resolve(m.table))
        needed = m.columns + ([m.key, m.time_column] if m.kind == "sequence" else [])
        for c in needed:
            if c not in table.columns:
                raise SpecError(f"{where}: column '{c}' of modality '{m.name}' is not in the table")
        for c in m.columns:
            s = table[c]
            if _is_numeric(s):
                bad = _not_finite(s)
                if bad:
                    raise SpecError(f"{where}: column '{c}' has infinite or huge values (|x| > {HUGE:.0e}) in "
                                    f"{bad} row(s): clear or rescale them")
                continue
            n_bad, examples = _numeric_typos(s)
            if n_bad:
                shown = ", ".join(f"'{e}'" for e in examples)
                raise SpecError(f"{where}: column '{c}' of modality '{m.name}' is numbers except for {n_bad} "
                                f"value(s) such as {shown}, which would make it categorical: clear those cells "
                                f"(empty = missing) or remove thousands separators; the spec has no categorical "
                                f"declaration, so to use it as categories give every value a non-numeric form")
            n_cat = s.dropna().astype(str).nunique()
            if n_cat > MAX_CATEGORIES:
                raise SpecError(f"{where}: categorical column '{c}' of modality '{m.name}' has {n_cat:,} distinct "
                                f"values, over the {MAX_CATEGORIES:,} cap (one input per value): group rare "
                                f"values or leave the column out")
        if m.kind == "sequence":
            if not _is_numeric(table[m.time_column]):
                raise SpecError(f"{where}: time column '{m.time_column}' must be numeric")
            keys = set(table[m.key].astype(str))
            if not keys & set(frame[spec.id_column].astype(str)):
                raise SpecError(f"{where}: no value of key '{m.key}' matches an id of the main table")
    for t in spec.tasks:
        if t.column not in cols:
            raise SpecError(f"{source}: target column '{t.column}' of task '{t.name}' is not in the table")
        if isinstance(frame[t.column], pd.DataFrame):
            raise SpecError(f"{source}: target column '{t.column}' of task '{t.name}' appears twice in the table")
        y = frame[t.column].dropna()
        if len(y) == 0:
            raise SpecError(f"{source}: task '{t.name}' has no labelled record")
        if t.type == "regression":
            if not _is_numeric(frame[t.column]):
                n_bad, examples = _numeric_typos(frame[t.column])
                shown = ', '.join(repr(e) for e in examples)
                such = f" ({n_bad} value(s) such as {shown}: clear them)" if n_bad else ""
                raise SpecError(f"{source}: regression target '{t.column}' is not numeric{such}")
            bad = _not_finite(y)
            if bad:
                raise SpecError(f"{source}: regression target '{t.column}' has infinite or huge values "
                                f"(|x| > {HUGE:.0e}) in {bad} row(s)")
        elif t.type == "binary":
            values = sorted(set(_labels(y)))
            if len(values) != 2:
                raise SpecError(f"{source}: binary task '{t.name}' needs exactly 2 values in '{t.column}', "
                                f"found {len(values)}")
            if t.positive is not None and label_str(t.positive) not in values:
                raise SpecError(f"{source}: positive value '{t.positive}' of task '{t.name}' never occurs")
        elif y.nunique() < 2:
            raise SpecError(f"{source}: multiclass task '{t.name}' needs at least 2 classes")
    pres = ds.presence()
    for m in spec.modalities:
        if not pres[m.name].any():
            where = source if m.kind == "tabular" else str(spec.resolve(m.table))
            raise SpecError(f"{where}: modality '{m.name}' is never present (all its values are missing)")
    cells = 0
    for m in spec.modalities:
        table = frame if m.kind == "tabular" else ds.sequences[m.name]
        width = sum(1 if _is_numeric(table[c]) else table[c].dropna().astype(str).nunique() + 1 for c in m.columns)
        steps = 1 if m.kind == "tabular" else min(MAX_SEQ_LEN, int(table.groupby(m.key).size().max()))
        cells += len(frame) * steps * width
    if cells > MAX_INPUT_CELLS:
        raise SpecError(f"{source}: the model input would have {cells:,} values (records x one-hot features x time "
                        f"steps), over the {MAX_INPUT_CELLS:,} cap: use fewer records, columns or categories")


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


def label_str(v) -> str:
    """Canonical text of a label value: 1, 1.0 and "1" are the same class (CSV gaps turn ints into floats)."""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, float, np.integer, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _labels(y: pd.Series) -> list[str]:
    return [label_str(v) for v in y.dropna().tolist()]


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


def check_folds(ds: Dataset, k: int) -> None:
    """Refuse k-fold CV the cohort cannot support: every fold needs a test part, a training part that can give
    up a validation split, and every class of every classification task in each test part."""
    n = len(ds)
    if k < 2:
        raise SpecError(f"folds must be at least 2, got {k}")
    if k > n:
        raise SpecError(f"{n} record(s) are too few for {k} folds (each fold needs a test record): "
                        f"use fewer folds or add records")
    if n - math.ceil(n / k) < 2:
        fits = [j for j in range(k - 1, 1, -1) if n - math.ceil(n / j) >= 2]
        fix = f"use at most {fits[0]} folds" if fits else "add records"
        raise SpecError(f"{n} record(s) are too few for {k} folds (each fold trains on n - n/k records and needs "
                        f"at least 2): {fix}")
    for t in ds.spec.tasks:
        if t.type == "regression":
            continue
        counts = pd.Series(_labels(ds.frame[t.column])).value_counts()
        if counts.min() < k:
            low = int(counts.min())
            fix = f"use at most {low} folds or add" if low >= 2 else "add"
            raise SpecError(f"task '{t.name}' has only {low} record(s) of class '{counts.idxmin()}', fewer than "
                            f"the {k} folds: {fix} records of that class")


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
