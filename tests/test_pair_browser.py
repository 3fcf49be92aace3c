"""Compare two records in headless Chromium: a shared link opens both records with their switches; the plotted
step values and Why bars of each side equal the engine's (mmn_core.explain, computed here without the app), both
step charts share one value axis and both Why charts one scale and modality order; the Explorer's link carries
its record. Skips without Chromium, except under MMN_REQUIRE_BROWSER=1 (CI), where it fails.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from browser_support import (chromium, running_app, ROOT, figure, shot,
                             step_values, wait_figure, wait_idle)

pytestmark = pytest.mark.browser
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
TASK = "death"
T = 90_000                              # ms; a busy 2-core machine runs torch for several sessions at once

_RANGES_JS = """(key) => {
  const els = document.querySelectorAll(`.st-key-${key} .js-plotly-plot`);
  const el = els[els.length - 1];
  if (!el || !el._fullLayout) return null;
  return {x: Array.from(el._fullLayout.xaxis.range), y: Array.from(el._fullLayout.yaxis.range)};
}"""


@pytest.fixture(scope="module")
def server():
    with running_app("pair") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as br:
        yield br


@pytest.fixture(scope="module")
def engine():
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    data = trained.prep.transform(load_dataset("support2"))
    return trained, data, {r: i for i, r in enumerate(data.ids)}


def _expected(engine, rid: str, off: list[str]):
    """(step values in %, Shapley bars in points in spec order) of `rid` with `off` switched off."""
    from mmn_core import explain as E
    trained, data, pos = engine
    names = trained.spec.modality_names
    one = data.subset([pos[rid]])
    mask = {m: np.array([bool(data.present[m][pos[rid]]) and m not in off]) for m in names}
    v = E.record_view(trained, one, mask, names)
    phi = np.asarray(v.shapley[TASK])[[v.shapley_modalities.index(m) for m in names]]
    return 100 * v.value[TASK], 100 * phi


def test_a_shared_comparison_shows_both_records_with_the_engine_values(browser, server, engine):
    trained, data, pos = engine
    names = trained.spec.modality_names
    test = trained.info["test_ids"]
    full = [r for r in test if all(bool(data.present[m][pos[r]]) for m in ("vitals", "basic_labs"))]
    ra, rb = full[0], next(r for r in test if r != full[0] and not all(bool(data.present[m][pos[r]]) for m in names))
    off_a = ["vitals", "basic_labs"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(T)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server.url}/compare-records?dataset=support2&record={ra}&off={','.join(off_a)}"
                  f"&record2={rb}&task={TASK}")
        fa = wait_figure(page, "pa_chart_a", timeout=T)
        fb = wait_figure(page, "pa_chart_b", timeout=T)
        wait_idle(page)
        assert page.locator(".st-key-pa_record_a input").first.input_value().startswith(ra)
        assert page.locator(".st-key-pa_record_b input").first.input_value().startswith(rb)
        for fig, rid, off in ((fa, ra, off_a), (fb, rb, [])):
            want, phi = _expected(engine, rid, off)
            np.testing.assert_allclose(step_values(fig), want, rtol=0, atol=1e-6)
            key = "pa_why_a" if rid == ra else "pa_why_b"
            bars = figure(page, key)["traces"][0]
            np.testing.assert_allclose(bars["x"], phi, rtol=0, atol=1e-6)
            labels = [trained.spec.modality(m).display for m in names]
            assert [str(y).replace("&amp;", "&") for y in bars["y"]] == labels      # one order on both sides
        # side A's switched-off steps stay flat and say so; both sides share one value axis and one bar scale
        a = step_values(fa)
        for m in off_a:
            k = names.index(m) + 1
            assert a[k] == a[k - 1]
            marks = next(t for t in fa["traces"] if t["mode"] == "markers")
            assert marks["symbols"][k] == "circle-open"                  # hollow: switched off, not "not measured"
        ra_, rb_ = page.evaluate(_RANGES_JS, "pa_chart_a"), page.evaluate(_RANGES_JS, "pa_chart_b")
        assert ra_["y"] == rb_["y"] == [-4, 104]
        wa, wb = page.evaluate(_RANGES_JS, "pa_why_a"), page.evaluate(_RANGES_JS, "pa_why_b")
        span = max(np.abs(_expected(engine, ra, off_a)[1]).max(), np.abs(_expected(engine, rb, [])[1]).max())
        room = 1.5                                      # app.figures.PAIR_BAR_ROOM
        np.testing.assert_allclose(wa["x"], [-room * span, room * span], rtol=1e-9)
        assert wa["x"] == wb["x"]
        summary = page.locator(".st-key-pa_summary").inner_text()
        assert f"Record {rb} ends at" in summary and f"Record {ra} without" in summary
        shot(page, "30-compare-records")
        assert not errors, errors
    finally:
        ctx.close()


def test_the_explorer_link_opens_the_comparison_on_its_record(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(T)
    try:
        page.goto(f"{server.url}/?dataset=support2&task={TASK}")     # the Explorer is the main page
        wait_figure(page, f"ex_chart__{TASK}", timeout=T)
        page.wait_for_function("() => new URLSearchParams(location.search).has('record')", timeout=T)
        wait_idle(page)
        rid = page.evaluate("() => new URLSearchParams(location.search).get('record')")
        page.get_by_role("link", name="Compare with another record").click()
        wait_figure(page, "pa_chart_a", timeout=T)
        wait_idle(page)
        assert page.locator(".st-key-pa_record_a input").first.input_value().startswith(rid)
        assert page.evaluate("() => new URLSearchParams(location.search).get('record')") == rid
        assert Path(page.url).name.startswith("compare-records")
    finally:
        ctx.close()
