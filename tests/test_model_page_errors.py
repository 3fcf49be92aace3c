"""Model page (AppTest): a training run that fails shows its cause in one st.error, and never the
"Training was interrupted" notice that belongs to a cancelled run."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from app import uploads as U
from app import state as S

APP = str(Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py")
INTERRUPTED = "Training was interrupted"


def _texts(at: AppTest) -> list[str]:
    return [el.value for el in list(at.error) + list(at.warning) + list(at.info) + list(at.success)]


def test_a_training_error_is_shown_with_its_cause_not_as_an_interruption(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("views/model.py").run()
    at.radio(key=S.MD_SOURCE).set_value("Use your own data").run()
    # two records load and describe fine, but cannot be split into training, validation and test parts
    csv = b"id,a,b,y\nr1,1.0,2.0,0\nr2,3.0,4.0,1\n"
    spec = (b"name: tiny\nid_column: id\nmodalities:\n- name: first\n  columns: [a]\n- name: second\n"
            b"  columns: [b]\ntasks:\n- name: y\n  column: y\n  type: binary\n")
    at.file_uploader(key=S.MD_UPLOAD_DATA).set_value([("data.csv", csv, "text/csv")])
    at.file_uploader(key=S.MD_UPLOAD_SPEC).set_value(("spec.yaml", spec, "text/yaml"))
    at.run()
    at.button(key=S.MD_USE_UPLOAD).click().run()
    assert not at.exception and not at.error, _texts(at)
    at.radio(key=S.MD_SOURCE).set_value("Train here").run()
    at.number_input(key=S.MD_EPOCHS).set_value(1)
    at.multiselect(key=S.MD_KINDS).set_value(["multimodn"])
    at.run()
    at.button(key=S.MD_TRAIN).click().run()
    assert not at.exception, [e.value for e in at.exception]            # no "This app has encountered an error"
    assert len(at.error) == 1, _texts(at)
    msg = at.error[0].value
    assert "Training failed" in msg and "too few to split" in msg and "\n" not in msg
    assert not any(INTERRUPTED in t for t in _texts(at))
    at.run()                                                           # the next rerun does not call it a cancel
    assert not at.exception and not any(INTERRUPTED in t for t in _texts(at)), _texts(at)
    assert at.session_state[S.DATASET] not in at.session_state[S.MODELS]   # nothing was registered as trained
