"""Small helpers shared by the pages: safe text, display names from the spec, the active bundle."""
from __future__ import annotations

import numpy as np
import streamlit as st

from mmn_core import CheckpointError, SpecError
from mmn_core.fmt import is_identifier

from . import escape
from . import resources as R
from . import state as S
from .figures import number, pct, with_units

STATE_HELP = ("The model's 'state' is a short list of numbers (its memory) that it carries from one step to the "
              "next: each kind of data updates it, and every prediction is read from it.")


def md(text) -> str:
    """User text (file, column, record names) for a Markdown slot (st.markdown, labels, captions, alerts):
    every Markdown/HTML/emoji/LaTeX character is backslash-escaped, so it shows literally."""
    return escape.markdown(text)


def label_md(text) -> str:
    """User text for a widget label: escaped only where Markdown would act, so an ordinary name such as
    'Vital signs (day 3)' stays exactly as it is — Streamlit also uses the label string as the control's
    accessible name (aria-label), where every backslash would be read aloud."""
    return escape.label(text)


def swatch(color: str) -> str:
    """A coloured dot for a Markdown label (the colour is ours, never user text)."""
    return f':color[●]{{foreground="{color}"}}'


def mod_label(spec, name: str) -> str:
    return spec.modality(name).display


def task_label(spec, name: str) -> str:
    return spec.task(name).display


def col_label(mspec, column: str) -> str:
    return mspec.column_labels.get(column, column)


def class_names(task, classes: list[str] | None) -> list[str] | None:
    """The plain names of a task's classes (spec `class_labels`), in the model's class order."""
    return None if classes is None else [task.class_display(c) for c in classes]


def value_text(task, value, classes=None) -> str:
    """A final prediction as a reader sees it: '63%', '12.4 points', or 'Severe illness impact (54%)'.
    classes: the model's class values; shown by their plain names (task.class_display)."""
    if task.type == "binary":
        return pct(float(value))
    if task.type == "multiclass":
        v = np.asarray(value, dtype=float)
        c = int(v.argmax())
        return f"{task.class_display(classes[c])} ({pct(v[c])})"
    return with_units(float(value), task.units)


def actual_text(task, label, classes=None) -> str:
    """What actually happened, in plain words (class values by their plain names)."""
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return "not recorded"
    if task.type == "regression":
        return with_units(float(label), task.units)
    return task.class_display(classes[int(label)])


def raw_text(value, units: str = "", column: str = "") -> str:
    """A raw data value for display ('112 beats/min', 'female', 'not measured'); a whole number in an identifier
    column (fmt.is_identifier: 'birth_year', 'patient_id') without thousands separators ('1980')."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "not measured"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        if float(value).is_integer() and is_identifier(column):
            return f"{float(value):.0f} {units}".strip()
        return f"{number(float(value))} {units}".strip()
    return f"{value} {units}".strip()


def show_error(err: Exception, what: str = "") -> None:
    """One clear line for bad input, never a traceback."""
    st.error(f"{what}{md(err)}" if what else md(err), icon="⚠️")


def active_dataset():
    """(name, upload info or None, Dataset) of the sidebar's dataset; a clear st.error and st.stop() if it cannot
    be read."""
    name = st.session_state.get(S.DATASET) or R.DEFAULT_DATASET
    up = st.session_state.get(S.UPLOADS, {}).get(name)
    try:
        return name, up, R.get_dataset(name, up["spec"] if up else "", up["data"] if up else "")
    except (SpecError, OSError) as err:
        show_error(err, "Cannot read this dataset: ")
        st.stop()


def require_bundle() -> R.Bundle:
    """The active bundle, or a clear message and st.stop()."""
    ref = R.active_ref(st.session_state)
    name = st.session_state.get(S.DATASET) or R.DEFAULT_DATASET
    if ref is None:
        if name in st.session_state.get(S.UPLOADS, {}):
            st.info("This uploaded dataset has no model yet: train one on the **Model** page.", icon="ℹ️")
        else:
            st.error(f"No trained model found for this dataset: the shipped checkpoint "
                     f"{md(R.shipped_dir(name, 'multimodn'))} is missing. Train one on the **Model** page, or "
                     f"rebuild the shipped ones with `python data/train_checkpoints.py`.", icon="⚠️")
        st.stop()
    try:
        return R.get_bundle(ref)
    except (SpecError, CheckpointError, OSError) as err:
        show_error(err, "Cannot open the model: ")
        st.stop()
