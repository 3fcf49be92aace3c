"""What-if on a value (mmn_core.explain.whatif): an edit to the current value changes nothing, exactly; steps before
the edited modality are untouched and its own step moves; the edited prediction equals the model run by hand on an
edited copy of the input; bad values are refused naming the feature. On the shipped SUPPORT2 checkpoint."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmn_core import explain as E
from mmn_core.explain import whatif as W
from mmn_core.fmt import percent
from mmn_core.model import probabilities

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(),
                                reason="shipped checkpoints missing: run python data/train_checkpoints.py")


@pytest.fixture(scope="module")
def fx():
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    ds = load_dataset("support2")
    data = trained.prep.transform(ds)
    full = torch.stack([data.present[m] for m in trained.spec.modality_names]).all(0)
    row = int(torch.nonzero(full).ravel()[0])            # a record with every kind of data
    return trained, ds, data, row


def _by_hand(trained, data, row, modality, feature_cols, values, order=None):
    """Logits of the model run directly on a copy of the record's input tensors with features overwritten."""
    one = data.subset([row])
    x = {m: v.clone() for m, v in one.x.items()}
    names = trained.prep.feature_names(trained.spec.modality(modality))
    for f, v in zip(feature_cols, values):
        x[modality][0, names.index(f)] = v
    with torch.no_grad():
        trained.model.eval()
        return trained.model(x, one.present, one.lengths, order).logits


def test_editing_to_the_current_value_changes_nothing_exactly(fx):
    trained, ds, data, row = fx
    age = ds.frame.iloc[row]["age"]
    sex = ds.frame.iloc[row]["sex"]
    r = W.what_if(trained, ds, row, {("demographics", "age"): float(age), ("demographics", "sex"): sex})
    for t in r.original:
        assert np.array_equal(r.original[t], r.edited[t]) and not np.any(r.change[t])
    assert np.array_equal(r.states_original, r.states_edited)
    # the original path is the page's (a trace of the whole dataset's tensors for that row), bit for bit
    page = E.trace(trained, data.subset([row]))
    for t in r.original:
        assert np.array_equal(r.original[t], page.value[t][:, 0])
    assert [(e.modality, e.column, e.old) for e in r.edits] == [("demographics", "age", float(age)),
                                                                ("demographics", "sex", sex)]


@pytest.mark.parametrize("order", [None, "reversed"])
def test_steps_before_the_edited_modality_are_untouched_and_its_step_moves(fx, order):
    trained, ds, data, row = fx
    names = trained.spec.modality_names
    order = list(reversed(names)) if order else None
    k = (order or names).index("vitals") + 1
    hr = float(ds.frame.iloc[row]["hrt"])
    r = W.what_if(trained, ds, row, {("vitals", "hrt"): hr + 60}, order=order)
    assert r.first_step == k and r.steps[k] == "vitals"
    assert np.array_equal(r.states_original[:k], r.states_edited[:k])          # states before k identical
    assert np.abs(r.states_edited[k] - r.states_original[k]).max() > 1e-4     # the state at k moves
    for t in r.original:
        assert not np.any(r.change[t][:k])
    assert abs(r.change["death"][k]) > 1e-4
    assert np.allclose(r.change["death"], r.edited["death"] - r.original["death"], atol=0, rtol=0)


def test_the_edited_prediction_is_the_model_run_by_hand_on_an_edited_input(fx):
    trained, ds, data, row = fx
    mean, std = trained.prep.numeric["vitals"]["hrt"]
    new_hr = 140.0
    r = W.what_if(trained, ds, row, {("vitals", "hrt"): new_hr})
    logits = _by_hand(trained, data, row, "vitals", ["hrt"], [(new_hr - mean) / std])
    death = torch.sigmoid(logits["death"][:, 0, 0].double()).numpy()
    assert np.allclose(r.edited["death"], death, atol=1e-6, rtol=0)
    sf = probabilities("multiclass", logits["sfdm2"][:, 0].double()).numpy()
    assert np.allclose(r.edited["sfdm2"], sf, atol=1e-6, rtol=0)
    # a categorical edit: the one-hot block of `sex` flipped by hand
    other = next(c for c in W.categories(trained, "demographics", "sex") if c != ds.frame.iloc[row]["sex"])
    r2 = W.what_if(trained, ds, row, {("demographics", "sex"): other})
    cats = W.categories(trained, "demographics", "sex") + ["(missing)"]
    logits2 = _by_hand(trained, data, row, "demographics", [f"sex={c}" for c in cats],
                       [1.0 if c == other else 0.0 for c in cats])
    assert np.allclose(r2.edited["death"], torch.sigmoid(logits2["death"][:, 0, 0].double()).numpy(),
                       atol=1e-6, rtol=0)
    assert r2.first_step == 1 and abs(r2.change["death"][1]) > 0


def test_a_switched_off_modality_is_not_read(fx):
    trained, ds, data, row = fx
    mask = {m: np.array([m != "vitals"]) for m in trained.spec.modality_names}
    r = W.what_if(trained, ds, row, {("vitals", "hrt"): 200.0}, present=mask)
    assert r.first_step is None
    for t in r.original:
        assert np.array_equal(r.original[t], r.edited[t])


