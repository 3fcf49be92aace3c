"""Input checks: read a table within caps, check a dataset against its spec, check a cohort against its folds.

Every refusal is a `SpecError` with one line naming the file, the column or field, and the fix. Sizes and counts
are checked before anything large is allocated (one-hot width, model-input cells, categories per column).
This module does not import `data` (which re-exports these names): `check_dataset` takes any object with the
`Dataset` fields below.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import zipfile
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from .spec import DatasetSpec, SpecError

MAX_FILE_BYTES = 200 * 1024 * 1024   # refuse bigger uploads: the dashboard and CLI hold data in memory
MAX_DECOMPRESSED_BYTES = MAX_FILE_BYTES   # what a compressed table may expand to: the same as a plain file
MAX_COLUMNS = 20_000                 # columns of one table (wider ones are not a cohort table)
MAX_SEQ_LEN = 64                     # keep the last 64 time steps of a sequence
MAX_CATEGORIES = 1000                # distinct values of one categorical column (each becomes a one-hot input)
MAX_INPUT_CELLS = 100_000_000        # records x input features (x time steps): 400 MB of float32 model input
HUGE = 1e150                         # |x| above this overflows when squared (std, losses): refused like inf
MOSTLY_NUMERIC = 0.95                # a text column whose values are at least this share numbers is a typo
MIN_SPLIT_ROWS = 3                   # train / validation / test need one record each


class DatasetLike(Protocol):
    """What the checks read of a `data.Dataset` (named here so that this module need not import `data`)."""
    spec: DatasetSpec
    frame: pd.DataFrame
    sequences: dict[str, pd.DataFrame]

    def __len__(self) -> int: ...
    def presence(self) -> pd.DataFrame: ...


# --- reading files -------------------------------------------------------------------------------------
def _size(n: int) -> str:
    """Bytes for people: '1.5 MB', '12 KB', '300 bytes' (a small cap must not print as '0 MB')."""
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB".replace(".0 MB", " MB")
    return f"{n / 2**10:.0f} KB" if n >= 2**10 else f"{n} bytes"


class _TooBig(Exception):
    """A compressed table expands past MAX_DECOMPRESSED_BYTES."""


class _Capped(io.RawIOBase):
    """A binary stream that raises _TooBig once more than `cap` bytes have been read from it."""

    def __init__(self, inner, cap: int):
        self.inner, self.left = inner, cap

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.inner.readinto(buf)
        self.left -= n
        if self.left < 0:
            raise _TooBig
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _open_csv(path: Path) -> io.BufferedReader:
    """The bytes of a CSV table, decompressed (gzip, bz2, xz or a one-file zip) and capped in size while read."""
    suffix = path.suffix.lower()
    if suffix in _OPENERS:
        return io.BufferedReader(_Capped(_OPENERS[suffix](path, "rb"), MAX_DECOMPRESSED_BYTES))
    if suffix == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise SpecError(f"{path}: not a readable zip archive") from None
        names = [i for i in archive.infolist() if not i.is_dir()]
        if len(names) != 1:
            archive.close()
            raise SpecError(f"{path}: a zip archive must hold exactly one table, found {len(names)} files")
        return io.BufferedReader(_Capped(archive.open(names[0]), MAX_DECOMPRESSED_BYTES))
    return open(path, "rb")   # plain text (compression is never guessed from content)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    with _open_csv(path) as f:
        return pd.read_csv(f, encoding="utf-8", encoding_errors="strict", compression=None, **kwargs)


def _check_parquet_size(path: Path) -> None:
    """Refuse a Parquet file whose uncompressed data (from its footer, before reading) is over the cap."""
    import pyarrow.parquet as pq
    meta = pq.ParquetFile(path).metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > MAX_DECOMPRESSED_BYTES:
        raise SpecError(f"{path}: the table holds {_size(size)} of data once decompressed, over the "
                        f"{_size(MAX_DECOMPRESSED_BYTES)} cap: use fewer rows or columns")
    if meta.num_columns > MAX_COLUMNS:
        raise SpecError(f"{path}: {meta.num_columns:,} columns, over the {MAX_COLUMNS:,} cap")


def table_path(spec: DatasetSpec, relative: str, what: str) -> Path:
    """The file a spec names (a sequence `table`), refused when it lies outside the spec's folder: an absolute
    path, `../`, or a link that leads out (a spec from someone else must not read other files)."""
    base = Path(spec.base_dir or ".").resolve()
    target = (base / relative).resolve()
    if Path(relative).is_absolute() or not target.is_relative_to(base):
        raise SpecError(f"spec in {base}: {what} path '{relative}' leads outside the spec's folder: put the file "
                        f"beside the spec (or in a folder below it) and give its path relative to the spec")
    return base / relative


def read_table(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    """Read CSV (plain, .gz, .bz2, .xz or a one-file .zip) or Parquet within the size caps; every failure
    becomes a SpecError naming the file."""
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
            _check_parquet_size(path)
            frame = pd.read_parquet(path)
            header = [str(c) for c in frame.columns]
        else:
            # read_csv renames a repeated header name ("a" -> "a.1"), so look at the raw header row first
            header = _read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
            if len(header) > MAX_COLUMNS:
                raise SpecError(f"{path}: {len(header):,} columns, over the {MAX_COLUMNS:,} cap")
            frame = _read_csv(path, dtype=dtype)
    except _TooBig:
        raise SpecError(f"{path}: expands to more than {_size(MAX_DECOMPRESSED_BYTES)} once decompressed, over "
                        f"the cap: use fewer rows or columns, or split the table") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: file is not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise SpecError(f"{path}: file has no columns") from None
    except SpecError:
        raise
    except (pd.errors.ParserError, ValueError, OSError, EOFError, zlib.error, lzma.LZMAError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"{path}: cannot parse table ({first[:200]})") from None
    except Exception as err:  # pyarrow raises its own types for corrupt parquet
        raise SpecError(f"{path}: cannot read table ({type(err).__name__})") from None
    if len(frame) == 0:
        raise SpecError(f"{path}: table has a header but no rows")
    dup_cols = [c for i, c in enumerate(header) if c in header[:i]]
    if dup_cols:
        raise SpecError(f"{path}: column '{dup_cols[0]}' appears twice in the header")
    frame.columns = [str(c) for c in frame.columns]
    return frame


# --- checks --------------------------------------------------------------------------------------------
def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def is_categorical(m, column: str, s: pd.Series) -> bool:
    """A column is one-hot encoded when it holds text, or when the spec declares it `categorical`."""
    return column in m.categorical or not _is_numeric(s)


def category_text(s: pd.Series) -> pd.Series:
    """Values as category names: numbers by `label_str` (1, 1.0 and "1" are one category), the rest as text."""
    return s.map(label_str) if _is_numeric(s) else s.astype(str)


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


def problems_error(problems: list[str]) -> SpecError:
    """One SpecError carrying every problem found: its message joins them with "; " (one readable line for the
    CLI) and `.problems` keeps the list (the dashboard shows one bullet each)."""
    err = SpecError("; ".join(problems))
    err.problems = list(problems)
    return err


def check_dataset(ds: DatasetLike, source: str = "data") -> None:
    """Check the table(s) against the spec; raise one SpecError listing ALL the problems found (`.problems`).
    A check that needs an earlier one to pass (a column's values need the column) is skipped when it failed."""
    spec, frame = ds.spec, ds.frame
    problems: list[str] = []
    dup_cols = frame.columns[frame.columns.duplicated()]
    if len(dup_cols):
        raise problems_error([f"{source}: column '{c}' appears twice in the table" for c in dict.fromkeys(dup_cols)])
    cols = set(frame.columns)
    ids_ok = spec.id_column is None
    if spec.id_column is not None:
        if spec.id_column not in cols:
            problems.append(f"{source}: id column '{spec.id_column}' is not in the table")
        else:
            ids = frame[spec.id_column]
            dup = ids[ids.astype(str).duplicated()]
            if ids.isna().any():
                problems.append(f"{source}: id column '{spec.id_column}' has empty values")
            elif len(dup):
                problems.append(f"{source}: duplicate id '{dup.iloc[0]}' in column '{spec.id_column}'")
            else:
                ids_ok = True
    for m in spec.modalities:
        table = frame if m.kind == "tabular" else ds.sequences[m.name]
        where = source if m.kind == "tabular" else str(spec.resolve(m.table))
        needed = m.columns + ([m.key, m.time_column] if m.kind == "sequence" else [])
        missing = [c for c in needed if c not in table.columns]
        problems += [f"{where}: column '{c}' of modality '{m.name}' is not in the table" for c in missing]
        for c in m.columns:
            if c in missing:
                continue
            s = table[c]
            if not is_categorical(m, c, s):
                bad = _not_finite(s)
                if bad:
                    problems.append(f"{where}: column '{c}' has infinite or huge values (|x| > {HUGE:.0e}) in "
                                    f"{bad} row(s): clear or rescale them")
                continue
            n_bad, examples = (0, []) if c in m.categorical else _numeric_typos(s)
            if n_bad:
                shown = ", ".join(f"'{e}'" for e in examples)
                problems.append(f"{where}: column '{c}' of modality '{m.display}' is numbers except for {n_bad} "
                                f"value(s) such as {shown}, which would make it categorical: clear those cells "
                                f"(empty = missing) or remove thousands separators, or, if its values are "
                                f"categories, list it under 'categorical' of that modality in the spec")
                continue
            n_cat = category_text(s.dropna()).nunique()
            if n_cat > MAX_CATEGORIES:
                problems.append(f"{where}: categorical column '{c}' of modality '{m.name}' has {n_cat:,} distinct "
                                f"values, over the {MAX_CATEGORIES:,} cap (one input per value): group rare "
                                f"values or leave the column out")
        if m.kind == "sequence" and not missing:
            if not _is_numeric(table[m.time_column]):
                problems.append(f"{where}: time column '{m.time_column}' must be numeric")
            keys = set(table[m.key].astype(str))
            if ids_ok and not keys & set(frame[spec.id_column].astype(str)):
                problems.append(f"{where}: no value of key '{m.key}' matches an id of the main table")
    for t in spec.tasks:
        if t.column not in cols:
            problems.append(f"{source}: target column '{t.column}' of task '{t.name}' is not in the table")
            continue
        if isinstance(frame[t.column], pd.DataFrame):
            problems.append(f"{source}: target column '{t.column}' of task '{t.name}' appears twice in the table")
            continue
        y = frame[t.column].dropna()
        if len(y) == 0:
            problems.append(f"{source}: task '{t.name}' has no labelled record")
            continue
        if t.type == "regression":
            if not _is_numeric(frame[t.column]):
                n_bad, examples = _numeric_typos(frame[t.column])
                shown = ', '.join(repr(e) for e in examples)
                such = f" ({n_bad} value(s) such as {shown}: clear them)" if n_bad else ""
                problems.append(f"{source}: regression target '{t.column}' is not numeric{such}")
                continue
            bad = _not_finite(y)
            if bad:
                problems.append(f"{source}: regression target '{t.column}' has infinite or huge values "
                                f"(|x| > {HUGE:.0e}) in {bad} row(s)")
        elif t.type == "binary":
            values = sorted(set(_labels(y)))
            if len(values) != 2:
                problems.append(f"{source}: binary task '{t.name}' needs exactly 2 values in '{t.column}', "
                                f"found {len(values)}")
            elif t.positive is not None and label_str(t.positive) not in values:
                problems.append(f"{source}: positive value '{t.positive}' of task '{t.name}' never occurs")
        elif y.nunique() < 2:
            problems.append(f"{source}: multiclass task '{t.name}' needs at least 2 classes")
    if problems:                      # the checks below read every column: only on a table that passed the above
        raise problems_error(problems)
    pres = ds.presence()
    for m in spec.modalities:
        if not pres[m.name].any():
            where = source if m.kind == "tabular" else str(spec.resolve(m.table))
            problems.append(f"{where}: modality '{m.name}' is never present (all its values are missing)")
    cells = 0
    for m in spec.modalities:
        table = frame if m.kind == "tabular" else ds.sequences[m.name]
        width = sum(category_text(table[c].dropna()).nunique() + 1 if is_categorical(m, c, table[c]) else 1
                    for c in m.columns)
        steps = 1 if m.kind == "tabular" else min(MAX_SEQ_LEN, int(table.groupby(m.key).size().max()))
        cells += len(frame) * steps * width
    if cells > MAX_INPUT_CELLS:
        problems.append(f"{source}: the model input would have {cells:,} values (records x one-hot features x time "
                        f"steps), over the {MAX_INPUT_CELLS:,} cap: use fewer records, columns or categories")
    if problems:
        raise problems_error(problems)


def label_str(v) -> str:
    """Canonical text of a label value: 1, 1.0 and "1" are the same class (CSV gaps turn ints into floats)."""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, float, np.integer, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _labels(y: pd.Series) -> list[str]:
    return [label_str(v) for v in y.dropna().tolist()]



def check_folds(ds: DatasetLike, k: int) -> None:
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
