"""AppTest of every page of the dashboard, on the shipped SUPPORT2 checkpoints (the app's default launch).

Numbers shown are checked against mmn_core computed independently of the app (explain.trace), so a toggle or a
reorder must change the shown prediction to exactly what the engine says.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamlit.testing.v1 import AppTest

from app import figures as F
from app import resources as R
from app import state as S
from app import uploads as U
from app.common import label_md, md
from mmn_core import SpecError

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
SHIPPED = ROOT / "data" / "checkpoints" / "support2-multimodn"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(),
                                reason="shipped checkpoints missing: run python data/train_checkpoints.py")
FILES = ["config.json", "model.safetensors"]


@pytest.fixture(scope="module")
def engine():
    """The shipped model and data, loaded without Streamlit, for expected values."""
    from mmn_core import load, load_dataset
    trained = load(SHIPPED)
    ds = load_dataset("support2")
    data = trained.prep.transform(ds)
    pos = {r: i for i, r in enumerate(data.ids)}
    return trained, ds, data, pos


def expected_final(engine, rid, use, order, task="death"):
    """Final value of `task` for record `rid` from mmn_core.explain.trace with only `use` on."""
    from mmn_core import explain as E
    trained, _, data, pos = engine
    one = data.subset([pos[rid]])
    mask = {m: np.array([m in use]) for m in trained.spec.modality_names}
    return float(E.trace(trained, one, mask, list(order)).value[task][-1, 0])


def new_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if query:
        at.query_params.update(query)
    return at.run()


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metric(at: AppTest, label_start: str) -> str:
    for m in at.metric:
        if m.label.replace("\\", "").startswith(label_start):
            return m.value
    raise AssertionError(f"no metric {label_start!r}: {[m.label for m in at.metric]}")


@pytest.fixture(scope="module")
def explorer():
    """One Explorer session shared by the read-only checks (one cold start for the module)."""
    at = new_app()
    ok(at)
    return at


def test_explorer_opens_on_support2_with_the_engine_predictions(explorer, engine):
    at = explorer
    trained = engine[0]
    assert at.session_state[S.DATASET] == "support2"
    rid = at.session_state[S.EX_RECORD]
    assert rid in trained.info["test_ids"]               # a held-out record
    assert at.title[0].value.replace("\\", "") == f"Record {rid}"
    names = trained.spec.modality_names
    order = list(at.session_state[S.EX_ORDER])
    assert order == names
    use = [m for m in names if bool(engine[2].present[m][engine[3][rid]])]
    for t in trained.spec.tasks:
        if t.type == "binary":
            assert metric(at, t.display) == F.pct(expected_final(engine, rid, use, order, t.name))
    # one chart per task, the modality toggles, the record filters
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= len(trained.spec.tasks)
    keys = {w.key for w in at.toggle}
    assert {S.modality_key(S.EX_USE, m) for m in names} <= keys
    for k in (S.EX_RECORD, S.EX_TASK, S.EX_OUTCOME, S.EX_PATTERN):
        assert at.selectbox(key=k) is not None
    assert at.text_input(key=S.EX_SEARCH) is not None


def test_default_record_is_typical_and_correctly_predicted(explorer, engine):
    from mmn_core.explain.choosing import correct
    table = R.cohort_table(R.active_ref({S.DATASET: "support2"}))
    first = explorer.session_state[S.EX_RECORD]
    row = table[table["id"] == first]
    assert bool(correct(row["death__pred"].to_numpy(), row["death__label"].to_numpy(), "binary")[0])
    assert row["pattern"].iloc[0] == table["pattern"].value_counts().index[0]     # the most common data measured


def test_headline_says_what_such_a_prediction_meant_on_held_out_records(explorer, engine):
    from mmn_core.calibration import held_out_reliability, how_sure
    trained, ds, data, pos = engine
    rid = explorer.session_state[S.EX_RECORD]
    p = expected_final(engine, rid, [m for m in trained.spec.modality_names if bool(data.present[m][pos[rid]])],
                       trained.spec.modality_names)
    want = how_sure(held_out_reliability(trained, ds, "death"), p, "death (any time in follow-up)").sentence
    captions = [c.value.replace("\\", "") for c in explorer.caption]
    assert f"How sure: {want}" in captions, captions
    assert want.startswith("Of ") and "held-out records given" in want


def test_most_surprising_record_comes_first_when_asked(engine):
    at = new_app()
    at.selectbox(key=S.EX_CHOICE).set_value("surprising").run()
    ok(at)
    table = R.cohort_table(R.active_ref({S.DATASET: "support2"}))
    first = at.session_state[S.EX_RECORD]
    assert table.loc[table["id"] == first, "death__surprise"].iloc[0] == pytest.approx(
        table["death__surprise"].max())


def test_toggling_a_modality_changes_the_prediction_to_the_engine_value(engine):
    at = new_app()
    rid = at.session_state[S.EX_RECORD]
    names = list(at.session_state[S.EX_ORDER])
    use = [m for m in names if at.toggle(key=S.modality_key(S.EX_USE, m)).value]
    before = metric(at, "Death (any")
    # the used modality whose removal moves the risk most (so the shown percentage must change)
    moves = {m: abs(expected_final(engine, rid, [u for u in use if u != m], names) -
                    expected_final(engine, rid, use, names)) for m in use}
    m = max(moves, key=moves.get)
    assert moves[m] > 0.01
    n_not_measured = sum(c.value == "**not measured**" for c in at.caption)
    at.toggle(key=S.modality_key(S.EX_USE, m)).set_value(False).run()
    ok(at)
    after = metric(at, "Death (any")
    assert after == F.pct(expected_final(engine, rid, [u for u in use if u != m], names))
    assert after != before
    # the switched-off modality is "skipped by you", distinct from the ones never measured
    assert sum("skipped by you" in c.value for c in at.caption) == 1
    assert sum(c.value == "**not measured**" for c in at.caption) == n_not_measured
    import json
    fig = json.loads(next(c for c in at.get("plotly_chart") if "ex_chart__death" in c.proto.id).proto.spec)
    symbols = next(t for t in fig["data"] if t.get("mode") == "markers")["marker"]["symbol"]
    lacking = [k for k in names if k not in use]
    assert symbols[names.index(m) + 1] == "circle-open"                      # switched off: hollow
    assert [symbols[names.index(k) + 1] for k in lacking] == ["circle-x-open"] * len(lacking)   # no data
    assert symbols.count("circle-open") == 1
    at.toggle(key=S.modality_key(S.EX_USE, m)).set_value(True).run()
    assert metric(at, "Death (any") == before
    assert not any("skipped by you" in c.value for c in at.caption)


def test_a_modality_the_record_lacks_cannot_be_turned_on(engine):
    trained, _, data, pos = engine
    # a test record without arterial blood gas
    rid = next(r for r in trained.info["test_ids"] if not bool(data.present["blood_gas"][pos[r]]))
    at = new_app(dataset="support2", record=rid)
    ok(at)
    assert at.session_state[S.EX_RECORD] == rid
    tg = at.toggle(key=S.modality_key(S.EX_USE, "blood_gas"))
    assert tg.disabled and tg.value is False
    # the switch's label is the plain name (it is also its accessible name); "not measured" is a caption of
    # its own, one per modality the record lacks, and differs from "skipped by you"
    assert tg.label == trained.spec.modality("blood_gas").display
    lacking = [m for m in trained.spec.modality_names if not bool(data.present[m][pos[rid]])]
    assert sum(c.value == "**not measured**" for c in at.caption) == len(lacking)
    assert not any("skipped by you" in c.value for c in at.caption)


def test_reorder_moves_a_modality_and_repredicts(engine):
    at = new_app()
    rid = at.session_state[S.EX_RECORD]
    names = list(at.session_state[S.EX_ORDER])
    last = names[-1]
    at.button(key=S.modality_key(S.EX_UP, last)).click().run()
    ok(at)
    order = list(at.session_state[S.EX_ORDER])
    assert order == names[:-2] + [names[-1], names[-2]]
    use = [m for m in order if at.toggle(key=S.modality_key(S.EX_USE, m)).value]
    assert metric(at, "Death (any") == F.pct(expected_final(engine, rid, use, order))
    assert at.button(key=S.modality_key(S.EX_UP, order[0])).disabled
    at.button(key=S.EX_RESET).click().run()
    assert list(at.session_state[S.EX_ORDER]) == names


def test_the_url_carries_the_view_and_reopens_it_exactly(engine):
    trained, _, data, pos = engine
    rid = trained.info["test_ids"][5]
    names = trained.spec.modality_names
    order = names[::-1]
    at = new_app(dataset="support2", record=rid, off="vitals", order=",".join(order), task="death_180d",
                 step="diagnosis")
    ok(at)
    assert at.session_state[S.EX_RECORD] == rid
    assert at.session_state[S.EX_TASK] == "death_180d"
    assert list(at.session_state[S.EX_ORDER]) == order
    assert at.toggle(key=S.modality_key(S.EX_USE, "vitals")).value is False
    use = [m for m in order if m != "vitals" and bool(data.present[m][pos[rid]])]
    assert metric(at, "Death within 180") == F.pct(expected_final(engine, rid, use, order, "death_180d"))
    # the app writes the same view back to the URL
    q = at.query_params
    assert q["record"] == rid and q["off"] == "vitals" and q["order"] == ",".join(order)
    assert q["task"] == "death_180d" and q["dataset"] == "support2"
    # a stale link warns instead of failing
    at2 = new_app(dataset="support2", record="no-such-record")
    ok(at2)
    assert any("not among" in w.value for w in at2.warning)


def test_every_explorer_tab_renders(explorer, engine):
    at = explorer
    # Why: the focus outcome's bars; the other outcomes' once their expander is opened
    expected = {"Why": 2, "What to measure next": 1, "Inside a step": 1, "State": 2, "Compare with P-Fusion": 1,
                "Data": 0}
    n_tasks = len(engine[0].spec.tasks)
    n_steps = n_tasks + 1                  # the step area: the overview heatmap + one step chart per outcome
    for tab, n in expected.items():
        at.session_state[S.EX_TABS] = tab
        at.run()
        ok(at)
        assert len(at.get("plotly_chart")) == n_steps + n, tab
        if tab == "Inside a step":
            assert any("convergence delta" in c.value for c in at.caption)
            assert at.selectbox(key=S.EX_ATTR_METHOD).value == "ig"
            at.selectbox(key=S.EX_ATTR_METHOD).set_value("ablation").run()
            ok(at)
            assert not any("convergence delta" in c.value for c in at.caption)
        if tab == "Data":
            assert len(at.dataframe) >= 5
    at.session_state[S.EX_TABS] = "Why"
    at.session_state[S.EX_WHY_MORE] = True
    at.run()
    ok(at)
    assert len(at.get("plotly_chart")) == n_steps + n_tasks + 1    # + the trust element's curve
    at.session_state[S.EX_WHY_MORE] = False
    at.run()


def test_cohort_page_every_tab(explorer):
    at = explorer
    at.switch_page("views/cohort.py").run()
    ok(at)
    assert at.selectbox(key=S.CO_TASK).value == "death"
    for tab, charts in {"Where the prediction settles": 1, "What it relies on": 1, "For whom": 0,
                        "Order of the data": 2}.items():
        at.session_state[S.CO_TABS] = tab
        at.run()
        ok(at)
        assert len(at.get("plotly_chart")) == charts, tab
    at.switch_page("views/explorer.py").run()


def test_pattern_table_counts_add_up():
    ref = R.active_ref({S.DATASET: "support2"})
    pt = R.pattern_table(ref)
    assert pt["n"].sum() == len(R.cohort_table(ref))


def test_model_page_card_and_sources(explorer):
    at = explorer
    at.switch_page("views/model.py").run()
    ok(at)
    assert at.radio(key=S.MD_SOURCE).value == "Shipped with the app"
    assert metric(at, "Records") == "9,105"
    assert metric(at, "Test records") == f"{len(R.cohort_table(R.active_ref({S.DATASET: 'support2'}))):,}"
    assert at.download_button(key=S.MD_DOWNLOAD) is not None
    at.radio(key=S.MD_SOURCE).set_value("Load a checkpoint folder").run()
    at.text_input(key=S.MD_PATH).input("/nonexistent/folder").run()
    at.button(key=S.MD_LOAD).click().run()
    ok(at)
    assert at.error and "Cannot load the checkpoint" in at.error[0].value
    at.radio(key=S.MD_SOURCE).set_value("Shipped with the app").run()
    at.switch_page("views/explorer.py").run()


def test_model_page_save_refuses_a_folder_with_user_files(explorer, tmp_path):
    """The Save box used to move the folder aside, delete it and say "Saved"."""
    (tmp_path / "notebook.ipynb").write_text("{}")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    at = explorer
    at.switch_page("views/model.py").run()
    at.text_input(key=S.MD_SAVE_PATH).input(str(tmp_path)).run()
    at.button(key=S.MD_SAVE).click().run()
    ok(at)
    assert not any("Saved" in x.value for x in at.success), [x.value for x in at.success]
    assert at.error and "is not a MultiModN Lens checkpoint" in at.error[0].value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebook.ipynb", "photo.jpg"]
    assert (tmp_path / "photo.jpg").read_bytes() == b"\xff\xd8\xff"
    at.text_input(key=S.MD_SAVE_PATH).input(str(tmp_path / "new-ck")).run()
    at.button(key=S.MD_SAVE).click().run()
    assert any("Saved" in x.value for x in at.success)
    assert sorted(p.name for p in (tmp_path / "new-ck").iterdir()) == FILES
    at.switch_page("views/explorer.py").run()


def test_export_page_downloads(explorer):
    at = explorer
    at.switch_page("views/export.py").run()
    ok(at)
    for k in (S.RP_HTML, S.RP_TRACE_CSV, S.RP_SHAPLEY_CSV, S.RP_ATTR_CSV):
        assert at.download_button(key=k) is not None
    assert len(at.dataframe) == 2
    at.switch_page("views/explorer.py").run()


def test_report_html_is_self_contained_and_escaped(engine):
    from app import report
    ref = R.active_ref({S.DATASET: "support2"})
    trained = engine[0]
    rid = trained.info["test_ids"][0]
    names = trained.spec.modality_names
    use = tuple(m for m in names if bool(engine[2].present[m][engine[3][rid]]))
    html = report.build_html(ref, rid, use, tuple(names), "death")
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert html.count("plotly.js v") >= 1                 # plotly.js inlined: opens offline
    assert "<script src=" not in html.replace(" ", "") and 'src="http' not in html
    assert f"Record {rid}" in html
    view = R.record_view(ref, rid, use, tuple(names))
    assert report._h(view.narrative["death"][1]) in html


def test_csv_exports_neutralise_formulas():
    from app import report
    df = pd.DataFrame({"id": ["=cmd|' /C calc'!A0", "ok"], "v": [1.0, 2.0]})
    text = report.to_csv(df).decode()
    assert "'=cmd" in text and "\n=cmd" not in text


def test_labels_are_clean_accessible_names_and_safe():
    """Widget labels are Streamlit Markdown and also the control's aria-label: ordinary names pass unchanged
    (no backslashes read aloud), anything Markdown would act on is escaped."""
    for name in ("Vital signs (day 3)", "Liver & nutrition labs (day 3)", "blood_gas", "Labs: day 3",
                 "Needs help in ≥ 4 daily activities"):
        assert label_md(name) == name
    import re
    raw = "<img src=x onerror=alert(1)> **bold** [link](javascript:x) :smile: $x$ _a_ `c` ~s~ &amp;"
    s = label_md(raw)
    assert re.search(r"(?<!\\)[<>*\[\]$`~]", s) is None
    assert re.search(r"(?<!\\):(?=\S)", s) is None and re.search(r"(?<!\\)&amp;", s) is None
    assert re.sub(r"\\(.)", r"\1", s).replace("\u2060", "") == raw   # word joiners (invisible) break :smile:


def test_toggle_labels_carry_no_markup(explorer, engine):
    spec = engine[0].spec
    for m in spec.modality_names:
        assert explorer.toggle(key=S.modality_key(S.EX_USE, m)).label == spec.modality(m).display


def test_class_values_are_shown_by_their_plain_names(explorer, engine):
    from mmn_core import explain as E
    trained, _, data, pos = engine
    t = trained.spec.task("sfdm2")
    assert t.class_labels                                  # SUPPORT2's functional outcome has plain names
    rid = explorer.session_state[S.EX_RECORD]
    tr = E.trace(trained, data.subset([pos[rid]]))
    v = tr.value["sfdm2"][-1, 0]
    raw = trained.prep.classes["sfdm2"][int(np.argmax(v))]
    assert metric(explorer, t.display) == label_md(t.class_display(raw))
    shown = [c.value for c in explorer.caption if c.value.startswith("Probability")]
    label = float(tr.label["sfdm2"][0])
    if not np.isnan(label):
        want = t.class_display(trained.prep.classes["sfdm2"][int(label)])
        assert shown and shown[0].endswith(f"Actual outcome: {md(want)}")
    for chart in explorer.get("plotly_chart"):            # legends and ticks: plain names, never the codes
        assert "no(M2 and SIP pres)" not in chart.proto.spec


def test_record_list_says_its_percentage_uses_all_the_data(explorer, engine):
    sb = explorer.selectbox(key=S.EX_RECORD)
    rid = explorer.session_state[S.EX_RECORD]
    names = engine[0].spec.modality_names
    use = [m for m in names if bool(engine[2].present[m][engine[3][rid]])]
    first = sb.options[sb.index]
    assert first.startswith(f"{rid} · all its data: ")
    assert f"all its data: {F.pct(expected_final(engine, rid, use, names))}" in first


def test_user_text_is_escaped_for_markdown():
    import re
    raw = "<img src=x onerror=alert(1)> **bold** [link](javascript:x) :smile: $x$ a_b_c"
    s = md(raw)
    assert re.search(r"(?<!\\)[<>*\[\]():$_]", s) is None          # every special character escaped
    assert re.sub(r"\\(.)", r"\1", s).replace("\u2060", "") == raw   # nothing else changed (joiners: invisible)


def test_bad_upload_shows_one_line_error_and_a_hostile_column_name_is_text(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path)
    at = new_app()
    at.switch_page("views/model.py").run()
    at.radio(key=S.MD_SOURCE).set_value("Use your own data").run()
    bad_col = "<img src=x onerror=alert(1)>"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": range(60), bad_col: rng.normal(size=60), "b": rng.normal(size=60),
                          "y": rng.integers(0, 2, 60)})
    csv = frame.to_csv(index=False).encode()
    spec = (f"name: hostile\ntitle: 'Hostile <b>names</b>'\nid_column: id\nmodalities:\n"
            f"- name: first\n  label: '{bad_col}'\n  columns: ['{bad_col}']\n"
            f"- name: second\n  columns: [b]\ntasks:\n- name: y\n  column: y\n  type: binary\n").encode()
    # a broken spec first: one clear line, no traceback
    at.file_uploader(key=S.MD_UPLOAD_DATA).set_value([("data.csv", csv, "text/csv")])
    at.file_uploader(key=S.MD_UPLOAD_SPEC).set_value(("spec.yaml", b"name: [unclosed", "text/yaml"))
    at.run()
    at.button(key=S.MD_USE_UPLOAD).click().run()
    ok(at)
    assert at.error and "not valid YAML" in at.error[0].value
    # a valid upload whose column and label are markup: accepted, shown as text
    at.file_uploader(key=S.MD_UPLOAD_SPEC).set_value(("spec.yaml", spec, "text/yaml"))
    at.run()
    at.button(key=S.MD_USE_UPLOAD).click().run()
    ok(at)
    assert not at.error
    assert at.session_state[S.DATASET].startswith("upload-")
    import re
    texts = [el.value for el in list(at.markdown) + list(at.caption) + list(at.info) + list(at.header)
             + list(at.title)]
    assert any("Hostile" in t for t in texts)
    for t in texts:                                   # markup characters reach Markdown only escaped
        assert re.search(r"(?<!\\)<", t) is None, t
    for chart in at.get("plotly_chart"):              # and plotly only as entities
        assert "<img" not in chart.proto.spec and "&lt;img" in chart.proto.spec
    # no model yet: train one here (1 epoch), then the Explorer opens on it
    at.radio(key=S.MD_SOURCE).set_value("Train here").run()
    at.number_input(key=S.MD_EPOCHS).set_value(1)
    at.multiselect(key=S.MD_KINDS).set_value(["multimodn"])
    at.run()
    at.button(key=S.MD_TRAIN).click().run()
    ok(at)
    entry = at.session_state[S.MODELS][at.session_state[S.DATASET]]
    assert Path(entry["multimodn"], "model.safetensors").is_file()
    at.switch_page("views/explorer.py").run()
    ok(at)
    assert at.metric and at.metric[0].value.endswith("%")


def test_missing_shipped_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "CHECKPOINT_DIR", tmp_path)
    at = new_app()
    ok(at)
    assert at.error and "No trained model found" in at.error[0].value


def test_mnar_lab_runs_a_tiny_experiment_and_caches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path)
    at = new_app()
    at.switch_page("views/mnar_lab.py").run()
    ok(at)
    assert at.selectbox(key=S.MN_MODALITY).value == "blood_gas"
    at.multiselect(key=S.MN_RATES).set_value([0.0, 0.6])
    at.number_input(key=S.MN_FOLDS).set_value(1)
    at.number_input(key=S.MN_EPOCHS).set_value(2)
    at.run()
    # before any run: the bundled precomputed headline result, labelled as such (issue 15 item 7.3a)
    assert len(at.get("plotly_chart")) == 1 and any("computed beforehand" in c.value for c in at.caption)
    at.button(key=S.MN_RUN).click().run()
    ok(at)
    assert len(at.get("plotly_chart")) == 1
    box = [i.value for i in at.info if "What you are seeing" in i.value]
    assert box and "AUROC goes from" in box[0] and ("more robust" in box[0] or "not" in box[0])
    assert len(list(tmp_path.glob("mnar/*.json"))) == 1
    # a second visit with the same settings is instant: read from the cache, no button press
    at.switch_page("views/explorer.py").run()
    at.switch_page("views/mnar_lab.py").run()
    at.multiselect(key=S.MN_RATES).set_value([0.0, 0.6])
    at.number_input(key=S.MN_FOLDS).set_value(1)
    at.number_input(key=S.MN_EPOCHS).set_value(2)
    at.run()
    assert len(at.get("plotly_chart")) == 1
    assert any("computed earlier" in c.value for c in at.caption)


def test_widget_keys_are_listed():
    assert len(S.WIDGET_KEYS) == len(set(S.WIDGET_KEYS))
    for k in (S.EX_RECORD, S.EX_USE, S.MN_RUN, S.MD_TRAIN, S.RP_HTML, S.DATASET):
        assert k in S.WIDGET_KEYS
    view = {"dataset": "support2", "record": "12", "off": ["vitals", "urine"], "order": ["a", "b"], "task": "death"}
    assert S.view_from_query(S.view_to_query(view)) == view


@pytest.mark.parametrize("name", ["star", "weather", "synthetic"])
def test_every_bundled_dataset_opens_with_its_shipped_model(name):
    """Regression tasks, sequences (weather) and multiclass (synthetic) through the Explorer and the Cohort."""
    from mmn_core import explain as E
    if not (R.shipped_dir(name, "multimodn") / "config.json").is_file():
        pytest.skip(f"no shipped checkpoint for {name}")
    at = new_app(dataset=name)
    ok(at)
    assert at.session_state[S.DATASET] == name
    b = R.get_bundle(R.active_ref({S.DATASET: name}))
    rid = at.session_state[S.EX_RECORD]
    tr = E.trace(b.trained, b.data.subset([b.pos[rid]]))
    for t in b.spec.tasks:
        shown = metric(at, t.display)
        v = tr.value[t.name][-1, 0]
        if t.type == "binary":
            assert shown == F.pct(v)
        elif t.type == "regression":
            assert shown == F.with_units(v, t.units)
        else:
            assert shown == label_md(t.class_display(b.trained.prep.classes[t.name][int(np.argmax(v))]))
    for tab in ("Inside a step", "Data"):
        at.session_state[S.EX_TABS] = tab
        at.run()
        ok(at)
    at.switch_page("views/cohort.py").run()
    at.session_state[S.CO_TABS] = "What it relies on"
    at.run()
    ok(at)


def test_choices_survive_a_visit_to_another_page(engine):
    at = new_app()
    options = at.selectbox(key=S.EX_RECORD).options
    second = at.selectbox(key=S.EX_RECORD).select_index(3).run().session_state[S.EX_RECORD]
    names = list(at.session_state[S.EX_ORDER])
    on = [m for m in names if at.toggle(key=S.modality_key(S.EX_USE, m)).value]
    at.toggle(key=S.modality_key(S.EX_USE, on[0])).set_value(False).run()
    shown = metric(at, "Death (any")
    at.switch_page("views/cohort.py").run()
    at.switch_page("views/mnar_lab.py").run()
    at.switch_page("views/explorer.py").run()
    ok(at)
    assert len(options) > 3 and at.session_state[S.EX_RECORD] == second
    assert at.toggle(key=S.modality_key(S.EX_USE, on[0])).value is False
    assert metric(at, "Death (any") == shown
    # a new dataset starts a fresh view
    at.selectbox(key=S.DATASET).set_value("synthetic").run()
    ok(at)
    assert at.session_state[S.EX_RECORD] != second


def test_cache_is_private_and_never_trusts_what_it_reads(tmp_path, monkeypatch):
    """Uploads and MNAR results live in a 0700 per-user folder; a planted or edited result is ignored and a
    planted symlink is never written through."""
    import stat as st_
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path / "cache")
    config = {"dataset": "support2", "modality": "blood_gas", "rates": [0.0, 0.6]}
    result = {"results": [{"rate": 0.0, "model": "multimodn", "test": "clean", "auroc": 0.8}], "config": {}}
    R.mnar_store(config, result)
    path = R.mnar_cache_path(config)
    assert R.mnar_cached(config) == result
    assert st_.S_IMODE(path.stat().st_mode) == 0o600
    assert st_.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert st_.S_IMODE(path.parent.stat().st_mode) == 0o700
    # a result stored for another configuration (or planted without one) is not shown as this one's
    planted = json.loads(path.read_text())
    planted["config"]["rates"] = [0.0, 0.9]
    path.write_text(json.dumps(planted))
    assert R.mnar_cached(config) is None
    path.write_text(json.dumps(result))               # the bare result, as an attacker would plant it
    assert R.mnar_cached(config) is None
    # a symlink planted where the result goes: reading ignores it, writing replaces the link, not its target
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path.unlink()
    path.symlink_to(victim)
    assert R.mnar_cached(config) is None
    R.mnar_store(config, result)
    assert victim.read_text() == "precious" and not path.is_symlink() and R.mnar_cached(config) == result
    # a cache folder that is a symlink is refused with one line
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cache" / "uploads").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SpecError, match="is a link"):
        U.private_dir(tmp_path / "cache" / "uploads" / "x")


# --- How much to trust this, What to measure next, the Cohort's faithfulness tab ---------------------------------
def _chart(at, key):
    """The plotly spec of the chart with Streamlit key `key`, numbers decoded (plotly 7 packs them base64)."""
    import base64

    def dec(v):
        if isinstance(v, dict) and "bdata" in v:
            return np.frombuffer(base64.b64decode(v["bdata"]), v["dtype"]).astype(float)
        if isinstance(v, dict):
            return {k: dec(x) for k, x in v.items()}
        if isinstance(v, list):
            return [dec(x) for x in v]
        return v
    return dec(json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec))


def _frame(at, columns):
    """The one dataframe on screen with exactly these columns (AppTest gives dataframes no key)."""
    found = [d.value.reset_index(drop=True) for d in at.dataframe if list(d.value.columns) == list(columns)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def _measure_engine(engine, rid, use):
    from mmn_core import acquire as AQ
    from mmn_core import panels as P
    trained, ds, data, pos = engine
    donors = AQ.Donors(trained, data, AQ.training_pool(trained, ds))
    return P.measure_next(trained, data, pos[rid], donors, use=use)


def test_trust_element_shows_the_engines_curve_and_follows_a_toggle(engine):
    from mmn_core import panels as P
    trained, _, data, pos = engine
    at = new_app()
    ok(at)
    rid = at.session_state[S.EX_RECORD]
    names = trained.spec.modality_names
    use = [m for m in names if bool(data.present[m][pos[rid]])]
    for step in range(2):
        want = P.record_trust(trained, data, pos[rid], "death", use=use)
        fig = _chart(at, "ex_trust_chart")
        solid = next(t for t in fig["data"] if t["name"].startswith("Removed in"))
        dashed = next(t for t in fig["data"] if t["name"].startswith("random"))
        np.testing.assert_allclose(solid["y"], 100 * want.deletion, atol=1e-9)
        np.testing.assert_allclose(dashed["y"], 100 * want.random, atol=1e-9)
        assert len(solid["y"]) == len(use) + 1
        assert md(want.sentence) in [m.value for m in at.markdown]
        if step == 0:                          # switch the top-ranked modality off: the element follows
            at.toggle(key=S.modality_key(S.EX_USE, want.removed[0])).set_value(False).run()
            ok(at)
            use = [m for m in use if m != want.removed[0]]


def test_what_to_measure_next_shows_the_engines_estimate(engine):
    from app import components as C
    trained, _, data, pos = engine
    names = trained.spec.modality_names
    rid = next(r for r in trained.info["test_ids"]
               if sum(not bool(data.present[m][pos[r]]) for m in names) >= 2)
    at = new_app(dataset="support2", record=rid)
    at.session_state[S.EX_TABS] = "What to measure next"
    at.run()
    ok(at)
    use = [m for m in names if bool(data.present[m][pos[rid]])]
    want = _measure_engine(engine, rid, use)
    mn = want["death"]
    assert mn.mode == "missing" and len(mn.rows) >= 2
    fig = _chart(at, "ex_measure_chart")
    boxes = [t for t in fig["data"] if t["type"] == "box"]
    assert [b["name"] for b in boxes] == [F.esc(trained.spec.modality(r.modality).display) for r in mn.rows]
    for b, r in zip(boxes, mn.rows):
        np.testing.assert_allclose(b["x"], 100 * r.outcomes, atol=1e-9)
    assert any(i.value == md(mn.sentence) for i in at.info)
    expect = C.measure_table(trained.spec, want)
    pd.testing.assert_frame_equal(_frame(at, expect.columns), expect)
    # the K neighbours' values on demand: exactly the donors the estimate used, in its order
    at.session_state[S.EX_MEASURE_MORE] = True
    at.run()
    ok(at)
    nb = next(d.value for d in at.dataframe if "id" in d.value.columns)
    assert nb["id"].tolist() == list(mn.rows[0].neighbour_ids)
    # a measured modality switched off becomes a candidate
    at.toggle(key=S.modality_key(S.EX_USE, use[0])).set_value(False).run()
    ok(at)
    again = _measure_engine(engine, rid, use[1:])["death"]
    assert use[0] in [r.modality for r in again.rows]
    assert any(i.value == md(again.sentence) for i in at.info)


def test_what_if_not_measured_for_a_fully_measured_record(engine):
    trained, _, data, pos = engine
    names = trained.spec.modality_names
    rid = next(r for r in trained.info["test_ids"] if all(bool(data.present[m][pos[r]]) for m in names))
    at = new_app(dataset="support2", record=rid)
    at.session_state[S.EX_TABS] = "What to measure next"
    at.run()
    ok(at)
    mn = _measure_engine(engine, rid, names)["death"]
    assert mn.mode == "hindsight"
    assert any(m.value.startswith("**Everything was measured.**") for m in at.markdown)
    fig = _chart(at, "ex_measure_chart")
    star = next(t for t in fig["data"] if t.get("name") == "its real value")
    np.testing.assert_allclose(star["x"], [100 * r.actual for r in mn.rows], atol=1e-9)


def test_cohort_faithfulness_tab_shows_the_engines_table(explorer, engine, monkeypatch):
    from app import components as C
    from mmn_core import faithfulness as FA
    trained, _, data, _ = engine
    monkeypatch.setattr(R, "FAITH_RECORDS", 20)
    at = explorer
    at.switch_page("views/cohort.py").run()
    at.session_state[S.CO_TABS] = "How far to trust the explanations"
    at.run()
    ok(at)
    assert not at.get("plotly_chart")                     # nothing computed before the button
    at.button(key=S.CO_FAITH_MEASURE).click().run()
    ok(at)
    rep = FA.cohort_faithfulness(trained, data, "death", records=20, randomization_records=20).to_json()
    expect = C.faithfulness_table(rep)
    pd.testing.assert_frame_equal(_frame(at, expect.columns), expect)
    assert md(C.faithfulness_summary(rep)) in [m.value for m in at.markdown]
    assert "20 records" in " ".join(m.value for m in at.markdown)
    at.switch_page("views/explorer.py").run()


def test_report_carries_the_trust_element_and_what_to_measure_next(engine):
    from app import report
    from mmn_core import panels as P
    trained, _, data, pos = engine
    ref = R.active_ref({S.DATASET: "support2"})
    names = trained.spec.modality_names
    rid = next(r for r in trained.info["test_ids"] if sum(not bool(data.present[m][pos[r]]) for m in names) >= 1)
    use = tuple(m for m in names if bool(data.present[m][pos[rid]]))
    html = report.build_html(ref, rid, use, tuple(names), "death")
    trust = P.record_trust(trained, data, pos[rid], "death", use=use)
    assert "How much to trust this" in html and report._h(trust.sentence) in html
    mn = _measure_engine(engine, rid, list(use))["death"]
    assert "What to measure next" in html and report._h(mn.sentence) in html


def test_one_upload_cap():
    import tomllib
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] * 2**20 == U.UPLOAD_CAP_BYTES
    from mmn_core.data import MAX_FILE_BYTES
    assert U.UPLOAD_CAP_BYTES == MAX_FILE_BYTES
