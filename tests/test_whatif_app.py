"""AppTest of the Explorer's 'What if a value were different?' expander, on the shipped SUPPORT2 checkpoints: the
sentence and the edited path on the focus chart are the engine's numbers (mmn_core.explain.whatif); the reset
button restores the record's value; a value the model cannot read is an st.error, not a traceback."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import figures as F
from app import state as S
from app.common import md
from mmn_core.explain import whatif as W

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(),
                                reason="shipped checkpoints missing: run python data/train_checkpoints.py")


@pytest.fixture(scope="module")
def engine():
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    ds = load_dataset("support2")
    data = trained.prep.transform(ds)
    return trained, ds, data, {r: i for i, r in enumerate(data.ids)}


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]


def _chart(at, key):
    def dec(v):
        if isinstance(v, dict) and "bdata" in v:
            return np.frombuffer(base64.b64decode(v["bdata"]), v["dtype"]).astype(float).tolist()
        if isinstance(v, dict):
            return {k: dec(x) for k, x in v.items()}
        if isinstance(v, list):
            return [dec(x) for x in v]
        return v
    return dec(json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec))


def _whatif_traces(fig):
    return [t for t in fig["data"] if t.get("line", {}).get("color") == F.WHATIF_COLOR and t.get("x") != [None]]


def test_setting_a_value_shows_the_engine_sentence_and_path(engine):
    trained, ds, data, pos = engine
    at = AppTest.from_file(APP, default_timeout=120).run()
    _ok(at)
    rid = at.session_state[S.EX_RECORD]
    row = pos[rid]
    names = list(at.session_state[S.EX_ORDER])
    use = [m for m in names if at.toggle(key=S.modality_key(S.EX_USE, m)).value]
    assert "vitals" in use
    at.selectbox(key=S.EX_WI_MODALITY).set_value("vitals").run()
    at.selectbox(key=S.EX_WI_FEATURE).set_value("hrt").run()
    _ok(at)
    old = float(ds.frame.iloc[row]["hrt"])
    assert at.number_input(key=S.EX_WI_NUMBER).value == pytest.approx(old)     # starts at the record's value
    assert not _whatif_traces(_chart(at, "ex_chart__death"))                 # nothing drawn before an edit
    at.number_input(key=S.EX_WI_NUMBER).set_value(old + 60).run()
    _ok(at)
    mask = {m: np.array([m in use]) for m in trained.spec.modality_names}
    want = W.what_if(trained, ds, row, {("vitals", "hrt"): old + 60}, mask, names)
    sentence = W.sentence(trained, want, "death")
    shown = [m.value for m in at.markdown]
    assert f"**{md(sentence)}**" in shown, shown
    assert sentence.startswith(f"With Heart rate = {W.raw_words(old + 60, 'beats/min')} instead of "
                               f"{W.raw_words(old, 'beats/min')}, the final death")
    # the focus chart carries the edited path: 100 × the engine's edited risks, one point per step
    path = _whatif_traces(_chart(at, "ex_chart__death"))
    assert len(path) == 1
    assert np.allclose(path[0]["y"], 100 * want.edited["death"], atol=1e-9)
    assert not np.allclose(want.edited["death"], want.original["death"])
    assert not _whatif_traces(_chart(at, "ex_chart__death_180d"))             # only the focus outcome's chart
    # reset: the record's own value again, no sentence, no path
    at.button(key=S.EX_WI_RESET).click().run()
    _ok(at)
    assert at.number_input(key=S.EX_WI_NUMBER).value == pytest.approx(old)
    assert f"**{md(sentence)}**" not in [m.value for m in at.markdown]
    assert not _whatif_traces(_chart(at, "ex_chart__death"))


def test_a_category_edit_and_a_refused_value(engine):
    trained, ds, data, pos = engine
    at = AppTest.from_file(APP, default_timeout=120).run()
    rid = at.session_state[S.EX_RECORD]
    row = pos[rid]
    names = list(at.session_state[S.EX_ORDER])
    use = [m for m in names if at.toggle(key=S.modality_key(S.EX_USE, m)).value]
    at.selectbox(key=S.EX_WI_MODALITY).set_value("demographics").run()
    at.selectbox(key=S.EX_WI_FEATURE).set_value("sex").run()
    cur = ds.frame.iloc[row]["sex"]
    assert at.selectbox(key=S.EX_WI_CATEGORY).value == cur
    assert at.selectbox(key=S.EX_WI_CATEGORY).options == ["female", "male"]
    other = "male" if cur == "female" else "female"
    at.selectbox(key=S.EX_WI_CATEGORY).set_value(other).run()
    _ok(at)
    mask = {m: np.array([m in use]) for m in trained.spec.modality_names}
    want = W.what_if(trained, ds, row, {("demographics", "sex"): other}, mask, names)
    assert f"**{md(W.sentence(trained, want, 'death'))}**" in [m.value for m in at.markdown]
    # a number beyond the training records' values: computed, with a warning naming that range
    at.selectbox(key=S.EX_WI_FEATURE).set_value("age").run()
    at.number_input(key=S.EX_WI_NUMBER).set_value(130.0).run()
    _ok(at)
    lo, hi = W.seen_range(trained, ds, "demographics", "age")
    warn = f"{md(W.raw_words(130.0, 'years'))} is outside the values of the records the model learned from " \
           f"({md(W.raw_words(lo, 'years'))} to {md(W.raw_words(hi, 'years'))})"
    assert any(w.value.startswith(warn) for w in at.warning), [w.value for w in at.warning]
    assert _whatif_traces(_chart(at, "ex_chart__death"))
    # a number the model cannot read: one clear line naming the feature
    at.selectbox(key=S.EX_WI_FEATURE).set_value("age").run()
    at.number_input(key=S.EX_WI_NUMBER).set_value(1e200).run()
    _ok(at)
    assert any(e.value.replace("\\", "").startswith("age needs a finite number") for e in at.error), \
        [e.value for e in at.error]
    assert not _whatif_traces(_chart(at, "ex_chart__death"))


def test_the_what_if_edit_travels_in_the_shareable_link(engine):
    trained, ds, data, pos = engine
    rid = trained.info["test_ids"][3]
    row = pos[rid]
    names = trained.spec.modality_names
    use = [m for m in names if bool(data.present[m][row])]
    assert "demographics" in use
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(dataset="support2", record=rid, wi_data="demographics", wi_column="age", wi_value="45")
    at.run()
    _ok(at)
    assert at.session_state[S.EX_RECORD] == rid
    assert at.number_input(key=S.EX_WI_NUMBER).value == 45
    mask = {m: np.array([m in use]) for m in names}
    want = W.what_if(trained, ds, row, {("demographics", "age"): 45.0}, mask, names)
    assert f"**{md(W.sentence(trained, want, 'death'))}**" in [m.value for m in at.markdown]
    assert np.allclose(_whatif_traces(_chart(at, "ex_chart__death"))[0]["y"], 100 * want.edited["death"])
    # the page writes the edit back into the link; another value replaces it; reset removes it
    q = {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert (q["wi_data"], q["wi_column"], float(q["wi_value"])) == ("demographics", "age", 45.0)
    at.number_input(key=S.EX_WI_NUMBER).set_value(50.0).run()
    q = {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert float(q["wi_value"]) == 50.0
    at.button(key=S.EX_WI_RESET).click().run()
    assert "wi_value" not in at.query_params
    # a stale link: a warning, the record's own value, no what-if
    at2 = AppTest.from_file(APP, default_timeout=120)
    at2.query_params.update(dataset="support2", record=rid, wi_data="demographics", wi_column="age",
                            wi_value="old")
    at2.run()
    _ok(at2)
    assert any("is not a number" in w.value for w in at2.warning)
    assert at2.number_input(key=S.EX_WI_NUMBER).value == pytest.approx(float(ds.frame.iloc[row]["age"]))
    assert not _whatif_traces(_chart(at2, "ex_chart__death"))
