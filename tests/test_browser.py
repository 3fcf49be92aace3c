"""End-to-end tests of the dashboard in headless Chromium (Playwright, the system /usr/bin/chromium).

One app server (`streamlit run app/streamlit_app.py`, the README's command) and one browser serve the module.
Plotted numbers are read from Plotly's own figure data in the page and compared with mmn_core.explain.trace
computed here, independently of the app. Screenshots of every step: test-artifacts/browser/*.png.
Skips when Chromium is missing, except under MMN_REQUIRE_BROWSER=1 (CI), where it fails.
"""
from __future__ import annotations

import html
import json
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from browser_support import (chromium, running_app, ARTIFACTS, ROOT, AppServer, figure, shot,
                             step_values, wait_figure, wait_idle)

pytestmark = pytest.mark.browser
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
TASK = "death"                          # the first task: its chart is `ex_chart__death`
CHART = f"ex_chart__{TASK}"
VIEWPORT = {"width": 1400, "height": 1300}
T = 90_000                              # ms; a busy 2-core machine runs torch for several sessions at once
XSS = "<img src=x onerror=alert(1)>"


# --- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with running_app("browser") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as br:
        yield br


class Watched:
    """A page with every dialog, page error and console error recorded (dialogs are dismissed)."""

    def __init__(self, browser, **ctx):
        self.context = browser.new_context(viewport=VIEWPORT, **ctx)
        self.page = self.context.new_page()
        self.page.set_default_timeout(T)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400
                     else None)

    def close(self):
        self.context.close()


def open_explorer(browser, url: str) -> Watched:
    w = Watched(browser)
    w.page.goto(url)
    wait_figure(w.page, CHART, timeout=T)
    w.page.wait_for_function("() => new URLSearchParams(location.search).has('record')", timeout=T)
    wait_idle(w.page)
    return w


@pytest.fixture(scope="module")
def explorer(browser, server):
    """The default launch (Explorer, SUPPORT2, shipped checkpoint), shared by the Explorer tests in order."""
    w = open_explorer(browser, server.url)
    yield w
    w.close()


@pytest.fixture(scope="module")
def engine():
    """The shipped model and data loaded without Streamlit, for expected values."""
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    data = trained.prep.transform(load_dataset("support2"))
    return trained, data, {r: i for i, r in enumerate(data.ids)}


def expected(engine, rid: str, use, order, task: str = TASK) -> np.ndarray:
    """Values of `task` after every step (prior first) from mmn_core.explain.trace, only `use` switched on."""
    from mmn_core import explain as E
    trained, data, pos = engine
    one = data.subset([pos[rid]])
    mask = {m: np.array([m in use]) for m in trained.spec.modality_names}
    return E.trace(trained, one, mask, list(order)).value[task][:, 0]


def measured(engine, rid: str) -> list[str]:
    trained, data, pos = engine
    return [m for m in trained.spec.modality_names if bool(data.present[m][pos[rid]])]


def record_id(page) -> str:
    return parse_qs(urlparse(page.url).query)["record"][0]


def toggle(page, modality: str, before: list) -> dict:
    """Switch one modality's toggle and wait until the step chart shows other numbers."""
    page.locator(f".st-key-ex_use__{modality} label").first.click()
    fig = wait_figure(page, CHART, changed_from=before, timeout=T)
    wait_idle(page)
    return fig


def button(page, key: str):
    """The visible button of a widget key (Streamlit keeps a second, hidden copy of a button with help text)."""
    return page.locator(f".st-key-{key} button:visible").first


def shown_value(page, key: str) -> str:
    """The text a selectbox shows (its input's value)."""
    return page.locator(f".st-key-{key} input").first.input_value()


def goto_page(page, url: str, title: str) -> None:
    """Open the app and go to a page through the sidebar as soon as the link shows, as an impatient user does
    (while the Explorer's first run may still be going). A deep link such as /mnar works too, but Streamlit's
    frontend first probes /mnar/_stcore/health and logs two harmless 404s."""
    page.goto(url)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()


