"""The Explorer headline at 1,280 px on SUPPORT2, whose third outcome is multiclass (sfdm2, five long class names):
every headline value is shown in full — no "…", nothing cut off, the three outcomes side by side (Playwright)."""
from __future__ import annotations


import pytest

from browser_support import ARTIFACTS, SHIPPED, chromium, running_app, wait_figure, wait_idle

pytestmark = pytest.mark.browser
T = 120_000

_MEASURE = """() => Array.from(document.querySelectorAll('[data-testid="stMetric"]')).map(m => {
  const v = m.querySelector('[data-testid="stMetricValue"]');
  const parts = [v, ...v.querySelectorAll('*')];
  const r = m.getBoundingClientRect();
  return {text: v.innerText.trim(), left: r.left, right: r.right,
          clipped: parts.some(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1),
          ellipsis: parts.some(e => getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth)};
})"""


@pytest.fixture(scope="module")
def longest_class_record():
    """The test record whose predicted sfdm2 class has the longest name, and that name as the page shows it."""
    from app.common import class_names
    from mmn_core import load, load_dataset, run
    trained = load(SHIPPED)
    data = trained.prep.transform(load_dataset("support2"))
    pos = {r: i for i, r in enumerate(data.ids)}
    test = [r for r in trained.info["test_ids"] if r in pos]
    out = run.forward(trained.model, data.subset([pos[r] for r in test]), 4096, keep_states=False)
    td = trained.spec.task("sfdm2")
    names = class_names(td, trained.prep.classes["sfdm2"])
    pred = out.logits["sfdm2"][-1].argmax(-1).tolist()
    j = max(range(len(test)), key=lambda k: len(names[pred[k]]))
    return test[j], names[pred[j]]


def test_multiclass_headline_reads_in_full_at_1280(longest_class_record):
    rid, want = longest_class_record
    assert len(want) > 12                                   # long enough to have been cut off before
    with running_app("headline") as srv, chromium() as br:
        page = br.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(T)
        page.goto(f"{srv.url}/?record={rid}")
        wait_figure(page, "ex_chart__death", timeout=T)
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "headline_multiclass.png"))
        got = page.evaluate(_MEASURE)
        assert len(got) == 3, got
        assert got[2]["text"] == want, got                     # the class name, whole
        for m in got:
            assert not m["clipped"] and not m["ellipsis"] and "…" not in m["text"], m
        for a, b in zip(got, got[1:]):                         # side by side, not overlapping
            assert a["right"] <= b["left"] + 1, (a, b)
