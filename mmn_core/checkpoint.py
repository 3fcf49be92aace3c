"""A trained model as a unit (`Trained`), and its checkpoint: `model.safetensors` + `config.json`.

Loading rebuilds the model from JSON and reads tensors with safetensors: no pickle, no code runs. The JSON
holds the SHA-256 of the weights file and of its own content, so a truncated, tampered or hand-edited
checkpoint is refused with a clear message (an edited statistic would silently change every prediction). The
checksums detect accidents (truncation, a hand edit), not tampering: they are unkeyed, so whoever can edit the
files can recompute them. The security promise is that loading runs no code, and that every loaded size and
statistic is validated before use.

A save never deletes what it did not write: it replaces only a folder that is a checkpoint of this tool (its own
two files and nothing else) or an empty one, and refuses anything else. It writes a complete new folder beside
the old one and swaps it in with renames under a lock on the parent folder (two saves at once queue); if the swap
fails the old folder is put back, a crash between the two renames is recovered by `load` (it reads
`.<name>.old`), and temp folders left by a killed save are removed by the next save to the same place.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .version import __version__
from .baseline import PFusion
from .data import Preprocessor
from .model import ModalityDef, ModelConfig, MultiModN, TaskDef
from .spec import DatasetSpec, SpecError, spec_from_dict

FORMAT = "mmn-lens-checkpoint/1"
FILES = ("config.json", "model.safetensors")
MAX_CONFIG_BYTES = 64 * 2**20       # config.json: spec + statistics + history; real ones are < 1 MB
MAX_WEIGHTS_BYTES = 2 * 2**30       # a MultiModN of this tool's sizes is a few MB
MAX_SIZE = 4096                     # state / hidden width accepted from a config
MAX_ENTRIES = 1000                  # modalities or tasks accepted from a config
MODEL_KINDS = {"multimodn": MultiModN, "pfusion": PFusion}     # the keys of kinds.KINDS


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message says why in one line."""


@dataclass
class Trained:
    """A model with everything needed to use it on new data."""
    model: MultiModN | PFusion
    spec: DatasetSpec
    prep: Preprocessor
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)     # metric matrix on the test split
    info: dict = field(default_factory=dict)        # train config, split sizes, seed, ...

    @property
    def kind(self) -> str:
        return self.model.kind


def build_model(kind: str, spec: DatasetSpec, prep: Preprocessor, config: ModelConfig):
    """An untrained model whose input and output sizes follow the spec and the fitted preprocessing."""
    if kind not in MODEL_KINDS:
        raise SpecError(f"unknown model '{kind}' (choose: {', '.join(MODEL_KINDS)})")
    mods = [ModalityDef(m.name, m.kind, prep.n_features(m)) for m in spec.modalities]
    tasks = [TaskDef(t.name, t.type, prep.n_outputs(t), t.weight) for t in spec.tasks]
    return MODEL_KINDS[kind](mods, tasks, config)


def _sha256(path: Path) -> str:
    """Streamed: a large file is hashed in 1 MB chunks, never read into memory at once."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def _config_sha256(config: dict) -> str:
    """Hash of config.json's content (without this hash): canonical JSON, so re-reading gives the same hash."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _old(directory: Path) -> Path:
    """Where `save` parks the previous checkpoint during the swap."""
    return directory.with_name(f".{directory.name}.old")


def is_checkpoint_folder(directory: Path) -> bool:
    """True for a folder this tool wrote: nothing in it but config.json (of our format) and model.safetensors."""
    if directory.is_symlink() or not directory.is_dir():
        return False
    names = {p.name for p in directory.iterdir()}
    if not names:
        return True                                   # empty: nothing to lose
    if not names <= set(FILES) or (directory / "config.json").is_symlink():
        return False
    try:
        with open(directory / "config.json", encoding="utf-8") as f:
            return json.loads(f.read(MAX_CONFIG_BYTES)).get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def check_save_target(directory: Path) -> None:
    if directory.exists() or directory.is_symlink():
        if not is_checkpoint_folder(directory):
            raise CheckpointError(f"{directory} exists and is not a MultiModN Lens checkpoint; choose another "
                                  "folder (a save replaces only a checkpoint folder, never other files)")


def _remove_stale_temps(directory: Path) -> None:
    """Temp folders of saves that were killed before their `finally` ran (we hold the lock: none is live)."""
    for p in directory.parent.glob(f".{directory.name}.tmp-*"):
        if p.is_dir() and not p.is_symlink() and {q.name for q in p.iterdir()} <= set(FILES):
            shutil.rmtree(p, ignore_errors=True)


def save(trained: Trained, directory: str | Path) -> Path:
    """Write `directory` atomically. Raises CheckpointError if it exists and is not a checkpoint folder."""
    directory = Path(os.path.abspath(directory))
    check_save_target(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"{directory.parent}: cannot create the folder ({err.strerror})") from None
    lock = os.open(directory.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)               # a second save to this parent waits here
        check_save_target(directory)                       # re-check: the other save may have changed it
        _remove_stale_temps(directory)
        _write_and_swap(trained, directory)
    except OSError as err:
        raise CheckpointError(f"{directory}: cannot save ({err.strerror or err})") from None
    finally:
        os.close(lock)                                 # closing releases the lock
    return directory


