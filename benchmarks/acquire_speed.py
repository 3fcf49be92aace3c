"""Speed and validity of "what to measure next" (mmn_core/acquire.py) on the shipped checkpoints, CPU.

Targets (SUPPORT2, data/checkpoints/support2-multimodn, K = 50): one record's estimate for all its missing
modalities and all tasks ≤ 100 ms; the validation over 1,000 held-out records ≤ 60 s. Also the validation figures
(Spearman of expected vs actual |Δ|, top-1 hit rate vs the cohort-importance baseline and chance, calibration
slope) per task for SUPPORT2 and STAR.

Per-record timing: test records with at least one missing modality, each timed "cold" (the donor-state cache
emptied first, so the training pool is run under the record's presence pattern: the first record with a new
pattern pays this) and "warm" (pattern cached, as for the second record of a pattern in a session). The donor
pool set-up (slicing the training rows once per session) is timed separately.

    .venv/bin/python benchmarks/acquire_speed.py     # writes benchmarks/results/acquire.json
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

THREADS = int(os.environ.get("MMN_BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)

from mmn_core import acquire as A  # noqa: E402
from mmn_core import load, load_dataset  # noqa: E402

K = 50
RECORDS = 1000
TIMED = 60                     # records in the per-record timing


def _ms(f) -> float:
    t = time.perf_counter()
    f()
    return 1000 * (time.perf_counter() - t)


def per_record(trained, ds, data) -> dict:
    t0 = time.perf_counter()
    donors = A.Donors(trained, data, A.training_pool(trained, ds))
    setup_ms = 1000 * (time.perf_counter() - t0)
    test = A.held_out_rows(trained, ds)
    missing = np.stack([~data.present[m].numpy() for m in donors.names], 1).sum(1)
    rows = [int(r) for r in test if missing[r] > 0][:TIMED]
    A.estimate(trained, data, rows[0], donors, K)                   # warm-up (allocator, first-call costs)
    cold, warm, n_missing = [], [], []
    for r in rows:
        donors._states.clear()
        cold.append(_ms(lambda: A.estimate(trained, data, r, donors, K)))
        warm.append(_ms(lambda: A.estimate(trained, data, r, donors, K)))
        n_missing.append(int(missing[r]))
    return {"records_timed": len(rows), "k": K, "tasks": len(trained.model.tasks),
            "missing_modalities_median": statistics.median(n_missing), "missing_modalities_max": max(n_missing),
            "setup_ms": setup_ms, "cold_median_ms": statistics.median(cold), "cold_max_ms": max(cold),
            "warm_median_ms": statistics.median(warm), "warm_max_ms": max(warm)}


def validation(trained, ds, data) -> dict:
    t0 = time.perf_counter()
    ev = A.evaluate_all_tasks(trained, ds, records=RECORDS, seed=0, k=K, data=data)
    seconds = time.perf_counter() - t0
    tasks = {t: {"records": e.records, "pairs": e.pairs, "records_ranked": e.records_ranked,
                 "spearman": e.spearman, "baseline_spearman": e.baseline_spearman,
                 "top1_hit_rate": e.top1_hit_rate,
                 "baseline_top1_hit_rate": e.baseline_top1_hit_rate, "chance_top1_hit_rate": e.chance_top1_hit_rate,
                 "calibration_slope": e.calibration_slope, "calibration_intercept": e.calibration_intercept,
                 "mean_expected_abs_change": float(np.mean(e.expected)),
                 "mean_actual_abs_change": float(np.mean(e.actual))} for t, e in ev.items()}
    return {"seconds": seconds, "requested_records": RECORDS, "tasks": tasks}


def main() -> None:
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": THREADS,
                          "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]},
              "targets": {"per_record_ms": 100, "validation_1000_s": 60}}
    for name in ("support2", "star"):
        trained = load(ROOT / "data" / "checkpoints" / f"{name}-multimodn")
        ds = load_dataset(name)
        data = trained.prep.transform(ds)
        entry = {"test_records": len(A.held_out_rows(trained, ds)), "train_records": trained.info["rows"]["train"]}
        if name == "support2":
            entry["per_record"] = per_record(trained, ds, data)
            pr = entry["per_record"]
            print(f"{name}: one record, all missing modalities x {pr['tasks']} tasks, K={K}: cold median "
                  f"{pr['cold_median_ms']:.1f} ms (max {pr['cold_max_ms']:.1f}), warm median "
                  f"{pr['warm_median_ms']:.1f} ms (max {pr['warm_max_ms']:.1f}); pool set-up {pr['setup_ms']:.0f} ms")
        entry["validation"] = v = validation(trained, ds, data)
        print(f"{name}: validation over {RECORDS} requested held-out records: {v['seconds']:.1f} s")
        for t, e in v["tasks"].items():
            print(f"  {t}: records {e['records']}, pairs {e['pairs']}, spearman {e['spearman']:.3f} (baseline "
                  f"{e['baseline_spearman']:.3f}), top-1 "
                  f"{e['top1_hit_rate']:.3f} vs baseline {e['baseline_top1_hit_rate']:.3f} (chance "
                  f"{e['chance_top1_hit_rate']:.3f}), calibration slope {e['calibration_slope']:.3f}")
        result[name] = entry
    result["machine"]["load_after"] = os.getloadavg()[0]
    out = ROOT / "benchmarks" / "results" / "acquire.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
