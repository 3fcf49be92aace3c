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
from mmn_core.validate import problems_error

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


def _user_name(name: str) -> str:
    """The user's own file name as shown back to them (no folder part; escaped where it is rendered)."""
    return Path(str(name).replace("\\", "/")).name or "file"


def _in_user_names(err: SpecError, names: dict[Path, str], folder: Path) -> SpecError:
    """`err` with every on-disk path of the upload folder replaced by the file name the user uploaded (the
    folder, a temp or cache path, and the renamed main table never reach the page); keeps `.problems`."""
    pairs = []
    for path, shown in names.items():
        pairs += [(str(path.resolve()), shown), (str(path), shown)]
    pairs += [(str(folder.resolve()) + os.sep, ""), (str(folder) + os.sep, ""), (str(folder.resolve()), "the upload"),
              (str(folder), "the upload"), (str(CACHE_DIR), "the app's folder")]
    pairs.sort(key=lambda p: -len(p[0]))

    def clean(text: str) -> str:
        for raw, shown in pairs:
            text = text.replace(raw, shown)
        return text

    return problems_error([clean(p) for p in (getattr(err, "problems", None) or [str(err)])])


def register_upload(spec_file: tuple[str, bytes], tables: list[tuple[str, bytes]], check=None) -> tuple[str, dict]:
    """Write an uploaded spec and its table(s) to a private folder, validate them, and return
    (dataset key, {"spec", "data", "title"}). Raises one SpecError listing every problem found (`.problems`),
    in the user's own file names: never a path of the private folder, nor the name the main table gets on disk.

    The main table is the file named by the spec's `data` key, or the only file not used by a sequence
    modality; sequence tables must be uploaded under the names the spec gives them. `check(key, info)`, if given,
    runs last (e.g. the app's own loading and split) and its SpecError is reported in the same names."""
    if not tables:
        raise SpecError("upload the data table (CSV or Parquet) together with its spec")
    problems = [f"{_user_name(name)}: file is {len(blob) / 2**20:.0f} MB, over the {UPLOAD_CAP_TEXT} cap"
                for name, blob in [spec_file, *tables] if len(blob) > UPLOAD_CAP_BYTES]
    problems += [f"{_user_name(name)}: tables must be .csv, .csv.gz or .parquet" for name, _ in tables
                 if not name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq"))]
    if problems:
        raise problems_error(problems)
    digest = hashlib.sha256(spec_file[1] + b"".join(b for _, b in sorted(tables))).hexdigest()[:12]
    key = f"upload-{digest}"
    folder = private_dir(CACHE_DIR / "uploads" / key)
    names = {folder / "spec.yaml": _user_name(spec_file[0])}
    try:
        info = _register(folder, spec_file, tables, names)
        if check is not None:
            check(key, info)
        return key, info
    except SpecError as err:
        raise _in_user_names(err, names, folder) from None
    except OSError as err:            # its text names a path of the private folder
        raise SpecError(f"the upload could not be stored or read ({err.strerror or type(err).__name__})") from None


def _register(folder: Path, spec_file: tuple[str, bytes], tables: list[tuple[str, bytes]],
              names: dict[Path, str]) -> dict:
    """register_upload's body; `names` ({path on disk: the user's file name}) is filled as files are written."""
    write_private(folder / "spec.yaml", spec_file[1])
    spec = load_spec(folder / "spec.yaml")
    by_name, shown = {}, {}
    for name, blob in tables:
        by_name[_safe_name(name)] = blob
        shown[_safe_name(name)] = _user_name(name)
    seq_names = set()
    problems = []
    for m in spec.modalities:
        if m.kind == "sequence":
            target = (folder / m.table).resolve()
            if folder.resolve() not in target.parents or target.parent != folder.resolve():
                problems.append(f"spec: table '{m.table}' of modality '{m.name}' must be a plain file name")
                continue
            wanted = _safe_name(m.table)
            if wanted not in by_name:
                problems.append(f"spec: modality '{m.name}' needs its table '{Path(m.table).name}'; upload it too")
                continue
            write_private(folder / target.name, by_name[wanted])
            names[folder / target.name] = shown[wanted]
            seq_names.add(wanted)
    main = [n for n in by_name if n not in seq_names]
    if spec.data and _safe_name(spec.data) in by_name:
        main_name = _safe_name(spec.data)
    elif len(main) == 1:
        main_name = main[0]
    else:
        problems.append("more than one table uploaded: name the main one in the spec's 'data' key")
    if problems:
        raise problems_error(problems)
    suffix = ".parquet" if main_name.lower().endswith((".parquet", ".pq")) else (
        ".csv.gz" if main_name.lower().endswith(".gz") else ".csv")
    data_path = folder / f"main-table{suffix}"
    write_private(data_path, by_name[main_name])
    names[data_path] = shown[main_name]
    load_data(data_path, spec)          # validate now: the message appears where the user uploaded
    return {"spec": str(folder / "spec.yaml"), "data": str(data_path), "title": spec.title or spec.name}