def assert_plotted(fig: dict, want: np.ndarray) -> None:
    got = np.asarray(step_values(fig), dtype=float)
    np.testing.assert_allclose(got, 100 * want, rtol=0, atol=1e-6)


def no_errors(w: Watched) -> None:
    assert not w.dialogs, f"dialogs opened: {w.dialogs}"
    assert not w.errors, f"browser errors: {w.errors}"


# --- Explorer --------------------------------------------------------------------------------------------------
def test_opens_on_the_explorer_with_the_engine_prediction(explorer, engine):
    page = explorer.page
    trained = engine[0]
    names = trained.spec.modality_names
    rid = record_id(page)
    assert rid in trained.info["test_ids"]                   # a held-out record, as the caption says
    assert page.get_by_role("heading", name=f"Record {rid}").is_visible()
    fig = figure(page, CHART)
    use = measured(engine, rid)
    assert fig["ticks"][:len(names) + 1] == ["Prior"] + [trained.spec.modality(m).display for m in names]
    assert_plotted(fig, expected(engine, rid, use, names))
    for m in names:                                           # a toggle is on exactly when the data exist
        box = page.locator(f".st-key-ex_use__{m} input")
        assert box.is_checked() == (m in use), m
        assert box.is_disabled() == (m not in use), m
        # its accessible name is the plain name: no colour markup, no Markdown backslashes
        assert box.get_attribute("aria-label") == trained.spec.modality(m).display, m
        row = page.locator(f".st-key-ex_row__{m}").inner_text()
        assert ("not measured" in row) == (m not in use), m   # a missing modality says so, in full
        assert "…" not in row
    shot(page, "01-explorer-open")
    no_errors(explorer)


def test_toggling_a_modality_changes_the_chart_to_the_engine_values(explorer, engine):
    from app.figures import pct
    page = explorer.page
    names = engine[0].spec.modality_names
    rid = record_id(page)
    use = measured(engine, rid)
    full = expected(engine, rid, use, names)
    # the modality whose removal moves the final prediction most: the change is visible in the headline too
    m = max(use, key=lambda k: abs(expected(engine, rid, [u for u in use if u != k], names)[-1] - full[-1]))
    want = expected(engine, rid, [u for u in use if u != m], names)
    assert abs(want[-1] - full[-1]) > 1e-3, "no modality changes this record's prediction"
    before = step_values(figure(page, CHART))
    fig = toggle(page, m, before)
    assert_plotted(fig, want)
    j = names.index(m) + 1
    markers = next(t for t in fig["traces"] if t["mode"] == "markers")
    assert markers["symbols"][j] == "circle-open"            # the switched-off step is drawn hollow
    assert sum(s == "circle-open" for s in markers["symbols"]) == 1
    # and differs from the steps never measured (crossed)
    assert sum(s == "circle-x-open" for s in markers["symbols"]) == len(names) - len(use)
    assert not page.locator(f".st-key-ex_use__{m} input").is_checked()
    assert "skipped by you" in page.locator(f".st-key-ex_row__{m}").inner_text()
    metric = page.get_by_test_id("stMetricValue").first
    assert metric.inner_text().strip() == pct(want[-1])
    assert parse_qs(urlparse(page.url).query)["off"] == [m]  # the shareable link carries the switch
    shot(page, "02-explorer-toggled-off")
    no_errors(explorer)


