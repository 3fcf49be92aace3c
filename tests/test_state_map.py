"""The Explorer's cohort map of hidden states (F.state_map): outcome named, labels apart, dots carry record ids."""
import numpy as np
import pytest

from app import figures as F

STEPS, LABELS = ["prior", "a", "b"], ["Prior", "A", "B"]


def _map(path, y=None, **kw):
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(6, 2))
    y = np.array([0, 1, 1, 0, np.nan, 1.0]) if y is None else y
    args = dict(outcome_type="binary", outcome_label="Survived", classes=["no", "yes"], path_xy=path, steps=STEPS,
                step_labels=LABELS, colors={}, skipped=[False, False], ids=[f"r{i}" for i in range(6)])
    args.update(kw)
    return xy, F.state_map(xy, y, **args)


def _label_boxes(fig):
    """(x offset, y offset) in pixels of each label's text from its point."""
    return {a.text: (a.ax, a.ay) for a in fig.layout.annotations}


@pytest.mark.parametrize("end", [(1.0, 0.0), (-1.0, 0.0), (0.0, 0.0)])
def test_start_and_final_labels_point_away_from_each_other(end):
    path = np.array([[0.0, 0.0], [0.5, 0.1], end])
    _, fig = _map(path)
    boxes = _label_boxes(fig)
    assert set(boxes) == {"Start (no data)", "Final"}              # the middle steps: hover only
    (sx, sy), (fx, fy) = boxes["Start (no data)"], boxes["Final"]
    assert sx * fx < 0 and sy * fy < 0                              # opposite sides, even when the points coincide
    assert abs(sx - fx) >= 100 and abs(sy - fy) >= 60               # two 12 px labels cannot touch
    # the start label sits on the side away from the end
    assert np.sign(sx) == (-1 if end[0] >= 0 else 1)
    assert not any(t.mode and "text" in t.mode for t in fig.data)   # no text labels on the markers themselves


def test_legend_names_the_outcome_and_dots_carry_their_record():
    path = np.zeros((3, 2))
    xy, fig = _map(path)
    names = [t.name for t in fig.data]
    assert names == ["outcome unknown", "Survived: no", "Survived: yes", "this record, step by step"]
    yes = fig.data[2]
    assert [c[0] for c in yes.customdata] == ["r1", "r2", "r5"]
    np.testing.assert_allclose(np.asarray(yes.x), xy[[1, 2, 5], 0])
    assert "actual Survived: yes" in yes.hovertemplate and "click" in yes.hovertemplate
    assert fig.layout.clickmode == "event+select"
    assert "what actually happened (Survived)" in fig.layout.title.text


def test_record_ids_are_shown_escaped_but_returned_as_written():
    ids = ["<b>x</b>", "a&b", "c", "d", "e", "f"]
    _, fig = _map(np.zeros((3, 2)), ids=ids)
    no = fig.data[1]
    assert [c[0] for c in no.customdata] == ["<b>x</b>", "d"]        # what a click hands back: the real id
    assert no.customdata[0][1] == F.esc("<b>x</b>") != "<b>x</b>"    # what the hover shows: literal text
    assert "%{customdata[1]}" in no.hovertemplate


def test_regression_colour_bar_names_the_value_and_units():
    y = np.array([1.0, 2, 3, 4, 5, 6])
    _, fig = _map(np.zeros((3, 2)), y=y, outcome_type="regression", outcome_label="Score", classes=None,
                  units="points")
    cb = fig.data[0].marker.colorbar
    assert cb.title.text == "Actual Score (points)"
    np.testing.assert_allclose(np.asarray(fig.data[0].marker.color), y)


def test_without_ids_the_cohort_is_not_hoverable_and_nothing_breaks():
    _, fig = _map(np.zeros((3, 2)), ids=None)
    assert fig.data[1].customdata is None and fig.data[1].hoverinfo == "skip"


def test_a_click_names_the_dot_s_record_and_nothing_else():
    from app.components import clicked_record
    assert clicked_record({"points": [{"curve_number": 1, "point_index": 3, "customdata": ["r7", "r7"]}]}) == "r7"
    assert clicked_record({"points": [{"curve_number": 3, "point_index": 0}]}) is None     # the record's own path
    assert clicked_record({"points": []}) is None and clicked_record(None) is None
    _, fig = _map(np.zeros((3, 2)))                     # the ids the figure hands out are the ones read back
    for t in fig.data[:-1]:
        for i, cd in enumerate(t.customdata):
            assert clicked_record({"points": [{"customdata": list(cd), "point_index": i}]}) == cd[0]
