"""Command line: python -m mmn_core {describe,train,evaluate,compare,explain,faithfulness,acquire,mnar} ...

Every subcommand takes --json (one JSON object on stdout); progress goes to stderr; bad input exits 2 with one
readable line on stderr, never a traceback. What the subcommands share (argument types, loading, tables) is in
cli_support.py.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .kinds import KINDS
from .cli_support import (
    EXIT_BAD_INPUT, BadInput, _Parser, _emit, _progress_bar, _dataset, _add_source, MAX_SEED, MAX_EPOCHS, MAX_FOLDS,
    MAX_RECORDS, MAX_K, _int_in, _rates, _train_config, _one_line, _table, _shown, _metrics_text,
    _checkpoint_and_data)


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


def cmd_train(args):
    if getattr(args, "distributed", False):
        return _train_distributed(args)
    _train(args)


def _on_every_rank(run, args, what: str):
    """`run(args, comm)` on every torchrun rank (data-parallel trainings); rank 0 alone saves and prints."""
    from . import distributed
    if not distributed.launched():
        raise BadInput(f"--distributed needs torchrun: torchrun --standalone --nproc_per_node=N -m mmn_core "
                       f"{what} ... --distributed")
    comm = distributed.init()
    try:
        run(args, comm)
        comm.barrier()
    finally:
        distributed.shutdown()


def _train_distributed(args):
    _on_every_rank(_train, args, "train")


def _train(args, comm=None):
    from .checkpoint import check_save_target, save
    from .train import train_model
    main_rank = comm is None or comm.is_main
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
    bar = _progress_bar(config.epochs, f"training {args.model}") if main_rank else None

    def progress(row):
        bar.update(1)
        bar.set_postfix(loss=f"{row.get('val_loss', row['train_loss']):.4f}")

    if args.stream:
        if comm is not None:
            raise BadInput("--stream and --distributed cannot be combined yet: choose one")
        from .stream import CHUNK_ROWS, train_stream
        trained = train_stream(args.data, args.spec, args.model, config=config,
                               chunk_rows=args.chunk_rows or CHUNK_ROWS, progress=progress)
    else:
        trained = train_model(ds, args.model, config=config, progress=progress if bar else None, comm=comm)
    if bar is None:
        return                                       # other ranks: rank 0 writes the checkpoint
    bar.close()
    try:
        out = save(trained, args.out)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise BadInput(f"--out {args.out}: cannot write the checkpoint ({reason})") from None
    payload = {"checkpoint": str(out), "model": args.model, "epochs_run": len(trained.history),
               "rows": trained.info["rows"], **trained.metrics}
    if "distributed" in trained.info:
        payload["distributed"] = trained.info["distributed"]
    _emit(args, payload, f"saved {args.model} checkpoint to {out}\n\n{_metrics_text(trained.metrics)}")


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
    _emit(args, payload, f"{len(data)} records ({payload['split']})\n\n{_metrics_text(matrix, trained.spec)}")


WORKERS_HELP = ("trainings run together in this many worker processes (default: one per core; 1 = one by one, "
                "with progress per epoch); the results are the same")


def _workers(args, trainings: int) -> int:
    from .sweep import default_workers
    return args.workers or default_workers(trainings)


def cmd_compare(args):
    if getattr(args, "distributed", False):
        if args.workers not in (None, 1):
            raise BadInput("--distributed and --workers cannot be combined: torchrun starts the processes")
        return _on_every_rank(_compare, args, "compare")
    _compare(args)


def _compare(args, comm=None):
    """k-fold comparison; under torchrun (comm) every fold's training is data-parallel over the ranks."""
    from .experiments import cross_validate
    ds = _dataset(args)
    from .data import check_folds
    if args.folds < 2:
        raise BadInput("--folds must be at least 2")
    check_folds(ds, args.folds)    # too few records, or of a class, for the folds: one line before any work
    config = _train_config(args)
    bar = _progress_bar(args.folds * 2, "cross-validating") if comm is None or comm.is_main else None
    result = cross_validate(ds, folds=args.folds, config=config, progress=bar and (lambda row: bar.update(1)),
                            workers=1 if comm is not None else _workers(args, args.folds * 2), comm=comm)
    if bar is not None:
        bar.close()
    if comm is not None and not comm.is_main:
        return
    rows = []
    for task, entry in result["tasks"].items():
        for metric in ("auroc", "balanced_accuracy", "mae", "rmse"):
            if metric in entry["multimodn"]:
                a, b = entry["multimodn"], entry["pfusion"]
                rows.append([_shown(ds.spec, task), metric, f"{a[metric]:.3f} ± {a[metric + '_std']:.3f}",
                             f"{b[metric]:.3f} ± {b[metric + '_std']:.3f}"])
    payload = {"folds": result["folds"], "tasks": result["tasks"]}
    if comm is not None:
        payload["distributed"] = {"world_size": comm.world, "backend": comm.backend}
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
    if args.values:
        vp = payload["value_vs_presence"]["modalities"]
        na += "\n\npresence vs value (mean |Shapley|; value = kept present at its training mean)\n" + _table(
            [[m, c["absent_in_training"], c["skip_credit"], c["value_credit"]] for m, c in vp.items()],
            ["modality", "absent in training", "skip credit", "value credit"])
    _emit(args, payload, f"{_shown(trained.spec, task)}: {payload['records']} records ({payload['model_kind']})\n\n"
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
    shown = lambda key: _shown(trained.spec, key)
    lines = [f"record {args.record}: missing {', '.join(map(shown, payload['missing'])) or '(nothing)'}"]
    for task, mods in payload["tasks"].items():
        lines.append(f"{shown(task)}: " + ", ".join(f"{shown(m)} E|Δ| {v['expected_abs_change']:.3f}"
                                                    for m, v in mods.items()))
    _emit(args, payload, "\n".join(lines))


def _check_mnar_splits(ds, task, folds: int, seed: int) -> None:
    """The protocol scores every test part on both classes and trains on both: refuse, before any training,
    splits (the very ones run_mnar makes) whose training or test part lacks a class of the task."""
    from .data import label_str, split
    from .experiments import fold_rows
    from .spec import SpecError
    try:
        splits = list(fold_rows(ds, folds, seed)) if folds > 1 else [split(ds, seed=seed)]
    except ValueError as err:
        if isinstance(err, SpecError):
            raise
        raise BadInput(f"mnar: cannot split {len(ds)} records into {max(folds, 1)} part(s) "
                       f"({_one_line(err)}): add records or use fewer folds") from None
    col = ds.frame[task.column]
    labels = col.map(lambda v: label_str(v) if v == v else None).to_numpy()
    classes = sorted({v for v in labels if v is not None})
    for f, (tr, _va, te) in enumerate(splits):
        for part, rows in (("training", tr), ("test", te)):
            seen = set(labels[rows]) - {None}
            lacking = [c for c in classes if c not in seen]
            if lacking:
                where = f"fold {f + 1} of {folds}" if folds > 1 else "the train/validation/test split"
                raise BadInput(f"mnar: the {part} part of {where} has no record of class '{lacking[0]}' of task "
                               f"'{task.display}' ({int((labels == lacking[0]).sum())} in all): add records "
                               f"of that class{' or use fewer folds' if folds > 1 else ''}")


def cmd_mnar(args):
    from .experiments import run_mnar
    from .spec import SpecError
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
    _check_mnar_splits(ds, task, args.folds, args.seed)
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

    try:
        result = run_mnar(ds, args.modality, args.task, rates=rates, folds=args.folds, epochs=args.epochs,
                          seed=args.seed, position=args.position, mitigation=args.mitigation,
                          semantics=args.semantics, rule=rule, latent=latent, references=args.references,
                          progress=progress, workers=_workers(args, len(rates) * args.folds * 2))
    except SpecError:
        raise
    except (ValueError, IndexError, ZeroDivisionError) as err:   # what the checks above cannot foresee
        raise BadInput(f"mnar: the experiment cannot run on this data ({type(err).__name__}: "
                       f"{_one_line(err)})") from None
    finally:
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
    t.add_argument("--model", choices=list(KINDS), default="multimodn")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument("--stream", action="store_true",
                   help="stream a Parquet --data in row-group chunks (cohorts larger than memory)")
    t.add_argument("--chunk-rows", type=_int_in(1, 10**9), help="--stream: records per chunk (default 50,000)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training; start with torchrun --nproc_per_node=N -m mmn_core train ...")
    command("evaluate", cmd_evaluate, "Per-step x per-task metrics of a checkpoint.", source=False,
            checkpoint=True)
    c = command("compare", cmd_compare, "MultiModN vs P-Fusion with k-fold cross-validation.")
    c.add_argument("--folds", type=_int_in(2, MAX_FOLDS), default=5)
    c.add_argument("--workers", type=_int_in(1, 256), help=WORKERS_HELP)
    c.add_argument("--distributed", action="store_true", help="each fold's trainings data-parallel; start with "
                   "torchrun --nproc_per_node=N -m mmn_core compare ...")
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
    m.add_argument("--workers", type=_int_in(1, 256), help=WORKERS_HELP)
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