def test_reorder_moves_the_step_and_repredicts(explorer, engine):
    from app.figures import pct
    page = explorer.page
    spec = engine[0].spec
    names = list(spec.modality_names)
    rid = record_id(page)
    q = parse_qs(urlparse(page.url).query)
    off = q.get("off", [""])[0].split(",")
    use = [m for m in measured(engine, rid) if m not in off]
    before = figure(page, CHART)
    assert before["ticks"][1:len(names) + 1] == [spec.modality(m).display for m in names]
    # swap two neighbours that both run (swapping with a skipped step changes nothing): the pair that moves the
    # final prediction most, so the re-prediction is visible
    now = expected(engine, rid, use, names)[-1]

    def swapped(i):
        return names[:i] + [names[i + 1], names[i]] + names[i + 2:]
    pairs = [i for i in range(len(names) - 1) if names[i] in use and names[i + 1] in use]
    i = max(pairs, key=lambda i: abs(expected(engine, rid, use, swapped(i))[-1] - now))
    order = swapped(i)
    want = expected(engine, rid, use, order)
    assert abs(want[-1] - now) > 1e-4, "no reorder changes this record's prediction"
    button(page, f"ex_down__{names[i]}").click()
    page.wait_for_function(
        """([key, j, want]) => { const e = document.querySelectorAll(`.st-key-${key} .js-plotly-plot`);
                                 const el = e[e.length - 1];
                                 if (!el || !el._fullLayout) return false;
                                 const t = el._fullLayout.xaxis.ticktext[j] || '';
                                 return t.replace(/<br>/g, ' ').replace(/<[^>]+>/g, '') === want; }""",
        arg=[CHART, i + 1, html.escape(spec.modality(names[i + 1]).display, quote=False)], timeout=T)
    wait_idle(page)
    fig = figure(page, CHART)
    assert fig["ticks"][1:len(names) + 1] == [spec.modality(m).display for m in order]
    assert_plotted(fig, want)
    assert page.get_by_test_id("stMetricValue").first.inner_text().strip() == pct(want[-1])
    assert parse_qs(urlparse(page.url).query)["order"] == [",".join(order)]
    assert button(page, f"ex_up__{order[0]}").is_disabled()       # the ends cannot move further
    assert button(page, f"ex_down__{order[-1]}").is_disabled()
    shot(page, "03-explorer-reordered")
    no_errors(explorer)


def test_html_report_downloads_and_opens_offline(explorer, engine, browser):
    from mmn_core import explain as E
    page = explorer.page
    trained, data, pos = engine
    spec = trained.spec
    rid = record_id(page)
    q = parse_qs(urlparse(page.url).query)
    off = q.get("off", [""])[0].split(",")
    order = q["order"][0].split(",") if "order" in q else list(spec.modality_names)
    use = [m for m in measured(engine, rid) if m not in off]
    with page.expect_download(timeout=T) as dl:
        button(page, "ex_report").click()
    path = ARTIFACTS / f"report-{rid}.html"
    dl.value.save_as(path)
    text = path.read_text(encoding="utf-8")
    mask = {m: np.array([m in use]) for m in spec.modality_names}
    tr = E.trace(trained, data.subset([pos[rid]]), mask, order)
    sentences = E.narrative(tr, 0, TASK, spec)
    assert rid in text
    for s in sentences:                                      # the narrative of this exact view (toggles, order)
        assert html.escape(s, quote=True) in text, s
    # opens from disk with no network, no script errors, and the charts draw
    w = Watched(browser)
    outside: list[str] = []
    w.page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:", "blob:"))
              else None)
    w.page.goto(path.as_uri())
    w.page.wait_for_selector(".js-plotly-plot .main-svg", timeout=T)
    body = w.page.inner_text("body")
    assert rid in body and sentences[1] in body
    shot(w.page, "04-report-opened")
    assert not outside, f"the report fetched {outside[:3]}"
    no_errors(w)
    w.close()