@pytest.mark.parametrize("value, words", [(math.nan, "finite number"), (math.inf, "finite number"), ("abc", "number"),
                                          (1e200, "finite number")])
def test_a_number_the_model_cannot_read_is_refused_naming_the_feature(fx, value, words):
    trained, ds, _, row = fx
    with pytest.raises(ValueError, match=rf"^Heart rate needs a {words}, not"):
        W.what_if(trained, ds, row, {("vitals", "hrt"): value})


def test_an_unseen_category_or_an_unknown_feature_is_refused(fx):
    trained, ds, data, row = fx
    with pytest.raises(ValueError, match=r"sex = 'unknown' is a category the model never saw.*female, male"):
        W.what_if(trained, ds, row, {("demographics", "sex"): "unknown"})
    with pytest.raises(ValueError, match="'heart' is not a measurement of"):
        W.what_if(trained, ds, row, {("vitals", "heart"): 1.0})
    with pytest.raises(ValueError, match="unknown kind of data 'nope'"):
        W.what_if(trained, ds, row, {("nope", "hrt"): 1.0})
    lacks = int(torch.nonzero(~data.present["blood_gas"]).ravel()[0])
    with pytest.raises(ValueError, match="was not measured for this record: there is no value of Arterial pH"):
        W.what_if(trained, ds, lacks, {("blood_gas", "ph"): 7.4})


def test_sentence_states_the_engine_numbers(fx):
    trained, ds, _, row = fx
    r = W.what_if(trained, ds, row, {("vitals", "hrt"): 140.0})
    old = float(ds.frame.iloc[row]["hrt"])
    s = W.sentence(trained, r, "death")
    a, b = percent(r.original["death"][-1]), percent(r.edited["death"][-1])
    assert s.startswith(f"With Heart rate = 140 beats/min instead of {W.raw_words(old, 'beats/min')}, the final death")
    assert (f"moves from {a} to {b}." in s) if a != b else (f"stays at {a} (" in s)
    js = r.to_json()
    assert js["edits"][0]["new"] == 140.0 and len(js["edited"]["death"]) == len(r.steps)


# --- the figure: the edited path over the step chart -------------------------------------------------------------
def _step_chart(values, task_type="binary", units=""):
    from app import figures as F
    k = len(values) - 1
    steps = ["prior"] + [f"m{j}" for j in range(k)]
    return F.step_chart(steps, ["Prior"] + [f"M {j}" for j in range(k)], values, np.zeros(k, dtype=bool),
                        task_type=task_type, task_label="Death", colors=F.modality_colors(steps[1:]), units=units)


def test_what_if_path_draws_the_edited_values_and_keeps_the_original():
    from app import figures as F
    from tests.test_accessibility import contrast
    orig, edit = np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.35, 0.61])
    base = _step_chart(orig)
    fig = F.what_if_path(base, orig, edit, task_type="binary", name="what if <b>HR</b> = 140")
    assert fig is not base and len(fig.data) == len(base.data) + 2 and fig.data[:len(base.data)] == base.data
    path = fig.data[len(base.data)]
    assert np.allclose(path.y, 100 * edit) and list(path.x) == [0, 1, 2] and path.line.color == F.WHATIF_COLOR
    assert "+11 points" in path.hovertext[2] and "61%" in path.hovertext[2] and "was 50%" in path.hovertext[2]
    assert fig.data[-1].name == "what if &lt;b&gt;HR&lt;/b&gt; = 140" and fig.data[-1].showlegend  # escaped key
    assert fig.layout.margin.t == base.layout.margin.t + 26
    assert contrast(F.WHATIF_COLOR) >= 3.0
    # regression: the y range grows to hold an edited value beyond the original path
    r0, r1 = np.array([10.0, 12.0, 11.0]), np.array([10.0, 12.0, 30.0])
    rb = _step_chart(r0, "regression", "kg")
    rf = F.what_if_path(rb, r0, r1, task_type="regression", units="kg")
    assert rf.layout.yaxis.range[1] > 30 >= rb.layout.yaxis.range[1]
    # multiclass: one edited line per class
    m0 = np.array([[0.5, 0.5], [0.6, 0.4]])
    mf = F.what_if_path(_step_chart(m0, "multiclass"), m0, m0[:, ::-1], task_type="multiclass", classes=["a", "b"])
    lines = [t for t in mf.data if t.mode == "lines+markers" and t.x[0] is not None]
    assert len(lines) == 2 and np.allclose(lines[0].y, [50, 40])
    with pytest.raises(ValueError, match="differ in shape"):
        F.what_if_path(base, orig, edit[:2], task_type="binary")


def test_seen_range_is_the_training_records_min_and_max(fx):
    from mmn_core.acquire import training_pool
    trained, ds, _, _ = fx
    lo, hi = W.seen_range(trained, ds, "demographics", "age")
    ages = ds.frame["age"].iloc[training_pool(trained, ds)]
    assert (lo, hi) == (float(ages.min()), float(ages.max())) and lo < hi
    # only the training records count: in SUPPORT2 the oldest patient (101.8 y) is not one of them (100.8 y)
    assert float(ds.frame["age"].min()) <= lo and hi < float(ds.frame["age"].max())
    with pytest.raises(ValueError, match="not a numeric"):
        W.seen_range(trained, ds, "demographics", "sex")
