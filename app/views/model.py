"""Model — "What is this model, and can I trust it?" Data summary, where the model comes from (shipped, a folder,
trained here, or your own data), and the model card."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pandas as pd
import streamlit as st

from mmn_core import CheckpointError, ModelConfig, SpecError, TrainConfig, save, train_model
from mmn_core.checkpoint import load_zip, to_zip
from mmn_core.train import MITIGATIONS, mitigation_options

from app import figures as F
from app import resources as R
from app import state as S
from app import uploads as U
from app.common import active_dataset, md, mod_label, require_bundle, show_error

ss = st.session_state
uploads = ss.setdefault(S.UPLOADS, {})
models = ss.setdefault(S.MODELS, {})

st.title("Model")

# --- the data -------------------------------------------------------------------------------------------------------
name, up, ds = active_dataset()
spec = ds.spec
names = spec.modality_names
colors = F.modality_colors(names)
st.header(md(spec.title or spec.name))
if spec.description:
    st.markdown(md(spec.description))
pres = ds.presence()
c1, c2 = st.columns([1.3, 1], gap="large")
with c1:
    st.plotly_chart(F.presence_bars(names, [mod_label(spec, m) for m in names], pres.mean().to_numpy(), colors),
                    key="md_presence_chart", config={"displayModeBar": False})
with c2:
    st.metric("Records", f"{len(ds):,}")
    st.caption("Each bar: the share of records in which that kind of data was measured. The model skips what "
               "is missing, record by record.")
rows = []
for t in spec.tasks:
    y = ds.frame[t.column]
    if t.type == "regression":
        bal = f"mean {F.number(float(y.mean()))} {t.units}".strip()
    else:
        vc = y.dropna().astype(str).value_counts(normalize=True)
        bal = " · ".join(f"{t.class_display(k)}: {F.pct(v)}" for k, v in vc.items())
    kind = {"binary": "yes / no", "multiclass": "categories", "regression": "a number"}[t.type]
    rows.append({"Outcome": md(t.display), "Type": kind, "Known for": f"{y.notna().mean():.0%} of records",
                 "How the records are split (balance)": md(bal)})
st.markdown("**Outcomes the model predicts**")
# st.table wraps long cells (a multiclass outcome's balance lists every class in full); its cells are Markdown,
# hence md() on text from the spec and the data
with st.container(key="md_task_table"):
    st.table(pd.DataFrame(rows), hide_index=True)
with st.expander("What each kind of data contains"):
    with st.container(key="md_modality_table"):         # st.table: descriptions wrap instead of being cut off
        st.table(pd.DataFrame([{"Kind of data": md(m.display), "Description": md(m.description),
                                "Values": len(m.columns), "Over time": "yes" if m.kind == "sequence" else "no",
                                "Measured in": F.pct(pres[m.name].mean())} for m in spec.modalities]),
                 hide_index=True)

# --- where the model comes from -----------------------------------------------------------------------------------
st.header("Where the model comes from")
if ss.pop("_md_training", None):
    st.warning("Training was interrupted; the previous model is still the active one.")
sources = ["Shipped with the app", "Load a checkpoint folder", "Train here", "Use your own data"]
src = st.radio("Source", sources, key=S.MD_SOURCE,
               persist_state="session", horizontal=True, label_visibility="collapsed")

if src == sources[0]:
    if up:
        st.info("Uploaded data has no shipped model: train one with **Train here**.")
    else:
        shipped = {k: R.shipped_dir(name, k) for k in R.KINDS}
        have = {k: (d / "config.json").is_file() for k, d in shipped.items()}
        st.write(", ".join(f"{R.MODEL_NAMES[k]}: {'available' if have[k] else 'missing'}" for k in R.KINDS))
        if name in models:
            if st.button("Use the shipped models again", key=S.MD_LOAD):
                models.pop(name)
                ss[S.NOTICE] = "Using the shipped models."
                st.rerun()
        elif not have["multimodn"]:
            st.error(f"The shipped MultiModN checkpoint is missing ({md(shipped['multimodn'])}). Rebuild it with "
                     f"`python data/train_checkpoints.py`, or train one here.")
        else:
            st.success("The shipped models are active.")

elif src == sources[1]:
    st.text_input("Checkpoint folder (with config.json and model.safetensors)", key=S.MD_PATH, persist_state="session",
                  placeholder="/path/to/checkpoint")

    def use_checkpoint(trained, path: Path) -> None:
        """Make a loaded checkpoint the active model of its kind for this dataset (same spec only)."""
        if trained.spec.to_json() != spec.to_json():
            raise CheckpointError("this checkpoint was trained on a different dataset description than the "
                                  "one selected in the sidebar")
        entry = dict(models.get(name) or (R.default_models(name) if not up else {}))
        entry[trained.kind] = str(Path(path).resolve())
        models[name] = entry
        ss[S.NOTICE] = f"Loaded a {R.MODEL_NAMES[trained.kind]} model."
        st.rerun()

    if st.button("Load", key=S.MD_LOAD, type="primary"):
        path = (ss.get(S.MD_PATH) or "").strip()
        try:
            if not path:
                raise CheckpointError("enter the folder of a checkpoint")
            use_checkpoint(R.load_trained(path), Path(path))
        except (CheckpointError, SpecError, OSError) as err:
            show_error(err, "Cannot load the checkpoint: ")
    # The .zip this page downloads, uploaded again: unpacked (two files only, size caps, no paths taken from
    # the archive) into the private cache under its content hash, then loaded with every checkpoint check.
    st.file_uploader("Or upload a checkpoint .zip (as downloaded from this page)", type=["zip"],
                     key=S.MD_UPLOAD_CKPT)
    if st.button("Load the .zip", key=S.MD_LOAD_ZIP):
        zipped = ss.get(S.MD_UPLOAD_CKPT)
        try:
            if zipped is None:
                raise CheckpointError("choose a .zip first")
            blob = zipped.getvalue()
            folder = U.private_dir(U.CACHE_DIR / "checkpoints") / hashlib.sha256(blob).hexdigest()[:32]
            use_checkpoint(load_zip(blob, folder), folder)
        except (CheckpointError, SpecError, OSError) as err:
            show_error(err, "Cannot load the checkpoint: ")

elif src == sources[2]:
    c1, c2, c3, c4, c5 = st.columns(5)
    kinds = c1.multiselect("Models", list(R.KINDS), default=list(R.KINDS), key=S.MD_KINDS, persist_state="session",
                           format_func=R.MODEL_NAMES.get)
    epochs = c2.number_input("Epochs (at most)", 1, 200, 30, key=S.MD_EPOCHS, persist_state="session",
                             help="Training stops earlier when the validation loss stops improving.")
    state_size = c3.number_input("State size", 4, 128, 32, key=S.MD_STATE, persist_state="session",
                                 help="How many numbers the model's memory (state) holds between steps.")
    seed = c4.number_input("Seed", 0, 10_000, 0, key=S.MD_SEED,
                           persist_state="session", help="Same seed, same split and same model.")
    mitigations = [m for m in MITIGATIONS if m != "presence-balance"]   # no shifted modality on this page
    mit = c5.selectbox("Training option", mitigations, key=S.MD_MITIGATION,
                       persist_state="session", format_func=MITIGATIONS.get,
                       help="Presence balancing hides data at random so that whether data is present says nothing "
                            "about the outcome. Modality dropout hides data at random for everyone.")
    go = st.button("Train", key=S.MD_TRAIN, type="primary", disabled=not kinds)
    if go:
        first_cls = next((t.name for t in spec.tasks if t.type != "regression"), None)
        if mit.startswith("presence-balance") and first_cls is None:
            st.error("Presence balancing needs a yes/no or category outcome to balance against; this data has none.")
            st.stop()
        opts = {"epochs": int(epochs), "seed": int(seed), **mitigation_options(mit, names, first_cls)}
        config, mconfig = TrainConfig(**opts), ModelConfig(state_size=int(state_size))
        st.button("Cancel", key=S.MD_CANCEL, help="Stops training; the previous model stays active.")
        ss["_md_training"] = True
        bar = st.progress(0.0, text="Starting…")
        chart = st.empty()
        histories: dict[str, list] = {}
        out_dirs = {}
        folder = U.private_dir(U.CACHE_DIR / "trained") / uuid.uuid4().hex[:12]
        try:
            for i, kind in enumerate(kinds):
                histories[kind] = []

                def progress(row, kind=kind, i=i):
                    histories[kind].append(row)
                    frac = (i + row["epoch"] / row["epochs"]) / len(kinds)
                    bar.progress(min(frac, 1.0), text=f"{R.MODEL_NAMES[kind]}: epoch {row['epoch']}, "
                                                      f"validation loss {row.get('val_loss', float('nan')):.4f}")
                    chart.plotly_chart(F.history_chart(histories), config={"displayModeBar": False})

                trained = train_model(ds, kind, mconfig, config, progress=progress)
                out_dirs[kind] = str(save(trained, folder / f"{name}-{kind}"))
        except (ValueError, CheckpointError, OSError, RuntimeError, MemoryError) as err:
            # a failure, not an interruption (a Cancel click or a rerun never reaches here): say why, once
            ss.pop("_md_training", None)
            bar.empty()
            show_error(err if str(err) else type(err).__name__, "Training failed; the previous model is still "
                       "the active one: ")
            st.stop()
        ss.pop("_md_training", None)
        entry = dict(models.get(name) or (R.default_models(name) if not up else {}))
        entry.update(out_dirs)
        if "multimodn" not in entry or not entry["multimodn"]:
            st.warning("Only P-Fusion was trained: the Explorer needs a MultiModN model too.")
        models[name] = entry
        ss[S.TRAIN_LOG] = histories
        ss[S.NOTICE] = "Training finished: every page now uses the new model."
        st.rerun()

else:
    st.markdown("Upload a table (CSV or Parquet) and a spec (YAML) that says which columns form which kind of "
                "data and which are outcomes (see `data/support2/spec.yaml` for an example). Files up to "
                f"{U.UPLOAD_CAP_TEXT}; everything stays on this computer.")
    c1, c2 = st.columns(2)
    tables = c1.file_uploader("Data table(s)", type=["csv", "gz", "parquet"], accept_multiple_files=True,
                              key=S.MD_UPLOAD_DATA)
    spec_file = c2.file_uploader("Spec (YAML)", type=["yaml", "yml"], key=S.MD_UPLOAD_SPEC)
    if st.button("Check and use this data", key=S.MD_USE_UPLOAD, type="primary",
                 disabled=not (tables and spec_file)):
        try:
            key, info = U.register_upload((spec_file.name, spec_file.getvalue()),
                                          [(f.name, f.getvalue()) for f in tables],
                                          check=lambda k, i: R.get_dataset(k, i["spec"], i["data"]))
            uploads[key] = info
            ss["_pending_dataset"] = key
            ss[S.NOTICE] = "Data accepted. Train a model on it with 'Train here'."
            st.rerun()
        except (SpecError, OSError) as err:
            problems = getattr(err, "problems", None) or []
            if len(problems) > 1:        # every problem at once, one bullet each (the text escaped by md)
                st.error(f"This upload cannot be used — {len(problems)} problems:\n\n"
                         + "\n".join(f"- {md(p)}" for p in problems), icon="⚠️")
            else:
                show_error(err, "This upload cannot be used: ")

# --- the model card -------------------------------------------------------------------------------------------------
st.header("Model card")
ref = R.active_ref(ss)
if ref is None:
    st.info("No MultiModN model is active for this dataset yet.")
    st.stop()
b = require_bundle()
tr = b.trained
info = tr.info
rws = info.get("rows", {})
c1, c2, c3 = st.columns(3)
c1.metric("Training records", f"{rws.get('train', 0):,}")
c2.metric("Validation records", f"{rws.get('validation', 0):,}")
c3.metric("Test records", f"{rws.get('test', 0):,}")
cfg = info.get("train_config", {})
st.caption(f"State size {tr.model.config.state_size}; {len(tr.history)} epochs; seed {cfg.get('seed', '?')}. "
           "All scores below are on the test records, which the model never saw.")
metric_opts = {"auroc": "AUROC", "balanced_accuracy": "Balanced accuracy", "accuracy": "Accuracy"}
met = st.selectbox("Measure", list(metric_opts), key=S.MD_METRIC, persist_state="session", format_func=metric_opts.get)
steps = ["Prior"] + [mod_label(spec, m) for m in tr.metrics["steps"][1:]]
per_task = {t.name: (met if t.type != "regression" else "r2") for t in spec.tasks}
st.plotly_chart(F.metric_heatmap(tr.metrics, [t.name for t in spec.tasks], [t.display for t in spec.tasks], steps,
                                 per_task), key="md_matrix_chart", config={"displayModeBar": False})
hist = {"multimodn": tr.history}
if b.pf is not None:
    hist["pfusion"] = b.pf.history
    rows = []
    for t in spec.tasks:
        key = "auroc" if t.type != "regression" else "mae"
        rows.append({"Outcome": t.display, "Measure": "AUROC" if key == "auroc" else f"MAE ({t.units})",
                     "MultiModN": round(tr.metrics["tasks"][t.name][key][-1], 3),
                     "P-Fusion": round(b.pf.metrics["tasks"][t.name][key][-1], 3)})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="md_compare_table")
st.plotly_chart(F.history_chart(hist), key="md_history_chart", config={"displayModeBar": False})

st.subheader("Save this model")
c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
c1.text_input("Folder to save to", key=S.MD_SAVE_PATH, persist_state="session", placeholder="/path/to/new-folder")
if c2.button("Save", key=S.MD_SAVE):
    target = (ss.get(S.MD_SAVE_PATH) or "").strip()
    try:
        if not target:
            raise CheckpointError("enter a folder to save to")
        path = save(tr, target)
        st.success(f"Saved to {md(path)}")
    except (CheckpointError, OSError) as err:
        show_error(err, "Cannot save: ")


def _zip() -> bytes:
    return to_zip(ref.mmn_dir, f"{name}-multimodn")


st.download_button("Download the checkpoint (.zip)", data=_zip, file_name=f"{name}-multimodn.zip",
                   mime="application/zip", key=S.MD_DOWNLOAD, on_click="ignore")