# --- sessions -----------------------------------------------------------------------------------------------
def test_two_browser_contexts_do_not_share_toggles(browser, server, engine):
    names = engine[0].spec.modality_names
    a = open_explorer(browser, server.url)
    b = open_explorer(browser, server.url)
    try:
        rid = record_id(a.page)
        assert record_id(b.page) == rid
        use = measured(engine, rid)
        m1, m2, m3 = use[0], use[-1], use[len(use) // 2]
        assert len({m1, m2, m3}) == 3
        full = step_values(figure(b.page, CHART))
        fa = toggle(a.page, m1, step_values(figure(a.page, CHART)))
        assert_plotted(fa, expected(engine, rid, [u for u in use if u != m1], names))
        # B, untouched, still shows all its data, and switching something else there does not reach A
        assert step_values(figure(b.page, CHART)) == full
        assert b.page.locator(f".st-key-ex_use__{m1} input").is_checked()
        fb = toggle(b.page, m2, full)
        assert_plotted(fb, expected(engine, rid, [u for u in use if u != m2], names))
        fa = toggle(a.page, m3, step_values(fa))
        assert_plotted(fa, expected(engine, rid, [u for u in use if u not in (m1, m3)], names))
        assert a.page.locator(f".st-key-ex_use__{m2} input").is_checked()
        assert not b.page.locator(f".st-key-ex_use__{m1} input").is_disabled()
        assert b.page.locator(f".st-key-ex_use__{m3} input").is_checked()
        shot(a.page, "05-session-a")
        shot(b.page, "05-session-b")
        no_errors(a)
        no_errors(b)
    finally:
        a.close()
        b.close()


# --- MNAR lab ----------------------------------------------------------------------------------------------------
def test_mnar_lab_runs_a_tiny_experiment(browser, server):
    w = Watched(browser)
    page = w.page
    try:
        goto_page(page, server.url, "MNAR lab")
        page.wait_for_selector(".st-key-mn_run button", timeout=T)
        wait_idle(page)
        assert shown_value(page, "dataset").startswith("SUPPORT2")      # a fresh session: the default dataset
        assert shown_value(page, "mn_modality") == "Arterial blood gas (day 3)"
        rates = page.locator(".st-key-mn_rates")
        for r in ("20%", "40%", "80%"):
            rates.get_by_role("button", name=f"Remove {r}").click()
            wait_idle(page)
        for key, v in (("mn_folds", "1"), ("mn_epochs", "2")):
            box = page.locator(f".st-key-{key} input")
            box.fill(v)
            box.press("Enter")
            wait_idle(page)
        # 1 fold × rates {0%, 60%} × 2 models
        page.get_by_text("4 trainings with these settings").wait_for(timeout=T)
        # still SUPPORT2 after those clicks: the page link was clicked while the Explorer's first run was going,
        # which once made the re-mounted dataset picker send its first option (STAR) as a switch
        assert shown_value(page, "dataset").startswith("SUPPORT2")
        assert shown_value(page, "mn_modality") == "Arterial blood gas (day 3)"
        shot(page, "06-mnar-configured")
        button(page, "mn_run").click()
        page.get_by_test_id("stProgress").wait_for(timeout=T)
        shot(page, "07-mnar-progress")
        page.wait_for_selector(".st-key-mn_chart .js-plotly-plot .main-svg", timeout=240_000)
        wait_idle(page)
        page.get_by_text("What you are seeing").wait_for(timeout=T)
        assert page.get_by_test_id("stProgress").count() == 0
        fig = figure(page, "mn_chart")
        stored = list((server.cache_dir / "mnar").glob("*.json"))
        assert len(stored) == 1
        body = json.loads(stored[0].read_text())          # {"config": the run's settings, "result": ...}
        assert body["config"]["modality"] == "blood_gas" and body["config"]["dataset"] == "support2"
        rows = body["result"]["results"]
        names = {"multimodn": "MultiModN", "pfusion": "P-Fusion"}
        for kind in names:
            for test in ("clean", "reversed"):
                tr = next(t for t in fig["traces"] if t["name"] == f"{names[kind]} · {test} test")
                sel = sorted((r for r in rows if r["model"] == kind and r["test"] == test), key=lambda r: r["rate"])
                assert tr["x"] == [0, 60]
                np.testing.assert_allclose(tr["y"], [r["auroc"] for r in sel], atol=1e-12)
                assert all(0 <= y <= 1 for y in tr["y"])
        shot(page, "08-mnar-result")
        no_errors(w)
    finally:
        w.close()


# --- hostile upload ---------------------------------------------------------------------------------------------
def test_uploaded_markup_names_render_as_text(browser, server, tmp_path):
    from playwright.sync_api import expect
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(80)], XSS: rng.normal(size=80), "b": rng.normal(size=80),
                          "y": rng.integers(0, 2, 80)})
    csv = tmp_path / "hostile.csv"
    frame.to_csv(csv, index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: hostile\ntitle: '{XSS}'\nid_column: id\nmodalities:\n"
                    f"- name: first\n  label: '{XSS}'\n  columns: ['{XSS}']\n"
                    f"- name: second\n  columns: [b]\ntasks:\n- name: y\n  column: y\n  type: binary\n")
    w = Watched(browser)
    page = w.page
    try:
        goto_page(page, server.url, "Model")
        own = page.locator(".st-key-md_source").get_by_text("Use your own data")
        own.wait_for(timeout=T)
        wait_idle(page)
        own.click()
        page.wait_for_selector(".st-key-md_upload_data input[type=file]", state="attached", timeout=T)
        # one file at a time, each until Streamlit lists it and its rerun ends: a second upload sent during the
        # first one's rerun could be dropped on a busy machine (seen in a full-suite run under load)
        for key, path in (("md_upload_data", csv), ("md_upload_spec", spec)):
            page.locator(f".st-key-{key} input[type=file]").set_input_files(str(path))
            page.locator(f".st-key-{key}").get_by_text(path.name).wait_for(timeout=T)
            wait_idle(page)
        use = button(page, "md_use_upload")
        use.wait_for(timeout=T)
        expect(use).to_be_enabled(timeout=T)
        use.click()
        page.get_by_role("heading", name=XSS).wait_for(timeout=T)     # the title, as plain text
        wait_idle(page)
        shot(page, "09-upload-accepted")
        # a model on it (1 epoch), then the Explorer, where the names reach the most places
        page.locator(".st-key-md_source").get_by_text("Train here").click()
        page.wait_for_selector(".st-key-md_train button", timeout=T)
        wait_idle(page)
        page.locator(".st-key-md_kinds").get_by_role("button", name="Remove P-Fusion").click()
        wait_idle(page)
        box = page.locator(".st-key-md_epochs input")
        box.fill("1")
        box.press("Enter")
        wait_idle(page)
        button(page, "md_train").click()
        page.get_by_text("Model card").wait_for(timeout=T)
        page.wait_for_selector(".st-key-md_matrix_chart .js-plotly-plot", timeout=T)
        wait_idle(page)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Explorer").click()
        wait_figure(page, "ex_chart__y", timeout=T)
        wait_idle(page)
        toggle_label = page.locator(".st-key-ex_use__first")
        assert XSS in toggle_label.inner_text()
        assert page.get_by_text(XSS, exact=False).first.is_visible()
        shot(page, "10-upload-explorer")
        assert page.locator("img[src='x']").count() == 0        # never parsed as markup anywhere
        assert page.evaluate("() => document.body.innerHTML.includes('<img src=\"x\"')") is False
        no_errors(w)
    finally:
        w.close()


