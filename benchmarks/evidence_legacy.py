"""The single-seed results of the first evidence run (2026-11-26), rendered as stored: tables only, no verdicts.

These experiments (multi-task, state size, encoder order, scaling, and the MNAR settings not re-run with
seeds) were not repeated at the seeded scale; `evidence_report` renders them in a clearly labelled section.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

MODEL = {"multimodn": "MultiModN", "pfusion": "P-Fusion"}
SETTING_LABELS = {
    "base": "per-record, M in the middle, no mitigation",
    "first": "per-record, M first",
    "last": "per-record, M last",
    "paper": "paper semantics (batch-wide skip, batch 16, unshuffled, file-order removal)",
    "presence-balance": "presence balancing of M",
    "presence-balance-all": "presence balancing of every modality (M unknown)",
    "modality-dropout": "modality dropout 0.3",
    "shuffle-order": "shuffle-order training",
    "last-presence-balance": "M last + presence balancing of M",
}

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


def without_value(data: dict, name: str, model: str) -> float:
    """AUROC of the model trained and tested without M at all (same folds): what M's values are worth."""
    w = data.get(f"mnar_{name}_without-m")
    return w["auroc"][model]["mean"] if w and model in w["auroc"] else math.nan


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
            w = without_value(data, name, m)
            if not math.isnan(w):
                ax.axhline(w, color=colors[m], ls="-.", lw=0.8, label=f"{MODEL[m]} without M")
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



def section_multitask(data: dict, lines: list, head: list) -> None:
    keys = sorted(k for k in data if k.startswith("multitask_"))
    if not keys:
        return
    lines.append("### Multi-task: each task alone vs all tasks together (single seed)\n")
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



HEAD_SETTINGS = ("base", "first", "last", "paper", "presence-balance", "presence-balance-all", "modality-dropout",
                 "shuffle-order", "last-presence-balance")
DATASETS = ("synthetic", "support2", "star")


def mnar_headline_table(data: dict) -> list[str]:
    """Reversed-test AUROC at the largest rate: settings × (dataset, model), with the two references."""
    sets = [n for n in DATASETS if f"mnar_{n}_base" in data]
    if not sets:
        return []
    top = max(data[f"mnar_{sets[0]}_base"]["rates"])
    cols = [(n, m) for n in sets for m in ("multimodn", "pfusion")]
    rows = []
    for sid in HEAD_SETTINGS:
        if not any(f"mnar_{n}_{sid}" in data for n in sets):
            continue
        row = [SETTING_LABELS.get(sid, sid)]
        for n, m in cols:
            res = data.get(f"mnar_{n}_{sid}")
            row.append(f3(mnar_value(res, top, m, "reversed")[0]) if res and m in res["config"]["models"] else "")
        rows.append(row)
    rows.append(["*p = 0 model* (no injected missingness; not a ceiling)"] +
                [f3(ceiling_value(data[f"mnar_{n}_base"], top, m)[0]) for n, m in cols])
    rows.append(["*p = 0 model under paper semantics*"] +
                [f3(ceiling_value(data[f"mnar_{n}_paper"], top, m)[0]) if f"mnar_{n}_paper" in data else ""
                 for n, m in cols])
    rows.append(["*without M* (M never seen)"] + [f3(without_value(data, n, m)) for n, m in cols])
    hdr = ["reversed test, AUROC at p = " + f"{top:.1f}"] + [f"{n} {MODEL[m]}" for n, m in cols]
    return [table(hdr, rows), ""]


def section_open(data: dict, lines: list, head: list, results: Path, plot_prefix: str) -> None:
    lines.append("### Open questions of the paper (single seed)\n")
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
                     f"{sc['epochs_timed']} epochs, the first (lazy initialisation) left out of the CPU figure. CPU time "
                     "of the training thread is the load-independent figure; wall time depends on the shared "
                     "machine's load. "
                     "Memory = peak resident memory during training minus the resident memory before it (sampled "
                     "every 5 ms; each configuration in its own process).\n")
        rows, s_mod, s_task = [], {}, {}
        for r in sc["results"]:
            cpu = r.get("cpu_seconds_per_epoch", r["seconds_per_epoch"])
            rows.append([r["modalities"], r["tasks"], MODEL[r["model"]], f"{r['params']:,}", f"{cpu:.3f}",
                         f"{r['seconds_per_epoch']:.3f}", f"{r['peak_rss_growth_mb']:.1f}"])
            series = s_mod if r["tasks"] == 3 else None
            if r["modalities"] == 6:
                s_task.setdefault(MODEL[r["model"]] + " (6 modalities, by tasks)", ([], []))
                s_task[MODEL[r["model"]] + " (6 modalities, by tasks)"][0].append(r["tasks"])
                s_task[MODEL[r["model"]] + " (6 modalities, by tasks)"][1].append(cpu)
            if series is not None:
                s_mod.setdefault(MODEL[r["model"]], ([], []))
                s_mod[MODEL[r["model"]]][0].append(r["modalities"])
                s_mod[MODEL[r["model"]]][1].append(cpu)
        lines.append(table(["modalities", "tasks", "model", "parameters", "CPU s / epoch", "wall s / epoch",
                            "training memory (MB)"], rows))
        img = _plot_xy(s_mod, "number of modalities (3 tasks)", "CPU seconds per epoch",
                       "Epoch CPU time vs number of modalities", results / f"{plot_prefix}scaling_modalities.png")
        if img:
            lines.append(f"\n![scaling]({'results/' + img})\n")
        img = _plot_xy({k.split(" (")[0]: v for k, v in s_task.items()}, "number of tasks (6 modalities)",
                       "CPU seconds per epoch", "Epoch CPU time vs number of tasks",
                       results / f"{plot_prefix}scaling_tasks.png")
        if img:
            lines.append(f"\n![scaling]({'results/' + img})\n")
        lines.append("")



def section_speed(results: Path, lines: list) -> None:
    found = sorted(p for p in results.glob("*.json")
                   if not p.name.startswith(("evidence_", "explain_evidence")))   # explain evidence: §6
    lines.append("## 5. Speed (each benchmark's own result file)\n")
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




def section_parity_legacy(data: dict, lines: list, skip: set[str]) -> None:
    """The first run's parity tables (seed 0, 5 folds; mean ± sd over folds) for the datasets in `data` not in
    `skip` (those with seeded results)."""
    keys = [k for k in sorted(data) if k.startswith("parity_") and k.split("_", 1)[1] not in skip]
    if not keys:
        return
    lines.append("### Parity: MultiModN vs P-Fusion (single seed)\n")
    for key in keys:
        res = data[key]
        rows = []
        for task, entry in res["tasks"].items():
            for m in (("auroc", "balanced_accuracy") if entry["type"] != "regression" else ("mae", "rmse")):
                a, b, d = entry["multimodn"], entry["pfusion"], res["paired"][task][m]
                rows.append([task, entry["type"], m, pm(a[m], a[f"{m}_std"]), pm(b[m], b[f"{m}_std"]),
                             f"{sgn(d['mean'])} ± {f3(d['sd'])}"])
        lines.append(f"**{res['dataset']}** ({res['folds']} folds)\n")
        lines.append(table(["task", "type", "metric", "MultiModN", "P-Fusion", "Δ paired (mean ± sd)"], rows))
        lines.append("")
