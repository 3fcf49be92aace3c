"""Two records side by side (mmn_core.explain.pair): hand-built views with exact numbers, and the shipped model
(a record against itself, a modality switched off on one side, two records)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmn_core.explain.pair import compare_records, record_pair, side_name
from mmn_core.explain.record import RecordView, record_view
from mmn_core.spec import DatasetSpec

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
SPEC = DatasetSpec(
    name="t", id_column="id",
    modalities=[dict(name="a", label="Alpha", columns=["x"]), dict(name="b", label="Blood gas", columns=["y"]),
                dict(name="c", label="Chemistry", columns=["z"])],
    tasks=[dict(name="death", label="Death", column="d", type="binary"),
           dict(name="fo", label="Outcome", column="f", type="multiclass", class_labels={"k0": "Fine", "k1": "Poor"}),
           dict(name="score", label="Score", column="s", type="regression", units="points")])


def view(death, score, shap_death, truth_score=470.0, fo_final=(0.2, 0.8)) -> RecordView:
    return RecordView(
        steps=["prior", "a", "b", "c"], skipped=np.array([False, False, False]),
        measured={"a": True, "b": True, "c": True}, states=np.zeros((4, 2)),
        value={"death": np.asarray(death, float),
               "fo": np.array([[0.7, 0.3], [0.6, 0.4], [0.6, 0.4], list(fo_final)]),
               "score": np.asarray(score, float)},
        label={"death": 1.0, "fo": 0.0, "score": truth_score}, classes={"death": ["no", "yes"], "fo": ["k0", "k1"]},
        shapley={"death": np.asarray(shap_death, float), "fo": np.array([[-0.1, 0.1], [0.0, 0.0], [-0.4, 0.4]]),
                 "score": np.array([12.0, 0.0, -32.0])},
        shapley_modalities=["a", "b", "c"],
        f_all={"death": np.array(death[-1]), "fo": np.array(fo_final), "score": np.array(score[-1])},
        f_none={"death": np.array(death[0]), "fo": np.array([0.7, 0.3]), "score": np.array(score[0])},
        narrative={"death": [], "fo": [], "score": []})


A = view([0.30, 0.40, 0.40, 0.92], [500.0, 510.0, 510.0, 480.0], [0.15, 0.0, 0.47])
B = view([0.30, 0.35, 0.50, 0.60], [500.0, 530.0, 560.0, 620.0], [0.02, 0.10, 0.18], truth_score=700.0)


def test_hand_built_pair_differences_ranges_and_sentence():
    p = compare_records(SPEC, A, B, "death", record_a="r1", record_b="r2")
    np.testing.assert_allclose(p.difference, [0.0, -0.05, 0.10, -0.32])
    np.testing.assert_allclose(p.step_difference, [-0.05, 0.15, -0.42])
    # the step differences telescope to the final difference (both sides start from the same prior here)
    assert p.step_difference.sum() == pytest.approx(p.difference[-1] - p.difference[0])
    assert p.parts_at == 1 and p.value_range == (0.0, 1.0)
    assert p.modalities == ["a", "b", "c"]
    np.testing.assert_allclose(p.shapley_b - p.shapley_a, [-0.13, 0.10, -0.29])
    assert p.shapley_span == pytest.approx(0.47)
    assert p.sentence == ("Death: Record r2 ends at 60%, lower than Record r1 at 92% (32 points apart); they first "
                          "differ at Alpha, and the Why bars differ most for Chemistry (+18 points for B, "
                          "+47 points for A).")


def test_regression_axis_covers_both_sides_and_both_actual_outcomes():
    p = compare_records(SPEC, A, B, "score", record_a="r1", record_b="r2")
    lo, hi = p.value_range
    everything = [*p.values_a, *p.values_b, p.truth_a, p.truth_b]
    assert lo < min(everything) and hi > max(everything)
    assert min(everything) == 470.0 and max(everything) == 700.0       # the actual outcomes are the extremes
    assert (lo, hi) == pytest.approx((470.0 - 23.0, 700.0 + 23.0))     # padded by 10 % of the span
    assert "Record r2 ends at 620 points, higher than Record r1 at 480 points (140 points apart)" in p.sentence


def test_multiclass_follows_one_class_on_both_sides():
    b = view([0.3] * 4, [500.0] * 4, [0.0] * 3, fo_final=(0.9, 0.1))
    p = compare_records(SPEC, A, b, "fo", record_a="r1", record_b="r2")
    assert p.class_index == 1                      # A's predicted class, followed on B even though B predicts 0
    np.testing.assert_allclose(p.values_b, [0.3, 0.4, 0.4, 0.1])
    np.testing.assert_allclose(p.shapley_a, [0.1, 0.0, 0.4])
    assert "probability of 'Poor'" in p.sentence
    assert compare_records(SPEC, A, b, "fo", record_a="r1", record_b="r2", class_index=0).values_b[-1] == 0.9


def test_identical_sides_and_mismatched_orders():
    p = compare_records(SPEC, A, A, "death", record_a="r1", record_b="r1")
    assert p.parts_at is None and not p.difference.any() and not p.step_difference.any()
    assert p.same_record and "the same prediction at every step (92% at the end)" in p.sentence
    other = view([0.3] * 4, [500.0] * 4, [0.0] * 3)
    object.__setattr__(other, "steps", ["prior", "c", "b", "a"])
    with pytest.raises(ValueError, match="different encoding orders"):
        compare_records(SPEC, A, other, "death", record_a="r1", record_b="r2")
    assert side_name(SPEC, "7", ["c", "a"]) == "Record 7 without Alpha and Chemistry"


# --- the shipped model ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("shipped checkpoints missing: run python data/train_checkpoints.py")
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    data = trained.prep.transform(load_dataset("support2"))
    return trained, data, {r: i for i, r in enumerate(data.ids)}


def _measured_row(trained, data, pos):
    names = trained.spec.modality_names
    return next(pos[r] for r in trained.info["test_ids"] if all(bool(data.present[m][pos[r]]) for m in names[:4]))


def test_a_record_against_itself_differs_nowhere(engine):
    trained, data, pos = engine
    row = _measured_row(trained, data, pos)
    p = record_pair(trained, data, row, row, "death")
    assert p.parts_at is None
    assert np.abs(p.difference).max() == 0.0 and np.abs(p.step_difference).max() == 0.0
    np.testing.assert_array_equal(p.shapley_a, p.shapley_b)


def test_switching_a_modality_off_on_one_side_differs_by_its_own_delta(engine):
    trained, data, pos = engine
    names = trained.spec.modality_names
    row = _measured_row(trained, data, pos)
    full = record_view(trained, data.subset([row]), None, names)
    k = int(np.abs(full.delta("death")[:4]).argmax()) + 1    # the step (0 is the prior) that moved most
    m = names[k - 1]
    assert abs(full.delta("death")[k - 1]) > 0.005           # a real change, so the check below can fail
    p = record_pair(trained, data, row, row, "death", off_b=[m])
    np.testing.assert_array_equal(p.values_a, full.value["death"])
    # identical before its step; at its step B stands still, so the gap is minus A's change there
    assert np.abs(p.difference[:k]).max() == 0.0
    assert p.difference[k] == pytest.approx(-full.delta("death")[k - 1], abs=1e-12)
    assert p.step_difference[k - 1] == pytest.approx(-full.delta("death")[k - 1], abs=1e-12)
    assert p.b.skipped[k - 1] and not p.a.skipped[k - 1]
    assert p.parts_at == k
    # B's Why bar of the switched-off modality is exactly zero (it is absent from every coalition)
    assert p.shapley_b[p.modalities.index(m)] == 0.0
    assert p.name_b.endswith("without " + trained.spec.modality(m).display)


def test_two_records_share_one_axis_and_one_modality_order(engine):
    trained, data, pos = engine
    test = trained.info["test_ids"]
    ra, rb = pos[test[0]], pos[test[1]]
    for task in trained.spec.task_names:
        p = record_pair(trained, data, ra, rb, task)
        assert p.modalities == list(trained.spec.modality_names)
        assert p.value_range[0] <= min(p.values_a.min(), p.values_b.min())
        assert p.value_range[1] >= max(p.values_a.max(), p.values_b.max())
        span = np.nanmax(np.abs(np.concatenate([p.shapley_a, p.shapley_b])))
        assert p.shapley_span == pytest.approx(span)
        # Shapley efficiency on each side: the bars add up to final − prior of the shown scalar
        assert np.nansum(p.shapley_a) == pytest.approx(p.values_a[-1] - p.values_a[0], abs=1e-6)
        assert np.nansum(p.shapley_b) == pytest.approx(p.values_b[-1] - p.values_b[0], abs=1e-6)
        assert p.to_json()["record_b"] == test[1]


# --- the page's figures (pure) ---------------------------------------------------------------------------------
def test_aligned_figures_use_the_shared_ranges_and_escape_names():
    from app import figures as F
    hostile = "<b>Alpha</b> & co"
    p = compare_records(SPEC, A, B, "score", record_a="r1", record_b="r2")
    figs = [F.aligned_step_chart(p.steps, ["Prior", hostile, "Blood gas", "Chemistry"], v, [False, True, False],
                                 value_range=p.value_range, task_type="regression", task_label="Score",
                                 colors=F.modality_colors(["a", "b", "c"]), units="points", truth=t,
                                 skip_reasons=["", F.SKIPPED_BY_YOU, ""])
            for v, t in ((p.values_a, p.truth_a), (p.values_b, p.truth_b))]
    assert [list(f.layout.yaxis.range) for f in figs] == [list(p.value_range)] * 2
    ticks = list(figs[0].layout.xaxis.ticktext)
    assert ticks[1] == "&lt;b&gt;Alpha&lt;/b&gt; &amp; co" and "color" in ticks[2]      # escaped; skipped step grey
    assert not any(t.showlegend for t in figs[0].data if t.legend == "legend2")     # one key on the page instead
    d = compare_records(SPEC, A, B, "death", record_a="r1", record_b="r2")
    bars = [F.aligned_shapley_bars(d.modalities, [hostile, "Blood gas", "Chemistry"], s,
                                   F.modality_colors(d.modalities), span=d.shapley_span, task_type="binary",
                                   task_label="Death")
            for s in (d.shapley_a, d.shapley_b)]
    room = F.PAIR_BAR_ROOM * 100 * d.shapley_span
    assert [list(f.layout.xaxis.range) for f in bars] == [[-room, room]] * 2
    assert bars[0].layout.height == bars[1].layout.height
    assert "<b>Alpha" not in " ".join(bars[0].layout.yaxis.ticktext)


def test_the_sentence_names_a_switched_off_bar_instead_of_a_zero():
    b = view([0.30, 0.40, 0.40, 0.40], [500.0] * 4, [0.10, 0.0, 0.0])
    p = compare_records(SPEC, A, b, "death", record_a="r1", record_b="r1", off_b=("c",))
    assert p.name_b == "Record r1 without Chemistry" and p.parts_at == 3
    assert p.sentence.endswith("the Why bars differ most for Chemistry (switched off for B, +47 points for A).")
