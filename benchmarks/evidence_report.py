"""Render the evidence JSON (benchmarks/results/evidence_*.json) into benchmarks/RESULTS.md and PNG plots.

Every number in the markdown is read from the stored JSON; the sentences that judge a claim are chosen by
comparing those numbers with the targets of the evidence issue, so a rerun with other numbers cannot keep a
stale verdict.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTING_LABELS = {
    "base": "per-record, M in the middle, no mitigation",
    "first": "per-record, M first",
    "last": "per-record, M last",
    "paper": "paper semantics (batch-wide skip, batch 16, unshuffled, file-order removal)",
    "presence-balance": "presence balancing of M",
    "presence-balance-all": "presence balancing of every modality (M unknown)",
    "modality-dropout": "modality dropout 0.3",
    "shuffle-order": "shuffle-order training",
    "paper-presence-balance": "paper semantics + presence balancing of M",
    "presence-balance-shiftedval": "presence balancing of M, shifted (unbalanced) validation split",
    "last-presence-balance": "M last + presence balancing of M",
}
MODEL = {"multimodn": "MultiModN", "pfusion": "P-Fusion"}


def _load(results: Path, prefix: str) -> dict[str, dict]:
    out = {}
    for p in sorted(results.glob(f"{prefix}*.json")):
        key = p.stem[len(prefix):]
        if prefix == "evidence_" and key.startswith("quick_"):
            continue
        out[key] = json.loads(p.read_text())
    return out


def f3(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def pm(mean, sd) -> str:
    return f"{f3(mean)} ± {f3(sd)}" if sd is not None and not math.isnan(sd) else f3(mean)


def sgn(x) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:+.3f}"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --- MNAR helpers ---------------------------------------------------------------------------------------
def mnar_value(res: dict, rate: float, model: str, test: str, key: str = "auroc"):
    for r in res["results"]:
        if abs(r["rate"] - rate) < 1e-9 and r["model"] == model and r["test"] == test:
            return r[key], r.get(f"{key}_std")
    return math.nan, math.nan


def ceiling_value(res: dict, rate: float, model: str):
    for c in res.get("ceiling", {}).get(model, []):
        if abs(c["rate"] - rate) < 1e-9:
            return c["auroc"], c["auroc_std"]
    return math.nan, math.nan


def _plot_mnar(data: dict, name: str, out: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [s for s in ("base", "paper", "presence-balance", "presence-balance-all") if f"mnar_{name}_{s}" in data]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True)
    axes = [axes] if len(panels) == 1 else axes
    colors = {"multimodn": "#1f77b4", "pfusion": "#d62728"}
    base = data.get(f"mnar_{name}_base")
    for ax, s in zip(axes, panels):
        res = data[f"mnar_{name}_{s}"]
        rates = res["rates"]
        for m in res["config"]["models"]:
            for test, style in (("reversed", "-o"), ("clean", "--")):
                y = [mnar_value(res, r, m, test)[0] for r in rates]
                ax.plot(rates, y, style, color=colors[m], label=f"{MODEL[m]} {test}", ms=4)
            ref = res if s == "paper" else base          # paper semantics: its own p = 0 model
            if ref is not None and m in ref.get("ceiling", {}):
                y = [ceiling_value(ref, r, m)[0] for r in rates]
                ax.plot(rates, y, ":", color=colors[m], label=f"{MODEL[m]} ceiling (p=0, no mitigation)")
        ax.set_title({"base": "per-record, no mitigation", "paper": "paper semantics",
                      "presence-balance": "presence balancing (M)", "presence-balance-all":
                      "presence balancing (all)"}[s], fontsize=10)
        ax.set_xlabel("MNAR rate p (training)")
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AUROC")
    axes[-1].legend(fontsize=7, loc="lower left")
    cfg = data[f"mnar_{name}_{panels[0]}"]["config"]
    fig.suptitle(f"{name}: M = {cfg['modality']}, task = {cfg['task']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


def _plot_xy(series: dict[str, tuple[list, list]], xlabel: str, ylabel: str, title: str, out: Path,
             logx: bool = False) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, (x, y) in series.items():
        ax.plot(x, y, "-o", label=label, ms=4)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


# --- sections -------------------------------------------------------------------------------------------
def section_parity(data: dict, lines: list, head: list) -> None:
    lines.append("## 1. Parity: MultiModN vs P-Fusion\n")
    lines.append("Stratified k-fold cross-validation (`mmn_core.experiments.cross_validate`), identical folds for "
                 "both models, every task trained together; final-step test metrics. Δ = MultiModN − P-Fusion, "
                 "paired by fold (mean ± sd over folds). Target: |ΔAUROC| ≤ 0.02 per classification task on real "
                 "data, ≤ 0.01 on synthetic.\n")
    worst = []
    for key in sorted(k for k in data if k.startswith("parity_")):
        res = data[key]
        name = res["dataset"]
        rows = []
        for task, entry in res["tasks"].items():
            metrics = ("auroc", "balanced_accuracy") if entry["type"] != "regression" else ("mae", "rmse")
            for m in metrics:
                a, b = entry["multimodn"], entry["pfusion"]
                d = res["paired"][task][m]
                ok = ""
                if m == "auroc":
                    limit = 0.01 if name == "synthetic" else 0.02
                    ok = "yes" if abs(d["mean"]) <= limit else "**no**"
                    worst.append((name, task, d["mean"], limit))
                rows.append([task, entry["type"], m, pm(a[m], a[f"{m}_std"]), pm(b[m], b[f"{m}_std"]),
                             pm(d["mean"], d["sd"]).replace(f3(d["mean"]), sgn(d["mean"]), 1), ok])
        lines.append(f"**{name}** ({res['folds']} folds, ≤ {res['epochs']} epochs)\n")
        lines.append(table(["task", "type", "metric", "MultiModN", "P-Fusion", "Δ paired", "within target"], rows))
        lines.append("")
    if worst:
        failing = [w for w in worst if abs(w[2]) > w[3]]
        head.append(f"- **Parity**: {len(worst) - len(failing)} of {len(worst)} classification tasks within "
                    "the |ΔAUROC| target" + (": " + "; ".join(f"{n}/{t} Δ = {sgn(d)}" for n, t, d, _ in failing)
                                              + " (MultiModN − P-Fusion) miss it." if failing else "."))


def section_multitask(data: dict, lines: list, head: list) -> None:
    keys = sorted(k for k in data if k.startswith("multitask_"))
    if not keys:
        return
    lines.append("## 2. Multi-task: each task alone vs all tasks together\n")
    lines.append("Same folds as the parity run; 'together' is the parity run's all-task model. Δ = together − "
                 "alone, paired by fold (for MAE/RMSE a positive Δ is a loss). Target: drop ≤ 0.01 AUROC.\n")
    drops = []
    for key in keys:
        res = data[key]
        name = res["dataset"]
        par = data.get(f"parity_{name}")
        rows = []
        for task, entry in res["tasks"].items():
            metric = "auroc" if entry["type"] != "regression" else "mae"
            for kind in ("multimodn", "pfusion"):
                alone = [f[metric] for f in entry["per_fold"][kind]]
                together = [f[task][metric] for f in par["per_fold"][kind]] if par else []
                diffs = [t - a for t, a in zip(together, alone)]
                d = _mean_sd(diffs)
                rows.append([task, metric, MODEL[kind], pm(*_ms(alone)), pm(*_ms(together)),
                             sgn(d[0]) + (f" ± {f3(d[1])}" if not math.isnan(d[1]) else "")])
                if metric == "auroc":
                    drops.append((name, task, kind, d[0]))
        lines.append(f"**{name}**\n")
        lines.append(table(["task", "metric", "model", "alone", "together", "Δ together − alone"], rows))
        lines.append("")
    if drops:
        mmn = [d for d in drops if d[2] == "multimodn"]
        worst = min(mmn, key=lambda d: d[3]) if mmn else None
        bad = [d for d in mmn if d[3] < -0.01]
        head.append(f"- **Multi-task** (MultiModN): worst AUROC change from training all tasks together "
                    f"{sgn(worst[3])} ({worst[0]}/{worst[1]}); {len(bad)} of {len(mmn)} classification tasks lose "
                    "more than 0.01." if worst else "")


def _ms(v):
    d = _mean_sd(v)
    return d[0], d[1]


def _mean_sd(v):
    v = [x for x in v if x is not None and not math.isnan(x)]
    if not v:
        return math.nan, math.nan
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd


def section_mnar(data: dict, lines: list, head: list, results: Path, plot_prefix: str) -> None:
    sets = sorted({k.split("_")[1] for k in data if k.startswith("mnar_")},
                  key=lambda n: ["synthetic", "support2", "star"].index(n) if n in ("synthetic", "support2", "star")
                  else 9)
    if not sets:
        return
    lines.append("## 3. MNAR: does skipping protect against a reversed missingness pattern?\n")
    lines.append(
        "Protocol (the paper's): in the training and validation splits, modality M is removed from a fraction p "
        "of the records with label 1 of task T (seeded random choice; the first ⌈p·n⌉ in file order under paper "
        "semantics). Each model is scored on a **clean** test split (the data's own missingness) and a "
        "**reversed** one where p of the label-0 test records lose M. 3-fold CV (validation carved from the "
        "training part), models trained on task T alone, ≤ 30 epochs with early stopping on validation loss. "
        "**Validation split**: shifted (injected like training) for every setting except presence balancing, "
        "where it is balanced with one fixed draw of the same balancing; the support2 row 'shifted validation' "
        "measures what that choice is worth. **Ceiling** (no-shortcut): the same model trained at p = 0 "
        "without mitigation, scored on the same reversed split; 'ceiling (same options)' is trained at p = 0 "
        "with the setting's own options.\n")
    for name in sets:
        base = data.get(f"mnar_{name}_base")
        if base is None:
            continue
        cfg = base["config"]
        lines.append(f"### {name}: M = `{cfg['modality']}`, T = `{cfg['task']}`\n")
        lines.append(f"Encoder order with M in the middle: {' → '.join(cfg['order'])}.\n")
        pres = base.get("presence", [])
        if pres:
            lines.append(table(["p", "P(M | y=1) train", "P(M | y=0) train", "P(M | y=1) reversed test",
                                "P(M | y=0) reversed test"],
                               [[f"{p['rate']:.1f}", f3(p["train_pos"]), f3(p["train_neg"]), f3(p["reversed_pos"]),
                                 f3(p["reversed_neg"])] for p in pres]))
            lines.append("")
        img = _plot_mnar(data, name, results / f"{plot_prefix}mnar_{name}.png")
        if img:
            lines.append(f"![MNAR curves for {name}](results/{img})\n")
        rows = []
        for r in base["rates"]:
            row = [f"{r:.1f}"]
            for m in base["config"]["models"]:
                row += [pm(*mnar_value(base, r, m, "clean")), pm(*mnar_value(base, r, m, "reversed")),
                        pm(*ceiling_value(base, r, m))]
            rows.append(row)
        hdr = ["p"] + [f"{MODEL[m]} {t}" for m in base["config"]["models"] for t in ("clean", "reversed", "ceiling")]
        lines.append("Per-record semantics, no mitigation (AUROC, mean ± sd over folds):\n")
        lines.append(table(hdr, rows))
        lines.append("")
        # summary at the largest rate over every setting
        top = max(base["rates"])
        rows = []
        for key in sorted(k for k in data if k.startswith(f"mnar_{name}_")):
            sid = key[len(f"mnar_{name}_"):]
            if sid.startswith("rule"):
                continue
            res = data[key]
            ref = data.get(f"mnar_{name}_paper") if res["config"]["semantics"] == "paper" and sid != "paper" else base
            for m in res["config"]["models"]:
                rev = mnar_value(res, top, m, "reversed")
                ceil = ceiling_value(base if res["config"]["semantics"] != "paper" else data.get(
                    f"mnar_{name}_paper", base), top, m)
                own = ceiling_value(res, top, m)
                c0 = mnar_value(res, 0.0, m, "clean")[0]
                c0_ref = mnar_value(ref or base, 0.0, m, "clean")[0]
                rows.append([SETTING_LABELS.get(sid, sid), MODEL[m], f3(c0), sgn(c0 - c0_ref) if sid != "base" else "",
                             f3(mnar_value(res, top, m, "clean")[0]), pm(*rev), f3(ceil[0]), sgn(rev[0] - ceil[0]),
                             f3(own[0])])
        lines.append(f"All settings at p = {top:.1f} (clean cost = clean AUROC at p = 0 minus that of the same "
                     "semantics without mitigation):\n")
        lines.append(table(["setting", "model", "clean p=0", "clean cost", f"clean p={top:.1f}",
                            f"reversed p={top:.1f}", "ceiling", "reversed − ceiling", "ceiling (same options)"],
                           rows))
        lines.append("")
        _head_mnar(data, name, top, head)
        rule = data.get(f"mnar_{name}_rule")
        if rule:
            rc = rule["config"]["rule"]
            desc = rc.get("description") or f"{rc['column']} {rc['op']} {rc['value']}" if isinstance(rc, dict) else rc
            lines.append(f"**Rule-based MNAR** — `{rule['config']['modality']}` observed only where the rule fires "
                         f"({desc}), enforced on a fraction p of the training records; reversed test: on p of the "
                         "test records it is observed only where the rule does **not** fire.\n")
            rows = []
            for sid in ("rule", "rule-presence-balance"):
                res = data.get(f"mnar_{name}_{sid}")
                if not res:
                    continue
                for r in res["rates"]:
                    for m in res["config"]["models"]:
                        rows.append([sid.replace("rule-", "").replace("rule", "none"), f"{r:.1f}", MODEL[m],
                                     pm(*mnar_value(res, r, m, "clean")), pm(*mnar_value(res, r, m, "reversed")),
                                     f3(ceiling_value(res, r, m)[0])])
            lines.append(table(["mitigation", "p", "model", "clean", "reversed", "ceiling (same options)"], rows))
            lines.append("")


def _head_mnar(data: dict, name: str, top: float, head: list) -> None:
    base = data[f"mnar_{name}_base"]
    parts = []
    for sid in ("base", "last", "paper", "presence-balance", "presence-balance-all", "modality-dropout",
                "shuffle-order"):
        res = data.get(f"mnar_{name}_{sid}")
        if not res:
            continue
        ref = data.get(f"mnar_{name}_paper", base) if sid == "paper" else base
        vals = []
        for m in res["config"]["models"]:
            rev = mnar_value(res, top, m, "reversed")[0]
            ceil = ceiling_value(ref, top, m)[0]
            vals.append(f"{MODEL[m]} {f3(rev)} (ceiling {f3(ceil)})")
        parts.append(f"{sid}: " + ", ".join(vals))
    head.append(f"- **MNAR {name}**, reversed AUROC at p = {top:.1f}: " + "; ".join(parts) + ".")
    pb = data.get(f"mnar_{name}_presence-balance")
    if pb:
        m = "multimodn"
        rev = mnar_value(pb, top, m, "reversed")[0]
        ceil = ceiling_value(base, top, m)[0]
        cost = mnar_value(pb, 0.0, m, "clean")[0] - mnar_value(base, 0.0, m, "clean")[0]
        ok = rev >= ceil - 0.03
        head.append(f"  Presence balancing, MultiModN: reversed − ceiling = {sgn(rev - ceil)} "
                    f"({'meets' if ok else 'misses'} the 0.03 target); clean AUROC at p = 0 changes by {sgn(cost)} "
                    f"({'within' if abs(cost) <= 0.01 else 'outside'} 0.01).")


def section_open(data: dict, lines: list, head: list, results: Path, plot_prefix: str) -> None:
    lines.append("## 4. Open questions of the paper\n")
    keys = sorted(k for k in data if k.startswith("statesize_"))
    if keys:
        lines.append("### State size\n")
        lines.append("Final-step test AUROC of the first classification task (mean ± sd over folds) for state sizes "
                     "4–128; P-Fusion's per-modality embedding gets the same size.\n")
        for key in keys:
            res = data[key]
            rows, series = [], {}
            for r in res["results"]:
                task = next(iter(r["metrics"]))
                for t, ms in r["metrics"].items():
                    if "auroc" in ms:
                        task = t
                        break
                mt = r["metrics"][task]
                rows.append([r["state_size"], MODEL[r["model"]], f"{r['params']:,}", task,
                             pm(mt["auroc"]["mean"], mt["auroc"]["sd"])])
                series.setdefault(MODEL[r["model"]], ([], []))
                series[MODEL[r["model"]]][0].append(r["state_size"])
                series[MODEL[r["model"]]][1].append(mt["auroc"]["mean"])
            lines.append(f"**{res['dataset']}** ({res['folds']} folds)\n")
            lines.append(table(["state size", "model", "parameters", "task", "AUROC"], rows))
            img = _plot_xy(series, "state size", "AUROC", f"{res['dataset']}: AUROC vs state size",
                           results / f"{plot_prefix}statesize_{res['dataset']}.png", logx=True)
            if img:
                lines.append(f"\n![state size]({'results/' + img})\n")
            lines.append("")
    keys = sorted(k for k in data if k.startswith("order_"))
    if keys:
        lines.append("### Encoder order: fixed vs shuffle-trained\n")
        lines.append("MultiModN trained with the spec order ('fixed') or a random order per batch ('shuffle-"
                     "trained'), then evaluated under the spec order and random permutations. Spread = mean over "
                     "test records of (max − min) predicted probability across orders.\n")
        rows = []
        for key in keys:
            res = data[key]
            for label, r in res["runs"].items():
                rows.append([res["dataset"], res["task"], label, res["n_orders"] + 1, pm(r["spread_mean"]["mean"],
                             r["spread_mean"]["sd"]), f3(r["sd_mean"]["mean"]), f3(r["auroc_spec_order"]["mean"]),
                             f"{f3(r['auroc_min']['mean'])}–{f3(r['auroc_max']['mean'])}"])
        lines.append(table(["dataset", "task", "training", "orders", "prediction spread", "sd over orders",
                            "AUROC (spec order)", "AUROC range over orders"], rows))
        lines.append("")
    sc = data.get("scaling")
    if sc:
        lines.append("### Time and memory per epoch vs number of modalities and tasks\n")
        lines.append(f"Synthetic cohort, {sc['records']:,} records, batch 256, one CPU thread; median of "
                     f"{sc['epochs_timed']} epochs (wall time on a shared machine: compare within the table). "
                     "Memory = peak resident memory during training minus the resident memory before it (sampled "
                     "every 2 ms; each configuration in its own process).\n")
        rows, s_mod, s_task = [], {}, {}
        for r in sc["results"]:
            rows.append([r["modalities"], r["tasks"], MODEL[r["model"]], f"{r['params']:,}",
                         f"{r['seconds_per_epoch']:.3f}", f"{r['peak_rss_growth_mb']:.1f}"])
            if r["tasks"] == 3:
                s_mod.setdefault(MODEL[r["model"]], ([], []))
                s_mod[MODEL[r["model"]]][0].append(r["modalities"])
                s_mod[MODEL[r["model"]]][1].append(r["seconds_per_epoch"])
        lines.append(table(["modalities", "tasks", "model", "parameters", "s / epoch", "training memory (MB)"], rows))
        img = _plot_xy(s_mod, "number of modalities", "seconds per epoch", "Epoch time vs modalities (3 tasks)",
                       results / f"{plot_prefix}scaling_modalities.png")
        if img:
            lines.append(f"\n![scaling]({'results/' + img})\n")
        lines.append("")


def section_speed(results: Path, lines: list) -> None:
    found = [p for p in (results / "train_throughput.json", results / "interpret_speed.json") if p.exists()]
    lines.append("## 5. Speed\n")
    if not found:
        lines.append("No engine or interpretation speed benchmark was stored yet "
                     "(benchmarks/results/train_throughput.json, interpret_speed.json).\n")
        return
    for p in found:
        lines.append(f"**{p.name}** (written by its own benchmark script)\n")
        lines.append(_generic_table(json.loads(p.read_text())))
        lines.append("")


def _generic_table(obj) -> str:
    """A readable table for an unknown JSON layout: a list of flat dicts, a dict of dicts, or key/value."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            elif not isinstance(v, list):
                out[f"{prefix}{k}"] = v
        return out
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if lists:
            rows = [flat(x) for x in lists[0]]
            meta = {k: v for k, v in flat(obj).items()}
            pre = ", ".join(f"{k} = {v}" for k, v in meta.items())
            obj = rows
            prefix = (pre + "\n\n") if pre else ""
        else:
            return table(["key", "value"], [[k, _fmt(v)] for k, v in flat(obj).items()])
    else:
        prefix = ""
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        rows = [flat(x) for x in obj]
        cols = list(dict.fromkeys(c for r in rows for c in r))
        return prefix + table(cols, [[_fmt(r.get(c, "")) for c in cols] for r in rows])
    return "```\n" + json.dumps(obj, indent=1)[:3000] + "\n```"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render(plan, results: Path, expected: list[str]) -> Path:
    data = _load(results, plan.prefix)
    lines, head = [], []
    section_parity(data, lines, head)
    section_multitask(data, lines, head)
    section_mnar(data, lines, head, results, "evidence_quick_" if plan.quick else "evidence_")
    section_open(data, lines, head, results, "evidence_quick_" if plan.quick else "evidence_")
    section_speed(results, lines)
    total = sum(d.get("seconds", 0) for d in data.values())
    cpu = sum(d.get("cpu_seconds", 0) for d in data.values())
    missing = [j for j in expected if j not in data]
    intro = [
        "# Evidence: MultiModN's claims measured on the bundled data\n",
        f"Generated by `python benchmarks/evidence.py{' --quick' if plan.quick else ''}` "
        f"({dt.date.today().isoformat()}; {len(data)} experiments; {cpu / 60:.0f} min of CPU time, "
        f"{total / 60:.0f} min wall time summed over experiments, on a shared 2-core {platform.machine()} machine; "
        f"torch on one thread per process; seed 0 everywhere). Raw numbers: "
        f"`benchmarks/results/{plan.prefix}*.json`; this file is re-rendered from them with "
        f"`python benchmarks/evidence.py --render`.\n",
    ]
    if missing:
        intro.append(f"> **Incomplete run**: {len(missing)} experiment(s) not stored yet: {', '.join(missing)}. "
                     "Rerun the command to finish them (finished ones are kept).\n")
    intro += ["## Headline\n", *[h for h in head if h], ""]
    intro += _interpretation(data)
    out = ROOT / "benchmarks" / ("results/evidence_quick.md" if plan.quick else "RESULTS.md")
    out.write_text("\n".join(intro + lines + _reproduce()) + "\n")
    return out


