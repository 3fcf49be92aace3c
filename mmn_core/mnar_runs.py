"""The MNAR lab's runs: a label per run (its settings), a bounded list of runs to overlay, the bundled precomputed
headline result, and whether a chosen position changes anything. Pure functions; the page only renders."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .experiments import POSITIONS
from .spec import DatasetSpec

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
MAX_RUNS = 5                 # runs kept in a session and overlaid on one chart
SEMANTICS = {"per-record": "per-record skipping", "paper": "batch-wide skipping (the paper's code)"}
POSITION_NAMES = {"spec": "dataset's order", "first": "first", "middle": "middle", "last": "last"}


@dataclass(frozen=True)
class MnarRun:
    """One MNAR experiment shown in the lab: `config` is the lab's settings key (None for a precomputed file),
    `result` a run_mnar result ({"rates", "results", "ceiling", "config", ...})."""
    label: str
    result: dict
    config: dict | None = None
    precomputed: bool = False


def folds_of(result: dict) -> int:
    """Train/test splits behind each point of a run_mnar result (its rows' n_folds, else config folds)."""
    rows = result.get("results") or []
    n = [int(r["n_folds"]) for r in rows if r.get("n_folds")]
    return min(n) if n else int((result.get("config") or {}).get("folds") or 1)


def run_label(spec: DatasetSpec, settings: dict, folds: int, epochs: int | None = None) -> str:
    """Short, readable settings of a run, e.g. 'Glucose & urea → Death · random removal · per-record skipping ·
    position: middle · 3 folds'. `settings`: {"modality", "task", "rule" (name or None), "semantics", "position",
    "mitigation"}."""
    m = settings.get("modality")
    try:
        mname = spec.modality(m).display
    except (KeyError, ValueError):
        mname = str(m)
    try:
        tname = spec.task(settings.get("task")).display
    except (KeyError, ValueError):
        tname = str(settings.get("task"))
    rule = settings.get("rule")
    semantics = settings.get("semantics")
    parts = [f"{mname} → {tname}", f"rule {rule}" if rule else "random removal",
             SEMANTICS.get(semantics, str(semantics)), f"position: {POSITION_NAMES.get(settings.get('position'), '?')}"]
    if settings.get("mitigation") not in (None, "none"):
        parts.append(str(settings["mitigation"]))
    parts.append("1 fold" if folds == 1 else f"{folds} folds")
    if epochs:
        parts.append(f"≤ {epochs} epoch" + ("" if epochs == 1 else "s"))
    return " · ".join(parts)


def precomputed_run(dataset: str, spec: DatasetSpec, root: Path = RESULTS) -> MnarRun | None:
    """The evidence report's headline MNAR result for a bundled dataset (benchmarks/results/
    evidence_mnar_<dataset>_base.json), labelled as precomputed with its settings; None when absent."""
    path = root / f"evidence_mnar_{dataset}_base.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    cfg = result.get("config") or {}
    if not isinstance(result.get("results"), list) or cfg.get("dataset") != dataset:
        return None
    epochs = (cfg.get("train_config") or {}).get("epochs")
    label = f"Precomputed ({path.name}): " + run_label(spec, cfg, folds_of(result), epochs)
    return MnarRun(label, result, None, True)


def keep_run(runs: list[MnarRun], run: MnarRun, limit: int = MAX_RUNS) -> list[MnarRun]:
    """`runs` with `run` added last (replacing a run with the same settings), the oldest dropped beyond
    `limit`."""
    kept = [r for r in runs if r.config is None or r.config != run.config or run.config is None]
    kept = [r for r in kept if not (run.precomputed and r.precomputed and r.label == run.label)]
    return (kept + [run])[-limit:]


def placed_order(names: list[str], modality: str, position: str) -> list[str]:
    """MultiModN's encoder order with `modality` moved as experiments.place_modality does."""
    if position not in POSITIONS:
        raise ValueError(f"unknown position '{position}'")
    if position == "spec":
        return list(names)
    others = [n for n in names if n != modality]
    at = {"first": 0, "middle": len(others) // 2, "last": len(others)}[position]
    return others[:at] + [modality] + others[at:]


def position_is_noop(names: list[str], modality: str, position: str) -> bool:
    """True when moving `modality` to `position` leaves the dataset's order unchanged (e.g. 'last' for the
    modality that already comes last)."""
    return position != "spec" and placed_order(names, modality, position) == list(names)