def _write_and_swap(trained: Trained, directory: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        weights = tmp / "model.safetensors"
        tensors = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
        save_file(tensors, str(weights))
        config = {"format": FORMAT, "version": __version__, "kind": trained.kind,
                  "model_config": trained.model.config.to_json(), "spec": trained.spec.to_json(),
                  "preprocessing": trained.prep.to_json(), "metrics": trained.metrics,
                  "history": trained.history, "info": trained.info, "weights_sha256": _sha256(weights)}
        config["config_sha256"] = _config_sha256(config)
        with open(tmp / "config.json", "w", encoding="utf-8") as f:
            json.dump(config, f, indent=1, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        old = _old(directory)
        moved = False
        if directory.exists():
            if old.exists() and is_checkpoint_folder(old):
                shutil.rmtree(old)
            os.replace(directory, old)                 # fails (never deletes) if `old` is something else
            moved = True
        try:
            os.replace(tmp, directory)
        except BaseException:
            if moved and not directory.exists():   # put the previous checkpoint back where it was
                os.replace(old, directory)
            raise
        if moved:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_sizes(cfg_path: Path, mc: dict, spec: DatasetSpec) -> None:
    """Refuse sizes that would allocate or hang before the weights are even compared."""
    for key in ("state_size", "hidden"):
        v = mc.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIZE:
            raise CheckpointError(f"{cfg_path}: model_config.{key} = {v!r} is not an integer in 1..{MAX_SIZE}")
    if len(spec.modalities) > MAX_ENTRIES or len(spec.tasks) > MAX_ENTRIES:
        raise CheckpointError(f"{cfg_path}: more than {MAX_ENTRIES} modalities or tasks")


def _check_statistics(cfg_path: Path, prep: Preprocessor) -> None:
    """Every mean finite, every spread finite and positive: otherwise predictions would be NaN or wrong."""
    pairs = [(f"{m}.{c}", ms) for m, cols in prep.numeric.items() for c, ms in cols.items()]
    pairs += [(f"target {t}", ms) for t, ms in prep.target_stats.items()]
    for name, ms in pairs:
        ok = (isinstance(ms, list) and len(ms) == 2 and all(isinstance(v, (int, float)) for v in ms)
              and all(math.isfinite(v) for v in ms) and ms[1] > 0)
        if not ok:
            raise CheckpointError(f"{cfg_path}: preprocessing statistics of {name} are not a finite mean and a "
                                  f"positive spread ({ms!r})")
    for name, n in prep.seq_len.items():
        if not isinstance(n, int) or not 1 <= n <= 100_000:
            raise CheckpointError(f"{cfg_path}: sequence length of {name} = {n!r} is out of range")


def load(directory: str | Path, spec: DatasetSpec | None = None) -> Trained:
    """Rebuild a Trained from a checkpoint folder. With `spec`, refuse a checkpoint trained on another spec."""
    directory = Path(directory)
    if not directory.exists() and _old(directory).is_dir():
        directory = _old(directory)            # a save crashed between its two renames: the previous one
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{directory}: not a checkpoint (needs config.json and model.safetensors)")
    for path, cap in ((cfg_path, MAX_CONFIG_BYTES), (weights, MAX_WEIGHTS_BYTES)):
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):            # a symlink (to a device, or out of the folder) is refused
            raise CheckpointError(f"{path}: not a regular file (symlinks are not followed)")
        if info.st_size > cap:
            raise CheckpointError(f"{path}: {info.st_size:,} bytes, more than the {cap:,} a checkpoint may have")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{cfg_path}: config.json is not valid JSON") from None
    except RecursionError:
        raise CheckpointError(f"{cfg_path}: config.json is nested too deeply") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: unknown checkpoint format (expected {FORMAT})")
    if cfg.get("config_sha256") != _config_sha256(cfg):
        raise CheckpointError(f"{cfg_path}: config.json was edited after saving (checksum mismatch)")
    if _sha256(weights) != cfg.get("weights_sha256"):
        raise CheckpointError(f"{weights}: weights do not match config.json (file truncated or modified)")
    try:
        ck_spec = spec_from_dict(cfg["spec"], f"{cfg_path} spec")
        prep = Preprocessor.from_json(cfg["preprocessing"])
        _check_sizes(cfg_path, cfg["model_config"], ck_spec)
        _check_statistics(cfg_path, prep)
        model = build_model(cfg["kind"], ck_spec, prep, ModelConfig(**cfg["model_config"]))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        # e.g. a negative size makes torch raise RuntimeError; report it, never a traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{cfg_path}: incomplete or inconsistent config ({first})") from None
    if spec is not None and spec.to_json() != ck_spec.to_json():
        raise CheckpointError(f"{directory}: checkpoint was trained on spec '{ck_spec.name}', which differs from "
                              f"the spec given ('{spec.name}')")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: unreadable weights ({err})") from None
    expected = model.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        raise CheckpointError(f"{weights}: weights do not fit the architecture in config.json")
    model.load_state_dict(tensors)
    model.eval()
    return Trained(model, ck_spec.model_copy(update={"base_dir": str(spec.base_dir) if spec else ""}), prep,
                   cfg.get("history", []), cfg.get("metrics", {}), cfg.get("info", {}))


# --- the checkpoint as one .zip (the dashboard's download, and its upload) -------------------------------------
MAX_ZIP_BYTES = 200 * 2**20         # an uploaded .zip (the dashboard's upload limit, .streamlit/config.toml)
MAX_ZIP_ENTRIES = 8                 # the two files and at most their folder entries


def to_zip(directory: str | Path, folder: str = "") -> bytes:
    """The checkpoint folder as .zip bytes: its two files, inside `folder/` when given (load_zip reads it back)."""
    import io
    import zipfile
    directory = Path(directory)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in FILES:
            z.write(directory / f, f"{folder}/{f}" if folder else f)
    return buf.getvalue()


def extract_zip(data: bytes, directory: str | Path) -> Path:
    """Unpack a checkpoint .zip (to_zip's layout: config.json and model.safetensors, at the top or in one folder)
    into `directory` (created; must be empty or absent) and return it. Nothing is trusted from the archive but
    the bytes of those two files: names are checked (no absolute paths, no '..', no other files, no links) and
    then never used to build a path; each file is copied in chunks and refused past its load cap, whatever
    its header claims (a zip bomb stops at the cap). Raises CheckpointError with one line. `load` then runs
    its own checks (checksums, sizes, statistics, architecture) on the result."""
    import io
    import posixpath
    import zipfile
    if len(data) > MAX_ZIP_BYTES:
        raise CheckpointError(f"the .zip has {len(data):,} bytes, more than the {MAX_ZIP_BYTES:,} accepted")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CheckpointError("not a .zip file (or a damaged one)") from None
    if len(infos) > MAX_ZIP_ENTRIES:
        raise CheckpointError(f"the .zip holds {len(infos)} entries; a checkpoint .zip holds only {', '.join(FILES)}")
    found: dict[str, zipfile.ZipInfo] = {}
    folders = set()
    for info in infos:
        name = info.filename
        norm = posixpath.normpath(name)
        if ("\\" in name or name.startswith("/") or ".." in name.split("/") or ":" in name or "\x00" in name
                or norm.startswith("..")):
            raise CheckpointError(f"the .zip has an unsafe path ({name!r})")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise CheckpointError(f"the .zip holds a link ({name!r}); links are not followed")
        if info.is_dir():
            continue
        head, base = posixpath.split(norm)
        if base not in FILES or "/" in head or base in found:
            raise CheckpointError(f"the .zip holds {name!r}; a checkpoint .zip holds only {', '.join(FILES)} "
                                  "(at the top or in one folder)")
        if info.flag_bits & 0x1:
            raise CheckpointError("the .zip is encrypted")
        found[base] = info
        folders.add(head)
    if set(found) != set(FILES):
        raise CheckpointError(f"the .zip lacks {', '.join(sorted(set(FILES) - set(found)))}")
    if len(folders) != 1:
        raise CheckpointError("the two files of the .zip are in different folders")
    directory = Path(directory)
    if directory.exists() and (directory.is_symlink() or not directory.is_dir() or any(directory.iterdir())):
        raise CheckpointError(f"{directory}: exists and is not an empty folder")
    directory.mkdir(parents=True, exist_ok=True)
    caps = {"config.json": MAX_CONFIG_BYTES, "model.safetensors": MAX_WEIGHTS_BYTES}
    try:
        for base, info in found.items():
            written = 0
            with z.open(info) as src, open(directory / base, "xb") as dst:
                for chunk in iter(lambda: src.read(2**20), b""):
                    written += len(chunk)
                    if written > caps[base]:
                        raise CheckpointError(f"{base} in the .zip is larger than the {caps[base]:,} bytes a "
                                              "checkpoint may have")
                    dst.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:
        shutil.rmtree(directory, ignore_errors=True)
        raise CheckpointError(f"cannot unpack the .zip ({err})") from None
    except CheckpointError:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def load_zip(data: bytes, directory: str | Path, spec: DatasetSpec | None = None) -> Trained:
    """extract_zip into `directory`, then `load` it (every load check applies). A folder this function filled
    before with the same bytes (content-addressed callers) is loaded again instead of unpacked twice."""
    directory = Path(directory)
    if not (directory.is_dir() and is_checkpoint_folder(directory) and any(directory.iterdir())):
        extract_zip(data, directory)
    try:
        return load(directory, spec)
    except CheckpointError:
        shutil.rmtree(directory, ignore_errors=True)      # refused: leave nothing behind
        raise
