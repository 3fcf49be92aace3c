"""MNAR lab — "What happens when data go missing for a reason?"

Trains MultiModN and P-Fusion with one kind of data removed more often for people with the outcome, and tests
them where that pattern holds (clean) and where it is reversed. Results are cached on disk by configuration.
"""
from __future__ import annotations

import math

import streamlit as st

from mmn_core import SpecError
from mmn_core.experiments import MITIGATIONS, POSITIONS, run_mnar
from mmn_core.sweep import default_workers
from mmn_core.mnar_runs import MAX_RUNS, MnarRun, folds_of, keep_run, position_is_noop, precomputed_run, run_label
from mmn_core.train import MITIGATIONS as TRAIN_MITIGATIONS
from mmn_core.verdicts import mnar_protocol, mnar_robustness, spread_phrase

from app import figures as F
from app import resources as R
from app import state as S
from app.common import active_dataset, md, mod_label, show_error, task_label

ss = st.session_state
name, up, ds = active_dataset()
spec = ds.spec
names = spec.modality_names

st.title("MNAR lab")
st.markdown("In real records, data are often missing **for a reason**: a test is ordered only for sicker people. "
            "A model can then learn that *missing* means *healthy* (or *sick*), and fail when the reason changes. "
            "Here you train both models on data where one kind of data was removed mostly for people with the "
            "outcome, then test them twice: once where missingness follows the same pattern, once where it is "
            "reversed.")
binary = [t.name for t in spec.tasks if t.type == "binary"]
if not binary:
    st.info("This experiment needs a yes/no outcome, and this dataset has none.")
    st.stop()

HELP = {
    "modality": "The kind of data that goes missing. It is removed from a share of the training records that "
                "have the outcome, so its absence becomes a hint about the outcome.",
    "task": "The yes/no outcome the models predict. Missingness is tied to this outcome, and AUROC is measured "
            "on it.",
    "rates": "How many of the training records with the outcome lose the data (0% = no shortcut to learn). The "
             "reversed test set removes the data from the same share of records *without* the outcome.",
    "rule": "'Random' follows the paper: data removed at random among records with the outcome (missing not at "
            "random: it depends on the outcome). A rule from the dataset removes it where a clinical condition on "
            "an observed value does not hold, as a hospital might: that is missing *at random* (MAR), because the "
            "model sees the value the rule reads.",
    "position": "Where the affected data sits in MultiModN's encoding order. Early and late positions can "
                "behave differently, because later steps can learn to correct earlier ones.",
    "semantics": "Per record: each record skips only its own missing data (correct). The paper's code: a step "
                 "is skipped for a whole batch when any record in it lacks the data, as the original code did.",
    "mitigation": "A training option against the shortcut. Presence balancing hides the data at random in the "
                  "other class so that missingness carries no information; dropout hides data for everyone.",
    "models": "MultiModN (blue) encodes data step by step and skips what is missing. P-Fusion (vermillion) "
              "encodes everything at once and fills missing data with the average.",
    "folds": "How many train/test splits the experiment is repeated on. More folds give error bars you can "
             "trust but take proportionally longer.",
    "epochs": "The most passes over the training data per model. Training stops earlier when the validation "
              "loss stops improving; fewer epochs make a faster, rougher run.",
}
default_mod = spec.mnar_rules[0].modality if spec.mnar_rules else names[-1]
c1, c2, c3 = st.columns(3)
modality = c1.selectbox("Data that goes missing", names, key=S.MN_MODALITY,
                        persist_state="session", index=names.index(default_mod),
                        format_func=lambda m: mod_label(spec, m), help=HELP["modality"])
task = c2.selectbox("Outcome", binary, key=S.MN_TASK,
                    persist_state="session", format_func=lambda t: task_label(spec, t), help=HELP["task"])
rate_opts = [round(0.1 * i, 1) for i in range(10)]
rates = c3.multiselect("Missingness rates", rate_opts, default=[0.0, 0.2, 0.4, 0.6, 0.8], key=S.MN_RATES,
                       persist_state="session",
                       format_func=lambda r: f"{100 * r:.0f}%", help=HELP["rates"])
rules = {r.name: r for r in spec.mnar_rules if r.modality == modality}
c1, c2, c3 = st.columns(3)
rule_opts = ["random"] + list(rules)
if ss.get(S.MN_RULE) not in rule_opts:
    ss[S.MN_RULE] = "random"
rule = c1.selectbox("How it goes missing", rule_opts, key=S.MN_RULE, persist_state="session", help=HELP["rule"],
                    format_func=lambda r: "Random among records with the outcome (the paper)" if r == "random"
                    else f"Rule on an observed value (MAR): {rules[r].description or r}")
