"""Keyboard only, in Chromium at 1,280 x 800 (Playwright): Tab reaches the Explorer's record picker and modality
switches and the presentation's step buttons; Arrow/Enter choose a record, Space switches a kind of data off
(the step chart then shows the engine's numbers without it), Enter steps the presentation. No mouse is used."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from browser_support import (ARTIFACTS, ROOT, chromium, running_app, step_values,
                             wait_figure, wait_idle)

pytestmark = pytest.mark.browser
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
T = int(__import__("os").environ.get("MMN_KB_T", "120000"))
MAX_TABS = 120                      # the whole Explorer tab order is ~75 stops; a focus trap would never arrive

_FOCUS_KEY = """(sel) => { const e = document.activeElement; const k = e && e.closest('[class*="st-key-"]');
  if (!k || (sel && !e.matches(sel))) return null;
  return Array.from(k.classList).find(c => c.startsWith('st-key-')).slice(7); }"""


def tab_to(page, key: str, control: str, shift: bool = False) -> int:
    """Press Tab until the focus is on the `control` (CSS selector: the widget itself, not its help icon) inside
    the element with Streamlit key `key`; the number of presses."""
    for n in range(1, MAX_TABS + 1):
        page.keyboard.press("Shift+Tab" if shift else "Tab")
        if page.evaluate(_FOCUS_KEY, control) == key:
            return n
    raise AssertionError(f"{key} not reached by keyboard in {MAX_TABS} Tab presses")


def query(page) -> dict:
    return parse_qs(urlparse(page.url).query)


@pytest.fixture(scope="module")
def server():
    with running_app("keyboard") as srv:
        yield srv


@pytest.fixture(scope="module")
def page(server):
    with chromium() as br:
        pg = br.new_context(viewport={"width": 1280, "height": 800}).new_page()
        pg.set_default_timeout(T)
        yield pg


def test_choose_a_record_and_switch_data_off_by_keyboard_only(page, server):
    from mmn_core import explain as E
    from mmn_core import load, load_dataset
    page.goto(server.url)
    before = wait_figure(page, "ex_chart__death", timeout=T)
    page.wait_for_function("() => new URLSearchParams(location.search).has('record')", timeout=T)
    wait_idle(page)
    first = query(page)["record"][0]
    # the record picker: Tab to it, open the list, take the next record, Enter
    tab_to(page, "ex_record", "input")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_function("(r) => new URLSearchParams(location.search).get('record') !== r", arg=first, timeout=T)
    wait_idle(page)
    rid = query(page)["record"][0]
    assert rid != first
    assert page.get_by_role("heading", name=f"Record {rid}").count() == 1
    # the first switch of a measured kind of data: Tab to it, Space switches it off
    trained = load(SHIPPED)
    data = trained.prep.transform(load_dataset("support2"))
    pos = {r: i for i, r in enumerate(data.ids)}
    names = trained.spec.modality_names
    have = [m for m in names if bool(data.present[m][pos[rid]])]
    off = have[0]
    shown = wait_figure(page, "ex_chart__death", changed_from=step_values(before), timeout=T)
    tab_to(page, f"ex_use__{off}", "input[role=switch]")
    page.keyboard.press("Space")
    page.wait_for_function("(m) => (new URLSearchParams(location.search).get('off') || '').split(',').includes(m)",
                           arg=off, timeout=T)
    fig = wait_figure(page, "ex_chart__death", changed_from=step_values(shown), timeout=T)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "keyboard_explorer.png"))
    # the chart is the engine's prediction without that data, the switch reads "off" to assistive technology
    use = [m for m in have if m != off]
    one = data.subset([pos[rid]])
    want = E.trace(trained, one, {m: np.array([m in use]) for m in names}, list(names)).value["death"][:, 0]
    np.testing.assert_allclose(np.asarray(step_values(fig), dtype=float), 100 * want, atol=0.05)
    sw = page.locator(f".st-key-ex_use__{off} input[role=switch]").first
    assert sw.get_attribute("aria-checked") in ("false", None) and not sw.is_checked()
    # Space again switches it back on (the focus stayed on the switch through the rerun)
    assert page.evaluate(_FOCUS_KEY, "input[role=switch]") == f"ex_use__{off}"
    page.keyboard.press("Space")
    page.wait_for_function("(m) => !(new URLSearchParams(location.search).get('off') || '').split(',').includes(m)",
                           arg=off, timeout=T)


def test_presentation_steps_by_keyboard_only(page, server):
    page.goto(f"{server.url}/present")
    page.wait_for_selector(".st-key-pr_position", timeout=T)
    wait_idle(page)
    position = page.locator(".st-key-pr_position").first
    assert position.inner_text().strip() == "Before any data"
    n = tab_to(page, "pr_next", "button")
    assert n <= 40
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('.st-key-pr_position').innerText.trim() === 'Step 1 of "
                           "' + document.querySelector('.st-key-pr_position').innerText.trim().split(' of ')[1]",
                           timeout=T)
    wait_idle(page)
    assert position.inner_text().strip().startswith("Step 1 of ")
    # Shift+Tab goes back to "Previous step", now enabled, and Enter returns to the start
    tab_to(page, "pr_prev", "button", shift=True)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('.st-key-pr_position').innerText.trim() === "
                           "'Before any data'", timeout=T)
