"""Training throughput: batched per-record skipping vs the batch-size-1 loop the official code needs.

The official MultiModN code skips an encoder for the whole batch when any record lacks that modality, so with
records that differ in missingness the only correct way to train it is one record at a time. This engine
skips per record inside a batch. Same architecture, same data, same optimizer:

  (a) `mmn_core.fit` at batch size 1024 (per-record skipping), early stopping on the validation split;
  (b) a lean batch-size-1 loop over the same `MultiModN.forward`, where each record runs only the encoders of
      its present modalities (as the official code does at batch size 1: no wasted encoder calls; the loss
      over the record's distinct states is identical), with Adam and validation-based best-epoch selection.

Reported: training records/second of both (pure optimisation time, validation excluded), their ratio, the
final test AUROC of both, and the forward latency for one record (all steps, all tasks; median of many calls).

Before vs after (`--before-after`): `fit` as it was at commit c127c62 (loaded from `git show`, run on today's
`MultiModN.forward`) against today's `fit`, alternating full training runs with identical seeds and initial
weights on the bundled SUPPORT2 (default TrainConfig, batch 256) and on this file's 6-modality cohort (batch
1024): records/s (wall clock of the whole `fit`, validation included, and optimisation only), epochs, test AUROC.

Run:  python benchmarks/train_throughput.py            (writes benchmarks/results/train_throughput.json + .md)
      python benchmarks/train_throughput.py --quick    (a smoke run on 3,000 records; writes nothing)
      python benchmarks/train_throughput.py --before-after   (adds the before/after section to the .json/.md)
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmn_core import ModelConfig, Preprocessor, TrainConfig, fit, load_dataset, predict, split  # noqa: E402
from mmn_core.checkpoint import build_model  # noqa: E402
from mmn_core.data import Dataset  # noqa: E402
from mmn_core.metrics import final_metrics, metric_matrix  # noqa: E402
from mmn_core.spec import spec_from_dict  # noqa: E402
from mmn_core.train import evaluate_loss  # noqa: E402

MODALITIES = 6
FEATURES = 6
OUT = ROOT / "benchmarks" / "results" / "train_throughput.json"
MD = ROOT / "benchmarks" / "train_throughput.md"


def make_cohort(n: int, seed: int = 0, missing_rate: float = 0.30) -> Dataset:
    """n records, 6 tabular modalities × 6 features driven by a latent severity z; ≈ `missing_rate` of the
    records lack 1-5 of modalities 1-5 (modality 0 is always measured), more often when z is high (MNAR).
    Tasks: binary `outcome`, regression `score`, multiclass `stage`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    u = rng.normal(size=n)                    # signal only modality 2 carries
    f = pd.DataFrame({"id": [f"R{i:06d}" for i in range(n)]})
    modalities = []
    for j in range(MODALITIES):
        cols = [f"m{j}_f{k}" for k in range(FEATURES)]
        for k, c in enumerate(cols):
            load = 0.8 if k < 2 else 0.2
            f[c] = np.round(load * z + (0.9 * u if j == 2 and k == 0 else 0) + rng.normal(0, 1, n), 4)
        modalities.append({"name": f"m{j}", "columns": cols})
    p_missing = 1 / (1 + np.exp(-(0.8 * z + math.log(missing_rate / (1 - missing_rate)))))
    lacks = rng.random(n) < p_missing
    for i in np.flatnonzero(lacks):
        k = rng.integers(1, MODALITIES)        # how many of modalities 1..5 are missing (1-5)
        for j in rng.choice(np.arange(1, MODALITIES), size=k, replace=False):
            f.loc[i, [f"m{j}_f{q}" for q in range(FEATURES)]] = np.nan
    f["outcome"] = (rng.random(n) < 1 / (1 + np.exp(-(1.2 * z + 1.0 * u - 0.2)))).astype(int)
    f["score"] = np.round(2 * z + rng.normal(0, 1, n), 3)
    f["stage"] = np.select([z < -0.5, z < 0.5], ["a", "b"], "c")
    spec = spec_from_dict({"name": "throughput", "id_column": "id", "modalities": modalities,
                           "tasks": [{"name": "outcome", "column": "outcome", "type": "binary", "positive": 1},
                                     {"name": "score", "column": "score", "type": "regression"},
                                     {"name": "stage", "column": "stage", "type": "multiclass"}]}, "benchmark")
    return Dataset(spec, f)


