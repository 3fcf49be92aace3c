"""MNAR lab (issue 15 item 7.3): opens on the precomputed headline result, overlays up to five runs each labelled by
its settings (with a way to clear), words its error bars by the number of folds and its sentences by the removal
protocol, and says so when 'last' (or 'first') leaves the order unchanged."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import state as S
from app import uploads as U
from mmn_core import load_dataset
from mmn_core.experiments import POSITIONS, place_modality
from mmn_core.mnar_runs import MAX_RUNS, RESULTS, MnarRun, keep_run, position_is_noop
from mmn_core.verdicts import mnar_protocol, spread_phrase

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
HEADLINE = RESULTS / "evidence_mnar_support2_base.json"
pytestmark = pytest.mark.skipif(not (ROOT / "data" / "checkpoints" / "support2-multimodn" / "config.json").is_file(),
                                reason="shipped checkpoints missing: run python data/train_checkpoints.py")


def lab(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path)
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("views/mnar_lab.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def traces(at: AppTest) -> list[dict]:
    charts = [c for c in at.get("plotly_chart") if c.proto.id and "mn_chart" in c.proto.id] or at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)["data"]


def plain(text: str) -> str:
    """Shown text with md()'s escapes removed."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def captions(at: AppTest) -> str:
    return "\n".join(plain(c.value) for c in at.caption)


def tiny_run(at: AppTest, semantics: str = "per-record", rule: str = "random") -> AppTest:
    at.multiselect(key=S.MN_RATES).set_value([0.0, 0.6])
    at.multiselect(key=S.MN_MODELS).set_value(["multimodn"])
    at.number_input(key=S.MN_FOLDS).set_value(1)
    at.number_input(key=S.MN_EPOCHS).set_value(1)
    at.selectbox(key=S.MN_SEMANTICS).set_value(semantics)
    at.selectbox(key=S.MN_RULE).set_value(rule)
    at.run()
    at.button(key=S.MN_RUN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_opens_on_the_precomputed_headline(tmp_path, monkeypatch):
    at = lab(tmp_path, monkeypatch)
    headline = json.loads(HEADLINE.read_text())
    tr = traces(at)
    assert len(tr) == 6                                   # 2 models x (clean, reversed) + 2 dotted references
    clean = next(t for t in tr if t["name"] == "MultiModN · clean test")
    want = sorted((r for r in headline["results"] if r["model"] == "multimodn" and r["test"] == "clean"),
                  key=lambda r: r["rate"])
    assert clean["x"] == [0, 20, 40, 60, 80]
    assert clean["y"] == pytest.approx([r["auroc"] for r in want], abs=1e-12)
    text = captions(at)
    assert "Precomputed (evidence_mnar_support2_base.json)" in text and "3 folds" in text
    assert "computed beforehand" in text
    assert "over the 3 folds" in text                     # its error bars: 3 folds
    assert any("What you are seeing" in i.value and "AUROC goes from" in i.value for i in at.info)


def test_b_c_d_runs_overlay_with_their_settings_and_the_wording_follows_folds_and_protocol(tmp_path, monkeypatch):
    at = lab(tmp_path, monkeypatch)
    tiny_run(at)
    # (b) the new run is added to the precomputed one: 2 lines + its dotted reference, and the headline's 4 lines
    assert len(traces(at)) == 3 + 4
    # (c) one fold: no error bars, and the page says so instead of claiming fold-to-fold variation
    text = captions(at)
    assert "No error bars: this is one train/test split" in text and "standard deviation" not in text
    tiny_run(at, semantics="paper")
    assert len(traces(at)) == 3 + 2 + 4
    listed = [plain(m.value) for m in at.markdown if "Runs on the chart" in m.value]
    assert listed and "per-record skipping" in listed[0] and "batch-wide skipping" in listed[0]
    assert listed[0].count("\n1. ") + listed[0].count("\n2. ") + listed[0].count("\n3. ") == 3
    # (d) a rule: the sentences follow the rule, not the random protocol
    rule = next(r.name for r in load_dataset("support2").spec.mnar_rules if r.modality == "blood_gas")
    tiny_run(at, rule=rule)
    assert len(traces(at)) == 3 + 2 + 2 + 4
    box = next(plain(i.value) for i in at.info if "What you are seeing" in i.value)
    assert "the rule decides whether" in box and "records with the outcome and the pattern is reversed" not in box
    text = captions(at)
    assert "the rule is reversed" in text and "missing for people without the outcome" not in text.replace("*", "")
    # a random run keeps the random wording (the same function, other branch)
    assert "pattern is reversed" in mnar_protocol("X", None)["when"]
    # clearing leaves only the result kept on disk for the current settings
    at.button(key=S.MN_CLEAR).click().run()
    assert len(traces(at)) == 3
    assert not [m for m in at.markdown if "Runs on the chart" in m.value]


def test_e_a_position_that_changes_nothing_says_so(tmp_path, monkeypatch):
    at = lab(tmp_path, monkeypatch)
    names = list(load_dataset("support2").spec.modality_names)
    at.selectbox(key=S.MN_MODALITY).set_value(names[-1])
    at.selectbox(key=S.MN_POSITION).set_value("last").run()
    assert any("already comes last" in i.value and "changes nothing" in i.value for i in at.info)
    at.selectbox(key=S.MN_POSITION).set_value("first").run()
    assert not any("changes nothing" in i.value for i in at.info)
    at.selectbox(key=S.MN_MODALITY).set_value(names[0]).run()
    assert any("already comes first" in i.value for i in at.info)


def test_position_noop_agrees_with_the_experiment(synthetic_small):
    names = list(synthetic_small.spec.modality_names)
    for m in names:
        for pos in POSITIONS:
            moved = list(place_modality(synthetic_small, m, pos).spec.modality_names)
            assert position_is_noop(names, m, pos) == (pos != "spec" and moved == names), (m, pos)
    assert position_is_noop(names, names[-1], "last") and not position_is_noop(names, names[0], "last")


def test_keep_run_caps_and_replaces():
    runs: list[MnarRun] = []
    for i in range(7):
        runs = keep_run(runs, MnarRun(f"run {i}", {"results": []}, {"i": i}))
    assert [r.label for r in runs] == [f"run {i}" for i in range(7 - MAX_RUNS, 7)]
    runs = keep_run(runs, MnarRun("again", {"results": []}, {"i": 4}))      # same settings: replaced, moved last
    assert [r.label for r in runs] == ["run 2", "run 3", "run 5", "run 6", "again"]


def test_spread_phrase_follows_the_folds():
    assert "No error bars" in spread_phrase(1) and "variation" in spread_phrase(1)
    assert spread_phrase(4) == "Error bars: ± one standard deviation over the 4 folds"
