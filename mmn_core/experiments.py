"""Experiments over whole datasets: k-fold comparison of MultiModN and P-Fusion, and the MNAR robustness
experiment (train under injected missingness, test on clean and reversed splits)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from sklearn.model_selection import train_test_split

from .checkpoint import build_model
from .data import Dataset, Preprocessor, _strata, kfold, split
from .kinds import KINDS
from .metrics import final_metrics, task_metrics
from .missingness import (apply_rule, inject_latent, inject_mnar, presence_by_class, random_removal, removed_rows,
                          reverse_mnar)
from .model import ModelConfig
from .spec import MnarRule
from .stats import brier, expected_calibration_error
from .sweep import Job, train_many, train_models
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


def cross_validate(ds: Dataset, kinds=KINDS, folds: int = 5, config: TrainConfig = TrainConfig(),
                   model_config=None, progress: Progress | None = None, workers: int | None = None,
                   comm=None) -> dict:
    """k-fold CV of each model kind on identical folds; final-step test metrics per fold, then mean and sd.

    `workers` > 1 trains the folds together in that many worker processes (`sweep.train_models`; the same
    metrics, bit for bit). `comm` (under torchrun): every training data-parallel over the ranks.
    Returns {"folds": k, "tasks": {task: {"type": ..., kind: {metric: mean, metric_std: sd}, ...}},
             "per_fold": {kind: [{task: {metric: value}}]}}."""
    per_fold: dict[str, list] = {k: [] for k in kinds}
    runs = [(i, kind, rows) for i, rows in enumerate(fold_rows(ds, folds, config.seed)) for kind in kinds]
    if workers is not None and workers > 1:
        def done(event):
            if progress is not None:
                i, kind, _ = runs[event["job"]]
                progress({"fold": i + 1, "folds": folds, "model": kind})
        models = train_models(ds, [(kind, rows) for _, kind, rows in runs], model_config, config, workers, done)
    else:
        models = []
        for i, kind, rows in runs:
            models.append(train_model(ds, kind, model_config, config, rows=rows, comm=comm))
            if progress is not None:
                progress({"fold": i + 1, "folds": folds, "model": kind})
    for (_, kind, _), trained in zip(runs, models):
        per_fold[kind].append(final_metrics(trained.metrics))
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


def _score(model, data, task: str, semantics: str, modality: str) -> dict[str, float]:
    """Final-step metrics of one binary task (paper semantics: file order, batch 16, batch-wide), its
    calibration (Brier, ECE), and AUROC among the records with and without M (each NaN when one class is
    missing there)."""
    out = predict(model, data, semantics=semantics)
    y = data.y[task].numpy()
    logits = out.logits[task][-1].detach().cpu().numpy()
    m = task_metrics("binary", y, logits)
    row = {"auroc": m["auroc"], "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"]}
    ok = ~np.isnan(y) if np.issubdtype(y.dtype, np.floating) else y >= 0
    prob = 1 / (1 + np.exp(-logits[:, 0].astype(float)))
    yy = y[ok].astype(int)
    row["brier"] = brier(yy, prob[ok]) if ok.any() else math.nan
    row["ece"] = expected_calibration_error(yy, prob[ok]) if ok.any() else math.nan
    has = data.present[modality].cpu().numpy().astype(bool)
    for name, sel in (("m_present", has & ok), ("m_absent", ~has & ok)):
        row[f"n_{name}"] = int(sel.sum())
        row[f"auroc_{name}"] = (task_metrics("binary", y[sel], logits[sel])["auroc"]
                                if len(np.unique(y[sel])) == 2 else math.nan)
    return row


METRIC_KEYS = ("auroc", "balanced_accuracy", "accuracy", "brier", "ece", "auroc_m_present", "auroc_m_absent")
TESTS = ("clean", "reversed", "random", "ceiling", "reversed-trained", "without-m")
REFERENCES = ("reversed-trained", "without-m")


def _summaries(per_fold: list[dict], rates, models) -> tuple[list, dict]:
    """Mean ± sd over folds (and seeds) per (rate, model, test) from the per-fold rows."""
    cells: dict[tuple, list] = {}
    for r in per_fold:
        cells.setdefault((r["rate"], r["model"], r["test"]), []).append(r)

    def summary(rows: list[dict]) -> dict:
        out = {"n_folds": len(rows)}
        for key in METRIC_KEYS:
            out[key], out[f"{key}_std"] = _summary([x.get(key, math.nan) for x in rows])
        return out

    results = [{"rate": r, "model": kind, "test": test, **summary(cells[(r, kind, test)])}
               for r in rates for kind in models for test in TESTS if test != "ceiling" and (r, kind, test) in cells]
    ceiling = {kind: [{"rate": r, **summary(cells[(r, kind, "ceiling")])}
                      for r in rates if (r, kind, "ceiling") in cells] for kind in models}
    return results, ceiling


def _without(spec, modality: str):
    return spec.model_copy(update={"modalities": [m for m in spec.modalities if m.name != modality]})


def run_mnar(ds: Dataset, modality: str, task: str, rates=(0.0, 0.2, 0.4, 0.6, 0.8), folds: int = 3,
             epochs: int = 30, seed: int = 0, position: str = "spec", mitigation: str = "none",
             semantics: str = "per-record", rule=None, models=KINDS,
             progress: Progress | None = None, should_stop=None, dropout_rate: float = 0.3,
             model_config=None, train_config: TrainConfig | None = None, val_balance: bool | None = None,
             all_tasks: bool = False, latent=None, references=False, workers: int | None = None) -> dict:
    """The MNAR robustness experiment: train with modality M removed from a fraction p of the label-1 records
    of binary task T (train + validation splits), test on a clean split and on a reversed one (p of the
    label-0 test records lose M), for every rate, model and fold.

    - `semantics="paper"`: the official code (batch-wide skipping, batch 16, unshuffled, file-order removal;
      P-Fusion, like the official baseline, zero-fills per record at batch 16, unshuffled);
      "per-record" (default): correct skipping, shuffled batches, seeded random removal.
    - `rule` (MnarRule, its name, or a predicate frame -> bool mask): rule-based missingness instead — MAR,
      since the rule reads an observed column: on p of the train + validation records M is observed only
      where the rule fires; reversed test: on p of the test records it is observed only where it does not.
    - `latent` ((N,) unobserved score, e.g. `synthetic.latent_severity`): latent MNAR instead — M removed by
      the hidden score (`missingness.select_latent`), the highest lose it in training, the lowest in the
      reversed test.
    - `references=True` (or a subset of {"reversed-trained", "without-m"}) also trains, per fold and model, the
      valid references: a model trained on the reversed distribution (for each rate > 0; the real upper
      reference on the reversed test) and a model without M at all (the floor). Always scored: a
      random-removal control split (as many test records lose M as in the reversed split, whatever their
      label), Brier / ECE, and AUROC among records with and without M.
    - `position`: M's place in the encoder order; `mitigation`: a training option of the engine, for both
      models where it applies (shuffle-order is MultiModN only); `val_balance` (default: on for the
      presence-balance mitigations) applies the same balancing, one fixed draw, to the validation split.
    - folds == 1: one stratified train / validation / test split; else k folds (validation carved from the
      training part; early stopping never sees a test fold). Models are trained on task T alone unless
      `all_tasks`.
    - `progress(dict)` gets a structured event after every epoch ("phase": "epoch") and training ("trained"):
      "done", "total" (trainings), "fold", "folds", "rate", "model", "epoch" and a readable "message"; `should_stop()`
      cancels between batches and returns what finished (config["cancelled"] = True).
    - `workers` > 1: the trainings run together in that many worker processes (`sweep.train_many`; same
      results, bit for bit); progress then comes once per training, and `should_stop` is checked between
      trainings (the running ones finish).

    Returns {"rates", "results": [{"rate", "model", "test", "auroc", "auroc_std", ..., "n_folds"}] (test:
    clean, reversed, random, reversed-trained, without-m), "ceiling": {model: [{"rate", "auroc", ...}]} (the
    same model and options trained at p = 0, scored on each rate's reversed split), "per_fold": [{"seed",
    "fold", "rate", "model", "test", metric: value}], "presence": [{"rate", "train_pos", "train_neg",
    "reversed_pos", "reversed_neg", "removed"}], "config": {..., "test_train_ratio", "mechanism"}}."""
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
        if kind not in KINDS:
            raise ValueError(f"unknown model '{kind}' (choose: {', '.join(KINDS)})")
    rule = _resolve_rule(ds, rule, modality)
    if latent is not None:
        if rule is not None:
            raise ValueError("choose a rule or a latent score, not both")
        latent = np.asarray(latent, dtype=float)
        if latent.shape != (len(ds),):
            raise ValueError(f"latent score has shape {latent.shape}, expected ({len(ds)},)")
    work = place_modality(ds, modality, position)
    if not all_tasks:
        work = replace(work, spec=work.spec.model_copy(update={"tasks": [t]}))
    config = _mnar_train_config(work, modality, task, mitigation, semantics, epochs, seed, dropout_rate,
                                train_config)
    file_order = semantics == "paper"
    if val_balance is None:
        val_balance = bool(config.balance_modalities)
    train_rates = sorted(set(rates) | {0.0})       # p = 0 is the reference trained without injected missingness
    splits = list(fold_rows(work, folds, seed)) if folds > 1 else [split(work, seed=seed)]
    refs = set(REFERENCES if references is True else references or ())
    if refs - set(REFERENCES):
        raise ValueError(f"unknown references {sorted(refs - set(REFERENCES))} (choose: {', '.join(REFERENCES)})")
    extra = len(models) * (len([r for r in rates if r > 0]) * ("reversed-trained" in refs) + ("without-m" in refs))
    total = len(splits) * (len(train_rates) * len(models) + extra)
    per_fold: list[dict] = []
    presence: dict[float, list] = {r: [] for r in train_rates}
    epochs_run: list[int] = []
    state = {"done": 0, "cancelled": False}
    t_start = time.perf_counter()

    def inject(r, rows, fold_seed, reverse=False):
        if rule is not None:
            return apply_rule(work, rule, modality, rows=rows, rate=r, seed=fold_seed, invert=reverse)
        if latent is not None:
            return inject_latent(work, modality, latent, r, rows=rows, seed=fold_seed, high=not reverse)
        fn = reverse_mnar if reverse else inject_mnar
        return fn(work, modality, task, r, rows=rows, seed=fold_seed, file_order=file_order)

    def cell(f, r, kind, data_ds, tr, va, fold_seed, spec=None) -> dict:
        """One training on one fold of `data_ds` (already injected), prepared but not yet trained."""
        cell_ds = data_ds if spec is None else replace(data_ds, spec=spec)
        prep = Preprocessor.fit(cell_ds.subset(tr))
        torch.manual_seed(seed)
        model = build_model(kind, cell_ds.spec, prep, model_config or _default_model_config())
        data = prep.transform(cell_ds)
        train_d, val_d = data.subset(tr), data.subset(va)
        cfg, sem = config, semantics
        if spec is not None:                       # the without-M floor: nothing to balance
            cfg = replace(config, balance_modalities=tuple(m for m in config.balance_modalities
                                                           if m != modality))
        if val_balance and cfg.balance_modalities:
            gen = torch.Generator().manual_seed(fold_seed + 7)
            val_d = val_d.with_present(balance_presence(val_d.present, val_d.y[task], cfg.balance_modalities, gen))
        if semantics == "paper" and kind == "pfusion":
            # the official baseline (HAIM MLP) zero-fills each record's missing values: batch-wide
            # skipping is MultiModN's code path only; batches stay 16 and unshuffled
            cfg, sem = replace(cfg, semantics="per-record", batch_size=PAPER_BATCH, shuffle=False), "per-record"
        return {"job": Job(model, train_d, val_d, cfg), "prep": prep, "sem": sem, "scores": [],
                "where": {"fold": f + 1, "folds": len(splits), "rate": r, "model": kind},
                "message": f"fold {f + 1}/{len(splits)} · p = {r:.2f} · {kind}"}

    def score(c, f, r, kind, test, test_ds):
        """Once `c` is trained: score it on `test_ds` and add one per-fold row."""
        c["scores"].append(lambda: per_fold.append(
            {"seed": seed, "fold": f, "rate": r, "model": kind, "test": test,
             **_score(c["job"].model, c["prep"].transform(test_ds), task, c["sem"], modality)}))

    # 1. every training of the experiment, with what to score on it, in the order they would run one by one
    cells: list[dict] = []
    ratios = []
    for f, (tr, va, te) in enumerate(splits):
        ratios.append(len(te) / max(len(tr), 1))
        trva, fold_seed = np.sort(np.concatenate([tr, va])), seed + 1000 * f
        reversed_full = {r: inject(r, te, fold_seed + 1, reverse=True) for r in rates}
        reversed_sets = {r: d.subset(te) for r, d in reversed_full.items()}
        random_sets = {r: random_removal(work, modality, len(removed_rows(work, reversed_full[r], modality)),
                                         rows=te, seed=fold_seed + 2).subset(te) for r in rates}
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
                c = cell(f, r, kind, inj, tr, va, fold_seed)
                score(c, f, r, kind, "clean", clean)
                if rev is not None:
                    score(c, f, r, kind, "reversed", rev)
                    score(c, f, r, kind, "random", random_sets[r])
                if r == 0.0:
                    for rr in rates:
                        score(c, f, rr, kind, "ceiling", reversed_sets[rr])
                cells.append(c)
                if "reversed-trained" in refs and r > 0 and rev is not None:
                    # the real upper reference: trained where the reversed pattern holds
                    c = cell(f, r, kind, inject(r, trva, fold_seed, reverse=True), tr, va, fold_seed)
                    score(c, f, r, kind, "reversed-trained", rev)
                    cells.append(c)
        if "without-m" in refs:
            spec = _without(work.spec, modality)
            for kind in models:
                c = cell(f, 0.0, kind, work, tr, va, fold_seed, spec=spec)

                def floor(c=c, f=f, kind=kind, clean=clean, spec=spec):
                    row = _score(c["job"].model, c["prep"].transform(replace(clean, spec=spec)), task, c["sem"],
                                 spec.modality_names[0])
                    for rr in rates:                   # no M: the same on every split and rate
                        per_fold.append({"seed": seed, "fold": f, "rate": rr, "model": kind, "test": "without-m",
                                         **{k: v for k, v in row.items() if "m_" not in k}})
                c["scores"].append(floor)
                cells.append(c)

    # 2. train them: one by one (progress after every epoch) or together in worker processes (sweep.train_many)
    def trained(c):
        state["done"] += 1
        if progress is not None:
            progress({"phase": "trained", "done": state["done"], "total": total, **c["where"],
                      "message": c["message"] + " · done"})

    histories: list = [None] * len(cells)
    if workers is None or workers <= 1:
        for i, c in enumerate(cells):
            def epoch_progress(row, c=c):
                if progress is not None:
                    progress({"phase": "epoch", "done": state["done"], "total": total, "epoch": row["epoch"],
                              **c["where"], "message": f"{c['message']} · epoch {row['epoch']}"})
            j = c["job"]
            histories[i] = fit(j.model, j.train, j.val, j.config, epoch_progress, should_stop)
            trained(c)
            if should_stop is not None and should_stop():
                state["cancelled"] = True    # the cell cut short keeps its best weights so far and is scored
                break
    else:
        done = train_many([c["job"] for c in cells], workers, progress=lambda e: trained(cells[e["job"]]),
                          should_stop=should_stop)
        histories = [h if h else None for h in done]    # a cancelled job has an empty history and is not scored
        state["cancelled"] = any(h is None for h in histories)

    # 3. score, in the one-by-one order
    for c, history in zip(cells, histories):
        if history is not None:
            epochs_run.append(len(history))
            for s in c["scores"]:
                s()

    results, ceiling = _summaries(per_fold, rates, models)
    pres = []
    for r in rates:
        if presence[r]:
            v = np.nanmean(np.asarray(presence[r], dtype=float), axis=0)
            pres.append({"rate": r, "train_pos": float(v[0]), "train_neg": float(v[1]),
                         "reversed_pos": float(v[2]), "reversed_neg": float(v[3]), "removed": float(v[4])})
    rule_desc = None if rule is None else (rule.model_dump() if hasattr(rule, "model_dump") else
                                           getattr(rule, "__name__", "predicate"))
    removal = ("rule" if rule is not None else "latent" if latent is not None else
               "file-order" if file_order else "random")
    mechanism = {"rule": "MAR (rule on an observed column)", "latent": "MNAR (unobserved severity)"}.get(
        removal, "MNAR (label-dependent)")
    return {"rates": rates, "results": results, "ceiling": ceiling, "per_fold": per_fold, "presence": pres,
            "config": {
                "dataset": ds.spec.name, "modality": modality, "task": task, "position": position,
                "order": work.spec.modality_names, "mitigation": mitigation, "semantics": semantics,
                "removal": removal, "mechanism": mechanism, "rule": rule_desc,
                "validation": "balanced" if val_balance and config.balance_modalities else "shifted",
                "pfusion_semantics": ("per-record zero-fill, batch 16, unshuffled" if semantics == "paper"
                                      else semantics),
                "folds": len(splits), "seed": seed, "models": list(models), "all_tasks": all_tasks,
                "references": sorted(refs), "test_train_ratio": float(np.mean(ratios)) if folds > 1 else None,
                "train_config": config.to_json(), "mean_epochs": float(np.mean(epochs_run)) if epochs_run else 0.0,
                "seconds": time.perf_counter() - t_start, "cancelled": state["cancelled"]}}


def _default_model_config():
    return ModelConfig()
