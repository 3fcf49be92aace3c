"""Cohorts larger than memory: preprocessing, training and prediction that stream a Parquet file in chunks.

The main table is read row group by row group (`pyarrow.parquet.ParquetFile.iter_batches`); each piece's
sequence rows are fetched from the sequence modality's Parquet table with a filter on the piece's ids (a key range
first, so that a table sorted by key is pruned by row-group statistics, then an exact `isin`), so every chunk is a
small `Dataset` that `Preprocessor.transform` turns into `TensorData` as in memory. Memory is bounded by the chunk
size (and the row group size), never by the cohort size.

- Splits are by row group, decided by the seed: test and validation parts are held-out row groups.
- `fit_preprocessor` computes exactly the statistics of `Preprocessor.fit` in one pass (means and standard
  deviations merged chunk by chunk with Chan's formula, categories and class values as set unions).
- `fit_stream` trains epoch by epoch: the training row groups in a seeded order, each chunk trained by
  `train.train_epoch` (the one batch loop). Presence balancing and modality dropout are drawn per chunk (the
  balancing rates are the chunk's, an estimate of the cohort's). The validation loss is the record-weighted mean of
  the per-chunk losses.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch

from .data import (HUGE, MAX_CATEGORIES, MAX_SEQ_LEN, MIN_SPLIT_ROWS, Dataset, Preprocessor, TensorData,
                   _labels, category_text, class_values, is_categorical)
from .model import ModelConfig, ModelOutput
from .spec import DatasetSpec, SpecError, load_spec
from .train import (BestWeights, History, Progress, TrainConfig, epoch_presence, evaluate_loss, optimizer, predict,
                    train_epoch)

CHUNK_ROWS = 50_000      # records per chunk: ~10 MB of model input for 6 modalities; a GRU step adds T x F


class _Moments:
    """Count, mean and sum of squared deviations of a numeric column, merged chunk by chunk (Chan et al.)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, v: np.ndarray) -> None:
        v = v[~np.isnan(v)]
        if len(v) == 0:
            return
        n, mean = len(v), float(v.mean())
        m2 = float(((v - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else math.nan


class ParquetSource:
    """A spec over a Parquet main table (and Parquet sequence tables), read in chunks of row groups."""

    def __init__(self, path: str | Path, spec: DatasetSpec | str | Path):
        self.spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
        self.path = Path(path)
        self.file = _open_parquet(self.path)
        self.sequences = {m.name: _open_parquet(self.spec.resolve(m.table), dataset=True)
                          for m in self.spec.modalities if m.kind == "sequence"}
        self._check_columns()

    @property
    def row_groups(self) -> int:
        return self.file.metadata.num_row_groups

    def rows(self, groups) -> int:
        return sum(self.file.metadata.row_group(g).num_rows for g in groups)

    def _check_columns(self) -> None:
        spec, names = self.spec, set(self.file.schema_arrow.names)
        needed = [spec.id_column] if spec.id_column else []
        needed += [c for m in spec.modalities if m.kind == "tabular" for c in m.columns]
        needed += [t.column for t in spec.tasks]
        for c in needed:
            if c not in names:
                raise SpecError(f"{self.path}: column '{c}' is not in the table")
        for m in spec.modalities:
            if m.kind == "sequence":
                have = set(self.sequences[m.name].schema.names)
                for c in [m.key, m.time_column, *m.columns]:
                    if c not in have:
                        raise SpecError(f"{spec.resolve(m.table)}: column '{c}' of modality '{m.name}' is not in "
                                        f"the table")

    def split(self, seed: int = 0, val: float = 0.15, test: float = 0.15) -> tuple[list[int], ...]:
        """(train, validation, test) row-group indices: a seeded permutation, at least one group each."""
        g = self.row_groups
        if g < MIN_SPLIT_ROWS:
            raise SpecError(f"{self.path}: has {g} row group(s); streaming splits by row group and needs at least "
                            f"{MIN_SPLIT_ROWS}: rewrite it with a smaller row_group_size")
        perm = np.random.default_rng(seed).permutation(g)
        n_test, n_val = max(1, round(test * g)), max(1, round(val * g))
        if n_test + n_val >= g:
            n_test = n_val = 1
        te, va, tr = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
        return sorted(tr.tolist()), sorted(va.tolist()), sorted(te.tolist())

    def _columns(self) -> list[str]:
        spec = self.spec
        cols = [spec.id_column] if spec.id_column else []
        cols += [c for m in spec.modalities if m.kind == "tabular" for c in m.columns]
        return list(dict.fromkeys(cols + [t.column for t in spec.tasks]))

    def _join(self, m, ids: pa.Array) -> pd.DataFrame:
        """The sequence rows of modality m whose key is one of `ids`, sorted by (key, time) like `load_data`."""
        table = self.sequences[m.name]
        key_type = table.schema.field(m.key).type
        field = pc.field(m.key)
        try:
            values = ids.cast(key_type)
            bounds = pc.min_max(values)
            expr = (field >= bounds["min"]) & (field <= bounds["max"]) & field.isin(values)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):     # e.g. int ids, string keys: compare as text
            expr = field.cast(pa.string()).isin(ids.cast(pa.string()))
        rows = table.to_table(columns=[m.key, m.time_column, *m.columns], filter=expr, use_threads=False)
        frame = rows.to_pandas()
        frame[m.key] = frame[m.key].astype(str)
        return frame.sort_values([m.key, m.time_column], kind="stable").reset_index(drop=True)

    def chunks(self, groups, chunk_rows: int = CHUNK_ROWS) -> Iterator[Dataset]:
        """Datasets of about `chunk_rows` records (at most 2x) from `groups`, in that order."""
        pieces: list[tuple[pa.Table, dict]] = []
        buffered = 0
        for g in groups:
            for batch in self.file.iter_batches(batch_size=chunk_rows, row_groups=[g], columns=self._columns(),
                                                use_threads=False):
                seqs = {m.name: self._join(m, batch.column(self.spec.id_column))
                        for m in self.spec.modalities if m.kind == "sequence"}
                pieces.append((pa.Table.from_batches([batch]), seqs))
                buffered += batch.num_rows
                if buffered >= chunk_rows:
                    yield self._dataset(pieces)
                    pieces, buffered = [], 0
        if pieces:
            yield self._dataset(pieces)

    def _dataset(self, pieces) -> Dataset:
        frame = pa.concat_tables([p for p, _ in pieces]).to_pandas()
        frame.columns = [str(c) for c in frame.columns]
        seqs = {name: pd.concat([s[name] for _, s in pieces], ignore_index=True) for name in self.sequences}
        return Dataset(self.spec, frame, seqs)

    def tensors(self, prep: Preprocessor, groups, chunk_rows: int = CHUNK_ROWS) -> Iterator[TensorData]:
        for ds in self.chunks(groups, chunk_rows):
            yield prep.transform(ds)


def _open_parquet(path: Path, dataset: bool = False):
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise SpecError(f"{path}: streaming reads Parquet only (convert the table, e.g. with "
                        f"pandas.DataFrame.to_parquet(row_group_size=...))")
    try:
        return pads.dataset(path, format="parquet") if dataset else pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own types for corrupt files
        raise SpecError(f"{path}: cannot read Parquet ({type(err).__name__})") from None


# --- preprocessing in one pass --------------------------------------------------------------------------------
def fit_preprocessor(source: ParquetSource, groups, chunk_rows: int = CHUNK_ROWS) -> Preprocessor:
    """The statistics `Preprocessor.fit` computes on the records of `groups`, streamed in one pass."""
    spec = source.spec
    moments: dict[tuple[str, str], _Moments] = {}
    cats: dict[tuple[str, str], set] = {}
    seq_max = {m.name: 0 for m in spec.modalities if m.kind == "sequence"}
    labels = {t.name: set() for t in spec.tasks if t.type != "regression"}
    targets = {t.name: _Moments() for t in spec.tasks if t.type == "regression"}
    for ds in source.chunks(groups, chunk_rows):
        for m in spec.modalities:
            table = ds.frame if m.kind == "tabular" else ds.sequences[m.name]
            for c in m.columns:
                s = table[c]
                if not is_categorical(m, c, s):        # the same rule as Preprocessor.fit (spec `categorical`)
                    v = s.to_numpy(dtype=float, na_value=np.nan)
                    if (np.abs(v) > HUGE).any():       # inf too; NaN compares False
                        raise SpecError(f"{source.path}: column '{c}' has infinite or huge values (|x| > "
                                        f"{HUGE:.0e}): clear or rescale them")
                    moments.setdefault((m.name, c), _Moments()).add(v)
                else:
                    seen = cats.setdefault((m.name, c), set())
                    seen.update(category_text(s.dropna()).unique().tolist())
                    if len(seen) > MAX_CATEGORIES:
                        raise SpecError(f"{source.path}: categorical column '{c}' of modality '{m.name}' has over "
                                        f"{MAX_CATEGORIES:,} distinct values: group rare values or leave it out")
            if m.kind == "sequence" and len(table):
                seq_max[m.name] = max(seq_max[m.name], int(table.groupby(m.key).size().max()))
        for t in spec.tasks:
            if t.type == "regression":
                targets[t.name].add(pd.to_numeric(ds.frame[t.column], errors="coerce").to_numpy(dtype=float))
            else:
                labels[t.name].update(_labels(ds.frame[t.column]))
    numeric, categories = {}, {}
    for m in spec.modalities:
        numeric[m.name], categories[m.name] = {}, {}
        for c in m.columns:
            if (m.name, c) in moments:
                mo = moments[(m.name, c)]
                std = mo.std() if mo.n > 1 else 1.0
                numeric[m.name][c] = [mo.mean if mo.n else 0.0, std if std > 1e-12 else 1.0]
            else:
                categories[m.name][c] = sorted(cats.get((m.name, c), set()))
    seq_len = {name: int(min(MAX_SEQ_LEN, v or 1)) for name, v in seq_max.items()}
    classes = {name: class_values(spec.task(name), pd.Series(sorted(v))) for name, v in labels.items()}
    target_stats = {name: [mo.mean if mo.n else math.nan, (mo.std() or 1.0) if mo.n else math.nan]
                    for name, mo in targets.items()}
    return Preprocessor(numeric, categories, classes, target_stats, seq_len)


# --- training and prediction -----------------------------------------------------------------------------------
def stream_loss(model, source: ParquetSource, prep: Preprocessor, groups, chunk_rows: int = CHUNK_ROWS,
                semantics: str = "per-record") -> float:
    """Record-weighted mean of the per-chunk losses (the in-memory loss averages over (step, task, record))."""
    total, count = 0.0, 0
    for data in source.tensors(prep, groups, chunk_rows):
        total += evaluate_loss(model, data, semantics=semantics) * len(data)
        count += len(data)
    return total / max(count, 1)


def fit_stream(model, source: ParquetSource, prep: Preprocessor, train_groups, val_groups,
               config: TrainConfig = TrainConfig(), chunk_rows: int = CHUNK_ROWS, progress: Progress | None = None,
               should_stop=None) -> History:
    """Train in place over streamed chunks; keep the weights of the best validation epoch (as `train.fit`)."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = optimizer(model, config)
    shuffle = config.shuffle and config.semantics != "paper"
    history: History = []
    best = BestWeights(history, progress, config.epochs)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = list(train_groups)
        if shuffle:      # a new row-group order every epoch; train_epoch shuffles records inside a chunk
            order = [order[i] for i in torch.randperm(len(order), generator=gen).tolist()]
        total, count, cancelled = 0.0, 0, False
        for data in source.tensors(prep, order, chunk_rows):
            present = epoch_presence(data, config, gen)
            s, n, cancelled = train_epoch(model, data, present, opt, config, gen, should_stop)
            total, count = total + s, count + n
            if cancelled:
                break
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "seconds": time.perf_counter() - t0}
        if not cancelled:
            row["val_loss"] = stream_loss(model, source, prep, val_groups, chunk_rows, config.semantics)
        if best.epoch(model, row) >= config.patience or cancelled:
            break
    best.restore(model)
    model.eval()
    return history


@dataclass
class StreamPrediction:
    """Predictions over streamed chunks, in file order: output.logits[t] (K+1, N, C), ran (K, N); y[t] (N,)."""
    ids: list[str]
    output: ModelOutput
    y: dict[str, torch.Tensor]


def predict_stream(model, source: ParquetSource, prep: Preprocessor, groups, chunk_rows: int = CHUNK_ROWS,
                   semantics: str = "per-record") -> StreamPrediction:
    """`train.predict` chunk by chunk; states are dropped (K+1 x N x S would grow with the cohort)."""
    ids, outs, ys = [], [], []
    for data in source.tensors(prep, groups, chunk_rows):
        out = predict(model, data, semantics=semantics)
        outs.append(ModelOutput(out.steps, None, out.logits, out.ran))
        ys.append(data.y)
        ids += data.ids
    if not outs:
        raise SpecError(f"{source.path}: the selected row groups hold no records")
    first = outs[0]
    output = ModelOutput(first.steps, None, {t: torch.cat([o.logits[t] for o in outs], dim=1) for t in first.logits},
                         torch.cat([o.ran for o in outs], dim=1))
    return StreamPrediction(ids, output, {t: torch.cat([y[t] for y in ys]) for t in ys[0]})


def train_stream(data: str | Path, spec: DatasetSpec | str | Path, kind: str = "multimodn",
                 model_config: ModelConfig | None = None, config: TrainConfig = TrainConfig(),
                 chunk_rows: int = CHUNK_ROWS, progress: Progress | None = None, should_stop=None):
    """`train.train_model` for a Parquet cohort larger than memory: row-group split by seed, preprocessing fitted
    on the training groups in one pass, streamed training, test metrics over the streamed test groups."""
    from .checkpoint import Trained, build_model
    from .metrics import metric_matrix
    if chunk_rows < 1:
        raise SpecError(f"chunk rows must be at least 1, got {chunk_rows}")
    source = ParquetSource(data, spec)
    tr, va, te = source.split(config.seed)
    prep = fit_preprocessor(source, tr, chunk_rows)
    torch.manual_seed(config.seed)
    model = build_model(kind, source.spec, prep, model_config or ModelConfig())
    history = fit_stream(model, source, prep, tr, va, config, chunk_rows, progress, should_stop)
    test = predict_stream(model, source, prep, te, chunk_rows, config.semantics)
    matrix = metric_matrix(test.output, test.y, model.tasks, prep.target_stats)
    info = {"train_config": config.to_json(), "dataset": source.spec.name,
            "rows": {"train": source.rows(tr), "validation": source.rows(va), "test": source.rows(te)},
            "stream": {"chunk_rows": chunk_rows, "row_groups": {"train": tr, "validation": va, "test": te}}}
    return Trained(model, source.spec, prep, history, matrix, info)