pos_names = {"spec": "As in the dataset", "first": "First", "middle": "Middle", "last": "Last"}
position = c2.selectbox("Its place in MultiModN's order", list(POSITIONS), key=S.MN_POSITION, persist_state="session",
                        format_func=pos_names.get, help=HELP["position"])
if position_is_noop(names, modality, position):
    c2.info(f"{md(mod_label(spec, modality))} already comes {pos_names[position].lower()} in the dataset's order, "
            "so this choice changes nothing: the run is the same as 'As in the dataset'.",
            icon=":material/info:")
sem_names = {"per-record": "Per record (correct)", "paper": "Whole batch (the paper's code)"}
semantics = c3.selectbox("Skipping", list(sem_names), key=S.MN_SEMANTICS,
                         persist_state="session", format_func=sem_names.get,
                         help=HELP["semantics"])
c1, c2, c3, c4 = st.columns(4)
mitigation = c1.selectbox("Training option", list(MITIGATIONS), key=S.MN_MITIGATION, persist_state="session",
                          format_func=TRAIN_MITIGATIONS.get, help=HELP["mitigation"])
models = c2.multiselect("Models", list(R.KINDS), default=list(R.KINDS), key=S.MN_MODELS, persist_state="session",
                        format_func=R.MODEL_NAMES.get, help=HELP["models"])
folds = c3.number_input("Folds", 1, 5, 2, key=S.MN_FOLDS, persist_state="session", help=HELP["folds"])
epochs = c4.number_input("Epochs (at most)", 1, 100, 15, key=S.MN_EPOCHS, persist_state="session", help=HELP["epochs"])
with st.expander("What the controls mean"):
    for label, key in [("Data that goes missing", "modality"), ("Outcome", "task"), ("Missingness rates", "rates"),
                       ("How it goes missing", "rule"), ("Its place in the order", "position"),
                       ("Skipping", "semantics"), ("Training option", "mitigation"), ("Models", "models"),
                       ("Folds", "folds"), ("Epochs", "epochs")]:
        st.markdown(f"**{label}.** {HELP[key]}")

config = {"dataset": name, "spec": spec.to_json() if up else None, "modality": modality, "task": task,
          "rates": sorted(rates), "folds": int(folds), "epochs": int(epochs), "seed": 0, "position": position,
          "mitigation": mitigation, "semantics": semantics, "rule": None if rule == "random" else rule,
          "models": sorted(models)}
n_train = int(folds) * len(set(rates) | {0.0}) * len(models)
result = R.mnar_cached(config)
all_runs = ss.setdefault(S.MNAR_RUNS, {})
if name not in all_runs:             # first visit: the bundled headline result, labelled as precomputed
    pre = None if up else precomputed_run(name, spec)
    all_runs[name] = [pre] if pre else []
label_now = run_label(spec, config, int(folds), int(epochs))
# the count beside the button, not in a tooltip (a tooltip floated over the button and the expander above it)
with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
    run = st.button("Run the experiment", key=S.MN_RUN, type="primary", disabled=not (rates and models))
    st.caption(f"{n_train} trainings with these settings" if rates and models
               else "Choose at least one rate and one model.", width="stretch")
    if st.button("Clear the runs", key=S.MN_CLEAR, disabled=not all_runs[name],
                 help=f"Up to {MAX_RUNS} runs are overlaid on the chart; this removes them (a result kept on disk "
                      "for the current settings stays)."):
        all_runs[name] = []
if run:
    bar = st.progress(0.0, text=f"Training {n_train} models…")

    def progress(p: dict) -> None:
        total = max(int(p.get("total", n_train)), 1)
        done = int(p.get("done", 0))
        text = f"Training {min(done + 1, total)} of {total}"
        if "model" in p:
            text += (f": {R.MODEL_NAMES.get(p['model'], p['model'])}, {100 * p['rate']:.0f}% missing, "
                     f"split {p['fold']} of {p['folds']}")
        if p.get("epoch"):
            text += f", epoch {p['epoch']}"
        bar.progress(min(done / total, 1.0), text=text)

    try:
        result = run_mnar(ds, modality, task, rates=sorted(rates), folds=int(folds), epochs=int(epochs), seed=0,
                          position=position, mitigation=mitigation, semantics=semantics,
                          rule=None if rule == "random" else rules[rule], models=tuple(sorted(models)),
                          progress=progress, workers=default_workers(n_train))   # trained together, one per core
    except (ValueError, SpecError) as err:
        show_error(err, "Cannot run: ")
        st.stop()
    bar.empty()
    R.mnar_store(config, result)
    ss[S.MNAR_LAST] = config
    all_runs[name] = keep_run(all_runs[name], MnarRun(label_now, result, config))