# --- How much to trust this, What to measure next, the Cohort's faithfulness tab ---------------------------------
def test_trust_and_measure_panels_show_the_engine_numbers(browser, engine, tmp_path):
    """At 1280 x 800: the trust element's curve equals mmn_core.panels.record_trust, the What-to-measure-next
    spread equals mmn_core.panels.measure_next (both with the record's own data), and the Cohort's faithfulness
    curves equal mmn_core.panels.cohort_curves on the same sample. Screenshots: test-artifacts/browser/1[0-2]-*.png"""
    from mmn_core import acquire as AQ
    from mmn_core import load_dataset
    from mmn_core import panels as P
    trained, data, pos = engine
    srv = AppServer(env={"MMN_LENS_CACHE": str(tmp_path), "MMN_LENS_FAITH_RECORDS": "40"},
                    log=ARTIFACTS / "server-panels.log")
    try:
        srv.wait_healthy()
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.set_default_timeout(T)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(srv.url)
        wait_figure(page, CHART, timeout=T)
        page.wait_for_function("() => new URLSearchParams(location.search).has('record')", timeout=T)
        wait_idle(page)
        rid = record_id(page)
        use = measured(engine, rid)
        trust = P.record_trust(trained, data, pos[rid], TASK, use=use)
        page.locator(".st-key-ex_trust_chart .js-plotly-plot").first.wait_for(timeout=T)
        fig = figure(page, "ex_trust_chart")
        solid = next(t for t in fig["traces"] if t["name"].startswith("Removed in"))
        dashed = next(t for t in fig["traces"] if t["name"].startswith("random"))
        np.testing.assert_allclose(solid["y"], 100 * trust.deletion, atol=1e-6)
        np.testing.assert_allclose(dashed["y"], 100 * trust.random, atol=1e-6)
        box = page.locator(".st-key-ex_trust")
        assert trust.sentence.split(" (")[0] in box.inner_text()
        box.scroll_into_view_if_needed()
        page.mouse.wheel(0, -120)
        shot(page, "10-explorer-why-and-trust")
        # What to measure next
        page.get_by_role("tab", name="What to measure next").click()
        page.locator(".st-key-ex_measure_chart .js-plotly-plot").first.wait_for(timeout=T)
        wait_idle(page)
        ds = load_dataset("support2")
        donors = AQ.Donors(trained, data, AQ.training_pool(trained, ds))
        mn = P.measure_next(trained, data, pos[rid], donors, use=use)[TASK]
        fig = figure(page, "ex_measure_chart")
        boxes = [t for t in fig["traces"] if t["x"] and not t["mode"]]
        assert [t["name"] for t in boxes] == [trained.spec.modality(r.modality).display for r in mn.rows]
        for t, r in zip(boxes, mn.rows):
            np.testing.assert_allclose(t["x"], 100 * r.outcomes, atol=1e-6)
        panel = page.locator(".st-key-ex_measure")
        assert trained.spec.modality(mn.rows[0].modality).display in panel.inner_text()
        panel.scroll_into_view_if_needed()
        shot(page, "11-explorer-what-to-measure-next")
        # the Cohort's faithfulness tab
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Cohort").click()
        page.get_by_role("tab", name="How far to trust the explanations").click()
        button(page, "co_faith_measure").click()
        page.locator(".st-key-co_faith_chart .js-plotly-plot").first.wait_for(timeout=3 * T)
        wait_idle(page, timeout=3 * T)
        curves = P.cohort_curves(trained, data, TASK, records=40)
        fig = figure(page, "co_faith_chart")
        from app.figures import METHOD_LABELS
        for m, c in curves.curves.items():
            got = next(t for t in fig["traces"] if t["name"] == METHOD_LABELS[m])
            np.testing.assert_allclose(got["y"], 100 * c, atol=1e-6)
        page.locator(".st-key-co_faith_chart").scroll_into_view_if_needed()
        shot(page, "12-cohort-faithfulness")
        assert not errors, errors
        ctx.close()
    finally:
        srv.stop()