def _interpretation(data: dict) -> list[str]:
    """Verdicts on the paper's MNAR claim, each conditioned on the stored numbers."""
    out = ["## What the numbers say\n"]
    for name in ("synthetic", "support2", "star"):
        base = data.get(f"mnar_{name}_base")
        if not base:
            continue
        top = max(base["rates"])
        mm = mnar_value(base, top, "multimodn", "reversed")[0]
        pf = mnar_value(base, top, "pfusion", "reversed")[0]
        verdict = "more" if mm > pf + 0.02 else ("less" if mm < pf - 0.02 else "about as")
        s = (f"- **{name}**: with per-record skipping and M mid-sequence, MultiModN is {verdict} robust than "
             f"P-Fusion at p = {top:.1f} (reversed AUROC {f3(mm)} vs {f3(pf)}).")
        paper = data.get(f"mnar_{name}_paper")
        if paper:
            pm_, pp = (mnar_value(paper, top, k, "reversed")[0] for k in ("multimodn", "pfusion"))
            c0 = mnar_value(paper, 0.0, "multimodn", "clean")[0]
            c0b = mnar_value(base, 0.0, "multimodn", "clean")[0]
            s += (f" Under the official code's semantics MultiModN's reversed AUROC is {f3(pm_)} (P-Fusion "
                  f"{f3(pp)}), at a clean cost of {sgn(c0 - c0b)} at p = 0 (batch-wide skipping drops M for every "
                  "batch that holds a gap).")
        pb = data.get(f"mnar_{name}_presence-balance")
        if pb:
            a, b = (mnar_value(pb, top, k, "reversed")[0] for k in ("multimodn", "pfusion"))
            generic = abs(a - b) <= 0.03
            s += (f" Presence balancing lifts both models (MultiModN {f3(a)}, P-Fusion {f3(b)}): the gain is "
                  f"{'generic, not specific to MultiModN' if generic else ('larger for MultiModN' if a > b else 'larger for P-Fusion')}.")
        out.append(s)
        own = ceiling_value(pb, top, "multimodn")[0] if pb else math.nan
        ceil = ceiling_value(base, top, "multimodn")[0]
        if pb and not math.isnan(own) and own > ceil + 0.03:
            out.append(f"  Caveat: the presence-balanced model trained at p = 0 scores {f3(own)} on the reversed "
                       f"split, above the unmitigated ceiling {f3(ceil)}. Balancing skips M at random in the class "
                       "where M is more often present, exactly as the reversed split removes M at random from "
                       "label-0 records; the model learns that 'M missing while the modalities usually measured "
                       "with it are present' means label 0, which the reversed split rewards. The reversed split "
                       "therefore flatters random-removal mitigations; the rule-based rows (structured, not random, "
                       "removal) are the harder check.")
    pba = [(n, data.get(f"mnar_{n}_presence-balance-all"), data.get(f"mnar_{n}_base")) for n in
           ("synthetic", "support2", "star")]
    costs = [(n, mnar_value(a, 0.0, "multimodn", "clean")[0] - mnar_value(b, 0.0, "multimodn", "clean")[0])
             for n, a, b in pba if a and b]
    if costs:
        out.append("- **Shifted modality unknown** (balance every modality): clean AUROC at p = 0, i.e. on data whose "
                   "own missingness is informative and not shifted, changes by " +
                   ", ".join(f"{sgn(c)} ({n})" for n, c in costs) +
                   " for MultiModN — the price of giving up informative missingness when it is stable.")
    out.append("")
    return out


def _reproduce() -> list[str]:
    return ["## Reproduce\n",
            "```\npython benchmarks/evidence.py          # resumable; delete a JSON file to recompute it\n"
            "python benchmarks/evidence.py --quick  # < 5 min smoke run -> benchmarks/results/evidence_quick.md\n"
            "python -m mmn_core mnar --dataset support2 --modality chemistry --task death --position middle "
            "--mitigation presence-balance --json\n```"]