def fresh_model(ds, prep, seed: int):
    torch.manual_seed(seed)
    return build_model("multimodn", ds.spec, prep, ModelConfig(state_size=32, hidden=64, dropout=0.1))


def auroc(model, data, prep, tasks) -> dict:
    out = predict(model, data)
    return final_metrics(metric_matrix(out, data.y, tasks, prep.target_stats))


def per_record(train, names):
    """Every training record split out once (not timed), so the batch-1 loop does nothing but compute."""
    xs = [{m: train.x[m][i:i + 1] for m in names} for i in range(len(train))]
    ps = [{m: train.present[m][i:i + 1] for m in names} for i in range(len(train))]
    orders = [[m for m in names if bool(train.present[m][i])] for i in range(len(train))]
    ys = [{t: v[i:i + 1] for t, v in train.y.items()} for i in range(len(train))]
    return xs, ps, orders, ys


def batch1_steps(model, opt, records, indices, deadline: float) -> int:
    """One Adam step per record; encoders of absent modalities are not run at all (order = present ones)."""
    xs, ps, orders, ys = records
    done = 0
    for i in indices:
        out = model(xs[i], ps[i], None, orders[i])
        loss = model.loss(out, ys[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        if time.perf_counter() > deadline:
            break
    return done


def train_batch1(model, train, val, epochs: int, lr: float, seed: int, budget_s: float, log):
    """Batch size 1 over the whole training split, best validation epoch kept (as `fit` does)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    records = per_record(train, model.modality_names)
    gc.freeze()       # the ~250k pre-split tensors are permanent: do not make the garbage collector rescan them
    best, best_state, seen, seconds, history = math.inf, None, 0, 0.0, []
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=gen).tolist()
        seen += batch1_steps(model, opt, records, order, t0 + budget_s - seconds)
        seconds += time.perf_counter() - t0
        v = evaluate_loss(model, val)
        history.append({"epoch": epoch, "val_loss": v, "records": seen, "seconds": round(seconds, 2)})
        log(f"  (b) epoch {epoch}: val_loss {v:.4f}, {seen / seconds:.0f} records/s")
        if v < best - 1e-5:
            best, best_state = v, {k: t.detach().clone() for k, t in model.state_dict().items()}
        if seconds >= budget_s:
            break
    gc.unfreeze()
    model.load_state_dict(best_state)
    model.eval()
    return seen / seconds, history


def interleaved_ratio(ds, prep, train, batch_size: int, threads_a: int, threads_b: int, rounds: int,
                      seconds_b: float) -> dict:
    """The load of a shared machine drifts over minutes, so the two long training runs may see different
    conditions. Here the arms alternate in short windows (one batched epoch, then `seconds_b` of batch-size-1
    steps) and the ratio is taken per round; the median round is the robust figure."""
    model_a, model_b = fresh_model(ds, prep, 1), fresh_model(ds, prep, 1).train()
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-4)
    records = per_record(train, model_b.modality_names)
    gc.freeze()
    out = []
    for r in range(rounds):
        torch.set_num_threads(threads_a)
        hist = fit(model_a, train, None, TrainConfig(epochs=1, batch_size=batch_size, seed=r))
        a = len(train) / hist[-1]["seconds"]
        torch.set_num_threads(threads_b)
        t0 = time.perf_counter()
        start = (r * 2000) % len(train)
        n = batch1_steps(model_b, opt_b, records, range(start, len(train)), t0 + seconds_b)
        b = n / (time.perf_counter() - t0)
        out.append({"batched_records_per_second": round(a, 1), "batch_size_1_records_per_second": round(b, 1),
                    "ratio": round(a / b, 1), "load_average_1min": round(os.getloadavg()[0], 2)})
    gc.unfreeze()
    return {"rounds": out, "window_seconds": seconds_b,
            "median_ratio": round(statistics.median(x["ratio"] for x in out), 1)}


def probe_threads(ds, prep, train, batch_size: int, candidates=(2, 1)) -> dict:
    """Short timing runs of both arms at each thread count. On a shared 2-core machine two torch threads can
    be far slower than one (each op waits for a descheduled partner thread), so every arm runs at its own
    faster setting: the comparison never rests on one arm being slowed by thread contention."""
    out = {}
    for threads in candidates:
        torch.set_num_threads(threads)
        model = fresh_model(ds, prep, 0)
        hist = fit(model, train, None, TrainConfig(epochs=2, batch_size=batch_size, seed=0))
        a = len(train) / hist[-1]["seconds"]                     # 2nd epoch: warm
        model = fresh_model(ds, prep, 0).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        records = per_record(train.subset(range(700)), model.modality_names)
        batch1_steps(model, opt, records, range(100), time.perf_counter() + 2.0)  # warm-up
        t0 = time.perf_counter()
        n = batch1_steps(model, opt, records, range(100, 700), t0 + 8.0)     # at most ~8 s per setting
        b = n / (time.perf_counter() - t0)
        out[threads] = {"batched_records_per_second": round(a, 1), "batch_size_1_records_per_second": round(b, 1)}
    return out


def latency_ms(model, data, calls: int) -> float:
    """Median wall time of one forward pass for one record with every modality present (all steps, all tasks),
    in eval mode without autograd, as the dashboard runs it."""
    names = model.modality_names
    full = next(i for i in range(len(data)) if all(bool(data.present[m][i]) for m in names))
    x = {m: data.x[m][full:full + 1] for m in data.x}
    p = {m: data.present[m][full:full + 1] for m in data.present}
    lengths = {m: v[full:full + 1] for m, v in data.lengths.items()}
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(20):
            model(x, p, lengths)
        for _ in range(calls):
            t0 = time.perf_counter()
            out = model(x, p, lengths)
            times.append((time.perf_counter() - t0) * 1000)
    assert out.states.shape[0] == len(names) + 1
    return statistics.median(times)


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


BASELINE_COMMIT = "c127c62"


def baseline_fit():
    """`fit` of mmn_core/train.py at BASELINE_COMMIT, imported as a module of the package (it uses today's
    model and data code, so the comparison isolates the training loop)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:mmn_core/train.py"],
                         check=True, capture_output=True, text=True).stdout
    name = f"mmn_core._train_{BASELINE_COMMIT}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "mmn_core"
    sys.modules[name] = mod
    exec(compile(src, f"{BASELINE_COMMIT}:mmn_core/train.py", "exec"), mod.__dict__)
    return mod.fit


def before_after(rounds: int, log, quick: bool = False) -> dict:
    """Alternate before / after full `fit` runs (same seed, same initial weights) on two datasets."""
    old_fit = baseline_fit()
    # The first optimizer of a process imports torch._dynamo (~2 s): pay it here, not in the first arm timed
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    cases = [("support2", load_dataset("support2"), 256, "death"),
             ("six_modality_cohort", make_cohort(3000 if quick else 24000, 0), 1024, "outcome")]
    out = {}
    for name, ds, batch, task in cases:
        tr, va, te = split(ds, seed=0)
        prep = Preprocessor.fit(ds.subset(tr))
        data = prep.transform(ds)
        train, val, test = data.subset(tr), data.subset(va), data.subset(te)
        cfg = TrainConfig(batch_size=batch, seed=0, epochs=5 if quick else TrainConfig().epochs)
        arms = {"before": [], "after": []}
        for r in range(rounds):
            for arm, f in (("before", old_fit), ("after", fit)):
                model = fresh_model(ds, prep, 0)
                t0 = time.perf_counter()
                hist = f(model, train, val, cfg)
                wall = time.perf_counter() - t0
                met = auroc(model, test, prep, model.tasks)
                arms[arm].append({"epochs": len(hist), "wall_seconds": round(wall, 3),
                                  "records_per_second": round(len(train) * len(hist) / wall, 1),
                                  "optimisation_records_per_second":
                                      round(len(train) * len(hist) / sum(h["seconds"] for h in hist), 1),
                                  "test_auroc": round(met[task]["auroc"], 5),
                                  "load_average_1min": round(os.getloadavg()[0], 2)})
                log(f"  {name} round {r + 1} {arm}: {arms[arm][-1]}")
        med = {a: statistics.median(x["records_per_second"] for x in v) for a, v in arms.items()}
        med_opt = {a: statistics.median(x["optimisation_records_per_second"] for x in v) for a, v in arms.items()}
        out[name] = {"batch_size": batch, "train_records": len(tr), "task": task,
                     "modalities": len(ds.spec.modalities), "rounds": arms,
                     "median_records_per_second": med, "median_optimisation_records_per_second": med_opt,
                     "ratio_of_medians": round(med["after"] / med["before"], 3),
                     "ratio": round(statistics.median(a["records_per_second"] / b["records_per_second"]
                                                      for a, b in zip(arms["after"], arms["before"])), 3),
                     "ratio_per_round": [round(a["records_per_second"] / b["records_per_second"], 3)
                                         for a, b in zip(arms["after"], arms["before"])],
                     "auroc_difference": round(arms["after"][0]["test_auroc"] - arms["before"][0]["test_auroc"], 5)}
    return out


def report_before_after(r: dict) -> str:
    ba = r["before_after"]
    rows = "\n".join(
        f"| {name} ({c['modalities']} modalities, batch {c['batch_size']}, {c['train_records']:,} train records) "
        f"| {c['median_records_per_second']['before']:,.0f} | {c['median_records_per_second']['after']:,.0f} "
        f"| **{statistics.median(c['ratio_per_round']):.2f}×** ({', '.join(f'{x:.2f}' for x in c['ratio_per_round'])}) "
        f"| {c['median_optimisation_records_per_second']['before']:,.0f} → "
        f"{c['median_optimisation_records_per_second']['after']:,.0f} "
        f"| {c['rounds']['before'][0]['epochs']} / {c['rounds']['after'][0]['epochs']} "
        f"| {c['rounds']['before'][0]['test_auroc']:.4f} / {c['rounds']['after'][0]['test_auroc']:.4f} |"
        for name, c in ba["cases"].items())
    return f"""
## Before vs after: today's `fit` against `fit` at {BASELINE_COMMIT}

Command: `{ba['command']}`. Load average {ba['load_average_at_start']} at the start, {ba['load_average_at_end']}
at the end ({r['machine']['logical_cpus']} logical CPUs shared with other jobs), torch threads {ba['threads']}.
Both arms train the same model from the same initial weights with the same TrainConfig; the rounds alternate
before / after so that both see the same drifting load. Records/s = training records × epochs / wall time of
the whole `fit` (validation, best-weight copies included); the optimisation-only rate excludes validation.

| data | before rec/s (median) | after rec/s (median) | after / before: median round (each round) | optimisation rec/s | epochs before / after | test AUROC before / after |
|---|---:|---:|---:|---:|---:|---:|
{rows}

What changed in the loop: Adam's multi-tensor (foreach) update instead of one update per parameter tensor;
the best weights kept as tensor clones instead of a `deepcopy` of the state dict; validation in batches of
8,192 rows instead of 1,024; the running loss summed on the device instead of one `.item()` per batch.
Targets (issue 11): ≥ 150,000 records/s and ≥ 2× after / before, AUROC unchanged within ±0.005.
{_verdict(ba)}
"""


def _verdict(ba: dict) -> str:
    c = ba["cases"]
    best = max(max(x["records_per_second"] for x in v["rounds"]["after"]) for v in c.values())
    ratios = {k: statistics.median(v["ratio_per_round"]) for k, v in c.items()}
    dauc = max(abs(v["auroc_difference"]) for v in c.values())
    return (f"Verdict on this run: the fastest after-run reached {best:,.0f} records/s (≥ 150,000: "
            f"{'met' if best >= 150_000 else '**not met**'}); median after / before "
            + ", ".join(f"{k} {r:.2f}×" for k, r in ratios.items())
            + f" (≥ 2×: {'met' if min(ratios.values()) >= 2 else '**not met**'}); largest test AUROC difference "
            f"{dauc:.4f} (within 0.005: {'met' if dauc <= 0.005 else '**not met**'}). The changes above remove "
            "work but do not change the arithmetic, "
            "which dominates a step (a torch profile at batch 1024 puts about half of a step in the task decoders, "
            "which run on all K+1 states of every record).")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24000, help="records (≥ 20k for the reported run)")
    ap.add_argument("--batch-size", type=int, default=1024, help="(a): the largest of the 256-1024 range")
    ap.add_argument("--epochs", type=int, default=40, help="(a): upper bound, early stopping on validation")
    ap.add_argument("--epochs-b", type=int, default=4, help="(b): epochs of the batch-size-1 loop")
    ap.add_argument("--budget-b", type=float, default=900.0, help="(b): wall-clock budget in seconds")
    ap.add_argument("--lr-b", type=float, default=2e-4, help="(b): Adam step size (batch 1 needs a smaller one)")
    ap.add_argument("--latency-calls", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    ap.add_argument("--window-b", type=float, default=4.0, help="seconds of batch-size-1 steps per round")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                    help="torch thread counts to probe; each arm runs at its faster one")
    ap.add_argument("--quick", action="store_true", help="3,000 records, short runs, write nothing")
    ap.add_argument("--report-only", action="store_true", help="re-render the .md from the saved JSON")
    ap.add_argument("--before-after", action="store_true",
                    help=f"only the before ({BASELINE_COMMIT}) vs after comparison of `fit`, added to the saved JSON")
    ap.add_argument("--rounds-ba", type=int, default=3, help="alternating before/after rounds per dataset")
    args = ap.parse_args(argv)
    if args.before_after:
        threads = int(os.environ.get("MMN_THREADS", "1"))
        torch.set_num_threads(threads)
        log = lambda s: print(s, file=sys.stderr, flush=True)
        start = [round(v, 2) for v in os.getloadavg()]
        cases = before_after(2 if args.quick else args.rounds_ba, log, args.quick)
        ba = {"command": "python " + " ".join([os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])]),
              "threads": threads, "load_average_at_start": start,
              "load_average_at_end": [round(v, 2) for v in os.getloadavg()], "cases": cases,
              "targets": {"records_per_second": ">= 150000", "ratio": ">= 2", "auroc_difference": "within 0.005"}}
        print(json.dumps(ba, indent=1))
        if not args.quick:
            saved = json.loads(OUT.read_text()) if OUT.exists() else {"machine": machine()}
            saved["before_after"] = ba
            OUT.write_text(json.dumps(saved, indent=1) + "\n")
            MD.write_text(report(saved))
        return ba
    if args.report_only:
        MD.write_text(report(json.loads(OUT.read_text())))
        return json.loads(OUT.read_text())
    if args.quick:
        args.n, args.epochs, args.epochs_b, args.budget_b, args.latency_calls = 3000, 5, 1, 30.0, 100
        args.rounds, args.window_b = 2, 2.0
    torch.set_num_threads(max(args.threads))
    log = lambda s: print(s, file=sys.stderr, flush=True)
    info = machine()

    ds = make_cohort(args.n, args.seed)
    pres = ds.presence()
    tr, va, te = split(ds, seed=args.seed)
    prep = Preprocessor.fit(ds.subset(tr))
    data = prep.transform(ds)
    train, val, test = data.subset(tr), data.subset(va), data.subset(te)
    tasks = fresh_model(ds, prep, args.seed).tasks
    lacking = float((~pres.all(axis=1)).mean())
    log(f"{args.n} records, {len(ds.spec.modalities)} modalities, {lacking:.1%} lack at least one; "
        f"train {len(tr)}, validation {len(va)}, test {len(te)}")

    probe = probe_threads(ds, prep, train, args.batch_size, tuple(args.threads))
    threads_a = max(probe, key=lambda t: probe[t]["batched_records_per_second"])
    threads_b = max(probe, key=lambda t: probe[t]["batch_size_1_records_per_second"])
    log(f"thread probe: {probe}; (a) runs with {threads_a}, (b) with {threads_b} thread(s)")

    inter = interleaved_ratio(ds, prep, train, args.batch_size, threads_a, threads_b, args.rounds, args.window_b)
    log(f"interleaved rounds: {inter}")

    # (a) batched per-record skipping
    torch.set_num_threads(threads_a)
    model_a = fresh_model(ds, prep, args.seed)
    hist_a = fit(model_a, train, val, TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed),
                 progress=lambda r: log(f"  (a) epoch {r['epoch']}: val_loss {r['val_loss']:.4f}"))
    sec_a = sum(h["seconds"] for h in hist_a)
    rps_a = len(train) * len(hist_a) / sec_a
    met_a = auroc(model_a, test, prep, tasks)
    log(f"(a) {rps_a:.0f} records/s over {len(hist_a)} epochs; test AUROC {met_a['outcome']['auroc']:.4f}")

    # (b) batch size 1
    torch.set_num_threads(threads_b)
    model_b = fresh_model(ds, prep, args.seed)
    rps_b, hist_b = train_batch1(model_b, train, val, args.epochs_b, args.lr_b, args.seed, args.budget_b, log)
    met_b = auroc(model_b, test, prep, tasks)
    log(f"(b) {rps_b:.0f} records/s over {hist_b[-1]['records']} record-steps; "
        f"test AUROC {met_b['outcome']['auroc']:.4f}")

    syn = load_dataset("synthetic", n=400, seed=0)          # a model with a GRU sequence modality too
    syn_prep = Preprocessor.fit(syn)
    syn_model, syn_data = fresh_model(syn, syn_prep, 0), syn_prep.transform(syn)
    latencies = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        latencies[threads] = (latency_ms(model_a, test, args.latency_calls),
                              latency_ms(syn_model, syn_data, args.latency_calls))
    lat_threads = min(latencies, key=lambda t: max(latencies[t]))
    lat, lat_seq = latencies[lat_threads]
    log(f"forward latency for one record: {lat:.2f} ms (tabular benchmark model), {lat_seq:.2f} ms (synthetic "
        f"cohort with a GRU modality)")

    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])]),
        "machine": info,
        "data": {"records": args.n, "modalities": len(ds.spec.modalities), "features_per_modality": FEATURES,
                 "fraction_lacking_a_modality": round(lacking, 4),
                 "present_fraction": {m: round(float(v), 4) for m, v in pres.mean().items()},
                 "split": {"train": len(tr), "validation": len(va), "test": len(te)},
                 "tasks": ["outcome (binary)", "score (regression)", "stage (multiclass)"]},
        "model": {"state_size": 32, "hidden": 64, "dropout": 0.1,
                  "parameters": sum(p.numel() for p in model_a.parameters())},
        "thread_probe": {str(k): v for k, v in probe.items()},
        "batched": {"threads": threads_a, "batch_size": args.batch_size, "lr": TrainConfig().lr, "epochs_run": len(hist_a),
                    "train_seconds": round(sec_a, 2), "records_per_second": round(rps_a, 1),
                    "test": met_a},
        "batch_size_1": {"threads": threads_b, "lr": args.lr_b, "epochs_run": len(hist_b), "record_steps": hist_b[-1]["records"],
                         "train_seconds": round(hist_b[-1]["seconds"], 2), "records_per_second": round(rps_b, 1),
                         "budget_seconds": args.budget_b, "history": hist_b, "test": met_b},
        "interleaved": inter,
        "ratio_training_runs": round(rps_a / rps_b, 1),
        "ratio": inter["median_ratio"],
        "auroc_difference": round(met_a["outcome"]["auroc"] - met_b["outcome"]["auroc"], 4),
        "latency_ms_one_record": {"tabular_6_modalities_3_tasks": round(lat, 3),
                                  "synthetic_with_gru_6_modalities_3_tasks": round(lat_seq, 3),
                                  "calls": args.latency_calls, "statistic": "median", "threads": lat_threads,
                                  "by_threads": {str(t): [round(v, 3) for v in ls] for t, ls in latencies.items()}},
        "targets": {"ratio": ">= 200", "auroc_difference": "<= 0.01", "latency_ms": "<= 5"},
    }
    print(json.dumps(result, indent=1))
    if not args.quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        if OUT.exists() and "before_after" in json.loads(OUT.read_text()):
            result["before_after"] = json.loads(OUT.read_text())["before_after"]
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        MD.write_text(report(result))
    return result


