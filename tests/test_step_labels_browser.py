"""The Explorer's step chart at 1,280 px (sidebar open): its plot area is at least as wide as the figure code
assumes (app.figures.STEP_PLOT_PX), flat tick labels never overlap, and SUPPORT2's twelve are slanted (Playwright)."""
from __future__ import annotations


import pytest

from browser_support import ARTIFACTS, chromium, running_app, wait_figure, wait_idle

pytestmark = pytest.mark.browser
T = 120_000

_TICKS = """(key) => {
  const root = document.querySelector('.st-key-' + key);
  const plot = root.querySelector('.nsewdrag').getBoundingClientRect();
  const ticks = Array.from(root.querySelectorAll('g.xtick text')).map(t => {
    const r = t.getBoundingClientRect();
    return {left: r.left, right: r.right, rotated: (t.getAttribute('transform') || '').includes('rotate')};
  });
  return {plot_width: plot.width, ticks};
}"""


@pytest.mark.parametrize("dataset,task,slanted", [("support2", "death", True), ("star", "pass3", False)])
def test_step_labels_never_overlap_at_1280(dataset, task, slanted):
    from app.figures import STEP_PLOT_PX
    with running_app(f"ticks-{dataset}") as srv, chromium() as br:
        page = br.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(T)
        page.goto(f"{srv.url}/?dataset={dataset}&task={task}")
        key = f"ex_chart__{task}"
        wait_figure(page, key, timeout=T)
        wait_idle(page)
        got = page.evaluate(_TICKS, key)
        page.locator(f".st-key-{key}").screenshot(path=str(ARTIFACTS / f"step-labels-{dataset}.png"))
        assert got["plot_width"] >= STEP_PLOT_PX - 1, got["plot_width"]
        ticks = got["ticks"]
        assert len(ticks) >= 5
        assert all(t["rotated"] == slanted for t in ticks), ticks
        if not slanted:
            for a, b in zip(ticks, ticks[1:]):
                assert a["right"] <= b["left"] + 0.5, (a, b)
