"""Browser-test plumbing: the app server in a subprocess, headless Debian Chromium through Playwright, and small
page helpers (Streamlit idle waits, Plotly figure data, screenshots).

Shared by tests/test_browser.py and benchmarks/app_speed.py. Chromium is the system one (/usr/bin/chromium):
`playwright install` is never used. When Chromium (or the playwright package) is missing the browser tests
skip, except under MMN_REQUIRE_BROWSER=1 (CI), where they fail with one clear line.
"""
from __future__ import annotations

import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app" / "streamlit_app.py"
CHROMIUM = os.environ.get("MMN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
# Flags checked on this kind of machine (shared/design/STACK.md): no sandbox (root in CI), no GPU, no network
# side traffic, /tmp instead of a small /dev/shm.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def browser_problem() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not Path(CHROMIUM).is_file():
        return f"Chromium not found at {CHROMIUM} (install it with `apt-get install -y chromium`)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


def require_browser() -> None:
    """Skip when the browser is unavailable — or fail under MMN_REQUIRE_BROWSER=1, where a skip would hide
    that the end-to-end tests never ran (CI)."""
    import pytest
    why = browser_problem()
    if why is None:
        return
    if os.environ.get("MMN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (MMN_REQUIRE_BROWSER=1) but {why}", pytrace=False)
    pytest.skip(why)


SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"


@contextmanager
def running_app(name: str):
    """The dashboard for one test module: skipped (or failed under MMN_REQUIRE_BROWSER=1) without Chromium,
    skipped without the shipped checkpoints; its own private cache (no stale MNAR/upload hits, srv.cache_dir);
    log in test-artifacts/browser/server-<name>.log; stopped afterwards."""
    import tempfile

    import pytest
    require_browser()
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("shipped checkpoints missing: run python data/train_checkpoints.py")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cache = tempfile.TemporaryDirectory(prefix=f"mmn-lens-{name}-")
    srv = AppServer(env={"MMN_LENS_CACHE": cache.name}, log=ARTIFACTS / f"server-{name}.log")
    try:
        srv.wait_healthy()
        srv.cache_dir = Path(cache.name)
        yield srv
    finally:
        srv.stop()
        cache.cleanup()


@contextmanager
def chromium():
    """One headless Chromium (Playwright), closed afterwards."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        br = launch_chromium(p)
        try:
            yield br
        finally:
            br.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`streamlit run app/streamlit_app.py` on a free local port, in its own process group.

    env: extra environment (e.g. MMN_LENS_CACHE pointing at a temporary folder). `stop()` kills the whole
    group (Streamlit may start helpers), so no process outlives the test module."""

    def __init__(self, env: dict | None = None, log: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "w") if log else subprocess.DEVNULL
        cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(self.port),
               "--browser.gatherUsageStats", "false"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Poll /_stcore/health; returns the seconds it took. Raises RuntimeError if the server dies."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app server exited with code {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the app server did not answer /_stcore/health within {timeout:.0f} s")

    def log_tail(self, n: int = 4000) -> str:
        if not self.log_path or not Path(self.log_path).is_file():
            return ""
        return Path(self.log_path).read_text(errors="replace")[-n:]

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log is not subprocess.DEVNULL:
            self._log.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# --- page helpers ------------------------------------------------------------------------------------------------
def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit's script is not running (the running indicator gone) and the app is connected."""
    page.wait_for_selector("[data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']",
                           state="attached", timeout=timeout)


# JS: the data of the Plotly chart in the element container with Streamlit key `key` — x tick labels and, per
# trace, its name, mode and y values (Plotly's decoded arrays, so base64-packed numbers come out as numbers).
_FIGURE_JS = """(key) => {
  const els = document.querySelectorAll(`.st-key-${key} .js-plotly-plot`);
  const el = els[els.length - 1];
  if (!el || !el._fullData || !el._fullLayout) return null;
  const ax = el._fullLayout.xaxis;
  return {ticks: (ax && ax.ticktext) ? Array.from(ax.ticktext) : [],
          title: el._fullLayout.title ? String(el._fullLayout.title.text || '') : '',
          traces: el._fullData.map(t => ({
            name: String(t.name || ''), mode: String(t.mode || ''),
            x: t.x ? Array.from(t.x) : [], y: t.y ? Array.from(t.y) : [],
            symbols: (t.marker && Array.isArray(t.marker.symbol)) ? Array.from(t.marker.symbol) : []}))};
}"""


def plain_tick(text: str) -> str:
    """A tick label as read on screen: the app wraps long labels with <br> and greys some with <span>; Plotly
    shows escaped text literally."""
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", " ", text)))


def figure(page, key: str) -> dict | None:
    """{ticks, title, traces: [{name, mode, x, y, symbols}]} of the Plotly chart with this Streamlit key (None if
    absent). Tick labels and names come back as shown (plain_tick): the app HTML-escapes text for Plotly, Plotly
    unescapes."""
    fig = page.evaluate(_FIGURE_JS, key)
    if fig is not None:
        fig["ticks"] = [plain_tick(t) for t in fig["ticks"]]
        fig["title"] = html.unescape(fig["title"])
        for t in fig["traces"]:
            t["name"] = html.unescape(t["name"])
    return fig


def step_values(fig: dict) -> list[float]:
    """The step chart's marker values (one per step, prior first; binary tasks in %)."""
    markers = [t for t in fig["traces"] if t["mode"] == "markers"]
    if not markers:
        raise AssertionError(f"no marker trace in {[t['name'] for t in fig['traces']]}")
    return markers[0]["y"]


def wait_figure(page, key: str, changed_from: list | None = None, timeout: float = 60_000) -> dict:
    """Wait until the chart `key` is drawn (and, with `changed_from`, its step values differ from those)."""
    page.wait_for_function(
        """([js, key, before]) => {
             const f = eval(js)(key);
             if (!f) return false;
             const m = f.traces.find(t => t.mode === 'markers');
             if (!m || !m.y.length) return false;
             return before === null || JSON.stringify(m.y) !== JSON.stringify(before);
           }""", arg=[_FIGURE_JS, key, changed_from], timeout=timeout, polling=50)
    return figure(page, key)


def shot(page, name: str) -> Path:
    """Save a screenshot to test-artifacts/browser/<name>.png (the viewport: Streamlit's main area scrolls)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
