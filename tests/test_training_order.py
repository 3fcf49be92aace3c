"""How the model was ordered in training follows its checkpoint's train settings (Cohort page wording)."""
import dataclasses
from pathlib import Path

import pytest

from mmn_core import load
from mmn_core.explain.cohort import training_order

CKPT = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


@pytest.fixture(scope="module")
def trained():
    if not (CKPT / "synthetic-multimodn" / "config.json").is_file():
        pytest.skip("shipped checkpoints missing")
    return load(CKPT / "synthetic-multimodn")


def _with(trained, **cfg):
    info = dict(trained.info)
    info["train_config"] = {**(info.get("train_config") or {}), **cfg}
    return dataclasses.replace(trained, info=info)


def test_a_fixed_order_is_named_in_full(trained):
    t = training_order(_with(trained, shuffle_order=False))
    assert t.random is False and t.order == tuple(trained.model.modality_names)
    assert t.sentence.startswith("The model was trained in one order: ")
    for m in trained.model.modality_names:
        assert trained.spec.modality(m).display in t.sentence


def test_random_orders_are_never_called_one_order(trained):
    t = training_order(_with(trained, shuffle_order=True))
    assert t.random is True and t.order == ()
    assert "random orders" in t.sentence and "one order" not in t.sentence


def test_unrecorded_training_says_so(trained):
    t = training_order(dataclasses.replace(trained, info={}))
    assert t.random is None and "not recorded" in t.sentence


def test_the_shipped_checkpoints_report_what_they_were_trained_with():
    for d in sorted(CKPT.glob("*-multimodn")):
        tr = load(d)
        assert training_order(tr).random is bool(tr.info["train_config"]["shuffle_order"])


def test_the_cohort_page_says_how_the_shipped_model_was_trained():
    from streamlit.testing.v1 import AppTest

    from app import state as S
    from app.common import md
    at = AppTest.from_file(str(CKPT.parent.parent / "app" / "streamlit_app.py"), default_timeout=180).run()
    at.switch_page("views/cohort.py").run()
    at.session_state[S.CO_TABS] = "Order of the data"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(c.value for c in at.caption)
    shipped = load(CKPT / "support2-multimodn")
    assert md(training_order(shipped).sentence) in text              # as written on the page (markdown-safe)
    assert ("one order" in text) is (not shipped.info["train_config"]["shuffle_order"])
