"""Issue 15 item 7, the first newcomer bugs of the Explorer: the Why sentence follows the class the bars show;
the dashboard's narrative names the value that drove a step (the CLI's sentence, from the same engine
function); reordering caveat; feature bars on the modality bars' scale; categories against the training mode."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamlit.testing.v1 import AppTest

from app import state as S
from app.common import md

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="shipped checkpoints missing")


@pytest.fixture(scope="module")
def engine():
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    ds = load_dataset("support2")
    data = trained.prep.transform(ds)
    pos = {r: i for i, r in enumerate(data.ids)}
    return trained, ds, data, pos


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(scope="module")
def explorer():
    at = AppTest.from_file(APP, default_timeout=180).run()
    ok(at)
    return at


def words(at: AppTest) -> str:
    """The Why tab's numbered sentences (one markdown block)."""
    blocks = [m.value for m in at.markdown if m.value.startswith("1. ")]
    assert blocks, [m.value[:60] for m in at.markdown]
    return blocks[0]


def engine_words(engine, rid, task, cls=None, order=None):
    from mmn_core.explain.attribution import reference_categories
    from mmn_core.explain.narration import explained_narrative
    trained, ds, data, pos = engine
    i = pos[rid]
    names = trained.spec.modality_names
    mask = {m: np.array([bool(data.present[m][i])]) for m in names}
    return explained_narrative(trained, data.subset([i]), task, mask, list(order or names), cls,
                               frame=ds.subset([i]), reference=reference_categories(trained, data))


def test_why_narrative_names_the_driving_value_as_the_cli_does(explorer, engine):
    """Bug 2: the dashboard's sentences name the value that pushed most, with units, exactly as the engine
    (and the CLI, same `narrative` + attributions) writes them."""
    at = explorer
    rid, focus = at.session_state[S.EX_RECORD], at.session_state[S.EX_TASK]
    expected = engine_words(engine, rid, focus)
    assert any("the largest push came from" in s for s in expected)
    shown = words(at)
    for k, s in enumerate(expected):
        assert f"{k + 1}. {md(s)}" in shown


def test_why_sentence_describes_the_class_the_bars_show(explorer, engine):
    """Bug 1: picking another class re-targets the sentences (and their pushes) to that class."""
    at = explorer
    trained = engine[0]
    td = next(t for t in trained.spec.tasks if t.type == "multiclass")
    at.selectbox(key=S.EX_TASK).set_value(td.name).run()
    ok(at)
    rid = at.session_state[S.EX_RECORD]
    classes = trained.prep.classes[td.name]
    predicted = int(at.session_state[S.EX_CLASS])
    other = (predicted + 1) % len(classes)
    at.selectbox(key=S.EX_CLASS).set_value(other).run()
    ok(at)
    shown = words(at)
    assert f"'{md(td.class_display(classes[other]))}'" in shown
    assert f"'{md(td.class_display(classes[predicted]))}'" not in shown
    expected = engine_words(engine, rid, td.name, other)
    for k, s in enumerate(expected):
        assert f"{k + 1}. {md(s)}" in shown
    at.selectbox(key=S.EX_TASK).set_value("death").run()


def test_narrative_follows_the_class_asked_for(engine):
    """Engine side of bug 1: narrative(cls=c) writes class c's probabilities, step by step, from the trace."""
    from mmn_core.explain.narration import narrative
    from mmn_core.explain.steps import trace
    from mmn_core.fmt import percent
    trained, _, data, _ = engine
    td = next(t for t in trained.spec.tasks if t.type == "multiclass")
    tr = trace(trained, data.subset([0]))
    v = tr.value[td.name][:, 0]
    c = (int(v[-1].argmax()) + 1) % v.shape[1]
    lines = narrative(tr, 0, td.name, trained.spec, cls=c)
    assert f"'{td.class_display(tr.classes[td.name][c])}' is {percent(v[0, c])}." in lines[0]
    assert len(lines) == len(tr.steps)
    with pytest.raises(ValueError):
        narrative(tr, 0, td.name, trained.spec, cls=v.shape[1])


def _tabular_categorical(trained):
    """(modality, column) of the first tabular categorical column with more than two categories."""
    for m in trained.spec.modality_names:
        ms = trained.spec.modality(m)
        for c, cats in trained.prep.categories.get(m, {}).items():
            if ms.kind == "tabular" and len(cats) > 2:
                return m, c
    raise AssertionError("no categorical column")


def test_reference_category_is_the_training_mode(engine):
    """Bug 5: the baseline of a one-hot categorical is the most common category of the training records (not
    'no category'), counted independently here with pandas on the raw data."""
    from mmn_core.data import category_text
    from mmn_core.explain.attribution import attribute, reference_categories, reference_input
    trained, ds, data, pos = engine
    ref = reference_categories(trained, data)
    test = set(trained.info["test_ids"])
    train_rows = [i for i, r in enumerate(ds.ids) if r not in test]
    assert len(train_rows) == trained.info["rows"]["train"] + trained.info["rows"]["validation"]
    m, c = _tabular_categorical(trained)
    present = ds.presence()[m][train_rows]
    raw = ds.frame.iloc[train_rows][c][present].dropna()
    mode = category_text(raw).value_counts().idxmax()
    assert ref[m][c] == mode
    for m2, cols in ref.items():                               # every column has a real (seen) category
        for c2, v in cols.items():
            assert v in trained.prep.categories[m2][c2]
    i = next(j for j in range(len(ds)) if bool(data.present[m][j])
             and category_text(ds.frame[c].iloc[[j]]).iloc[0] != mode)
    one = data.subset([i])
    base = reference_input(trained, m, one.x[m].float(), ref[m])
    names = trained.prep.feature_names(trained.spec.modality(m))
    block = [j for j, f in enumerate(names) if f.startswith(f"{c}=")]
    assert base[0, block].tolist() == [1.0 if names[j] == f"{c}={mode}" else 0.0 for j in block]
    a = attribute(trained, one, 0, m, "death", reference=ref, frame=ds.subset([i]))
    z = attribute(trained, one, 0, m, "death")
    assert a.reference == ref[m] and z.reference == {}
    assert a.baseline_logit != pytest.approx(z.baseline_logit, abs=1e-6)
    assert float(a.values.sum()) == pytest.approx(a.target_logit - a.baseline_logit, abs=abs(a.delta) + 1e-6)