# --- Presentation mode ---------------------------------------------------------------------------------------------
# The slide's figures, as Plotly holds them: the ladder's markers (x = the value after each step shown so far, in %)
# and the map's path ("this record so far": the states of the steps that ran so far).
_PRESENT_JS = """() => {
  const data = (key) => {
    const e = document.querySelectorAll(`.st-key-${key} .js-plotly-plot`);
    const el = e[e.length - 1];
    return el && el._fullData ? el._fullData : null;
  };
  const c = data('pr_chart'), m = data('pr_map');
  if (!c || !m) return null;
  const mk = c.find(t => t.name === 'prediction after each step');
  const path = m.find(t => t.name === 'this record so far');
  return {x: Array.from(mk.x), px: Array.from(path.x), py: Array.from(path.y)};
}"""


def present_state(page, n: int) -> dict:
    """The slide's plotted values once the ladder shows n points."""
    page.wait_for_function("([js, n]) => { const s = eval(js)(); return s !== null && s.x.length === n; }",
                           arg=[_PRESENT_JS, n], timeout=T, polling=50)
    return page.evaluate(_PRESENT_JS)


def test_presentation_steps_through_a_record_with_the_engine_values(browser, server, engine):
    """A shared link opens one record; the keyboard's → steps through it; after each step the ladder shows the
    engine's predictions so far and the map the engine's states so far; the last slide sums up in words."""
    from app.figures import pct
    from mmn_core import explain as E
    trained, data, pos = engine
    names = trained.spec.modality_names
    test = trained.info["test_ids"]
    # a held-out record that lacks some data: its skipped steps must stay flat and be named as not measured
    rid = next(r for r in test if 0 < len(measured(engine, r)) < len(names))
    one = data.subset([pos[rid]])
    tr = E.trace(trained, one)
    want = 100 * tr.value[TASK][:, 0]
    smap = E.StateMap.fit(trained, data.subset([pos[r] for r in test]))
    path = smap.transform(tr.states[:, 0, :])
    ran = [0] + [j + 1 for j in range(len(names)) if not tr.skipped[j, 0]]
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(T)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server.url}/present?dataset=support2&record={rid}&task={TASK}")
        present_state(page, 1)
        wait_idle(page)
        assert page.locator(".st-key-pr_record input").first.input_value().startswith(rid)
        for k in range(len(names) + 1):
            s = present_state(page, k + 1)
            np.testing.assert_allclose(s["x"], want[:k + 1], rtol=0, atol=1e-6)
            shown = [j for j in ran if j <= k]
            np.testing.assert_allclose(s["px"], path[shown, 0], rtol=0, atol=1e-6)
            np.testing.assert_allclose(s["py"], path[shown, 1], rtol=0, atol=1e-6)
            sentence = page.locator(".st-key-pr_slide").inner_text()
            label = "Before any data" if k == 0 else trained.spec.modality(names[k - 1]).display
            assert label in sentence
            if k and tr.skipped[k - 1, 0]:
                assert "not measured" in sentence
            # the text alternative under the chart has the value just shown
            words = page.get_by_text("Chart in words", exact=False).first.inner_text()
            assert words.rstrip(".").endswith(f"{label}: {pct(want[k] / 100)}" + (
                " (not measured)" if k and tr.skipped[k - 1, 0] else "")), words
            if k in (0, 1, len(names)):
                shot(page, f"20-present-step-{k:02d}")
            page.keyboard.press("ArrowRight")                 # the Next button's shortcut: no mouse needed
        page.get_by_text("What mattered most").wait_for(timeout=T)
        wait_idle(page)
        slide = page.locator(".st-key-pr_slide").inner_text()
        assert "How sure" in slide and "held-out records given" in slide
        assert "What is missing" in slide and "not measured" in slide
        shot(page, "21-present-summary")
        assert not errors, errors
    finally:
        ctx.close()


