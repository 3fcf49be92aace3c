"""The evidence benchmark: the paper's claims measured on the bundled data, written to benchmarks/RESULTS.md.

    python benchmarks/evidence.py --seeds 5  # seeded experiments for seeds 0..4 (resumable, one file per seed)
    python benchmarks/evidence.py --quick    # a smoke-sized run (< 5 min) -> benchmarks/results/evidence_quick.md
    python benchmarks/evidence.py --render   # re-render the markdown from the stored JSON only
    python benchmarks/evidence.py --legacy   # also the single-seed experiments of the first run (kept as stored)

Every experiment writes one JSON file per seed (benchmarks/results/evidence_<id>_s<seed>.json; the legacy
single-seed ones evidence_<id>.json) holding its per-fold values; a rerun skips the files that exist (delete
one, or pass --force, to recompute it). Seeds change the folds, the initialisation and every random choice;
intervals over k folds × r seeds are Nadeau–Bengio corrected (mmn_core.stats). Torch runs on one thread.
Early stopping always uses a validation split carved from the training part; test folds are never looked at
before the final scoring.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mmn_core import ModelConfig, TrainConfig, load_dataset  # noqa: E402
from mmn_core.fmt import json_safe  # noqa: E402
from mmn_core.experiments import cross_validate, fold_rows, run_mnar  # noqa: E402
from mmn_core.shift import natural_shift  # noqa: E402
from mmn_core.sweep import default_workers  # noqa: E402
from mmn_core.metrics import final_metrics  # noqa: E402
from mmn_core.train import predict, train_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("multimodn", "pfusion")
# MNAR set-ups: (modality M, binary task T) per dataset; rule-based set-up: (spec rule name, task)
MNAR_SETUP = {"synthetic": ("labs", "outcome"), "support2": ("chemistry", "death"), "star": ("grade2", "pass3")}
RULE_SETUP = {"synthetic": ("labs_if_tachycardic", "outcome"), "support2": ("blood_gas_if_severe", "death"),
              "star": ("grade2_if_strong_grade1", "pass3")}
# natural shift (site split): the grouping of each dataset and the held-out site(s)
SHIFT_SETUP = {"star": ("school type (first year in the study)", ("inner-city",)), "weather": ("station", ("JFK",))}
MITIGATIONS = ("presence-balance", "presence-balance-all", "modality-dropout", "shuffle-order")


class Plan:
    """Sizes of the run: the full evidence or a quick smoke run; `seeds` for the seeded experiments."""

    def __init__(self, quick: bool, seeds: int = 1, legacy: bool = False, workers: int = 1):
        self.quick, self.legacy = quick, legacy
        self.args = (quick, seeds, legacy, workers)
        self.workers = workers                          # trainings of one experiment run together (sweep.py)
        self.seeds = tuple(range(max(1, seeds)))
        self.prefix = "evidence_quick_" if quick else "evidence_"
        self.epochs = 8 if quick else 30
        self.cv_folds = 2 if quick else 5
        self.mnar_folds = 1 if quick else 3            # legacy single-seed MNAR runs
        self.seeded_mnar_folds = 2 if quick else 5
        self.seeded_rates = (0.0, 0.8)
        self.official_folds = 2 if quick else 3
        self.official_epochs = 4 if quick else 12
        self.official_n = 600 if quick else 1200
        self.official_sets = ("synthetic",) if quick else ("synthetic", "support2")
        self.rates = (0.0, 0.8) if quick else (0.0, 0.2, 0.4, 0.6, 0.8)
        self.paper_rates = (0.0, 0.8) if quick else (0.0, 0.4, 0.8)   # batch 16 is ~10x slower per epoch
        self.rule_rates = (0.0, 1.0) if quick else (0.0, 0.5, 1.0)
        self.parity_sets = ("synthetic", "weather") if quick else ("synthetic", "support2", "star", "weather")
        self.multitask_sets = ("weather",) if quick else ("support2", "star", "weather")
        self.mnar_sets = ("synthetic",) if quick else ("synthetic", "support2", "star")
        self.state_sizes = (4, 32) if quick else (4, 8, 16, 32, 64, 128)
        self.state_sets = ("synthetic",) if quick else ("support2", "star")
        self.order_sets = ("synthetic",) if quick else ("synthetic", "support2")
        self.n_orders = 5 if quick else 20
        self.extra_modalities = (0, 8) if quick else (0, 4, 8, 16, 32)
        self.task_counts = (3,) if quick else (1, 3, 6, 12)
        self.shift_sets = ("weather",) if quick else ("star", "weather")

    def train_config(self, seed: int = 0, **kw) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, seed=seed, **kw)


_CACHE: dict = {}


def dataset(name: str):
    if name not in _CACHE:
        _CACHE[name] = load_dataset(name) if name != "synthetic" else load_dataset("synthetic", n=3000, seed=0)
    return _CACHE[name]


def one_task(ds, task: str):
    return replace(ds, spec=ds.spec.model_copy(update={"tasks": [ds.spec.task(task)]}))


# --- experiments: each returns a JSON-able dict -----------------------------------------------------------
def exp_parity(plan: Plan, name: str, tick, seed: int = 0) -> dict:
    ds = dataset(name)
    res = cross_validate(ds, KINDS, plan.cv_folds, plan.train_config(seed), progress=lambda p: tick(1),
                         workers=plan.workers)
    paired = {}
    for t in ds.spec.tasks:
        a, b = (res["per_fold"][k] for k in KINDS)
        paired[t.name] = {m: _mean_sd([x[t.name][m] - y[t.name][m] for x, y in zip(a, b)]) for m in a[0][t.name]}
    rows = list(fold_rows(ds, plan.cv_folds, seed))
    ratio = float(np.mean([len(te) / len(tr) for tr, _, te in rows]))
    return {"dataset": name, "folds": plan.cv_folds, "epochs": plan.epochs, "seed": seed, "tasks": res["tasks"],
            "per_fold": res["per_fold"], "paired": paired, "test_train_ratio": ratio}


def exp_multitask(plan: Plan, name: str, tick) -> dict:
    """Each task alone vs all tasks together, on the same folds (the all-task folds of the parity run)."""
    ds = dataset(name)
    rows = list(fold_rows(ds, plan.cv_folds, 0))
    out = {"dataset": name, "folds": plan.cv_folds, "tasks": {}}
    for t in ds.spec.tasks:
        single = one_task(ds, t.name)
        per = {k: [] for k in KINDS}
        for r in rows:
            for kind in KINDS:
                trained = train_model(single, kind, None, plan.train_config(), rows=r)
                per[kind].append(final_metrics(trained.metrics)[t.name])
                tick(1)
        out["tasks"][t.name] = {"type": t.type, "per_fold": per}
    return out


def exp_mnar(plan: Plan, name: str, setting: dict, tick) -> dict:
    ds = dataset(name)
    modality, task = MNAR_SETUP[name]
    kw = dict(setting)
    rates = plan.rates
    if kw.get("semantics") == "paper":
        rates = plan.paper_rates
    if "rule" in kw:
        rule_name, task = RULE_SETUP[name]
        rule = next(r for r in ds.spec.mnar_rules if r.name == rule_name)
        kw["rule"], modality, rates = rule, rule.modality, plan.rule_rates
    last = [0]

    def progress(p):
        if p["done"] > last[0]:
            tick(p["done"] - last[0])
            last[0] = p["done"]

    res = run_mnar(ds, modality, task, rates=rates, folds=plan.mnar_folds, epochs=plan.epochs, seed=0,
                   progress=progress, workers=plan.workers, **kw)
    res["config"]["setting"] = {k: (v if isinstance(v, (str, int, float, bool, tuple, list)) else str(v))
                                for k, v in setting.items()}
    return res


# references trained once where they differ: the reversed-trained model (no mitigation) and the without-M
# floor of `base` serve `presence-balance` too (same folds, same M); `latent` shares base's floor
SEEDED_MNAR = {
    "base": {"position": "middle", "references": True},
    "presence-balance": {"position": "middle", "mitigation": "presence-balance", "references": False},
    "latent": {"position": "middle", "latent": True, "references": ("reversed-trained",)},
    "rule": {"rule": True, "references": True},               # MAR: the rule reads an observed column
}
SEEDED_UNITS = {"base": 8, "presence-balance": 4, "latent": 6, "rule": 8}   # trainings per fold


def seeded_mnar_settings(name: str) -> list[str]:
    return [s for s in SEEDED_MNAR if s != "latent" or name == "synthetic"]


def exp_mnar_seeded(plan: Plan, name: str, sid: str, seed: int, tick) -> dict:
    """One seed of a seeded MNAR setting: 5 folds, with the valid references (reversed-trained model, random
    control split, without-M floor, AUROC by M's presence, Brier / ECE)."""
    from mmn_core.synthetic import latent_severity
    ds = dataset(name)
    modality, task = MNAR_SETUP[name]
    kw = dict(SEEDED_MNAR[sid])
    if kw.pop("latent", False):
        kw["latent"] = latent_severity(len(ds), 0)             # dataset("synthetic") is n=3000, seed=0
    if kw.pop("rule", False):
        rule_name, task = RULE_SETUP[name]
        rule = next(r for r in ds.spec.mnar_rules if r.name == rule_name)
        kw["rule"], modality = rule, rule.modality
    last = [0]

    def progress(p):
        if p["done"] > last[0]:
            tick(p["done"] - last[0])
            last[0] = p["done"]

    res = run_mnar(ds, modality, task, rates=plan.seeded_rates if sid != "rule" else (0.0, 1.0),
                   folds=plan.seeded_mnar_folds, epochs=plan.epochs, seed=seed, progress=progress,
                   workers=plan.workers, **kw)
    res["config"]["setting"] = sid
    return res


def exp_official(plan: Plan, name: str, seed: int, tick) -> dict:
    """One factor at a time from the official configuration, on gap-free labelled-only data."""
    from mmn_core.official import factor_study, gap_free
    from mmn_core.synthetic import make_synthetic
    modality, task = MNAR_SETUP[name]
    if name == "synthetic":
        ds = make_synthetic(plan.official_n, seed=0, gaps=False)
    else:
        ds = gap_free(dataset(name), task)
    ds = one_task(ds, task)
    rows = list(fold_rows(ds, plan.official_folds, seed))
    out = factor_study(ds, modality, task, rows, seed=seed, rate=0.8, epochs=plan.official_epochs,
                       progress=lambda r: tick(1))
    return {"dataset": name, "modality": modality, "task": task, "records": len(ds), "seed": seed,
            "folds": plan.official_folds, "epochs": plan.official_epochs, "rate": 0.8, "rows": out,
            "test_train_ratio": float(np.mean([len(te) / len(tr) for tr, _, te in rows])),
            "data": "synthetic, gaps=False" if name == "synthetic" else "complete cases with a label"}


def shift_groups(name: str, ds) -> np.ndarray:
    """(N,) site of each record: STAR's school type in the pupil's first year in the study, weather's station."""
    f = ds.frame
    if name == "star":
        return f["schoolk"].fillna(f["school1"]).fillna(f["school2"]).fillna("unknown").astype(str).to_numpy()
    return f["station"].astype(str).to_numpy()


def exp_shift(plan: Plan, name: str, seed: int, tick) -> dict:
    """Train on the other sites, test on their own held-out records and on the held-out site (shift.py)."""
    ds = dataset(name)
    label, held_out = SHIFT_SETUP[name]
    res = natural_shift(ds, shift_groups(name, ds), held_out, seed, plan.train_config(seed), workers=plan.workers)
    tick(2)
    return {"dataset": name, "grouping": label, **res.to_json()}


def exp_without(plan: Plan, name: str, tick) -> dict:
    """Reference for the MNAR tables: each model trained and tested without modality M at all (no M values, no
    M presence), on the same folds as run_mnar. Its AUROC is the same on the clean and the reversed splits."""
    ds = dataset(name)
    modality, task = MNAR_SETUP[name]
    spec = ds.spec.model_copy(update={"tasks": [ds.spec.task(task)],
                                      "modalities": [m for m in ds.spec.modalities if m.name != modality]})
    work = replace(ds, spec=spec)
    per = {k: [] for k in KINDS}
    for rows in fold_rows(work, plan.mnar_folds, 0) if plan.mnar_folds > 1 else [split_rows(work)]:
        for kind in KINDS:
            trained = train_model(work, kind, None, plan.train_config(), rows=rows)
            per[kind].append(final_metrics(trained.metrics)[task])
            tick(1)
    return {"dataset": name, "modality": modality, "task": task, "per_fold": per,
            "auroc": {k: _mean_sd([f["auroc"] for f in v]) for k, v in per.items()}}


def split_rows(ds):
    from mmn_core.data import split
    return split(ds, seed=0)


def _permutations(names: list[str], n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    orders = [list(names)]
    while len(orders) < n + 1:
        p = [names[i] for i in rng.permutation(len(names))]
        if p not in orders:
            orders.append(p)
    return orders


def exp_order(plan: Plan, name: str, tick) -> dict:
    """Fixed-order vs shuffle-order training: predictions under the spec order and n random orders."""
    from mmn_core.metrics import task_metrics
    ds = dataset(name)
    task = MNAR_SETUP[name][1]
    out = {"dataset": name, "task": task, "n_orders": plan.n_orders, "runs": {}}
    orders = _permutations(ds.spec.modality_names, plan.n_orders, 0)
    for label, shuffle in (("fixed", False), ("shuffle-trained", True)):
        folds = []
        for rows in list(fold_rows(ds, max(plan.mnar_folds, 2), 0))[:plan.mnar_folds]:
            trained = train_model(ds, "multimodn", None, plan.train_config(shuffle_order=shuffle), rows=rows)
            test = trained.prep.transform(ds.subset(rows[2]))
            probs, aurocs = [], []
            for order in orders:
                o = predict(trained.model, test, order=order)
                lg = o.logits[task][-1].numpy()
                probs.append(torch.sigmoid(torch.as_tensor(lg[:, 0])).numpy())
                aurocs.append(task_metrics("binary", test.y[task].numpy(), lg)["auroc"])
            probs = np.stack(probs)                              # (orders, N)
            folds.append({"spread_mean": float((probs.max(0) - probs.min(0)).mean()),
                          "sd_mean": float(probs.std(0).mean()),
                          "auroc_spec_order": aurocs[0], "auroc_mean": float(np.mean(aurocs)),
                          "auroc_min": float(np.min(aurocs)), "auroc_max": float(np.max(aurocs))})
            tick(1)
        out["runs"][label] = {k: _mean_sd([f[k] for f in folds]) for k in folds[0]}
    return out


def exp_state_size(plan: Plan, name: str, tick) -> dict:
    ds = dataset(name)
    rows = list(fold_rows(ds, max(plan.mnar_folds, 2), 0))[:max(plan.mnar_folds, 1)]
    out = {"dataset": name, "folds": len(rows), "sizes": list(plan.state_sizes), "results": []}
    for size in plan.state_sizes:
        for kind in KINDS:
            per = []
            for r in rows:
                trained = train_model(ds, kind, ModelConfig(state_size=size), plan.train_config(), rows=r)
                per.append(final_metrics(trained.metrics))
                tick(1)
            n_params = sum(p.numel() for p in trained.model.parameters())
            summary = {t: {m: _mean_sd([f[t][m] for f in per]) for m in per[0][t]} for t in per[0]}
            out["results"].append({"state_size": size, "model": kind, "params": n_params, "metrics": summary})
    return out


_SCALE_CHILD = r"""
import json, os, sys, threading, time, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from mmn_core import load_dataset, ModelConfig, TrainConfig, Preprocessor, build_model
from mmn_core.train import fit
extra, n_tasks, kind, epochs = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ds = load_dataset("synthetic", n=3000, seed=0, extra_modalities=extra)
base = ds.spec.task("outcome")
tasks = [base.model_copy(update={"name": f"outcome_{i}" if i else "outcome"}) for i in range(n_tasks)]
ds.spec = ds.spec.model_copy(update={"tasks": tasks})
prep = Preprocessor.fit(ds)
data = prep.transform(ds)
torch.manual_seed(0)
model = build_model(kind, ds.spec, prep, ModelConfig())
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
base_rss, peak, stop = rss(), [0], threading.Event()
def sample():                      # current RSS every 5 ms: the training peak, not the data-loading peak
    while not stop.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True)
t.start()
marks = [time.thread_time()]       # CPU time of this thread (torch runs single-threaded in it): load-independent
hist = fit(model, data, None, TrainConfig(epochs=epochs, patience=99), lambda row: marks.append(time.thread_time()))
per_epoch = sorted(b - a for a, b in zip(marks[1:-1], marks[2:]))   # skip epoch 1 (lazy initialisation)
cpu = per_epoch[len(per_epoch) // 2]
stop.set(); t.join()
secs = sorted(h["seconds"] for h in hist)
print(json.dumps({"modalities": len(ds.spec.modalities), "tasks": n_tasks, "model": kind,
                  "seconds_per_epoch": secs[len(secs) // 2], "cpu_seconds_per_epoch": cpu, "records": len(ds),
                  "peak_rss_growth_mb": max(0, peak[0] - base_rss) / 2**20, "rss_before_mb": base_rss / 2**20,
                  "params": sum(p.numel() for p in model.parameters())}))
"""


def _scale_configs(plan: Plan) -> list[tuple[int, int]]:
    """(extra modalities, tasks): modalities grow at 3 tasks, tasks grow at the 6 base modalities."""
    return list(dict.fromkeys([(e, 3) for e in plan.extra_modalities] + [(0, k) for k in plan.task_counts]))


def exp_scaling(plan: Plan, tick) -> dict:
    """Time and memory per epoch vs number of modalities and tasks (synthetic, 3,000 records, batch 256).
    One subprocess per configuration so that peak memory is not shared between configurations."""
    configs = _scale_configs(plan)
    out = {"records": 3000, "epochs_timed": 5, "results": []}
    for extra, n_tasks in configs:
        for kind in KINDS:
            proc = subprocess.run([sys.executable, "-c", _SCALE_CHILD, str(ROOT), str(extra), str(n_tasks), kind,
                                   str(out["epochs_timed"])], capture_output=True, text=True, check=True)
            out["results"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            tick(1)
    return out


# --- the plan ---------------------------------------------------------------------------------------------
def mnar_settings(plan: Plan, name: str) -> list[tuple[str, dict, int]]:
    """(id, run_mnar options, number of trainings) for one dataset."""
    both, mmn = KINDS, ("multimodn",)
    s = [("base", {"position": "middle"}, both)]
    if not plan.quick:
        s += [("first", {"position": "first", "models": mmn}, mmn),
              ("last", {"position": "last", "models": mmn}, mmn)]
    s += [("paper", {"position": "middle", "semantics": "paper"}, both)]
    for m in (MITIGATIONS if not plan.quick else ("presence-balance",)):
        models = mmn if m == "shuffle-order" else both
        s.append((m, {"position": "middle", "mitigation": m, "models": models}, models))
    if not plan.quick and name == "support2":
        s += [("presence-balance-shiftedval", {"position": "middle", "mitigation": "presence-balance",
                                               "val_balance": False}, both),
              ("last-presence-balance", {"position": "last", "mitigation": "presence-balance", "models": mmn}, mmn)]
    s += [("rule", {"rule": True}, both)]
    if not plan.quick:
        s += [("rule-presence-balance", {"rule": True, "mitigation": "presence-balance"}, both)]
    out = []
    for sid, kw, models in s:
        rates = plan.rule_rates if "rule" in kw else plan.paper_rates if kw.get("semantics") == "paper" else plan.rates
        out.append((sid, kw, plan.mnar_folds * len(set(rates) | {0.0}) * len(models)))
    return out


def build_plan(plan: Plan) -> list[tuple[str, int, callable]]:
    """(experiment id, trainings, run(tick) -> dict) in running order: seed by seed (so that a run cut short
    still has whole seeds), cheap and central results first; the legacy single-seed jobs last."""
    jobs = []
    for seed in plan.seeds:
        for name in plan.parity_sets:
            jobs.append((f"parity_{name}_s{seed}", plan.cv_folds * 2,
                         lambda tick, n=name, s=seed: exp_parity(plan, n, tick, s)))
        # the MNAR settings first (per dataset: base, latent, presence balancing), the MAR rule last
        order = [(n, i) for n in plan.mnar_sets for i in ("base", "latent", "presence-balance")
                 if i in seeded_mnar_settings(n)] + [(n, "rule") for n in plan.mnar_sets]
        for name, sid in order:
            jobs.append((f"mnar_{name}_{sid}_s{seed}", plan.seeded_mnar_folds * SEEDED_UNITS[sid],
                         lambda tick, n=name, i=sid, s=seed: exp_mnar_seeded(plan, n, i, s, tick)))
        for name in plan.shift_sets:
            jobs.append((f"shift_{name}_s{seed}", 2, lambda tick, n=name, s=seed: exp_shift(plan, n, s, tick)))
    for seed in plan.seeds:
        for name in plan.official_sets:
            jobs.append((f"official_{name}_s{seed}", plan.official_folds * 15,
                         lambda tick, n=name, s=seed: exp_official(plan, n, s, tick)))
    if not plan.legacy:
        return jobs
    for name in plan.mnar_sets:
        for sid, kw, units in mnar_settings(plan, name):
            jobs.append((f"mnar_{name}_{sid}", units, lambda tick, n=name, k=kw: exp_mnar(plan, n, k, tick)))
    for name in plan.mnar_sets:
        jobs.append((f"mnar_{name}_without-m", 2 * plan.mnar_folds, lambda tick, n=name: exp_without(plan, n, tick)))
    for name in plan.multitask_sets:
        n_tasks = len(dataset(name).spec.tasks)
        jobs.append((f"multitask_{name}", n_tasks * plan.cv_folds * 2,
                     lambda tick, n=name: exp_multitask(plan, n, tick)))
    for name in plan.state_sets:
        jobs.append((f"statesize_{name}", len(plan.state_sizes) * 2 * max(plan.mnar_folds, 1),
                     lambda tick, n=name: exp_state_size(plan, n, tick)))
    for name in plan.order_sets:
        jobs.append((f"order_{name}", 2 * max(plan.mnar_folds, 1), lambda tick, n=name: exp_order(plan, n, tick)))
    jobs.append(("scaling", len(_scale_configs(plan)) * 2, lambda tick: exp_scaling(plan, tick)))
    return jobs


LEGACY_PARITY = ("parity_synthetic", "parity_support2", "parity_star", "parity_weather")


def _mean_sd(values) -> dict:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


def _execute(plan_args: tuple, jid: str, tick) -> float:
    """Run one experiment and store its JSON atomically (an interrupted run never leaves half a file)."""
    torch.set_num_threads(1)
    plan = Plan(*plan_args)
    fn = {j[0]: j[2] for j in build_plan(plan)}[jid]
    start, cpu, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    result = fn(tick)
    result["load_1m"] = {"start": load0, "end": os.getloadavg()[0]}
    result["experiment"] = jid
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    path = RESULTS / f"{plan.prefix}{jid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(result), indent=1, default=_json_default))
    tmp.replace(path)
    return result["seconds"]


def _worker(plan_args: tuple, jid: str, queue) -> tuple[str, float]:
    return jid, _execute(plan_args, jid, queue.put)


def run(plan: Plan, force: bool = False, only: list[str] | None = None, jobs: int = 1) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    todo = [j for j in build_plan(plan) if not only or any(j[0].startswith(o) for o in only)]
    stored = [j for j in todo if (RESULTS / f"{plan.prefix}{j[0]}.json").exists()]
    if not force:
        todo = [j for j in todo if j not in stored]
    print(f"{len(todo)} experiments to run ({len(stored)} already stored), "
          f"{sum(u for _, u, _ in todo)} trainings; {jobs} worker(s)", flush=True)
    bar = tqdm(total=sum(u for _, u, _ in todo), unit="fit", dynamic_ncols=True, file=sys.stdout)
    if jobs <= 1:
        for jid, units, _ in todo:
            bar.set_description(jid[:40])
            before = bar.n
            secs = _execute(plan.args, jid, lambda k: bar.update(k))
            bar.update(max(0, units - (bar.n - before)))
            tqdm.write(f"{jid}: {secs:.0f} s", file=sys.stdout)
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        ctx = mp.get_context("spawn")                       # torch and fork do not mix
        with ctx.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            queue = manager.Queue()
            pending = {pool.submit(_worker, plan.args, jid, queue) for jid, _, _ in todo}
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    bar.update(queue.get())
                for fut in done:
                    jid, secs = fut.result()
                    bar.set_description(jid[:40])
                    tqdm.write(f"{jid}: {secs:.0f} s", file=sys.stdout)
    bar.close()


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke-sized run (< 5 min)")
    p.add_argument("--force", action="store_true", help="recompute experiments that are already stored")
    p.add_argument("--only", help="comma-separated experiment id prefixes (e.g. parity,mnar_support2)")
    p.add_argument("--render", action="store_true", help="only render the markdown from stored JSON")
    p.add_argument("--jobs", type=int, default=1, help="experiments run in parallel processes (one thread each)")
    p.add_argument("--seeds", type=int, default=1, help="seeded experiments for seeds 0..N-1 (default 1)")
    p.add_argument("--workers", type=int, help="trainings of one experiment run together in this many worker "
                   "processes (default: one per core with --jobs 1, else 1); the results are the same")
    p.add_argument("--legacy", action="store_true", help="also the single-seed experiments of the first run")
    p.add_argument("--no-render", action="store_true", help="store the JSON only (render later with --render)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    torch.set_num_threads(1)
    workers = args.workers or (default_workers(10**6) if args.jobs == 1 else 1)
    plan = Plan(args.quick, args.seeds, args.legacy, workers)
    if not args.render:
        run(plan, args.force, args.only.split(",") if args.only else None, args.jobs)
    if args.no_render:
        return 0
    from evidence_report import render                         # JSON -> markdown + PNG
    out = render(plan, RESULTS, [j[0] for j in build_plan(plan)])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