def test_feature_bars_are_in_the_why_bars_units(engine):
    """Bug 4: classification attributions are returned in probability (shown as percentage points), adding up
    to P(record) − P(reference) up to the IG delta, signs and ratios kept; regression stays in target units."""
    from mmn_core.explain.attribution import attribute, reference_categories
    from mmn_core.explain.browse import attribution_in_units
    trained, ds, data, pos = engine
    ref = reference_categories(trained, data)
    m, _ = _tabular_categorical(trained)
    i = next(j for j in range(len(ds)) if bool(data.present[m][j]))
    one = data.subset([i])
    for task in ("death", "sfdm2"):
        a = attribute(trained, one, 0, m, task, reference=ref)
        p = attribution_in_units(a, trained.spec.task(task).type)
        logit = np.array([a.by_column[c] for c in a.columns])
        prob = np.array([p[c] for c in a.columns])
        assert 0 <= a.target_value <= 1 and 0 <= a.baseline_value <= 1
        scale = (a.target_value - a.baseline_value) / (a.target_logit - a.baseline_logit)
        assert prob.sum() == pytest.approx(a.target_value - a.baseline_value, abs=abs(a.delta * scale) + 1e-9)
        assert np.allclose(prob, logit * scale)
        assert scale > 0 or task == "sfdm2"    # binary: the sigmoid is increasing, so signs are kept


def test_order_caveat_measures_this_model(engine):
    """Bug 3, engine: no caveat in the training order or for a model trained in random orders; otherwise the
    caveat states the median and 90th-percentile spread that order_sensitivity measures on the same sample."""
    import dataclasses
    from mmn_core import explain as E
    from mmn_core.explain.ordering import order_caveat, order_spread
    from mmn_core.fmt import number
    trained, _, data, pos = engine
    test = data.subset([pos[r] for r in trained.info["test_ids"]])
    sp = order_spread(trained, test, "death", n_records=120)
    rows = np.sort(np.random.default_rng(0).choice(len(test), 120, False))
    spread = E.order_sensitivity(trained, test.subset(rows), "death", max_orders=24)["spread"]
    assert sp.n_records == 120 and not sp.trained_in_random_orders
    assert sp.median == pytest.approx(float(np.median(spread))) and sp.median > 0.02   # orders do move it
    assert sp.q90 == pytest.approx(float(np.quantile(spread, 0.9))) and sp.q90 >= sp.median
    names = trained.spec.modality_names
    moved = [names[-1], *names[:-1]]
    assert order_caveat(sp, names, names) == ""
    assert order_caveat(dataclasses.replace(sp, trained_in_random_orders=True), moved, names) == ""
    text = order_caveat(sp, moved, names)
    assert "never saw this one" in text
    assert f"by {number(100 * sp.median)} percentage points" in text and f"at most {number(100 * sp.q90)}" in text


def test_explorer_warns_when_the_order_was_never_seen(engine):
    """Bug 3, page: moving a kind of data earlier shows the caveat (with the cached measured median); the
    dataset's order shows none."""
    from mmn_core.explain.ordering import order_caveat, order_spread
    trained, _, data, pos = engine
    at = AppTest.from_file(APP, default_timeout=180).run()
    ok(at)
    assert not [w for w in at.warning if "never saw" in w.value]
    names = engine[0].spec.modality_names
    at.button(key=S.modality_key(S.EX_UP, names[-1])).click().run()
    ok(at)
    assert list(at.session_state[S.EX_ORDER]) != names
    shown = [w.value for w in at.warning if "never saw" in w.value]
    assert len(shown) == 1
    focus = at.session_state[S.EX_TASK]
    test = data.subset([pos[r] for r in trained.info["test_ids"]])          # the Explorer's records, in order
    sp = order_spread(trained, test, focus, n_records=400)
    assert shown[0] == md(order_caveat(sp, list(at.session_state[S.EX_ORDER]), names))


def test_inside_a_step_names_its_scale_and_the_reference_category(explorer, engine):
    """Bugs 4-5, page: the attribution chart's axis says percentage points, the caption names the training
    mode of each categorical column, and the bars sum to P(record) − P(reference) in points."""
    from mmn_core.explain.attribution import reference_categories
    at = explorer
    trained, _, data, _ = engine
    m, c = _tabular_categorical(trained)
    at.selectbox(key=S.EX_TASK).set_value("death").run()
    at.session_state[S.EX_TABS] = "Inside a step"
    at.session_state[S.EX_ATTR_MODALITY] = m
    at.run()
    ok(at)
    fig = json.loads(next(ch for ch in at.get("plotly_chart") if ch.proto.id.endswith("ex_attr_chart")).proto.spec)
    assert fig["layout"]["xaxis"]["title"]["text"].endswith("(percentage points)")
    mode = reference_categories(trained, data)[m][c]
    caps = " ".join(x.value for x in at.caption)
    assert "most common value in the training data" in caps and md(mode) in caps
    assert "no category" not in caps
    at.session_state[S.EX_TABS] = "Why"
    at.run()
