"""Evidence: how far to trust the explanations, and how well "what to measure next" works, on every bundled
dataset and task, for both models, with bootstrap 95% intervals over records.

Run: .venv/bin/python benchmarks/explain_evidence.py [--records 300] [--acquire-records 500] [--fresh]
(one torch thread; resumable: finished units are kept in the JSON unless --fresh). Writes
benchmarks/results/explain_evidence.json and benchmarks/explain_evidence.md; a hand-written section
"## What this means for a user" already in the markdown is kept when the file is regenerated.

Per dataset x task x model (held-out test records of the checkpoint, seeded sample): `cohort_faithfulness`
(deletion AOPC, insertion AUC, randomization Spearman after the full cascade, OOD-skip share, per method and
for random orders) and `value_vs_presence` (skip vs value-only Shapley credit per modality). Per dataset x task
(MultiModN): `acquire.evaluate_all_tasks` (Spearman, top-1 hit rate vs the cohort-importance baseline,
calibration slope). Intervals: percentile bootstrap (1,000 resamples) of records; for the acquire Spearman and
slope, of (record, modality) pairs; the top-1 rates resample the ranked records (binomial, which is the same
as resampling their 0/1 hits).
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmn_core import load, load_dataset  # noqa: E402
from mmn_core.acquire import evaluate_all_tasks  # noqa: E402
from mmn_core.datasets import bundled_names  # noqa: E402
from mmn_core.faithfulness import cohort_faithfulness  # noqa: E402
from mmn_core.faithfulness_features import feature_faithfulness  # noqa: E402
from mmn_core.fmt import json_safe, number  # noqa: E402
from mmn_core.threads import use_threads  # noqa: E402
from mmn_core.value_attribution import value_vs_presence  # noqa: E402

OUT_JSON = ROOT / "benchmarks/results/explain_evidence.json"
OUT_MD = ROOT / "benchmarks/explain_evidence.md"
B = 1000
KEEP = "## What this means for a user"


def ci(values, rng, b=B):
    """Mean and percentile 95% bootstrap interval over the finite entries of `values` (N,)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return [float("nan")] * 3
    means = v[rng.integers(0, len(v), (b, len(v)))].mean(1)
    return [float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def pair_ci(x, y, stat, rng, b=300):
    x, y = np.asarray(x), np.asarray(y)
    if len(x) < 3:
        return [float("nan")] * 3
    vals = []
    for _ in range(b):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            vals.append(stat(x[i], y[i]))
    return [float(stat(x, y)), float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def rate_ci(p, n, rng, b=B):
    if not n or not np.isfinite(p):
        return [float("nan")] * 3
    draws = rng.binomial(n, p, b) / n
    return [float(p), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def test_rows(trained, data):
    pos = {r: i for i, r in enumerate(data.ids)}
    rows = [pos[r] for r in trained.info.get("test_ids") or [] if r in pos]
    return np.asarray(rows) if rows else None


def faith_unit(trained, data, task, records, seed, rng):
    t0 = time.perf_counter()
    rows = test_rows(trained, data)
    rep = cohort_faithfulness(trained, data, task, records=records, seed=seed, randomization_records=32,
                              rows=rows)
    vp = value_vs_presence(trained, data, task, records=records, seed=seed, rows=rows)
    per = rep.per_record
    methods = {}
    for m in rep.methods:
        methods[m] = {"deletion_aopc": ci(per["aopc"][m], rng), "insertion_auc": ci(per["auc"][m], rng),
                      "randomization_spearman": (ci(per["randomization_spearman"][m], rng)
                                                 if m in per["randomization_spearman"] else None),
                      "ood_top_skip": rep.methods[m].ood_top_skip}
    return {"records": rep.records, "split": "test" if rows is not None else "all", "methods": methods,
            "not_applicable": rep.not_applicable, "agreement": rep.agreement,
            "absent_in_training": rep.absent_in_training, "value_vs_presence": vp.to_json(),
            "value_ood_explanations": ci(vp.per_record["ood"], rng), "seconds": time.perf_counter() - t0}


def acquire_unit(trained, ds, records, seed, rng):
    from scipy.stats import spearmanr
    t0 = time.perf_counter()
    out = {}
    for task, ev in evaluate_all_tasks(trained, ds, records=records, seed=seed).items():
        out[task] = {"records": ev.records, "pairs": ev.pairs, "records_ranked": ev.records_ranked,
                     "spearman": pair_ci(ev.expected, ev.actual, lambda a, b: spearmanr(a, b).statistic, rng),
                     "baseline_spearman": ev.baseline_spearman,
                     "top1_hit_rate": rate_ci(ev.top1_hit_rate, ev.records_ranked, rng),
                     "baseline_top1_hit_rate": rate_ci(ev.baseline_top1_hit_rate, ev.records_ranked, rng),
                     "chance_top1_hit_rate": ev.chance_top1_hit_rate,
                     "calibration_slope": pair_ci(ev.expected, ev.actual, lambda a, b: np.polyfit(a, b, 1)[0], rng)}
    return {"tasks": out, "seconds": time.perf_counter() - t0}


def feature_unit(trained, data, task, modality, records, seed, rng):
    t0 = time.perf_counter()
    rep = feature_faithfulness(trained, data, task, modality, records=records, seed=seed, random_orders=8,
                               n_perturb=5, rows=test_rows(trained, data))
    per = rep.per_record
    return {"records": rep.records, "columns": rep.columns,
            "deletion_aopc": {m: ci(v, rng) for m, v in per["aopc"].items()},
            "infidelity": {m: ci(v, rng) for m, v in per["infidelity"].items()},
            "sensitivity_max": {m: ci(v, rng) for m, v in per["sensitivity_max"].items()},
            "settings": rep.settings, "seconds": time.perf_counter() - t0}


def _sig(v) -> str:
    """Two significant digits (infidelity spans 1e-7 … 1e-1; fmt.number would print most as 0.000)."""
    return number(v) if v is None or not np.isfinite(v) or v == 0 else f"{v:.2g}"


def fmt_ci(v, digits=3):
    """'m [lo, hi]'; digits=None: two significant digits."""
    one = _sig if digits is None else (lambda x: number(x, digits))
    if v is None:
        return "–"
    if not isinstance(v, list):
        return one(v)
    return f"{one(v[0])} [{one(v[1])}, {one(v[2])}]"


def markdown(res) -> str:
    cfg = res["config"]
    lines = ["# How far to trust the explanations: evidence on every bundled dataset", "",
             f"Command: `.venv/bin/python benchmarks/explain_evidence.py --records {cfg['records']} "
             f"--acquire-records {cfg['acquire_records']}` (one torch thread). Raw figures: "
             "[results/explain_evidence.json](results/explain_evidence.json).", "",
             f"Records: a seeded sample of up to {cfg['records']} held-out test records per dataset x task x model "
             f"(the randomization cascade on the first 32 of them); acquire validation on up to "
             f"{cfg['acquire_records']} held-out records. Brackets: bootstrap 95% intervals (records; acquire "
             "Spearman and slope over (record, modality) pairs).", "",
             f"Machine: {cfg['machine']}; 1-minute load before → after each invocation: "
             + ", ".join(f"{r['load_before']} → {r['load_after']} ({number(r['seconds_this_run'], 0)} s wall)"
                         for r in cfg.get("runs", [])) + f"; total {number(cfg.get('seconds', float('nan')), 0)} s of "
             "computation (sum over units; a resumed run adds the units of earlier invocations).", "",
             "Reading the figures. **Deletion AOPC**: mean drop of the output toward the prediction as the "
             "method's top-k modalities are removed (larger = the ranking finds what the model uses); "
             "**insertion AUC**: mean output as they are added to the prior; **randomized ρ**: Spearman between "
             "the method's modality ranking on the trained and on the fully re-initialized model (near 0 = the "
             "method explains the model, near 1 = it would say the same about any model); **OOD**: share of "
             "records whose top-ranked modality is one (almost) never missing in training, so skipping it is "
             "out of distribution. Removal is the model's own: MultiModN skips, P-Fusion zero-fills. Units: "
             "probability of the predicted class; regression standardized.", ""]
    for ds, tasks in res["datasets"].items():
        lines += [f"## {ds}", "", "| task | model | method | deletion AOPC | insertion AUC | randomized ρ | OOD |",
                  "|---|---|---|---|---|---|---|"]
        for task, models in tasks.items():
            for kind, u in models.items():
                if kind == "acquire" or "methods" not in u:
                    continue
                for m, s in u["methods"].items():
                    lines.append(f"| {task} | {kind} | {m} | {fmt_ci(s['deletion_aopc'])} | "
                                 f"{fmt_ci(s['insertion_auc'])} | {fmt_ci(s['randomization_spearman'])} | "
                                 f"{number(s['ood_top_skip'], 2)} |")
                for m, why in u["not_applicable"].items():
                    lines.append(f"| {task} | {kind} | {m} | not applicable: {why} | | | |")
        lines += ["", "Presence vs value (mean |Shapley| per record having the modality; skip = removed by "
                  "skipping / zero-fill, value = kept present at its training mean). Modalities never missing "
                  "in training are marked *.", "",
                  "| task | model | modality: skip / value credit | records resting on an OOD skip |", "|---|---|---|---|"]
        for task, models in tasks.items():
            for kind, u in models.items():
                if kind == "acquire" or "value_vs_presence" not in u:
                    continue
                mods = "; ".join(f"{m}{'*' if c['ood_skip'] else ''}: {number(c['skip_credit'], 3)} / "
                                 f"{number(c['value_credit'], 3)}" for m, c in u["value_vs_presence"]["modalities"].items())
                lines.append(f"| {task} | {kind} | {mods} | {fmt_ci(u['value_ood_explanations'], 2)} |")
        acq = {task: m["acquire"] for task, m in tasks.items() if "acquire" in m}
        if acq:
            lines += ["", "What to measure next (MultiModN; hide a present modality, estimate, reveal):", "",
                      "| task | pairs | Spearman | baseline Spearman | top-1 | baseline top-1 | chance | "
                      "calibration slope |", "|---|---|---|---|---|---|---|---|"]
            for task, a in acq.items():
                lines.append(f"| {task} | {a['pairs']} | {fmt_ci(a['spearman'])} | {number(a['baseline_spearman'], 3)} "
                             f"| {fmt_ci(a['top1_hit_rate'])} | {fmt_ci(a['baseline_top1_hit_rate'])} | "
                             f"{number(a['chance_top1_hit_rate'], 3)} | {fmt_ci(a['calibration_slope'], 2)} |")
        feats = res.get("features", {}).get(ds)
        if feats:
            task = next(iter(feats.values()))["task"]
            lines += ["", f"Feature level inside each modality (task {task}; columns replaced by their training "
                      "mean in attribution order vs 8 random orders; Captum infidelity normalized, lower = more "
                      "faithful; Captum max-sensitivity at radius 0.02, lower = more stable):", "",
                      "| model | modality | columns | AOPC IG | AOPC ablation | AOPC random | infidelity IG | "
                      "infidelity ablation | infidelity random | max-sens. IG | max-sens. ablation |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for kind, f in feats.items():
                for mod, u in f["modalities"].items():
                    if "error" in u:
                        lines.append(f"| {kind} | {mod} | {u['error']} | | | | | | | | |")
                        continue
                    a, i, sm = u["deletion_aopc"], u["infidelity"], u["sensitivity_max"]
                    lines.append(f"| {kind} | {mod} | {len(u['columns'])} | {fmt_ci(a['ig'])} | "
                                 f"{fmt_ci(a['ablation'])} | {fmt_ci(a['random'])} | {fmt_ci(i['ig'], None)} | "
                                 f"{fmt_ci(i['ablation'], None)} | {fmt_ci(i['random'], None)} | {fmt_ci(sm['ig'], 2)} | "
                                 f"{fmt_ci(sm['ablation'], 2)} |")
        lines.append("")
    lines += ["## Summary computed from the figures", "", *summary(res), ""]
    return "\n".join(lines)


def summary(res) -> list[str]:
    """Counts, computed from the intervals: where each method beats random orders, where randomization
    breaks the ranking, where the acquire estimator beats its baseline."""
    beat, total, rand_ok, rand_total, acq_beat, acq_total = {}, {}, {}, {}, 0, 0
    for tasks in res["datasets"].values():
        for models in tasks.values():
            for kind, u in models.items():
                if kind == "acquire":
                    acq_total += 1
                    acq_beat += u["top1_hit_rate"][1] > u["baseline_top1_hit_rate"][0]
                    continue
                r = u["methods"]["random"]["deletion_aopc"]
                for m, s in u["methods"].items():
                    if m == "random":
                        continue
                    key = (kind, m)
                    total[key] = total.get(key, 0) + 1
                    beat[key] = beat.get(key, 0) + (s["deletion_aopc"][1] > r[2])
                    rs = s["randomization_spearman"]
                    if rs and np.isfinite(rs[2]):
                        rand_total[key] = rand_total.get(key, 0) + 1
                        rand_ok[key] = rand_ok.get(key, 0) + (rs[2] < 0.5)
    out = ["Deletion AOPC interval entirely above the random orders' interval (tasks, out of all tasks):", ""]
    out += [f"- {k} {m}: {beat[(k, m)]} / {total[(k, m)]}; randomized ρ upper bound < 0.5 on "
            f"{rand_ok.get((k, m), 0)} / {rand_total.get((k, m), 0)}" for k, m in sorted(total)]
    out += ["", f"- acquire: top-1 lower bound above the baseline's rate on {acq_beat} / {acq_total} tasks"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300)
    ap.add_argument("--acquire-records", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features-records", type=int, default=60, help="0: skip the feature-level part")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="rewrite the markdown from the JSON")
    args = ap.parse_args()
    use_threads()
    if args.report_only:
        write_md(json.loads(OUT_JSON.read_text()))
        return
    res = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() and not args.fresh else {}
    if res.get("config", {}).get("records") != args.records:
        res = {}
    res.setdefault("datasets", {})
    old = res.get("config", {})
    runs = old.get("runs") or ([{k: old.get(k) for k in ("load_before", "load_after", "seconds_this_run")}]
                               if "seconds_this_run" in old else [])
    res["config"] = {"records": args.records, "acquire_records": args.acquire_records, "seed": args.seed,
                     "features_records": args.features_records,
                     "machine": f"{os.cpu_count()} logical CPUs, Python {platform.python_version()}",
                     "load_before": round(os.getloadavg()[0], 1), "runs": runs}
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    def save():
        OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(json_safe(res), indent=1))

    for name in bundled_names():
        ds = load_dataset(name)
        for kind in ("multimodn", "pfusion"):
            trained = load(ROOT / f"data/checkpoints/{name}-{kind}")
            data = trained.prep.transform(ds)
            for t in trained.model.tasks:
                unit = res["datasets"].setdefault(name, {}).setdefault(t.name, {})
                if kind in unit:
                    continue
                unit[kind] = faith_unit(trained, data, t.name, args.records, args.seed, rng)
                print(f"{name} {t.name} {kind}: {unit[kind]['seconds']:.1f} s", file=sys.stderr, flush=True)
                save()
            if kind == "multimodn" and "acquire" not in next(iter(res["datasets"][name].values())):
                acq = acquire_unit(trained, ds, args.acquire_records, args.seed, rng)
                for task, a in acq["tasks"].items():
                    res["datasets"][name][task]["acquire"] = a
                res.setdefault("acquire_seconds", {})[name] = acq["seconds"]
                print(f"{name} acquire: {acq['seconds']:.1f} s", file=sys.stderr, flush=True)
                save()
            if args.features_records > 0:
                task = trained.model.tasks[0].name
                f = res.setdefault("features", {}).setdefault(name, {}).setdefault(
                    kind, {"task": task, "records": args.features_records, "modalities": {}})
                for m in trained.model.modality_names:
                    if m in f["modalities"]:
                        continue
                    try:
                        f["modalities"][m] = feature_unit(trained, data, task, m, args.features_records,
                                                          args.seed, rng)
                    except ValueError as e:            # e.g. no held-out record has the modality
                        f["modalities"][m] = {"error": str(e), "seconds": 0.0}
                    print(f"{name} {kind} features {m}: {f['modalities'][m]['seconds']:.1f} s", file=sys.stderr,
                          flush=True)
                    save()
    res["config"]["seconds_this_run"] = time.perf_counter() - start
    res["config"]["seconds"] = sum(res.get("acquire_seconds", {}).values()) + sum(
        u["seconds"] for tasks in res["datasets"].values() for models in tasks.values()
        for k, u in models.items() if k != "acquire") + sum(
        u["seconds"] for kinds in res.get("features", {}).values() for f in kinds.values()
        for u in f["modalities"].values())
    res["config"]["load_after"] = round(os.getloadavg()[0], 1)
    res["config"]["runs"].append({k: res["config"][k] for k in ("load_before", "load_after", "seconds_this_run")})
    save()
    write_md(res)


def write_md(res) -> None:
    md = markdown(res)
    old = OUT_MD.read_text() if OUT_MD.exists() else ""
    if KEEP in old:
        md += "\n" + old[old.index(KEEP):]
    OUT_MD.write_text(md)


if __name__ == "__main__":
    main()