def test_default_record_is_correct_and_a_linked_record_stays_chosen(browser, server, engine):
    """The first record a newcomer meets is correctly predicted; a record opened from a link stays on screen when
    the outcome in focus changes (it used to jump to another record when the multiclass outcome was chosen)."""
    trained, data, pos = engine
    w = open_explorer(browser, server.url)
    try:
        rid = record_id(w.page)
        p = expected(engine, rid, measured(engine, rid), trained.spec.modality_names)[-1]
        label = float(data.y[TASK][pos[rid]])
        assert (p >= 0.5) == (label == 1.0), (rid, p, label)
    finally:
        w.close()
    linked = trained.info["test_ids"][5]
    w = open_explorer(browser, f"{server.url}/?dataset=support2&record={linked}&task={TASK}")
    try:
        page = w.page
        for task in ("death_180d", "sfdm2", TASK):
            page.locator(".st-key-ex_task").click()
            page.get_by_role("option", name=trained.spec.task(task).display).click()
            page.wait_for_function(f"() => new URLSearchParams(location.search).get('task') === '{task}'", timeout=T)
            wait_idle(page)
            assert record_id(page) == linked, task
            assert page.get_by_role("heading", name=f"Record {linked}").is_visible()
        no_errors(w)
    finally:
        w.close()
