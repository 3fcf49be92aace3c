"""The Explorer's overview: every outcome x every step of one record, from the engine's RecordView."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app import figures as F
from mmn_core.explain.browse import step_overview


def _task(name, type_, units=""):
    return SimpleNamespace(name=name, type=type_, units=units)


def test_step_overview_numbers():
    view = SimpleNamespace(
        steps=["prior", "a", "b", "c"], skipped=np.array([False, True, False]),
        value={"risk": np.array([0.2, 0.5, 0.5, 0.4]),
               "kind": np.array([[0.5, 0.5], [0.4, 0.6], [0.4, 0.6], [0.1, 0.9]]),
               "size": np.array([10.0, 12.0, 12.0, 11.0])})
    tasks = [_task("risk", "binary"), _task("kind", "multiclass"), _task("size", "regression", "cm")]
    ov = step_overview(view, tasks)
    assert ov.steps == ["a", "b", "c"] and ov.tasks == ["risk", "kind", "size"]
    np.testing.assert_allclose(ov.change[0], [30.0, np.nan, -10.0])
    np.testing.assert_allclose(ov.change[1], [10.0, np.nan, 30.0])       # the finally predicted class (index 1)
    np.testing.assert_allclose(ov.change[2], [2.0, np.nan, -1.0])
    assert ov.classes == [None, 1, None] and ov.units == ["points", "points", "cm"]
    np.testing.assert_allclose(ov.final, [40.0, 90.0, 11.0])
    np.testing.assert_allclose(np.nanmax(np.abs(ov.relative), axis=1), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(ov.relative[0], [1.0, np.nan, -1 / 3])
    # the changes that ran telescope to final − prior
    for t, v in view.value.items():
        i = ov.tasks.index(t)
        vv = v[:, 1] if v.ndim == 2 else v
        scale = 1.0 if t == "size" else 100.0
        assert np.nansum(ov.change[i]) == pytest.approx(scale * (vv[-1] - vv[0]))


def test_an_all_zero_row_is_zero_not_nan():
    view = SimpleNamespace(steps=["prior", "a"], skipped=np.array([False]), value={"r": np.array([0.3, 0.3])})
    ov = step_overview(view, [_task("r", "binary")])
    assert ov.relative.tolist() == [[0.0]]


def test_step_overview_figure_cells_and_escaping():
    fig = F.step_overview(["Death <b>", "Size"], ["Vitals", "Labs & <i>x</i>"],
                          np.array([[12.34, np.nan], [-1.5, 0.0]]), np.array([[1.0, np.nan], [-1.0, 0.0]]),
                          ["points", "c<m>"], ["87%", "11 cm"])
    h = fig.data[0]
    assert [list(r) for r in h.text] == [["+12.3 pts", "–"], ["−1.50 c&lt;m&gt;", "+0 c&lt;m&gt;"]]
    assert h.zmin == -1 and h.zmax == 1 and h.zmid == 0
    assert "<b>" not in "".join(fig.layout.yaxis.ticktext) and "&lt;b&gt;" in fig.layout.yaxis.ticktext[0]
    assert "<i>" not in "".join(fig.layout.xaxis.ticktext)
    assert "ends at 87%" in fig.layout.yaxis.ticktext[0]


def test_explorer_shows_the_overview_and_only_the_focus_chart_open():
    from streamlit.testing.v1 import AppTest
    app = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    at = AppTest.from_file(str(app), default_timeout=300).run()
    assert not at.exception
    ids = [c.proto.id for c in at.get("plotly_chart")]
    assert any("ex_overview" in i for i in ids)
    expanders = [e for e in at.expander if e.label == "Step charts of the other outcomes"]
    assert len(expanders) == 1
    inside = [c.proto.id for c in expanders[0].get("plotly_chart")]
    assert any("ex_chart__death_180d" in i for i in inside) and not any("ex_chart__death-" in i or
                                                                          i.endswith("ex_chart__death") for i in inside)


def test_biggest_movers_first_and_never_a_skipped_step():
    from mmn_core.explain.narration import biggest_movers
    v = np.array([0.5, 0.6, 0.6, 0.2, 0.25, 0.9])        # changes +.10, 0 (skipped), −.40, +.05, +.65
    skipped = [False, True, False, False, False]
    assert biggest_movers(v, skipped) == [5, 3, 1]
    assert biggest_movers(v, skipped, k=10) == [5, 3, 1, 4]
    assert biggest_movers(np.array([0.3, 0.3]), [False]) == []             # a step that changed nothing
    mc = np.array([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])                   # class 0 ends highest
    assert biggest_movers(mc, [False, False]) == [2, 1]
    assert biggest_movers(mc, [False, False], cls=1) == [2, 1]


def test_why_tab_summary_lists_the_biggest_movers_and_folds_every_step():
    from streamlit.testing.v1 import AppTest
    from app import state as S
    app = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    at = AppTest.from_file(str(app), default_timeout=300).run()
    at.session_state[S.EX_TABS] = "Why"
    at.run()
    assert not at.exception
    folded = [e for e in at.expander if e.label.startswith("Every step, in order")]
    assert len(folded) == 1
    summary = next(m.value for m in at.markdown if m.value.startswith("- Before any data"))
    bullets = summary.split("\n")
    assert 2 <= len(bullets) <= 4 and all(b.startswith("- ") for b in bullets)
    full = folded[0].markdown[0].value.split("\n")
    from mmn_core import load_dataset
    assert len(full) == len(load_dataset("support2").spec.modality_names) + 1   # the prior + every step
    assert all(b[2:] in "\n".join(full) for b in bullets)                       # the summary's sentences are its own