elif result is not None and not any(r.config == config for r in all_runs[name]):
    all_runs[name] = keep_run(all_runs[name], MnarRun(label_now, result, config))
runs = all_runs[name]
if not runs:
    st.info("Press **Run the experiment** to train them (about a minute with the defaults on the bundled data). "
            "Results are kept, so a second visit with the same settings is instant.")
    st.stop()
latest = runs[-1]
result = latest.result
if latest.precomputed:
    st.caption("Shown until you run your own: the evidence report's result, computed beforehand with the settings "
               "in its label (not with the settings above).")
elif not run and latest.config == config:
    st.caption("Results computed earlier with exactly these settings (kept on disk).")
elif latest.config != config:
    st.caption("The settings above differ from the latest run shown: press **Run the experiment** to add them.")

# the shown run's own settings (not the widgets'): its modality, rule and folds decide the wording
shown_cfg = latest.config or result.get("config") or {}
shown_mod = shown_cfg.get("modality", modality)
shown_rule = shown_cfg.get("rule")
rule_text = None
if shown_rule:
    r_spec = next((r for r in spec.mnar_rules if r.name == shown_rule), None)
    rule_text = (r_spec.description if r_spec and r_spec.description else shown_rule)
words = mnar_protocol(md(mod_label(spec, shown_mod)), md(rule_text) if rule_text else None)
n_folds = folds_of(result)

rows = result["results"]
fig = F.mnar_overlay([(r.label, r.result) for r in runs])
if shown_rule:
    fig.update_xaxes(title="Share of training records where the rule decides whether the data is kept (%)")
st.plotly_chart(fig, key="mn_chart", config={"displayModeBar": False})
if len(runs) > 1:
    st.markdown(f"**Runs on the chart** (up to {MAX_RUNS}, oldest first; the latest is drawn in bold lines, "
                "earlier ones faint with their own marker):\n\n"
                + "\n".join(f"{i}. {md(r.label)}" for i, r in enumerate(runs, 1)))
else:
    st.caption(f"Run shown: {md(latest.label)}")


def summary() -> str:
    """One or two sentences stating the measured result (including when MultiModN is not more robust)."""
    top = max(r["rate"] for r in rows)
    kinds = sorted({r["model"] for r in rows})
    drops = {}
    for kind in kinds:
        base = [r for r in rows if r["model"] == kind and r["rate"] == min(x["rate"] for x in rows)
                and r["test"] == "clean"]
        rev = [r for r in rows if r["model"] == kind and r["rate"] == top and r["test"] == "reversed"]
        if base and rev and not math.isnan(base[0]["auroc"]) and not math.isnan(rev[0]["auroc"]):
            drops[kind] = (base[0]["auroc"], rev[0]["auroc"], rev[0].get("auroc_std") or 0.0)
    if not drops or top == 0:
        return "Add a rate above 0% to see the effect of informative missingness."
    parts = [f"{R.MODEL_NAMES[k]}'s AUROC goes from {a:.2f} (no missingness) to {b:.2f}"
             + (" — worse than guessing" if b < 0.5 else "") for k, (a, b, _) in drops.items()]
    first = words["when"].format(pct=f"{100 * top:.0f}%") + " and ".join(parts) + "."
    verdict = mnar_robustness(result, top)        # the evidence report's verdict function, paired by fold
    if verdict is None:
        return first
    if verdict.n < 2:
        return f"{first} On the reversed test: {verdict.text}."
    return (f"{first} On the reversed test: {verdict.text} "
            f"(interval over {verdict.n} folds, corrected for overlapping training sets).")


st.info(f"**What you are seeing.** {summary()}", icon=":material/visibility:")
st.caption(f"In training, {words['train']}. Solid lines: test set where data is missing in the same way as in "
           f"training. Dashed: {words['reversed']}. Dotted: each model trained without added missingness, scored "
           "on the reversed set — a reference, not a ceiling: it still learns the data's own missingness pattern. "
           f"{spread_phrase(n_folds)}.")
with st.expander("All numbers"):
    import pandas as pd
    st.dataframe(pd.DataFrame([{"Rate": f"{100 * r['rate']:.0f}%", "Model": R.MODEL_NAMES[r["model"]],
                                "Test set": r["test"], "AUROC": round(r["auroc"], 3),
                                "± sd": round(r.get("auroc_std") or 0.0, 3),
                                "Balanced accuracy": round(r["balanced_accuracy"], 3)} for r in rows]),
                 hide_index=True, key="mn_table")
    cfg = result.get("config", {})
    if cfg.get("seconds"):
        st.caption(f"This run's trainings took {cfg['seconds']:.0f} s.")
