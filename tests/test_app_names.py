"""Dashboard (AppTest): a dataset whose modalities and outcomes are named as on a slide (spaces, capitals,
unicode, brackets, a torch-reserved 'train') uploads, trains and opens in the Explorer, every name as written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from app import resources as R
from app import uploads as U
from app import state as S

APP = str(Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py")
MODS = ["liver panel", "Week 20 CD4", "Stage (I–IV)", "train"]
TASK = "Death (1 yr)"


def test_slide_names_upload_train_and_explore(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path)
    rng = np.random.default_rng(0)
    n = 80
    frame = pd.DataFrame({"patient id": [f"p {i}" for i in range(n)], "ALT (U/L)": rng.normal(30, 5, n),
                          "CD4 ⁺": rng.normal(500, 50, n), "stage": rng.choice(["I", "II", "III"], n),
                          "Blutdruck ä": rng.normal(120, 10, n), "died": rng.integers(0, 2, n)})
    frame.loc[::3, "ALT (U/L)"] = np.nan
    cols = ["ALT (U/L)", "CD4 ⁺", "stage", "Blutdruck ä"]
    spec = "name: slides\nid_column: patient id\nmodalities:\n" + "".join(
        f"- name: '{m}'\n  columns: ['{c}']\n" for m, c in zip(MODS, cols)) + \
        f"tasks:\n- name: '{TASK}'\n  column: died\n  type: binary\n"
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("views/model.py").run()
    at.radio(key=S.MD_SOURCE).set_value("Use your own data").run()
    at.file_uploader(key=S.MD_UPLOAD_DATA).set_value([("data.csv", frame.to_csv(index=False).encode(), "text/csv")])
    at.file_uploader(key=S.MD_UPLOAD_SPEC).set_value(("spec.yaml", spec.encode("utf-8"), "text/yaml"))
    at.run()
    at.button(key=S.MD_USE_UPLOAD).click().run()
    assert not at.exception and not at.error, [e.value for e in list(at.exception) + list(at.error)]
    at.radio(key=S.MD_SOURCE).set_value("Train here").run()
    at.number_input(key=S.MD_EPOCHS).set_value(1)
    at.multiselect(key=S.MD_KINDS).set_value(["multimodn"])
    at.run()
    at.button(key=S.MD_TRAIN).click().run()
    assert not at.exception and not at.error, [e.value for e in list(at.exception) + list(at.error)]
    at.switch_page("views/explorer.py").run()
    assert not at.exception, [e.value for e in at.exception]
    ds = R.get_dataset(at.session_state[S.DATASET], *[at.session_state[S.UPLOADS][at.session_state[S.DATASET]][k]
                                                      for k in ("spec", "data")])
    keys = ds.spec.modality_names
    assert "train" not in keys and len(set(keys)) == 4
    assert [at.toggle(key=S.modality_key(S.EX_USE, m)).label for m in keys] == MODS   # as written, no escapes
    assert at.metric and at.metric[0].label == TASK
