"""The presentation's slides (mmn_core.explain.story.build_story): numbers are the RecordView's, sentences name
the right kind of data and the biggest change, the summary picks the largest Shapley values, words the
faithfulness check and the acquisition estimate. Hand-built views (exact numbers) and one shipped model."""
from __future__ import annotations

import numpy as np
import pytest

from mmn_core.explain.record import RecordView
from mmn_core.explain.story import NOT_MEASURED, PRIOR, RAN, SWITCHED_OFF, build_story
from mmn_core.faithfulness import RecordFaithfulness
from mmn_core.spec import DatasetSpec

SPEC = DatasetSpec(
    name="t", id_column="id",
    modalities=[dict(name="a", label="Alpha", columns=["x"]), dict(name="b", label="Blood gas", columns=["y"]),
                dict(name="c", label="Chemistry", columns=["z"])],
    tasks=[dict(name="death", label="Death", column="d", type="binary"),
           dict(name="fo", label="Outcome", column="f", type="multiclass", class_labels={"k0": "Fine", "k1": "Poor"}),
           dict(name="score", label="Score", column="s", type="regression", units="points")])


def view(measured=None, skipped=(False, True, False)) -> RecordView:
    """prior → a → b (skipped) → c; death 30 → 40 → 40 → 92 %; fo follows class 1 at the end; score in points."""
    measured = measured or {"a": True, "b": False, "c": True}
    return RecordView(
        steps=["prior", "a", "b", "c"], skipped=np.array(skipped), measured=measured,
        states=np.zeros((4, 2)),
        value={"death": np.array([0.30, 0.40, 0.40, 0.92]),
               "fo": np.array([[0.7, 0.3], [0.6, 0.4], [0.6, 0.4], [0.2, 0.8]]),
               "score": np.array([500.0, 510.0, 510.0, 480.0])},
        label={"death": 1.0, "fo": 0.0, "score": 470.0}, classes={"death": ["no", "yes"], "fo": ["k0", "k1"]},
        shapley={"death": np.array([0.15, 0.0, 0.47]), "fo": np.array([[-0.1, 0.1], [0.0, 0.0], [-0.4, 0.4]]),
                 "score": np.array([12.0, 0.0, -32.0])},
        shapley_modalities=["a", "b", "c"],
        f_all={"death": np.array(0.92), "fo": np.array([0.2, 0.8]), "score": np.array(480.0)},
        f_none={"death": np.array(0.30), "fo": np.array([0.7, 0.3]), "score": np.array(500.0)},
        narrative={"death": [], "fo": [], "score": []})


def test_binary_slides_follow_the_view_and_name_the_biggest_change():
    st = build_story(view(), SPEC, "death", record="r1")
    np.testing.assert_array_equal(st.values, [0.30, 0.40, 0.40, 0.92])
    assert [s.value for s in st.slides] == [0.30, 0.40, 0.40, 0.92]
    assert st.status == [PRIOR, RAN, NOT_MEASURED, RAN]
    # the changes telescope to final − prior; a skipped step changes nothing
    assert sum(s.change for s in st.slides) == pytest.approx(0.92 - 0.30)
    assert st.slides[2].change == 0.0
    assert st.slides[0].sentence == "Before any data, the model starts every record at 30%."
    assert st.slides[1].sentence == "Alpha raised the probability from 30% to 40%."
    assert st.slides[2].sentence.startswith("Blood gas was not measured for this record")
    assert st.slides[3].sentence == "Chemistry raised the probability from 40% to 92%, the biggest single change."
    assert [s.biggest for s in st.slides] == [False, False, False, True]
    assert st.truth == 1.0 and st.truth_text == "yes"


def test_switched_off_is_not_called_not_measured():
    st = build_story(view(measured={"a": True, "b": True, "c": True}), SPEC, "death")
    assert st.status[2] == SWITCHED_OFF
    assert "switched off" in st.slides[2].sentence and "not measured" not in st.slides[2].sentence


def test_summary_movers_are_the_largest_shapley_values_in_order():
    st = build_story(view(), SPEC, "death")
    assert [m.modality for m in st.summary.movers] == ["c", "a"]       # b moved nothing: never "mattered"
    assert st.summary.movers[0].sentence == "Chemistry raised the probability by 47 points."
    assert st.summary.movers[1].text == "+15 points"
    assert st.summary.mattered == "What mattered most: Chemistry and Alpha."
    assert st.summary.final == "The model's final answer: 92%. What actually happened — death: yes."


def test_multiclass_follows_the_predicted_class_or_the_one_asked_for():
    st = build_story(view(), SPEC, "fo")
    assert st.class_label == "Poor"
    np.testing.assert_array_equal(st.values, [0.3, 0.4, 0.4, 0.8])
    assert st.slides[3].sentence == "Chemistry raised the probability of 'Poor' from 40% to 80%, the biggest " \
                                    "single change."
    assert st.truth_text == "Fine"
    other = build_story(view(), SPEC, "fo", class_index=0)
    np.testing.assert_array_equal(other.values, [0.7, 0.6, 0.6, 0.2])
    assert other.summary.movers[0].value == pytest.approx(-0.4)
    with pytest.raises(ValueError, match="class 5"):
        build_story(view(), SPEC, "fo", class_index=5)


def test_regression_is_in_the_target_units():
    st = build_story(view(), SPEC, "score")
    assert st.slides[3].sentence == "Chemistry lowered the prediction from 510 points to 480 points, the biggest " \
                                    "single change."
    assert st.summary.movers[0].sentence == "Chemistry lowered the prediction by 32 points."
    assert st.truth == 470.0 and st.truth_text == "470 points"


