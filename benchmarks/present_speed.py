"""Presentation mode: time per step in Chromium (target ≤ 300 ms, issue 15).

For each of a few held-out SUPPORT2 records, open /present?record=…, then step through every slide with the Next
button. Per step, timed inside the page with performance.now() from the click: until the step chart (`pr_chart`)
shows one more point — or, to and from the summary slide, the summary text came or went — (`chart_ms`, what the
audience sees; the map is drawn in the same fragment delta), and until Streamlit's
script state is back to notRunning (`idle_ms`). The first visit of a record computes its story (trace, Shapley,
faithfulness, acquisition: a cache miss, done once before the first slide); steps never compute, they render one
fragment. Baseline in the same run: stepping back over the same slides (Previous; identical work, reversed), so
the forward/backward ratio shows that no step does hidden work. The machine is shared: the 1-minute load average
is recorded before and after.

    python benchmarks/present_speed.py        # writes benchmarks/results/present_speed.json and present_speed.md
"""
from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import AppServer, browser_problem, launch_chromium, wait_idle  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "present_speed.json"
MD = ROOT / "benchmarks" / "present_speed.md"
TARGET_MS = 300.0
RECORDS = int(os.environ.get("MMN_BENCH_RECORDS", "3"))

_STEP_JS = """async (key) => {
  const count = () => {
    const e = document.querySelectorAll('.st-key-pr_chart .js-plotly-plot');
    const el = e[e.length - 1];
    if (!el || !el._fullData) return null;
    const m = el._fullData.find(t => t.name === 'prediction after each step');
    return m ? {n: m.x.length, text: (document.querySelector('.st-key-pr_slide') || {}).innerText || ''} : null;
  };
  // done when the chart has one point more / less; to or from the summary slide (the chart keeps its points),
  // when the summary text has come / gone
  const summary = s => s.text.includes('What mattered most');
  const changed = (a, b) => a && b && (a.n !== b.n || (summary(a) !== summary(b)));
  const app = document.querySelector('[data-test-script-state]');
  const before = count();
  let saw = false, tIdle = null, tChart = null;
  const obs = new MutationObserver(() => {
    const s = app.getAttribute('data-test-script-state');
    if (s === 'running') saw = true; else if (saw && tIdle === null) tIdle = performance.now();
  });
  obs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  const btn = [...document.querySelectorAll(`.st-key-${key} button`)].find(b => b.offsetParent !== null);
  const t0 = performance.now();
  btn.click();
  return await new Promise(resolve => {
    const tick = () => {
      const now = performance.now();
      if (tChart === null && changed(count(), before)) tChart = now;
      if ((tChart !== null && tIdle !== null) || now - t0 > 30000) {
        obs.disconnect();
        resolve({chart_ms: tChart === null ? null : tChart - t0, idle_ms: tIdle === null ? null : tIdle - t0});
        return;
      }
      requestAnimationFrame(tick);
    };
    tick();
  });
}"""


def stats(xs):
    xs = [x for x in xs if x is not None]
    return {"median": statistics.median(xs), "p90": sorted(xs)[int(0.9 * (len(xs) - 1))], "max": max(xs),
            "n": len(xs)}


def main() -> None:
    why = browser_problem()
    if why:
        raise SystemExit(f"cannot run: {why}")
    from mmn_core import load
    from playwright.sync_api import sync_playwright
    trained = load(ROOT / "data" / "checkpoints" / "support2-multimodn")
    records = trained.info["test_ids"][:RECORDS]
    k = len(trained.spec.modality_names)
    load_before = os.getloadavg()[0]
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    srv = AppServer(log=ROOT / "test-artifacts" / "present_speed_server.log")
    fwd, back = [], []
    try:
        srv.wait_healthy()
        with sync_playwright() as p:
            br = launch_chromium(p)
            page = br.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(180_000)
            for rid in records:
                page.goto(f"{srv.url}/present?dataset=support2&record={rid}&task=death")
                page.wait_for_selector(".st-key-pr_chart .js-plotly-plot")
                wait_idle(page, 180_000)
                for _ in range(k + 1):
                    fwd.append(page.evaluate(_STEP_JS, "pr_next"))
                    wait_idle(page)
                for _ in range(k + 1):
                    back.append(page.evaluate(_STEP_JS, "pr_prev"))
                    wait_idle(page)
            br.close()
    finally:
        srv.stop()
    load_after = os.getloadavg()[0]
    res = {"target_ms": TARGET_MS, "records": records, "steps_per_record": k + 1,
           "forward": {m: stats([s[m] for s in fwd]) for m in ("chart_ms", "idle_ms")},
           "backward": {m: stats([s[m] for s in back]) for m in ("chart_ms", "idle_ms")},
           "load1_before": load_before, "load1_after": load_after, "cores": os.cpu_count()}
    res["forward_over_backward"] = res["forward"]["chart_ms"]["median"] / res["backward"]["chart_ms"]["median"]
    res["meets_target"] = res["forward"]["chart_ms"]["median"] <= TARGET_MS
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    f, bk = res["forward"], res["backward"]
    MD.write_text(f"""# Presentation mode: time per step (Chromium, 1280×800)

`python benchmarks/present_speed.py` · {len(records)} held-out SUPPORT2 records × {k + 1} steps, forward then back.
Load average (1 min) {load_before:.2f} before, {load_after:.2f} after, {os.cpu_count()} cores (shared).

| | median | p90 | max | n |
|---|---|---|---|---|
| Next: click → slide redrawn (ms) | {f['chart_ms']['median']:.0f} | {f['chart_ms']['p90']:.0f} | {f['chart_ms']['max']:.0f} | {f['chart_ms']['n']} |
| Next: click → script idle (ms) | {f['idle_ms']['median']:.0f} | {f['idle_ms']['p90']:.0f} | {f['idle_ms']['max']:.0f} | {f['idle_ms']['n']} |
| Previous (baseline): click → redrawn (ms) | {bk['chart_ms']['median']:.0f} | {bk['chart_ms']['p90']:.0f} | {bk['chart_ms']['max']:.0f} | {bk['chart_ms']['n']} |

Target ≤ {TARGET_MS:.0f} ms per step: {'met' if res['meets_target'] else 'NOT met'} (median). Forward / backward
median ratio {res['forward_over_backward']:.2f} (≈ 1: a step does no hidden work beyond rendering one fragment).
""")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
