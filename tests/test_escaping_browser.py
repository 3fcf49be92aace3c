"""Chromium: what Streamlit really renders for hostile names after app/escape.py. Backslash escaping alone
(the helper this replaced) still let `:material/…:` become an icon and `www.` / `http://` / `a@b.c` become live
links, because Streamlit's plugins match text after Markdown has dropped the backslashes; the word joiners of
`escape.markdown` and `escape.label` stop them. The old escaper is rendered beside the new one as a control."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from browser_support import ROOT, free_port, launch_chromium, require_browser, wait_idle

pytestmark = pytest.mark.browser

CASES = [":smile:", ":material/home:", "www.evil.example", "http://evil.example/x", "a@evil.example", "$x^2$",
         "**bold**", "[link](javascript:x)", ":red[red]", "<img src=x onerror=alert(1)>"]
APP = f'''
import re
import streamlit as st
from app import escape as E
OLD = re.compile(r"([\\\\`*_{{}}\\[\\]()#+\\-.!|<>~$:=^&])")     # the escaper app/common.py had before
for i, c in enumerate({CASES!r}):
    with st.container(key=f"new_{{i}}"):
        st.markdown(E.markdown(c))
    with st.container(key=f"old_{{i}}"):
        st.markdown(OLD.sub(r"\\\\\\1", c))
    with st.container(key=f"lab_{{i}}"):
        st.toggle(E.label(c), key=f"t{{i}}")
'''
MARKUP = ("a", "img", "strong", "em", ".katex", "[data-testid=stIconMaterial]", "span[translate=no]")


def test_escaped_names_render_as_their_text_in_chromium(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright
    script = tmp_path / "probe_app.py"
    script.write_text(APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "probe app did not start"
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector(f".st-key-lab_{len(CASES) - 1}", timeout=90_000)
            wait_idle(page)

            def rendered(kind, i):
                el = page.locator(f".st-key-{kind}_{i}")
                return (el.inner_text().strip().replace("\u2060", ""),
                        sum(el.locator(sel).count() for sel in MARKUP))

            old_markup = 0
            for i, text in enumerate(CASES):
                for kind in ("new", "lab"):
                    shown, markup = rendered(kind, i)
                    assert shown == text and markup == 0, (kind, text, shown, markup)
                old_markup += rendered("old", i)[1]
            assert old_markup >= 4        # the control: the old escaper let an icon and three links through
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
