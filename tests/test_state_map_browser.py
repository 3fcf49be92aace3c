"""The Explorer's state map in Chromium: a click on another record's dot opens that record (Playwright)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from browser_support import running_app, ARTIFACTS, ROOT, launch_chromium, wait_figure, wait_idle

pytestmark = pytest.mark.browser
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
T = 120_000

# JS: page coordinates of the cohort dot (trace with customdata) that is farthest from every other dot and from
# the record's path, with its record id — a click there can only hit that dot.
_LONELY_DOT = """() => {
  const el = document.querySelector('.st-key-ex_state_map .js-plotly-plot');
  if (!el || !el._fullLayout) return null;
  const L = el._fullLayout, box = el.getBoundingClientRect();
  const px = (x, y) => [box.left + L._size.l + L.xaxis.d2p(x), box.top + L._size.t + L.yaxis.d2p(y)];
  const pts = [], others = [];
  el._fullData.forEach(t => {
    const xs = Array.from(t.x || []), ys = Array.from(t.y || []);
    xs.forEach((x, i) => {
      const p = px(x, ys[i]);
      others.push(p);
      if (t.customdata && t.customdata[i]) pts.push({p, id: String(t.customdata[i][0])});
    });
  });
  let best = null, bestD = -1;
  for (const c of pts) {
    if (c.p[0] < box.left + L._size.l + 5 || c.p[1] < box.top + L._size.t + 5) continue;
    let d = Infinity;
    for (const o of others) { if (o !== c.p) d = Math.min(d, Math.hypot(o[0] - c.p[0], o[1] - c.p[1])); }
    if (d > bestD) { bestD = d; best = c; }
  }
  return best && {x: best.p[0], y: best.p[1], id: best.id, gap: bestD};
}"""


# JS prefix: x = the record path's x values on the state map (null while it is not drawn)
_PATH_X = """() => { const el = document.querySelector('.st-key-ex_state_map .js-plotly-plot');
  const t = el && el._fullData && el._fullData.find(t => t.name === 'this record, step by step');
  const x = t ? Array.from(t.x) : null"""


@pytest.fixture(scope="module")
def server():
    with running_app("statemap") as srv:
        yield srv


def _record(page) -> str:
    return parse_qs(urlparse(page.url).query)["record"][0]


def test_clicking_a_dot_on_the_state_map_opens_that_record(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        br = launch_chromium(p)
        try:
            page = br.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.set_default_timeout(T)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            wait_figure(page, "ex_chart__death", timeout=T)
            page.wait_for_function("() => new URLSearchParams(location.search).has('record')", timeout=T)
            wait_idle(page)
            first = _record(page)
            page.get_by_role("tab", name="State").click()
            page.wait_for_selector(".st-key-ex_state_map .js-plotly-plot", timeout=T)
            wait_idle(page)
            page.locator(".st-key-ex_state_map").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            dot = page.evaluate(_LONELY_DOT)
            path_before = page.evaluate(_PATH_X + "; return JSON.stringify(x); }")
            assert dot is not None and dot["id"] != first and dot["gap"] >= 4, dot
            page.locator(".st-key-ex_state_map").screenshot(path=str(ARTIFACTS / "state_map.png"))
            page.mouse.move(dot["x"], dot["y"])
            page.wait_for_timeout(300)
            page.mouse.click(dot["x"], dot["y"])
            page.wait_for_function("(rid) => new URLSearchParams(location.search).get('record') === rid",
                                   arg=dot["id"], timeout=T)
            wait_idle(page)
            # the record picker shows the clicked record, and the page is that record's
            assert _record(page) == dot["id"]
            assert page.locator(".st-key-ex_record input").first.input_value().startswith(dot["id"])
            # the State tab stays open and the map now draws the clicked record's path
            page.wait_for_function(_PATH_X.replace("() =>", "(before) =>") + "; return x !== null && "
                                   "JSON.stringify(x) !== before; }", arg=path_before, timeout=T)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "state_map_after_click.png"))
            assert not errors, errors
        finally:
            br.close()
