"""Batched sweeps: wall time of training a sweep's models one after another vs together (`sweep.train_many`).

Two sweeps on SUPPORT2, each run sequentially (today's code) and batched, side by side in one run:
  (a) `compare --folds 5`: `experiments.cross_validate` (5 folds x MultiModN + P-Fusion, 30 epochs at most),
      workers=1 vs workers=N (the folds trained together by `sweep.train_models`);
  (b) the MNAR lab's default run (blood_gas, death, rates 0-0.8, 2 folds, 15 epochs, both models = 20 trainings):
      `experiments.run_mnar` workers=1 vs workers=N (its trainings collected, then `sweep.train_many`).
Results must be identical: the benchmark checks every fold's metrics (a) and every result row (b).

(c) The alternative, a vectorized ensemble: one training step (forward, backward, Adam) of K MultiModN models on
    SUPPORT2's shapes, as K separate steps vs one `torch.func.vmap` step over the stacked models
    (`stack_module_state` + `functional_call`). This measures only the step; an exact ensemble would also need
    per-model dropout masks, batch orders, early stopping and Adam step counts replayed (see mmn_core/sweep.py).

Run:  python benchmarks/sweep_speed.py             (writes benchmarks/results/sweep_speed.json + benchmarks/sweep_speed.md)
      python benchmarks/sweep_speed.py --quick     (a smoke run with 2 epochs; writes nothing)
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mmn_core.experiments as ex  # noqa: E402
from mmn_core import load_dataset  # noqa: E402
from mmn_core.checkpoint import build_model  # noqa: E402
from mmn_core.data import Preprocessor, split  # noqa: E402
from mmn_core.model import ModelConfig  # noqa: E402
from mmn_core.sweep import default_workers  # noqa: E402
from mmn_core.train import TrainConfig  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "sweep_speed.json"
MD = ROOT / "benchmarks" / "sweep_speed.md"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _same_rows(a: list[dict], b: list[dict], tol: float = 1e-6) -> bool:
    def close(x, y):
        if isinstance(x, float) and isinstance(y, float):
            return (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol
        return x == y
    return len(a) == len(b) and all(r.keys() == s.keys() and all(close(r[k], s[k]) for k in r) for r, s in zip(a, b))


def _same_folds(a: dict, b: dict, tol: float = 1e-6) -> bool:
    return all(_same_rows([{f"{t}.{m}": v for t, ms in fold.items() for m, v in ms.items()} for fold in a[k]],
                          [{f"{t}.{m}": v for t, ms in fold.items() for m, v in ms.items()} for fold in b[k]], tol)
               for k in a)


def ensemble_step(ds, k: int, batch: int = 256, steps: int = 30) -> dict:
    """Seconds per training step of k MultiModN models: k separate steps vs one vmap step over stacked models."""
    from torch.func import functional_call, grad, stack_module_state, vmap
    tr, _, _ = split(ds, seed=0)
    prep = Preprocessor.fit(ds.subset(tr))
    data = prep.transform(ds.subset(tr))
    models = []
    for s in range(k):
        torch.manual_seed(s)
        models.append(build_model("multimodn", ds.spec, prep, ModelConfig()))
    gen = torch.Generator().manual_seed(0)
    idx = [torch.randint(0, len(data), (batch,), generator=gen) for _ in range(k)]   # each model its own rows
    xs = [{m: v[i] for m, v in data.x.items()} for i in idx]
    ps = [{m: v[i] for m, v in data.present.items()} for i in idx]
    ys = [{t: v[i] for t, v in data.y.items()} for i in idx]

    opts = [torch.optim.Adam(m.parameters(), lr=2e-3) for m in models]

    def loop_step():
        for m, o, x, p, y in zip(models, opts, xs, ps, ys):
            loss = m.loss(m(x, p), y)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()

    params, buffers = stack_module_state(models)
    params = {n: v.detach().requires_grad_(False) for n, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    sx = {m: torch.stack([x[m] for x in xs]) for m in xs[0]}
    sp = {m: torch.stack([p[m] for p in ps]) for m in ps[0]}
    sy = {t: torch.stack([y[t] for y in ys]) for t in ys[0]}

    def loss_fn(prm, buf, x, p, y):
        return base.loss(functional_call(base, (prm, buf), (x, p)), y)

    grads = vmap(grad(loss_fn), randomness="different")
    leaves = list(params.values())
    opt = torch.optim.Adam(leaves, lr=2e-3)

    def vmap_step():
        g = grads(params, buffers, sx, sp, sy)
        for n, v in params.items():
            v.grad = g[n]
        opt.step()

    out = {}
    for name, fn in (("separate", loop_step), ("vmap", vmap_step)):
        for m in models:
            m.train()
        fn()                                   # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        out[name] = (time.perf_counter() - t0) / steps
    return {"models": k, "batch": batch, "separate_s_per_step": round(out["separate"], 5),
            "vmap_s_per_step": round(out["vmap"], 5), "speedup": round(out["separate"] / out["vmap"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--only", choices=["compare", "mnar", "ensemble"], help="re-measure one part, keep the rest")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("support2")
    workers = args.workers or default_workers(10)
    compare_epochs, mnar_epochs = (2, 2) if args.quick else (30, 15)
    results = json.loads(OUT.read_text()) if args.only and OUT.exists() else {}
    results.update({"workers": workers, "threads_per_process": 1})
    if args.only in (None, "compare"):
        results["compare"] = measure_compare(ds, compare_epochs, workers)
    if args.only in (None, "mnar"):
        results["mnar"] = measure_mnar(ds, mnar_epochs, workers)
    if args.only in (None, "ensemble"):
        results["ensemble_step"] = [ensemble_step(ds, k, steps=5 if args.quick else 30) for k in (5, 10, 20)]
        print(json.dumps(results["ensemble_step"]), flush=True)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    if args.quick:
        return
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    write_md(results)


def measure_compare(ds, compare_epochs: int, workers: int) -> dict:
    config = TrainConfig(epochs=compare_epochs, seed=0)
    load0 = _load()
    t0 = time.perf_counter()
    seq = ex.cross_validate(ds, folds=5, config=config)
    t_seq = time.perf_counter() - t0
    load1 = _load()
    t0 = time.perf_counter()
    bat = ex.cross_validate(ds, folds=5, config=config, workers=workers)["per_fold"]
    t_bat = time.perf_counter() - t0
    out = {"trainings": 10, "epochs": compare_epochs, "sequential_s": round(t_seq, 1),
           "batched_s": round(t_bat, 1), "speedup": round(t_seq / t_bat, 2),
           "identical": _same_folds(seq["per_fold"], bat),
           "load_sequential": load0, "load_batched": load1, "load_after": _load()}
    print(json.dumps(out), flush=True)
    return out


def measure_mnar(ds, mnar_epochs: int, workers: int) -> dict:
    mnar = {"modality": "blood_gas", "task": "death", "rates": (0.0, 0.2, 0.4, 0.6, 0.8), "folds": 2,
            "epochs": mnar_epochs, "seed": 0, "models": ("multimodn", "pfusion")}
    load0 = _load()
    t0 = time.perf_counter()
    seq_m = ex.run_mnar(ds, **mnar)
    t_seq = time.perf_counter() - t0
    load1 = _load()
    t0 = time.perf_counter()
    bat_m = ex.run_mnar(ds, workers=workers, **mnar)
    t_bat = time.perf_counter() - t0
    same = _same_rows(seq_m["results"], bat_m["results"]) and seq_m["ceiling"] == bat_m["ceiling"] \
        and seq_m["config"]["mean_epochs"] == bat_m["config"]["mean_epochs"]
    out = {"trainings": 20, "epochs": mnar_epochs, "sequential_s": round(t_seq, 1),
           "batched_s": round(t_bat, 1), "speedup": round(t_seq / t_bat, 2), "identical": same,
           "load_sequential": load0, "load_batched": load1, "load_after": _load()}
    print(json.dumps(out), flush=True)
    return out


def write_md(r: dict) -> None:
    c, m = r["compare"], r["mnar"]
    lines = ["# Batched sweeps: sequential vs `sweep.train_many`", "",
             "Generated by `python benchmarks/sweep_speed.py`; raw numbers in `benchmarks/results/sweep_speed.json`. "
             f"Batched = {r['workers']} worker processes from a fork server, 1 torch thread each (the sequential "
             "runs use 1 thread too). 2 cores shared with other work: the load averages (1, 5, 15 min) are printed beside "
             "each timing.", "",
             "| sweep | trainings | sequential s | batched s | speed-up | results identical | load seq → batched |",
             "|---|---|---|---|---|---|---|",
             f"| `compare --folds 5` SUPPORT2 ({c['epochs']} epochs max) | {c['trainings']} | {c['sequential_s']} | "
             f"{c['batched_s']} | {c['speedup']}x | {'yes' if c['identical'] else 'NO'} | "
             f"{c['load_sequential']} → {c['load_batched']} |",
             f"| MNAR lab default (SUPPORT2, {m['epochs']} epochs max) | {m['trainings']} | {m['sequential_s']} | "
             f"{m['batched_s']} | {m['speedup']}x | {'yes' if m['identical'] else 'NO'} | "
             f"{m['load_sequential']} → {m['load_batched']} |", "",
             "The 3x target is not reached. With processes on 2 idle cores the ceiling is 2x; on a shared, "
             "overloaded machine two processes also get two shares of the scheduler, so a ratio above 2x says as "
             "much about the other work as about this code." if max(c["speedup"], m["speedup"]) < 3 else "", "",
             "Both batched runs are the engine's own path: `cross_validate(..., workers=N)` and "
             "`run_mnar(..., workers=N)` (what `compare --workers` / `mnar --workers` and `evidence.py` use).", "",
             "## The alternative: one vectorized ensemble step (torch.func.vmap)", "",
             "| models | s/step separate | s/step vmap | speed-up |", "|---|---|---|---|"]
    lines += [f"| {e['models']} | {e['separate_s_per_step']} | {e['vmap_s_per_step']} | {e['speedup']}x |"
              for e in r["ensemble_step"]]
    lines += ["", "One training step (forward, backward, Adam) of K MultiModN models at batch 256 on SUPPORT2's "
              "shapes, each model with its own rows and masks. This is the ensemble's best case: it leaves out "
              "what exact equality with sequential training would add (see mmn_core/sweep.py)."]
    MD.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