def report(r: dict) -> str:
    extra = report_before_after(r) if "before_after" in r else ""
    if "batched" not in r:
        return "# Training throughput\n" + extra
    return report_batch1(r) + extra


def report_batch1(r: dict) -> str:
    a, b = r["batched"], r["batch_size_1"]
    m = r["machine"]
    ok = lambda cond: "met" if cond else "**not met**"
    lat = r["latency_ms_one_record"]
    probe = "\n".join(f"| {t} | {v['batched_records_per_second']:,.0f} | {v['batch_size_1_records_per_second']:,.0f} |"
                      for t, v in r["thread_probe"].items())
    rounds = "\n".join(f"| {i + 1} | {x['batched_records_per_second']:,.0f} | {x['batch_size_1_records_per_second']:,.0f}"
                       f" | {x['ratio']:,.0f} | {x['load_average_1min']} |"
                       for i, x in enumerate(r["interleaved"]["rounds"]))
    lo = min(x["ratio"] for x in r["interleaved"]["rounds"])
    hi = max(x["ratio"] for x in r["interleaved"]["rounds"])
    worst_lat = max(lat["tabular_6_modalities_3_tasks"], lat["synthetic_with_gru_6_modalities_3_tasks"])
    return f"""# Training throughput: batched per-record skipping vs batch size 1

Command: `{r['command']}` (full results: `benchmarks/results/train_throughput.json`).

Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, Python {m['python']}. The machine
was shared with other jobs (load average {m['load_average_at_start']} at the start,
{m['load_average_at_end']} at the end), so absolute speeds are noisy; both arms ran one after the other
under the same conditions.

Data: {r['data']['records']:,} synthetic records, {r['data']['modalities']} tabular modalities ×
{r['data']['features_per_modality']} features, {r['data']['fraction_lacking_a_modality']:.1%} of records lack
at least one modality (more often when the latent severity is high), three tasks (binary, regression,
multiclass). Split {r['data']['split']['train']:,} / {r['data']['split']['validation']:,} /
{r['data']['split']['test']:,}. Model: MultiModN, state 32, hidden 64, {r['model']['parameters']:,} parameters,
identical initial weights in both arms.

| | (a) this engine, batch {a['batch_size']} | (b) batch size 1 |
|---|---:|---:|
| training records / second | **{a['records_per_second']:,.0f}** | **{b['records_per_second']:,.0f}** |
| torch threads (the faster of the probe) | {a['threads']} | {b['threads']} |
| epochs | {a['epochs_run']} (early stopping) | {b['epochs_run']} ({b['record_steps']:,} record steps) |
| optimisation time | {a['train_seconds']:.1f} s | {b['train_seconds']:.1f} s |
| Adam step size | {a['lr']} | {b['lr']} |
| test AUROC, `outcome` (final step) | **{a['test']['outcome']['auroc']:.4f}** | **{b['test']['outcome']['auroc']:.4f}** |
| test R², `score` | {a['test']['score']['r2']:.4f} | {b['test']['score']['r2']:.4f} |
| test AUROC, `stage` | {a['test']['stage']['auroc']:.4f} | {b['test']['stage']['auroc']:.4f} |

- **Ratio: {r['ratio']:,.0f}×** (target ≥ 200: {ok(r['ratio'] >= 200)}): the median of {len(r['interleaved']['rounds'])}
  interleaved rounds (table below), robust to the machine's drifting load. The two long training runs in the
  table above give {r['ratio_training_runs']:,.0f}× ({a['records_per_second']:,.0f} / {b['records_per_second']:,.0f}),
  but they ran minutes apart under different loads.
- **AUROC difference (a − b): {r['auroc_difference']:+.4f}** (target within 0.01:
  {ok(abs(r['auroc_difference']) <= 0.01)}).
- **Forward latency, one record, all steps and all tasks** (median of {lat['calls']} calls, eval mode, no
  autograd, {lat['threads']} thread(s)): {lat['tabular_6_modalities_3_tasks']:.2f} ms for this model;
  {lat['synthetic_with_gru_6_modalities_3_tasks']:.2f} ms for the synthetic cohort's model, which includes a
  GRU sequence modality (target ≤ 5 ms: {ok(worst_lat <= 5)}).

Interleaved rounds (one batched epoch, then {r['interleaved']['window_seconds']:.0f} seconds of batch-size-1
steps, alternating; records/second):

| round | (a) batched | (b) batch size 1 | ratio | load average |
|---:|---:|---:|---:|---:|
{rounds}

Thread probe (records/second, short runs before training):

| torch threads | (a) batched | (b) batch size 1 |
|---:|---:|---:|
{probe}

How the comparison was made fair to (b):
- (b) is the same `MultiModN.forward` and loss with one Adam step per record, and each record runs only the
  encoders of its present modalities (what the official code does at batch size 1; the loss over the record's
  distinct states equals the skipping loss). Records were split into per-record tensors before timing, so (b)
  measures nothing but forward, backward and the optimizer step — a best case for a batch-size-1 loop.
- Each arm runs at its own faster thread count (probe above): on a busy 2-core machine two torch threads can
  make small operations many times slower, which would flatter the ratio.
- Batch size 1 needs a smaller step size than batch {a['batch_size']} (Adam {b['lr']} instead of {a['lr']}).
  (b) trained for {b['epochs_run']} epoch(s) over the full training split (wall-clock budget
  {b['budget_seconds']:.0f} s) and keeps its best validation epoch, as (a) does.
- Records/second counts optimisation time only (validation passes excluded) in both arms.

Why the ratio is what it is: batched training here is bound by arithmetic and memory traffic (one record
costs about 0.4 MFLOP forward and backward: 6 encoders, then 3 decoders on each of the 7 states), while a
batch-size-1 step is bound by the fixed cost of several hundred small tensor operations (forward, backward,
and an Adam update of 37 parameter tensors). The ratio is about (per-step overhead) / (per-record arithmetic);
on this shared 2-core CPU it swung between {lo:,.0f}× and {hi:,.0f}× from one round to the next with the load.
(b) is a best case for a batch-size-1 loop: the official code's loop adds its own Python overhead per record.
"""


if __name__ == "__main__":
    main()