def test_trust_sentence_is_computed_from_the_deletion_curves():
    faith = RecordFaithfulness("r1", "death", "shapley", ["c", "a", "b"], np.array([0.92, 0.50, 0.32, 0.30]),
                               np.array([0.92, 0.80, 0.72, 0.30]), ["c"], "engine sentence")
    st = build_story(view(), SPEC, "death", faithfulness=faith)
    # three present: the top two against two at random, |0.92 − 0.32| / |0.92 − 0.72| = 3.0
    assert "pushed most toward this answer (Chemistry and Alpha) moves the prediction 3.0 times as much as " \
           "taking away two at random" \
        in st.summary.trust
    assert "the ranking holds up" in st.summary.trust
    assert "Caution: Chemistry was almost never missing" in st.summary.trust
    # two present: removing both returns the prior whatever the order, so the top one against one at random,
    # |0.92 − 0.50| / |0.92 − 0.80| = 3.5
    two = RecordFaithfulness("r1", "death", "shapley", ["c", "a"], np.array([0.92, 0.50, 0.30]),
                             np.array([0.92, 0.80, 0.30]), [], "")
    assert "the kind of data that pushed most toward this answer (Chemistry) moves the prediction 3.5 times as " \
           "much as taking away one at random" in build_story(view(), SPEC, "death", faithfulness=two).summary.trust
    weak = RecordFaithfulness("r1", "death", "shapley", ["c", "a"], np.array([0.92, 0.80, 0.30]),
                              np.array([0.92, 0.84, 0.30]), [], "")
    assert "treat the ranking with caution" in build_story(view(), SPEC, "death", faithfulness=weak).summary.trust


def test_missing_data_without_an_estimate_says_so_and_path_shape_is_checked():
    st = build_story(view(), SPEC, "death")
    assert [m.modality for m in st.summary.missing] == ["b"]
    assert st.summary.missing[0].sentence == "Blood gas: not measured (no estimate of what measuring it would change)."
    assert np.isnan(st.summary.missing[0].expected_change)
    with pytest.raises(ValueError, match="path_xy"):
        build_story(view(), SPEC, "death", path_xy=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown task"):
        build_story(view(), SPEC, "nope")


@pytest.fixture(scope="module")
def shipped():
    from pathlib import Path

    from mmn_core import load, load_dataset
    ckpt = Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "support2-multimodn"
    if not (ckpt / "config.json").is_file():
        pytest.skip("shipped checkpoint missing")
    trained = load(ckpt)
    ds = load_dataset("support2")
    return trained, ds, trained.prep.transform(ds)


def test_story_of_a_shipped_record_matches_the_trace_and_the_estimates(shipped):
    from mmn_core import explain as E
    from mmn_core.acquire import Donors, estimate, training_pool
    trained, ds, data = shipped
    names = trained.spec.modality_names
    # a held-out record that lacks at least one kind of data
    test = set(trained.info["test_ids"])
    row = next(i for i, r in enumerate(data.ids) if r in test and not all(bool(data.present[m][i]) for m in names))
    one = data.subset([row])
    v = E.record_view(trained, one)
    acq = estimate(trained, data, row, Donors(trained, data, training_pool(trained, ds)), k=20)
    st = build_story(v, trained.spec, "death", record=data.ids[row], acquisition=acq)
    tr = E.trace(trained, one)
    np.testing.assert_allclose(st.values, tr.value["death"][:, 0], rtol=0, atol=0)
    assert st.status[1:] == [NOT_MEASURED if not bool(one.present[m][0]) else RAN for m in tr.steps[1:]]
    phi = v.shapley["death"]
    top = np.argsort(-np.abs(phi), kind="stable")[:2]
    assert [m.modality for m in st.summary.movers[:2]] == [v.shapley_modalities[j] for j in top]
    lacking = [m for m in names if not bool(one.present[m][0])]
    assert sorted(m.modality for m in st.summary.missing) == sorted(lacking)
    for m in st.summary.missing:
        if m.modality in acq.modalities:
            assert m.expected_change == acq.modalities[m.modality].tasks["death"].expected_abs_change
    est = [m.expected_change for m in st.summary.missing if np.isfinite(m.expected_change)]
    assert est == sorted(est, reverse=True)                       # largest expected change first
    assert st.to_json()["values"] == [float(x) for x in st.values]


def test_record_story_assembles_the_engines_own_checks(shipped):
    """record_story = build_story with record_faithfulness, acquire.estimate and how_sure_for of that record."""
    from mmn_core import explain as E
    from mmn_core.acquire import Donors, estimate, training_pool
    from mmn_core.calibration import held_out_reliability, how_sure_for
    from mmn_core.explain.story import record_story
    from mmn_core.faithfulness import record_faithfulness
    trained, ds, data = shipped
    names = trained.spec.modality_names
    test = set(trained.info["test_ids"])
    row = next(i for i, r in enumerate(data.ids) if r in test and not all(bool(data.present[m][i]) for m in names))
    v = E.record_view(trained, data.subset([row]))
    donors, rel = Donors(trained, data, training_pool(trained, ds)), held_out_reliability(trained, ds, "death")
    got = record_story(trained, data, row, "death", v, data.ids[row], donors=donors, reliability=rel)
    want = build_story(v, trained.spec, "death", data.ids[row],
                       faithfulness=record_faithfulness(trained, data, row, "death"),
                       acquisition=estimate(trained, data, row, donors),
                       how_sure=how_sure_for(rel, trained.spec.task("death"), v.value["death"][-1]))
    assert got.to_json() == want.to_json()
    assert got.summary.how_sure and "held-out" in got.summary.how_sure.lower()
