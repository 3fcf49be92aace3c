"""Experiments over whole datasets: k-fold comparison of MultiModN and P-Fusion, and the MNAR robustness
experiment (train under injected missingness, test on clean and reversed splits)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from sklearn.model_selection import train_test_split

from .checkpoint import build_model
from .data import Dataset, Preprocessor, _strata, kfold, split
from .metrics import final_metrics, task_metrics
from .missingness import apply_rule, inject_mnar, presence_by_class, removed_rows, reverse_mnar
from .model import ModelConfig
from .spec import MnarRule
from .train import MITIGATIONS as TRAIN_MITIGATIONS
from .train import PAPER_BATCH, Progress, TrainConfig, balance_presence, fit, mitigation_options, predict, train_model


def _summary(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fold_rows(ds: Dataset, folds: int, seed: int):
    """(train, val, test) positions per fold: the fold's test part, and a stratified validation split taken
    from the rest for early stopping (never the test part)."""
    groups = ds.frame[ds.spec.id_column].astype(str).to_numpy() if ds.spec.id_column else None
    for rest, test in kfold(ds, folds, seed, groups):
        strata = _strata(ds)
        tr, va = train_test_split(rest, test_size=0.15, random_state=seed,
                                  stratify=strata[rest] if strata is not None else None)
        yield np.sort(tr), np.sort(va), np.sort(test)


def cross_validate(ds: Dataset, kinds=("multimodn", "pfusion"), folds: int = 5, config: TrainConfig = TrainConfig(),
                   model_config=None, progress: Progress | None = None) -> dict:
    """k-fold CV of each model kind on identical folds; final-step test metrics per fold, then mean and sd.

    Returns {"folds": k, "tasks": {task: {"type": ..., kind: {metric: mean, metric_std: sd}, ...}},
             "per_fold": {kind: [{task: {metric: value}}]}}."""
    per_fold: dict[str, list] = {k: [] for k in kinds}
    for i, rows in enumerate(fold_rows(ds, folds, config.seed)):
        for kind in kinds:
            trained = train_model(ds, kind, model_config, config, rows=rows)
            per_fold[kind].append(final_metrics(trained.metrics))
            if progress is not None:
                progress({"fold": i + 1, "folds": folds, "model": kind})
    tasks = {}
    for t in ds.spec.tasks:
        entry = {"type": t.type}
        for kind in kinds:
            names = per_fold[kind][0][t.name].keys()
            stats = {}
            for m in names:
                mean, sd = _summary([f[t.name][m] for f in per_fold[kind]])
                stats[m], stats[f"{m}_std"] = mean, sd
            entry[kind] = stats
        tasks[t.name] = entry
    return {"folds": folds, "tasks": tasks, "per_fold": per_fold}


# --- MNAR robustness experiment -----------------------------------------------------------------------------
POSITIONS = ("spec", "first", "middle", "last")
MITIGATIONS = tuple(TRAIN_MITIGATIONS)


def place_modality(ds: Dataset, modality: str, position: str = "spec") -> Dataset:
    """The same data with `modality` moved first / to the middle / last of the encoder order (the model's
    default order is the spec's modality order, so reordering the spec is how a position is trained and
    evaluated); "spec" keeps the order."""
    if position not in POSITIONS:
        raise ValueError(f"unknown position '{position}' (choose: {', '.join(POSITIONS)})")
    ds.spec.modality(modality)
    if position == "spec":
        return ds
    others = [n for n in ds.spec.modality_names if n != modality]
    at = {"first": 0, "middle": len(others) // 2, "last": len(others)}[position]
    names = others[:at] + [modality] + others[at:]
    return replace(ds, spec=ds.spec.model_copy(update={"modalities": [ds.spec.modality(n) for n in names]}))


def _mnar_train_config(ds: Dataset, modality: str, task: str, mitigation: str, semantics: str, epochs: int,
                       seed: int, dropout_rate: float, base: TrainConfig | None) -> TrainConfig:
    if semantics not in ("per-record", "paper"):
        raise ValueError(f"unknown semantics '{semantics}' (choose: per-record, paper)")
    targets = ds.spec.modality_names if mitigation == "presence-balance-all" else [modality]
    options = {"epochs": epochs, "seed": seed, "semantics": semantics,
               **mitigation_options(mitigation, targets, task, dropout_rate)}
    return replace(base or TrainConfig(), **options)


def _task_scores(model, data, task, semantics: str) -> dict[str, float]:
    """Final-step metrics of one binary task; paper semantics evaluates in file order, batch 16, batch-wide."""
    out = predict(model, data, semantics=semantics)
    m = task_metrics("binary", data.y[task].numpy(), out.logits[task][-1].detach().cpu().numpy())
    return {"auroc": m["auroc"], "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"]}


def _resolve_rule(ds: Dataset, rule, modality: str):
    if rule is None or callable(rule) and not isinstance(rule, MnarRule):
        return rule
    if isinstance(rule, str):
        found = [r for r in ds.spec.mnar_rules if r.name == rule]
        if not found:
            raise ValueError(f"unknown mnar rule '{rule}' (spec has: "
                             f"{', '.join(r.name for r in ds.spec.mnar_rules) or 'none'})")
        rule = found[0]
    if rule.modality != modality:
        raise ValueError(f"mnar rule '{rule.name}' controls modality '{rule.modality}', not '{modality}'")
    return rule


def run_mnar(ds: Dataset, modality: str, task: str, rates=(0.0, 0.2, 0.4, 0.6, 0.8), folds: int = 3,
             epochs: int = 30, seed: int = 0, position: str = "spec", mitigation: str = "none",
             semantics: str = "per-record", rule=None, models=("multimodn", "pfusion"),
             progress: Progress | None = None, should_stop=None, dropout_rate: float = 0.3,
             model_config=None, train_config: TrainConfig | None = None, val_balance: bool | None = None,
             all_tasks: bool = False) -> dict:
    """The MNAR robustness experiment: train with modality M removed from a fraction p of the label-1 records
    of binary task T (train + validation splits), test on a clean split and on a reversed one (p of the
    label-0 test records lose M), for every rate, model and fold.

    - `semantics="paper"`: the official code (batch-wide skipping, batch 16, unshuffled, file-order removal;
      P-Fusion, like the official baseline, zero-fills per record at batch 16, unshuffled);
      "per-record" (default): correct skipping, shuffled batches, seeded random removal.
    - `rule` (MnarRule, its name, or a predicate frame -> bool mask): rule-based MNAR instead: on p of the
      train + validation records M is observed only where the rule fires; reversed test: on p of the test
      records M is observed only where it does not fire.
    - `position`: M's place in the encoder order; `mitigation`: a training option of the engine, for both
      models where it applies (shuffle-order is MultiModN only); `val_balance` (default: on for the
      presence-balance mitigations) applies the same balancing, one fixed draw, to the validation split.
    - folds == 1: one stratified train / validation / test split; else k folds (validation carved from the
      training part; early stopping never sees a test fold). Models are trained on task T alone unless
      `all_tasks`.
    - `progress(dict)` gets a structured event after every epoch ("phase": "epoch") and training ("trained"):
      "done", "total" (trainings), "fold", "folds", "rate", "model", "epoch" and a readable "message"; `should_stop()`
      cancels between batches and returns what finished (config["cancelled"] = True).

    Returns {"rates", "results": [{"rate", "model", "test": "clean"|"reversed", "auroc", "auroc_std",
    "balanced_accuracy", "balanced_accuracy_std", "accuracy", "n_folds"}], "ceiling": {model: [{"rate",
    "auroc", "auroc_std", "balanced_accuracy", ...}]} (the same model and options trained at p = 0, scored on
    each rate's reversed split), "presence": [{"rate", "train_pos", "train_neg", "reversed_pos",
    "reversed_neg", "removed"}], "config": {...}}."""
    import time

    import torch


    ds.spec.modality(modality)
    t = ds.spec.task(task)
    if t.type != "binary":
        raise ValueError(f"task '{task}' is {t.type}; the MNAR protocol needs a binary task")
    rates = sorted({float(r) for r in rates})
    if not rates or any(not 0 <= r <= 1 for r in rates):
        raise ValueError("MNAR rates must lie in [0, 1]")
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    for kind in models:
        if kind not in ("multimodn", "pfusion"):
            raise ValueError(f"unknown model '{kind}' (choose: multimodn, pfusion)")
    rule = _resolve_rule(ds, rule, modality)
    work = place_modality(ds, modality, position)
    if not all_tasks:
        work = replace(work, spec=work.spec.model_copy(update={"tasks": [t]}))
    config = _mnar_train_config(work, modality, task, mitigation, semantics, epochs, seed, dropout_rate,
                                train_config)
    file_order = semantics == "paper"
    if val_balance is None:
        val_balance = bool(config.balance_modalities)
    train_rates = sorted(set(rates) | {0.0})       # p = 0 is the no-shortcut ceiling
    splits = list(fold_rows(work, folds, seed)) if folds > 1 else [split(work, seed=seed)]
    total = len(splits) * len(train_rates) * len(models)
    scores: dict[tuple, list] = {}
    presence: dict[float, list] = {r: [] for r in train_rates}
    epochs_run: list[int] = []
    done, cancelled, t_start = 0, False, time.perf_counter()

    def inject(r, rows, fold_seed, reverse=False):
        if rule is not None:
            return apply_rule(work, rule, modality, rows=rows, rate=r, seed=fold_seed, invert=reverse)
        fn = reverse_mnar if reverse else inject_mnar
        return fn(work, modality, task, r, rows=rows, seed=fold_seed, file_order=file_order)

    for f, (tr, va, te) in enumerate(splits):
        trva, fold_seed = np.sort(np.concatenate([tr, va])), seed + 1000 * f
        reversed_sets = {r: inject(r, te, fold_seed + 1, reverse=True).subset(te) for r in rates}
        clean = work.subset(te)
        for r in train_rates:
            inj = inject(r, trva, fold_seed)
            rev = reversed_sets.get(r)
            shares = presence_by_class(inj, modality, task, tr)
            rshares = presence_by_class(rev, modality, task) if rev is not None else {"pos": math.nan,
                                                                                     "neg": math.nan}
            presence[r].append([shares["pos"], shares["neg"], rshares["pos"], rshares["neg"],
                                len(removed_rows(work, inj, modality))])
            for kind in models:
                if cancelled:
                    break
                message = f"fold {f + 1}/{len(splits)} · p = {r:.2f} · {kind}"
                where = {"fold": f + 1, "folds": len(splits), "rate": r, "model": kind}

                def epoch_progress(row, message=message, where=where):
                    if progress is not None:
                        progress({"phase": "epoch", "done": done, "total": total, "epoch": row["epoch"], **where,
                                  "message": f"{message} · epoch {row['epoch']}"})

                prep = Preprocessor.fit(inj.subset(tr))
                torch.manual_seed(seed)
                model = build_model(kind, work.spec, prep, model_config or _default_model_config())
                data = prep.transform(inj)
                train_d, val_d = data.subset(tr), data.subset(va)
                if val_balance and config.balance_modalities:
                    gen = torch.Generator().manual_seed(fold_seed + 7)
                    val_d = val_d.with_present(balance_presence(val_d.present, val_d.y[task],
                                                                config.balance_modalities, gen))
                cfg, sem = config, semantics
                if semantics == "paper" and kind == "pfusion":
                    # the official baseline (HAIM MLP) zero-fills each record's missing values: batch-wide
                    # skipping is MultiModN's code path only; batches stay 16 and unshuffled
                    cfg, sem = replace(config, semantics="per-record", batch_size=PAPER_BATCH, shuffle=False), \
                        "per-record"
                history = fit(model, train_d, val_d, cfg, epoch_progress, should_stop)
                epochs_run.append(len(history))
                if should_stop is not None and should_stop():
                    cancelled = True
                scores.setdefault((r, kind, "clean"), []).append(
                    _task_scores(model, prep.transform(clean), task, sem))
                if rev is not None:
                    scores.setdefault((r, kind, "reversed"), []).append(
                        _task_scores(model, prep.transform(rev), task, sem))
                if r == 0.0:
                    for rr in rates:
                        scores.setdefault((rr, kind, "ceiling"), []).append(
                            _task_scores(model, prep.transform(reversed_sets[rr]), task, sem))
                done += 1
                if progress is not None:
                    progress({"phase": "trained", "done": done, "total": total, **where,
                              "message": message + " · done"})
            if cancelled:
                break
        if cancelled:
            break

    def summary(rows: list[dict]) -> dict:
        out = {"n_folds": len(rows)}
        for key in ("auroc", "balanced_accuracy", "accuracy"):
            out[key], out[f"{key}_std"] = _summary([x[key] for x in rows])
        return out

    results = [{"rate": r, "model": kind, "test": test, **summary(scores[(r, kind, test)])}
               for r in rates for kind in models for test in ("clean", "reversed") if (r, kind, test) in scores]
    ceiling = {kind: [{"rate": r, **summary(scores[(r, kind, "ceiling")])}
                      for r in rates if (r, kind, "ceiling") in scores] for kind in models}
    pres = []
    for r in rates:
        if presence[r]:
            v = np.nanmean(np.asarray(presence[r], dtype=float), axis=0)
            pres.append({"rate": r, "train_pos": float(v[0]), "train_neg": float(v[1]),
                         "reversed_pos": float(v[2]), "reversed_neg": float(v[3]), "removed": float(v[4])})
    rule_desc = None if rule is None else (rule.model_dump() if hasattr(rule, "model_dump") else
                                           getattr(rule, "__name__", "predicate"))
    return {"rates": rates, "results": results, "ceiling": ceiling, "presence": pres, "config": {
        "dataset": ds.spec.name, "modality": modality, "task": task, "position": position,
        "order": work.spec.modality_names, "mitigation": mitigation, "semantics": semantics,
        "removal": "rule" if rule is not None else ("file-order" if file_order else "random"),
        "rule": rule_desc, "validation": "balanced" if val_balance and config.balance_modalities else "shifted",
        "pfusion_semantics": ("per-record zero-fill, batch 16, unshuffled" if semantics == "paper" else semantics),
        "folds": len(splits), "models": list(models), "all_tasks": all_tasks,
        "train_config": config.to_json(), "mean_epochs": float(np.mean(epochs_run)) if epochs_run else 0.0,
        "seconds": time.perf_counter() - t_start, "cancelled": cancelled}}


def _default_model_config():
    return ModelConfig()
