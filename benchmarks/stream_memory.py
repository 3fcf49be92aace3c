"""Peak memory of streamed training on a cohort larger than memory (`train --stream`).

A synthetic cohort of N records (6 modalities: 5 tabular with 4 features each, one categorical, MNAR
missingness; 1 sequence modality of 0-8 visits x 2 features; binary + regression tasks) is generated chunk by
chunk into Parquet files under /tmp (never committed): the main table in row groups of 50,000 records, the
sequence table sorted by id. Then a child process runs

    python -m mmn_core train --data cohort.parquet --spec spec.yaml --stream --chunk-rows 50000 --epochs 1

(one streaming pass for the statistics, one training epoch, one validation pass, one test pass) and its peak RSS
is read with `resource.getrusage(RUSAGE_CHILDREN)` after it exits (the generator runs in this process, so it is
not counted). Target: peak RSS <= 2 GB at 5M records.

Run:  python benchmarks/stream_memory.py --records 5000000 1000000   (writes benchmarks/results/stream_memory.json
      and benchmarks/stream_memory.md)
      python benchmarks/stream_memory.py --records 200000 --quick   (a smoke run; writes nothing)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "stream_memory.json"
MD = ROOT / "benchmarks" / "stream_memory.md"
ROW_GROUP = 50_000
GEN_CHUNK = 250_000
LIMIT_GB = 2.0


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def write_cohort(folder: Path, n: int, seed: int = 0) -> dict:
    """N records into folder/cohort.parquet + folder/visits.parquet + folder/spec.yaml, GEN_CHUNK at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    main_w = seq_w = None
    seq_rows = 0
    for start in range(0, n, GEN_CHUNK):
        m = min(GEN_CHUNK, n - start)
        z = rng.normal(size=m)
        cols = {"id": np.arange(start, start + m, dtype=np.int64)}
        for j in range(5):
            present = rng.random(m) < (_sigmoid(1.2 * z + 1.0) if j >= 2 else 0.97)   # MNAR from modality 2 on
            for k in range(4):
                v = (0.6 * z if k < 2 else 0.0) + rng.normal(size=m)
                cols[f"m{j}_f{k}"] = pa.array(np.where(present, v, np.nan).astype(np.float32), from_pandas=True)
        cols["m0_f3"] = pa.array(np.where(rng.random(m) < 0.05, None,
                                          rng.choice(["a", "b", "c", "d"], m)).tolist())        # categorical
        cols["outcome"] = (rng.random(m) < _sigmoid(1.5 * z - 0.3)).astype(np.int64)
        cols["score"] = (10 + 3 * z + rng.normal(size=m)).astype(np.float32)
        table = pa.table(cols)
        main_w = main_w or pq.ParquetWriter(folder / "cohort.parquet", table.schema)
        main_w.write_table(table, row_group_size=ROW_GROUP)
        lens = rng.integers(0, 9, m)                     # 0 visits = modality absent
        ids = np.repeat(cols["id"], lens)
        day = np.concatenate([np.arange(k) for k in lens]) if lens.sum() else np.zeros(0, int)
        zz = np.repeat(z, lens)
        seq = pa.table({"id": ids, "day": day.astype(np.int64),
                        "marker": (zz * (0.3 + 0.1 * day) + rng.normal(size=len(ids))).astype(np.float32),
                        "level": rng.normal(size=len(ids)).astype(np.float32)})
        seq_w = seq_w or pq.ParquetWriter(folder / "visits.parquet", seq.schema)
        seq_w.write_table(seq, row_group_size=4 * ROW_GROUP)
        seq_rows += len(ids)
    main_w.close()
    seq_w.close()
    modalities = [{"name": f"m{j}", "columns": [f"m{j}_f{k}" for k in range(4)]} for j in range(5)]
    modalities.append({"name": "visits", "kind": "sequence", "table": "visits.parquet", "key": "id",
                       "time_column": "day", "columns": ["marker", "level"]})
    spec = {"name": "stream_bench", "data": "cohort.parquet", "id_column": "id", "modalities": modalities,
            "tasks": [{"name": "outcome", "column": "outcome", "type": "binary", "positive": 1},
                      {"name": "score", "column": "score", "type": "regression"}]}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    mb = lambda p: round((folder / p).stat().st_size / 2**20, 1)
    return {"sequence_rows": seq_rows, "cohort_mb": mb("cohort.parquet"), "visits_mb": mb("visits.parquet")}


