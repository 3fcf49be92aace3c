"""AppTest of "Compare two records" (app/views/pair.py) on the shipped SUPPORT2 model: a link's records, switches and
outcome are the ones shown, the numbers are the engine's (mmn_core.explain.pair.record_pair, computed here), the
view is written back to the URL, and "same record on both sides" compares one record with and without data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import figures as F
from app import state as S
from app.common import md

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(),
                                reason="shipped checkpoints missing: run python data/train_checkpoints.py")


@pytest.fixture(scope="module")
def engine():
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    data = trained.prep.transform(load_dataset("support2"))
    return trained, data, {r: i for i, r in enumerate(data.ids)}


def open_link(**query) -> AppTest:
    """A session that follows a link to the comparison page (AppTest starts on the main page, so the link
    arrives as the Explorer's "Compare" link does: a new query on the page)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"dataset": query.get("dataset", "support2")})    # the session's dataset
    at.run()
    at.query_params.clear()
    at.query_params.update(query)
    at.switch_page("views/pair.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest):
    return next(d.value for d in at.dataframe if list(d.value.columns) == ["Step", "A", "B", "B − A"])


def test_a_link_opens_its_two_records_with_their_switches(engine):
    from mmn_core.explain.pair import record_pair
    trained, data, pos = engine
    names = trained.spec.modality_names
    test = trained.info["test_ids"]
    ra = next(r for r in test if bool(data.present["vitals"][pos[r]]))
    rb = next(r for r in test[10:] if r != ra)
    at = open_link(dataset="support2", record=ra, off="vitals", record2=rb, task="death_180d")
    assert at.session_state[S.PA_RECORD_A] == ra and at.session_state[S.PA_RECORD_B] == rb
    assert at.session_state[S.PA_OFF_A] == ["vitals"] and at.session_state[S.PA_OFF_B] == []
    assert at.session_state[S.PA_TASK] == "death_180d"
    heads = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert heads == [f"#### A · Record {md(ra)}", f"#### B · Record {md(rb)}"]
    want = record_pair(trained, data, pos[ra], pos[rb], "death_180d", off_a=["vitals"])
    assert any(m.value == md(want.sentence) for m in at.markdown)
    tb = table(at)
    assert tb["A"].tolist() == [F.pct(v) for v in want.values_a]
    assert tb["B"].tolist() == [F.pct(v) for v in want.values_b]
    k = names.index("vitals") + 1
    assert tb["A"][k] == tb["A"][k - 1]                       # switched off on A: that step stands still
    assert len(at.get("plotly_chart")) == 4                   # two step charts, two sets of Why bars
    q = at.query_params
    assert q["record"] == ra and q["off"] == "vitals" and q["record2"] == rb and q["task"] == "death_180d"
    assert "off2" not in q
    # a stale record warns and falls back instead of failing
    at2 = open_link(dataset="support2", record="no-such-record", record2=rb)
    assert any("not among" in w.value for w in at2.warning)
    assert at2.session_state[S.PA_RECORD_B] == rb


def test_same_record_on_both_sides_differs_only_from_the_switched_off_step(engine):
    from mmn_core.explain.record import record_view
    trained, data, pos = engine
    names = trained.spec.modality_names
    rid = next(r for r in trained.info["test_ids"] if all(bool(data.present[m][pos[r]]) for m in names[:4]))
    full = record_view(trained, data.subset([pos[rid]]), None, names)
    k = int(np.abs(full.delta("death")[:4]).argmax()) + 1
    m = names[k - 1]
    at = open_link(dataset="support2", record=rid, task="death")
    assert at.session_state[S.PA_RECORD_B] == rid              # no record2 in the link: the same record
    assert set(table(at)["B − A"]) == {"no change"}
    at.multiselect(key=S.PA_OFF_B).set_value([m]).run()
    assert not at.exception
    tb = table(at)
    assert set(tb["B − A"][:k]) == {"no change"}
    assert tb["B − A"][k] == F.points(-full.delta("death")[k - 1]) != "no change"
    assert at.query_params["off2"] == m and at.query_params["record2"] == rid
    # another record on B, then "same record on both sides" puts A's record back with every switch on
    other = next(r for r in trained.info["test_ids"] if r != rid)
    at.selectbox(key=S.PA_RECORD_B).set_value(other).run()
    assert at.session_state[S.PA_RECORD_B] == other
    assert at.session_state[S.PA_OFF_B] == ([m] if bool(data.present[m][pos[other]]) else [])   # only its own data
    at.button(key=S.PA_SAME).click().run()
    assert at.session_state[S.PA_RECORD_B] == rid and at.session_state[S.PA_OFF_B] == []
    assert set(table(at)["B − A"]) == {"no change"}


@pytest.mark.parametrize("name,kind", [("support2", "multiclass"), ("star", "regression")])
def test_multiclass_and_regression_outcomes_show_the_engine_numbers(name, kind):
    """Multiclass: one class (A's prediction) followed on both sides; regression: the target's units."""
    from app import resources as R
    from mmn_core.explain.pair import record_pair
    if not (R.shipped_dir(name, "multimodn") / "config.json").is_file():
        pytest.skip(f"no shipped checkpoint for {name}")
    b = R.get_bundle(R.active_ref({S.DATASET: name}))
    td = next(t for t in b.spec.tasks if t.type == kind)
    ids = b.trained.info["test_ids"]
    at = open_link(dataset=name, record=ids[0], record2=ids[1], task=td.name)
    assert at.session_state[S.PA_RECORD_A] == ids[0] and at.session_state[S.PA_RECORD_B] == ids[1]
    want = record_pair(b.trained, b.data, b.pos[ids[0]], b.pos[ids[1]], td.name)
    shown = F.pct if kind == "multiclass" else (lambda v: F.with_units(v, td.units))
    tb = table(at)
    assert tb["A"].tolist() == [shown(v) for v in want.values_a]
    assert tb["B"].tolist() == [shown(v) for v in want.values_b]
    assert any(m.value == md(want.sentence) for m in at.markdown)
    if kind == "multiclass":
        assert want.class_index == int(np.asarray(want.a.value[td.name][-1]).argmax())


def test_without_a_link_the_comparison_starts_from_the_explorer_record():
    at = AppTest.from_file(APP, default_timeout=120).run()
    rid = at.session_state[S.EX_RECORD]
    at.query_params.clear()                            # the sidebar's page menu: no query
    at.switch_page("views/pair.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[S.PA_RECORD_A] == at.session_state[S.PA_RECORD_B] == rid
