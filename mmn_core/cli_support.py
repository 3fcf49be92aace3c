"""What every CLI subcommand shares: the one-line error, argument types with ranges, data/checkpoint loading,
plain-text tables and JSON output (mmn_core.cli holds the subcommands and the parser)."""
from __future__ import annotations

import argparse
import json
import math
import sys

from .fmt import json_safe

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Raised for anything the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message over several lines; we want one line
        raise BadInput(f"{self.prog}: {message}")


def _emit(args, payload: dict, text: str) -> None:
    if args.json:
        print(json.dumps(json_safe(payload)))
    else:
        print(text)


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=None)


def _dataset(args):
    from .data import load_data
    from .datasets import load_dataset
    if getattr(args, "dataset", None):
        if args.data or args.spec:
            raise BadInput("give either --dataset or --data with --spec, not both")
        return load_dataset(args.dataset)
    if not (args.data and args.spec):
        raise BadInput("give --dataset NAME, or --data FILE with --spec SPEC")
    return load_data(args.data, args.spec)


def _add_source(p):
    p.add_argument("--dataset", help="a bundled dataset: support2, star, weather, synthetic")
    p.add_argument("--data", help="your table (CSV or Parquet)")
    p.add_argument("--spec", help="your dataset spec (YAML)")


MAX_SEED = 2**32 - 1     # scikit-learn's random_state range
MAX_EPOCHS = 10_000      # an upper bound on training time; early stopping usually ends far sooner
MAX_FOLDS = 1_000
MAX_RECORDS = 10_000_000  # faithfulness / acquire samples; the cohort itself is capped far lower
MAX_K = 100_000          # acquire neighbours (a pool smaller than k uses all its donors)


def _int_in(lo: int, hi: int):
    """argparse type: an integer in [lo, hi]; anything else is one readable line."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo:,} and {hi:,}, got {value:,}")
        return value
    parse.__name__ = "integer"
    return parse


def _rates(text: str) -> list[float]:
    """argparse type: comma-separated missingness rates in [0, 1]."""
    try:
        rates = [float(r) for r in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got '{text}'") from None
    if len(rates) > 100:
        raise argparse.ArgumentTypeError(f"at most 100 rates, got {len(rates)}")
    if any(not 0 <= r <= 1 for r in rates):     # NaN fails this too
        raise argparse.ArgumentTypeError(f"rates must lie in [0, 1], got '{text}'")
    return rates


def _train_config(args, **extra):
    from .train import TrainConfig
    if args.epochs < 1:
        raise BadInput("--epochs must be at least 1")
    return TrainConfig(epochs=args.epochs, seed=args.seed, **extra)


def _one_line(err: Exception) -> str:
    """An exception's message as one short line (library messages can span lines)."""
    text = " ".join(str(err).split())
    return (text[:300] + "…" if len(text) > 300 else text) or type(err).__name__


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[("—" if isinstance(c, float) and math.isnan(c) else
                          f"{c:.3f}" if isinstance(c, float) else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells)


def _shown(spec, key: str) -> str:
    """A modality or task key as the user named it (JSON output keeps the keys; text shows the names)."""
    if spec is None:
        return key
    for e in (*spec.modalities, *spec.tasks):
        if e.name == key:
            return e.display
    return key


def _metrics_text(matrix: dict, spec=None) -> str:
    lines = []
    steps = [_shown(spec, s) for s in matrix["steps"]]
    for task, ms in matrix["tasks"].items():
        rows = [[name] + [float(v) for v in values] for name, values in ms.items()]
        lines.append(f"{_shown(spec, task)}\n" + _table(rows, ["metric"] + steps))
    return "\n\n".join(lines)


def _checkpoint_and_data(args):
    """Load a checkpoint and the data to use it on: --data/--spec, else the bundled dataset it was trained on."""
    from .checkpoint import load
    from .data import load_data
    from .datasets import bundled_names, load_dataset
    from .spec import load_spec
    if args.data or args.spec:
        if not (args.data and args.spec):
            raise BadInput("give --data together with --spec")
        spec = load_spec(args.spec)
        trained = load(args.checkpoint, spec)
        return trained, load_data(args.data, spec), False
    trained = load(args.checkpoint)
    name = trained.info.get("dataset", trained.spec.name)
    if name not in bundled_names():
        raise BadInput(f"checkpoint was trained on '{name}', which is not bundled: give --data and --spec")
    ds = load_dataset(name)
    if ds.spec.to_json() != trained.spec.to_json():
        raise BadInput(f"{args.checkpoint}: bundled dataset '{name}' has changed since this checkpoint was trained")
    return trained, ds, True