def run_child(folder: Path, chunk_rows: int) -> dict:
    """Train one streamed epoch in a fresh process; its peak RSS is the max over waited-for children."""
    out = folder / "ckpt"
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mmn_core", "train", "--data", str(folder / "cohort.parquet"),
                           "--spec", str(folder / "spec.yaml"), "--stream", "--chunk-rows", str(chunk_rows),
                           "--epochs", "1", "--out", str(out), "--json"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MMN_THREADS": "1"})
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # Linux: kilobytes
    if peak_kb <= before:
        raise SystemExit("this child did not set a new RUSAGE_CHILDREN maximum: run each size in its own call")
    payload = json.loads(proc.stdout)
    return {"peak_rss_gb": round(peak_kb / 2**20, 3), "seconds": round(seconds, 1),
            "rows": payload["rows"], "epochs_run": payload["epochs_run"],
            "test_auroc_outcome": round(payload["tasks"]["outcome"]["auroc"][-1], 4),
            "train_records_per_s": round(payload["rows"]["train"] / seconds)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, nargs="+", default=[5_000_000])
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true", help="smoke run: writes no results")
    ap.add_argument("--keep", action="store_true", help="keep the generated files in /tmp")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() and not args.quick else {"runs": {}}
    for n in args.records:
        if n in map(int, results["runs"]) and not args.quick:
            continue
        # each size in a fresh interpreter: RUSAGE_CHILDREN keeps the largest child ever waited for
        if len(args.records) > 1:
            cmd = [sys.executable, __file__, "--records", str(n), "--chunk-rows", str(args.chunk_rows)]
            subprocess.run(cmd + (["--quick"] if args.quick else []), check=True)
            results = json.loads(OUT.read_text()) if OUT.exists() and not args.quick else results
            continue
        folder = Path(f"/tmp/mmn_stream_bench_{n}")
        t0 = time.perf_counter()
        files = write_cohort(folder, n)
        gen_s = time.perf_counter() - t0
        load_before = os.getloadavg()
        run = run_child(folder, args.chunk_rows)
        run.update(files, records=n, chunk_rows=args.chunk_rows, row_group=ROW_GROUP, generate_seconds=round(gen_s, 1),
                   load_average_before=[round(x, 2) for x in load_before],
                   load_average_after=[round(x, 2) for x in os.getloadavg()],
                   within_limit=run["peak_rss_gb"] <= LIMIT_GB)
        print(json.dumps(run))
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        if args.quick:
            continue
        results["runs"][str(n)] = run
        results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "platform": platform.platform()}
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1))
        write_md(results)


def write_md(results: dict) -> None:
    lines = ["# Streamed training: peak memory (`train --stream`)", "",
             "Generated by `python benchmarks/stream_memory.py --records 5000000 1000000`; raw numbers in "
             "`benchmarks/results/stream_memory.json`. One child process per size: one statistics pass over the "
             "training row groups, one training epoch, one validation pass and one test pass, chunks of "
             f"{next(iter(results['runs'].values()))['chunk_rows']:,} records, 1 torch thread. Cohort: 6 modalities "
             "(5 tabular x 4 features incl. one categorical, MNAR; 1 sequence of 0-8 visits x 2 features).", "",
             "| records | sequence rows | Parquet MB (main + sequence) | peak RSS (GB) | ≤ 2 GB | wall s | "
             "train rec/s (wall) | test AUROC | load (1, 5, 15 min) before → after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, r in sorted(results["runs"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {int(n):,} | {r['sequence_rows']:,} | {r['cohort_mb']} + {r['visits_mb']} | "
                     f"{r['peak_rss_gb']:.2f} | {'yes' if r['within_limit'] else 'NO'} | {r['seconds']:.0f} | "
                     f"{r['train_records_per_s']:,} | {r['test_auroc_outcome']:.3f} | "
                     f"{r['load_average_before']} → {r['load_average_after']} |")
    lines += ["", "Wall time includes process start, the statistics pass, validation and test prediction; the "
              "machine has 2 cores shared with other work (load above)."]
    MD.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
