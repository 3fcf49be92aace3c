"""Uploads and the private per-user folder they (and the MNAR results, and models trained in the app) are written
to. One upload size cap: `UPLOAD_CAP_BYTES` (the engine's `data.MAX_FILE_BYTES`; `.streamlit/config.toml`'s
`server.maxUploadSize` says the same in MB, checked by tests/test_app.py)."""
from __future__ import annotations

import hashlib
import os
import re
import stat
import uuid
from pathlib import Path

from mmn_core import SpecError, load_spec
from mmn_core.data import MAX_FILE_BYTES, load_data

UPLOAD_CAP_BYTES = MAX_FILE_BYTES
UPLOAD_CAP_TEXT = f"{UPLOAD_CAP_BYTES // 2**20} MB"
# Private per-user cache (uploads, MNAR results, models trained in the app): never a shared temp folder.
CACHE_DIR = Path(os.environ.get("MMN_LENS_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmn-lens")


# --- the private cache folder --------------------------------------------------------------------------------
def private_dir(path: Path) -> Path:
    """`path` (under CACHE_DIR) as a folder only this user can read, creating it with mode 0700. Refuses a
    symlink or a folder owned by someone else (a planted folder would otherwise be written to and read from)."""
    path = Path(path)
    for p in [*reversed(path.relative_to(CACHE_DIR).parents), path.relative_to(CACHE_DIR)]:
        d = CACHE_DIR / p
        try:
            d.mkdir(mode=0o700, parents=d == CACHE_DIR)
        except FileExistsError:
            pass
        info = os.lstat(d)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise SpecError(f"the cache folder {d} is a link, not a folder, or not yours; remove it or set "
                            "MMN_LENS_CACHE")
        if info.st_mode & 0o077:
            os.chmod(d, 0o700)
    return path


def write_private(path: Path, blob: bytes) -> None:
    """Write a file readable by this user only, atomically, never through a symlink."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)


def read_private(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None if missing, a symlink, not ours or larger than `limit`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > limit:
            return None
        return f.read(limit)


# --- uploads -----------------------------------------------------------------------------------------------
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(name: str) -> str:
    """A file name that cannot leave the upload folder or carry markup (used only on disk)."""
    base = _SAFE.sub("_", Path(name).name).strip("._") or "file"
    return base[:80]


def register_upload(spec_file: tuple[str, bytes], tables: list[tuple[str, bytes]]) -> tuple[str, dict]:
    """Write an uploaded spec and its table(s) to a private folder, validate them, and return
    (dataset key, {"spec", "data", "title"}). Raises SpecError with one clear line.

    The main table is the file named by the spec's `data` key, or the only file not used by a sequence
    modality; sequence tables must be uploaded under the names the spec gives them."""
    if not tables:
        raise SpecError("upload the data table (CSV or Parquet) together with its spec")
    for name, blob in [spec_file, *tables]:
        if len(blob) > UPLOAD_CAP_BYTES:
            raise SpecError(f"{name}: file is {len(blob) / 2**20:.0f} MB, over the {UPLOAD_CAP_TEXT} cap")
    digest = hashlib.sha256(spec_file[1] + b"".join(b for _, b in sorted(tables))).hexdigest()[:12]
    key = f"upload-{digest}"
    folder = private_dir(CACHE_DIR / "uploads" / key)
    write_private(folder / "spec.yaml", spec_file[1])
    spec = load_spec(folder / "spec.yaml")
    by_name = {}
    for name, blob in tables:
        if not name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq")):
            raise SpecError(f"{name}: tables must be .csv, .csv.gz or .parquet")
        by_name[_safe_name(name)] = blob
    seq_names = set()
    for m in spec.modalities:
        if m.kind == "sequence":
            target = (folder / m.table).resolve()
            if folder.resolve() not in target.parents:
                raise SpecError(f"spec: table '{m.table}' of modality '{m.name}' must be a plain file name")
            wanted = _safe_name(m.table)
            if wanted not in by_name:
                raise SpecError(f"spec: modality '{m.name}' needs its table '{Path(m.table).name}'; upload it too")
            if target.parent != folder.resolve():
                raise SpecError(f"spec: table '{m.table}' of modality '{m.name}' must be a plain file name")
            write_private(folder / target.name, by_name[wanted])
            seq_names.add(wanted)
    main = [n for n in by_name if n not in seq_names]
    if spec.data and _safe_name(spec.data) in by_name:
        main_name = _safe_name(spec.data)
    elif len(main) == 1:
        main_name = main[0]
    else:
        raise SpecError("more than one table uploaded: name the main one in the spec's 'data' key")
    suffix = ".parquet" if main_name.lower().endswith((".parquet", ".pq")) else (
        ".csv.gz" if main_name.lower().endswith(".gz") else ".csv")
    data_path = folder / f"main-table{suffix}"
    write_private(data_path, by_name[main_name])
    load_data(data_path, spec)          # validate now: the message appears where the user uploaded
    return key, {"spec": str(folder / "spec.yaml"), "data": str(data_path),
                 "title": spec.title or spec.name}
