"""The Explorer's shareable link carries and restores the open tab, the attribution method and target, the task in
focus and the class explained (issue 15 item 7.1)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import state as S

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(),
                                reason="shipped checkpoints missing: run python data/train_checkpoints.py")


def test_round_trip_of_a_full_query():
    q = {"dataset": "support2", "record": "12", "off": "vitals,urine", "order": "a,b,c", "task": "sfdm2",
         "step": "vitals", "tab": "inside", "method": "shapley", "explain": "final", "class": "SIP>=30"}
    view = S.view_from_query(q)
    assert view["tab"] == "inside" and view["method"] == "shapley" and view["class"] == "SIP>=30"
    assert view["off"] == ["vitals", "urine"]
    assert S.view_to_query(view) == q
    assert S.view_to_query(S.view_from_query({"tab": "state"})) == {"tab": "state"}


def test_a_link_restores_tab_method_target_task_and_class():
    from mmn_core import load
    trained = load(SHIPPED)
    rid = trained.info["test_ids"][3]
    classes = trained.prep.classes["sfdm2"]
    cls = classes[2]                                   # not the argmax default of every record
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"dataset": "support2", "record": rid, "task": "sfdm2", "tab": "inside",
                            "method": "ablation", "explain": "final", "class": cls, "step": "vitals"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    ss = at.session_state
    assert ss[S.EX_RECORD] == rid
    assert ss[S.EX_TASK] == "sfdm2"
    assert ss[S.EX_TABS] == "Inside a step"
    assert at.selectbox(key=S.EX_ATTR_METHOD).value == "ablation"      # the Inside-a-step tab is the open one
    assert at.radio(key=S.EX_ATTR_TARGET).value == "The final prediction"
    assert at.selectbox(key=S.EX_CLASS).value == 2
    # the page writes the same view back to the URL
    got = {k: (v[-1] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}
    assert got["tab"] == "inside" and got["method"] == "ablation" and got["explain"] == "final" and got["class"] == cls
    assert got["task"] == "sfdm2"
    # switching the tab in the page moves the link with it
    at.session_state[S.EX_TABS] = "State"
    at.run()
    got = {k: (v[-1] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}
    assert got["tab"] == "state"


def test_a_bad_link_value_falls_back_to_the_defaults():
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"dataset": "support2", "tab": "nope", "method": "magic", "class": "no such"})
    at.run()
    assert not at.exception
    assert at.session_state[S.EX_TABS] == "Why"
    got = {k: (v[-1] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}
    assert got["tab"] == "why" and "class" not in got         # the focus task (death) is binary: no class


@pytest.mark.parametrize("dataset,words", [("upload-0123abcd", "uploaded in another browser session"),
                                           ("no_such_data", "that this installation does not have")])
def test_a_link_to_data_this_session_lacks_says_so(dataset, words):
    """A link to another session's upload (or to a dataset not installed) says exactly that and shows none of its
    record, switches or order; the default dataset's own default record is shown, without the 'not among this
    model's test records' warning."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"dataset": dataset, "record": "12", "off": "vitals"})
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert sum(words in w for w in warnings) == 1, warnings
    assert not any("not among this model's test records" in w for w in warnings)
    assert at.session_state[S.DATASET] == "support2"
    at.run()                                            # once: the next run does not repeat it
    assert not any(words in w.value for w in at.warning)
