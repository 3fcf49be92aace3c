"""A trained model as a unit (`Trained`), and its checkpoint: `model.safetensors` + `config.json`.

Loading rebuilds the model from JSON and reads tensors with safetensors: no pickle, no code runs. The JSON
holds the SHA-256 of the weights file and of its own content, so a truncated, tampered or hand-edited
checkpoint is refused with a clear message (an edited statistic would silently change every prediction). A
save writes a complete new folder beside the old one and swaps it in with renames; if the swap fails the old
folder is put back, and a crash between the two renames is recovered by `load` (it reads `.<name>.old`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .baseline import PFusion
from .data import Preprocessor
from .model import ModalityDef, ModelConfig, MultiModN, TaskDef
from .spec import DatasetSpec, SpecError, spec_from_dict

FORMAT = "mmn-lens-checkpoint/1"
MODEL_KINDS = {"multimodn": MultiModN, "pfusion": PFusion}


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
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config_sha256(config: dict) -> str:
    """Hash of config.json's content (without this hash): canonical JSON, so re-reading gives the same hash."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _old(directory: Path) -> Path:
    """Where `save` parks the previous checkpoint during the swap."""
    return directory.with_name(f".{directory.name}.old")


def save(trained: Trained, directory: str | Path) -> Path:
    directory = Path(directory).resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
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
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            moved = True
        try:
            os.replace(tmp, directory)
        except BaseException:
            if moved and not directory.exists():   # put the previous checkpoint back where it was
                os.replace(old, directory)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load(directory: str | Path, spec: DatasetSpec | None = None) -> Trained:
    """Rebuild a Trained from a checkpoint folder. With `spec`, refuse a checkpoint trained on another spec."""
    directory = Path(directory)
    if not directory.exists() and _old(directory).is_dir():
        directory = _old(directory)            # a save crashed between its two renames: the previous one
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{directory}: not a checkpoint (needs config.json and model.safetensors)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{cfg_path}: config.json is not valid JSON") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: unknown checkpoint format (expected {FORMAT})")
    if cfg.get("config_sha256") != _config_sha256(cfg):
        raise CheckpointError(f"{cfg_path}: config.json was edited after saving (checksum mismatch)")
    if _sha256(weights) != cfg.get("weights_sha256"):
        raise CheckpointError(f"{weights}: weights do not match config.json (file truncated or modified)")
    try:
        ck_spec = spec_from_dict(cfg["spec"], f"{cfg_path} spec")
        prep = Preprocessor.from_json(cfg["preprocessing"])
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
