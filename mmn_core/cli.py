"""Command line: python -m mmn_core {describe,train,evaluate,compare,explain,faithfulness,acquire,mnar} ...

Every subcommand takes --json (one JSON object on stdout); progress goes to stderr; bad input exits 2 with one
readable line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

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


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[("—" if isinstance(c, float) and math.isnan(c) else
                          f"{c:.3f}" if isinstance(c, float) else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells)


# --- subcommands ------------------------------------------------------------------------------------------
def cmd_describe(args):
    from .data import class_values
    ds = _dataset(args)
    pres = ds.presence().mean()
    mods = [{"name": m.name, "label": m.display, "kind": m.kind, "columns": m.columns,
             "present_fraction": round(float(pres[m.name]), 4)} for m in ds.spec.modalities]
    tasks = []
    for t in ds.spec.tasks:
        col = ds.frame[t.column]
        entry = {"name": t.name, "label": t.display, "type": t.type, "labelled": int(col.notna().sum())}
        entry["classes"] = None if t.type == "regression" else class_values(t, col)
        tasks.append(entry)
    payload = {"name": ds.spec.name, "title": ds.spec.title, "rows": len(ds), "modalities": mods, "tasks": tasks}
    text = (f"{ds.spec.title or ds.spec.name}: {len(ds)} records\n\n"
            + _table([[m["label"], m["kind"], len(m["columns"]), f"{m['present_fraction']:.1%}"] for m in mods],
                     ["modality", "kind", "columns", "present"]) + "\n\n"
            + _table([[t["label"], t["type"], t["labelled"], ", ".join(t["classes"] or [])] for t in tasks],
                     ["task", "type", "labelled", "classes"]))
    _emit(args, payload, text)


def _metrics_text(matrix: dict) -> str:
    lines = []
    for task, ms in matrix["tasks"].items():
        rows = [[name] + [float(v) for v in values] for name, values in ms.items()]
        lines.append(f"{task}\n" + _table(rows, ["metric"] + matrix["steps"]))
    return "\n\n".join(lines)


def cmd_train(args):
    from .checkpoint import check_save_target, save
    from .train import train_model
    check_save_target(Path(args.out).absolute())     # refuse before an hour of training, not after
    from .data import MIN_SPLIT_ROWS
    if args.chunk_rows is not None and not args.stream:
        raise BadInput("--chunk-rows needs --stream")
    if args.stream and (args.dataset or not (args.data and args.spec)):
        raise BadInput("--stream needs --data FILE.parquet with --spec SPEC (not --dataset)")
    ds = None if args.stream else _dataset(args)
    config = _train_config(args)
    if ds is not None and len(ds) < MIN_SPLIT_ROWS:
        raise BadInput(f"{len(ds)} record(s) are too few to split into training, validation and test parts "
                       f"(needs at least {MIN_SPLIT_ROWS}): add records")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise BadInput(f"--out {args.out}: exists and is not a folder")
    bar = _progress_bar(config.epochs, f"training {args.model}")

    def progress(row):
        bar.update(1)
        bar.set_postfix(loss=f"{row.get('val_loss', row['train_loss']):.4f}")

    if args.stream:
        from .stream import CHUNK_ROWS, train_stream
        trained = train_stream(args.data, args.spec, args.model, config=config,
                               chunk_rows=args.chunk_rows or CHUNK_ROWS, progress=progress)
    else:
        trained = train_model(ds, args.model, config=config, progress=progress)
    bar.close()
    try:
        out = save(trained, args.out)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise BadInput(f"--out {args.out}: cannot write the checkpoint ({reason})") from None
    payload = {"checkpoint": str(out), "model": args.model, "epochs_run": len(trained.history),
               "rows": trained.info["rows"], **trained.metrics}
    _emit(args, payload, f"saved {args.model} checkpoint to {out}\n\n{_metrics_text(trained.metrics)}")


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


def cmd_evaluate(args):
    from .metrics import metric_matrix
    from .train import predict
    trained, ds, bundled = _checkpoint_and_data(args)
    data = trained.prep.transform(ds)
    if bundled and trained.info.get("test_ids"):
        pos = {rid: i for i, rid in enumerate(data.ids)}
        data = data.subset([pos[r] for r in trained.info["test_ids"] if r in pos])
    out = predict(trained.model, data)
    matrix = metric_matrix(out, data.y, trained.model.tasks, trained.prep.target_stats)
    payload = {"records": len(data), "split": "test" if bundled else "all", **matrix}
    _emit(args, payload, f"{len(data)} records ({payload['split']})\n\n{_metrics_text(matrix)}")


def cmd_compare(args):
    from .experiments import cross_validate
    ds = _dataset(args)
    from .data import check_folds
    if args.folds < 2:
        raise BadInput("--folds must be at least 2")
    check_folds(ds, args.folds)    # too few records, or of a class, for the folds: one line before any work
    config = _train_config(args)
    bar = _progress_bar(args.folds * 2, "cross-validating")
    result = cross_validate(ds, folds=args.folds, config=config, progress=lambda row: bar.update(1))
    bar.close()
    rows = []
    for task, entry in result["tasks"].items():
        for metric in ("auroc", "balanced_accuracy", "mae", "rmse"):
            if metric in entry["multimodn"]:
                a, b = entry["multimodn"], entry["pfusion"]
                rows.append([task, metric, f"{a[metric]:.3f} ± {a[metric + '_std']:.3f}",
                             f"{b[metric]:.3f} ± {b[metric + '_std']:.3f}"])
    payload = {"folds": result["folds"], "tasks": result["tasks"]}
    _emit(args, payload, f"{args.folds}-fold cross-validation (final step for MultiModN)\n\n"
          + _table(rows, ["task", "metric", "MultiModN", "P-Fusion"]))


def cmd_explain(args):
    from .explain import explain_record
    trained, ds, _ = _checkpoint_and_data(args)
    if args.task is not None:
        args.task = trained.spec.task(args.task).name   # by key or shown name; unknown: one clear SpecError
    if args.record not in set(ds.ids):
        raise BadInput(f"record '{args.record}' is not in dataset '{ds.spec.name}'")
    payload = explain_record(trained, ds, args.record, args.task)
    from .panels import explain_faithfulness
    payload["faithfulness"] = explain_faithfulness(trained, trained.prep.transform(ds), ds.ids.index(args.record),
                                                   list(payload["tasks"]))
    lines = [f"record {args.record}"]
    for task, v in payload["tasks"].items():
        steps = ", ".join(f"{s} {p:.3f}" for s, p in zip(payload["steps"], v["prob"]))
        lines.append(f"{task}: {steps}")
        if task in payload.get("shapley", {}):
            lines.append("  Shapley: " + ", ".join(f"{m} {x:+.3f}" for m, x in payload["shapley"][task].items()))
        lines += [f"  {i}. {sentence}" for i, sentence in enumerate(payload.get("narrative", {}).get(task, []))]
        trust = payload["faithfulness"][task]
        lines.append(f"  How much to trust this: {trust['sentence'] or trust['reason']}")
    _emit(args, payload, "\n".join(lines))


def cmd_faithfulness(args):
    from .faithfulness import cohort_faithfulness
    trained, ds, _ = _checkpoint_and_data(args)
    task = trained.spec.task(args.task).name if args.task else trained.model.tasks[0].name
    payload = cohort_faithfulness(trained, ds, task, records=args.records, seed=args.seed).to_json()
    if args.values:
        from .value_attribution import value_vs_presence
        payload["value_vs_presence"] = value_vs_presence(trained, ds, task, args.records, args.seed).to_json()
    rows = [[m, s["deletion_aopc"], s["insertion_auc"], math.nan if s["randomization_spearman"] is None
             else s["randomization_spearman"]] for m, s in payload["methods"].items()]
    na = "".join(f"\n{m}: not applicable ({why})" for m, why in payload["not_applicable"].items())
    _emit(args, payload, f"{task}: {payload['records']} records ({payload['model_kind']})\n\n"
          + _table(rows, ["method", "deletion AOPC", "insertion AUC", "randomized rho"]) + na)


def cmd_acquire(args):
    from .acquire import acquire_record, evaluate_acquisition
    trained, ds, _ = _checkpoint_and_data(args)
    if trained.kind != "multimodn":
        raise BadInput("acquire needs a MultiModN checkpoint (P-Fusion has no sequential state)")
    if args.task is not None:
        args.task = trained.spec.task(args.task).name   # by key or shown name; unknown: one clear SpecError
    if args.evaluate:
        ev = evaluate_acquisition(trained, ds, records=args.records, seed=args.seed, k=args.k, task=args.task)
        payload = {"records": ev.records, "task": ev.task, "pairs": ev.pairs, "spearman": ev.spearman,
                   "top1_hit_rate": ev.top1_hit_rate, "baseline_top1_hit_rate": ev.baseline_top1_hit_rate,
                   "calibration_slope": ev.calibration_slope, "baseline_spearman": ev.baseline_spearman}
        _emit(args, payload, "\n".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                                        for k, v in payload.items()))
        return
    if args.record is None:
        raise BadInput("give --record ID, or --evaluate")
    if args.record not in set(ds.ids):
        raise BadInput(f"record '{args.record}' is not in dataset '{ds.spec.name}'")
    payload = acquire_record(trained, ds, args.record, args.task, k=args.k)
    lines = [f"record {args.record}: missing {', '.join(payload['missing']) or '(nothing)'}"]
    for task, mods in payload["tasks"].items():
        lines.append(f"{task}: " + ", ".join(f"{m} E|Δ| {v['expected_abs_change']:.3f}" for m, v in mods.items()))
    _emit(args, payload, "\n".join(lines))


def cmd_mnar(args):
    from .experiments import run_mnar
    ds = _dataset(args)
    args.modality = ds.spec.modality(args.modality).name   # by key or shown name (`liver panel`)
    task = ds.spec.task(args.task)
    args.task = task.name
    if task.type != "binary":
        raise BadInput(f"task '{args.task}' is {task.type}; the MNAR protocol needs a binary task")
    rates = _rates(args.rates) if isinstance(args.rates, str) else args.rates
    from dataclasses import replace

    from .data import MIN_SPLIT_ROWS, check_folds
    if args.folds > 1:
        check_folds(replace(ds, spec=ds.spec.model_copy(update={"tasks": [task]})), args.folds)
    elif len(ds) < MIN_SPLIT_ROWS:
        raise BadInput(f"{len(ds)} record(s) are too few to split into training, validation and test parts "
                       f"(needs at least {MIN_SPLIT_ROWS}): add records")
    rule = None
    if args.rule:
        rules = [r for r in ds.spec.mnar_rules if r.modality == args.modality]
        if not rules:
            raise BadInput(f"the spec has no mnar_rules entry for modality '{args.modality}'")
        rule = rules[0]
    latent = None
    if args.latent:
        if getattr(args, "dataset", None) != "synthetic" or args.rule:
            raise BadInput("--latent needs --dataset synthetic (the only cohort whose hidden severity is known), "
                           "without --rule")
        from .synthetic import latent_severity
        latent = latent_severity(len(ds))
    bar = _progress_bar(1, "MNAR experiment")

    def progress(p):
        bar.total = p.get("total", bar.total)
        bar.n = p.get("done", bar.n)
        bar.set_description(p.get("message", "MNAR experiment")[:60])
        bar.refresh()

    result = run_mnar(ds, args.modality, args.task, rates=rates, folds=args.folds, epochs=args.epochs,
                      seed=args.seed, position=args.position, mitigation=args.mitigation,
                      semantics=args.semantics, rule=rule, latent=latent, references=args.references,
                      progress=progress)
    bar.close()
    rows = [[r["rate"], r["model"], r["test"], r["auroc"], r.get("auroc_std", math.nan)] for r in result["results"]]
    _emit(args, result, _table(rows, ["rate", "model", "test", "AUROC", "sd"]))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m mmn_core", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, fn, help_text, source=True, checkpoint=False):
        c = sub.add_parser(name, help=help_text, description=help_text)
        if source:
            _add_source(c)
        if checkpoint:
            c.add_argument("--checkpoint", required=True, help="checkpoint folder")
            c.add_argument("--data", help="evaluate on this table instead (needs --spec)")
            c.add_argument("--spec", help="the spec of --data; must equal the checkpoint's")
        c.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        c.set_defaults(fn=fn)
        return c

    command("describe", cmd_describe, "Summarize a dataset: modalities, present fractions, tasks.")
    t = command("train", cmd_train, "Train a model and save a checkpoint.")
    t.add_argument("--model", choices=["multimodn", "pfusion"], default="multimodn")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument("--stream", action="store_true",
                   help="stream a Parquet --data in row-group chunks (cohorts larger than memory)")
    t.add_argument("--chunk-rows", type=_int_in(1, 10**9), help="--stream: records per chunk (default 50,000)")
    command("evaluate", cmd_evaluate, "Per-step x per-task metrics of a checkpoint.", source=False,
            checkpoint=True)
    c = command("compare", cmd_compare, "MultiModN vs P-Fusion with k-fold cross-validation.")
    c.add_argument("--folds", type=_int_in(2, MAX_FOLDS), default=5)
    e = command("explain", cmd_explain, "Explain one record: per-step predictions, Shapley, attributions.",
                source=False, checkpoint=True)
    e.add_argument("--record", required=True, help="record id")
    e.add_argument("--task", help="one task (default: all)")
    f = command("faithfulness", cmd_faithfulness, "How far to trust modality explanations: deletion, insertion, "
                "randomization, agreement.", source=False, checkpoint=True)
    f.add_argument("--task", help="task (default: the first)")
    f.add_argument("--records", type=_int_in(1, MAX_RECORDS), default=500)
    f.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0)
    f.add_argument("--values", action="store_true", help="add presence vs value: value-only (training-mean) "
                   "Shapley beside the skip Shapley, per modality")
    q = command("acquire", cmd_acquire, "What to measure next: expected effect of each missing modality.",
                source=False, checkpoint=True)
    q.add_argument("--record", help="record id")
    q.add_argument("--task", help="one task (default: all; --evaluate: the first)")
    q.add_argument("--k", type=_int_in(1, MAX_K), default=50, help="training neighbours whose values stand in")
    q.add_argument("--evaluate", action="store_true", help="validate on held-out records instead")
    q.add_argument("--records", type=_int_in(1, MAX_RECORDS), default=1000,
                   help="--evaluate: held-out records to use")
    q.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0)
    m = command("mnar", cmd_mnar, "Missingness-shift experiment: clean vs reversed (and random-control) test sets.")
    m.add_argument("--modality", required=True)
    m.add_argument("--task", required=True)
    m.add_argument("--rates", type=_rates, default="0,0.2,0.4,0.6,0.8", help="comma-separated, each in [0, 1]")
    m.add_argument("--folds", type=_int_in(1, MAX_FOLDS), default=3, help="1: one train/validation/test split")
    m.add_argument("--position", choices=["first", "middle", "last", "spec"], default="spec")
    m.add_argument("--mitigation", default="none",
                   choices=["none", "presence-balance", "presence-balance-all", "modality-dropout", "shuffle-order"])
    m.add_argument("--semantics", choices=["per-record", "paper"], default="per-record")
    m.add_argument("--rule", action="store_true",
                   help="rule-based missingness from the spec's mnar_rules (MAR: the rule reads an observed column)")
    m.add_argument("--latent", action="store_true",
                   help="synthetic only: M removed by the hidden severity (MNAR by an unobserved variable)")
    m.add_argument("--references", action="store_true",
                   help="also train the reversed-distribution reference and the without-M floor")
    for c in (t, c, m):
        c.add_argument("--epochs", type=_int_in(1, MAX_EPOCHS), default=40 if c is t else 30)
        c.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .spec import SpecError
    from .threads import use_threads
    use_threads()                       # one place sets torch threads (mmn_core/threads.py)
    try:
        args = build_parser().parse_args(argv)
        args.fn(args)
        return 0
    except (BadInput, SpecError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
