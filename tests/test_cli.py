"""The command line: JSON outputs match the library's numbers; bad input exits 2 with one line, no traceback."""
import json
import subprocess
import sys

import numpy as np
import pytest

from mmn_core import load_dataset
from mmn_core.checkpoint import load
from mmn_core.cli import main
from mmn_core.metrics import metric_matrix
from mmn_core.train import predict

from conftest import ROOT


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_describe_matches_dataset(capsys):
    d = run_json(capsys, "describe", "--dataset", "synthetic")
    ds = load_dataset("synthetic")
    assert d["rows"] == len(ds) == 3000
    pres = ds.presence().mean()
    assert [m["name"] for m in d["modalities"]] == ds.spec.modality_names
    for m in d["modalities"]:
        assert m["present_fraction"] == pytest.approx(pres[m["name"]], abs=1e-4)
    stage = next(t for t in d["tasks"] if t["name"] == "stage")
    assert stage["classes"] == ["early", "middle", "late"] and stage["labelled"] == 3000


@pytest.mark.parametrize("name", ["support2", "star", "weather"])
def test_describe_bundled_real_data(capsys, name):
    d = run_json(capsys, "describe", "--dataset", name)
    assert d["rows"] > 1000
    fractions = [m["present_fraction"] for m in d["modalities"]]
    assert all(0 < f <= 1 for f in fractions)
    if name == "support2":   # real, informative missingness must survive the grouping of columns
        assert min(fractions) < 0.6


def test_train_then_evaluate_reproduces_test_metrics(capsys, tmp_path):
    out = tmp_path / "ck"
    d = run_json(capsys, "train", "--dataset", "synthetic", "--epochs", "3", "--out", str(out))
    assert d["steps"][0] == "prior" and len(d["steps"]) == 7
    ev = run_json(capsys, "evaluate", "--checkpoint", str(out))
    assert ev["split"] == "test" and ev["records"] == d["rows"]["test"]
    np.testing.assert_allclose(ev["tasks"]["outcome"]["auroc"], d["tasks"]["outcome"]["auroc"], rtol=1e-6)
    # and the same numbers straight from the library
    trained = load(out)
    ds = load_dataset("synthetic")
    data = trained.prep.transform(ds)
    pos = {r: i for i, r in enumerate(data.ids)}
    test = data.subset([pos[r] for r in trained.info["test_ids"]])
    m = metric_matrix(predict(trained.model, test), test.y, trained.model.tasks, trained.prep.target_stats)
    np.testing.assert_allclose(ev["tasks"]["score"]["mae"], m["tasks"]["score"]["mae"], rtol=1e-6)


def test_compare_reports_both_models(capsys):
    d = run_json(capsys, "compare", "--dataset", "synthetic", "--folds", "2", "--epochs", "2")
    entry = d["tasks"]["outcome"]
    assert entry["type"] == "binary"
    for kind in ("multimodn", "pfusion"):
        assert 0.5 < entry[kind]["auroc"] <= 1 and entry[kind]["auroc_std"] >= 0
    assert "mae" in d["tasks"]["score"]["pfusion"]


def test_evaluate_with_user_data_and_wrong_spec(capsys, tmp_path):
    """A checkpoint used with another spec is refused in one line."""
    ds = load_dataset("support2")
    spec = ds.spec.model_copy(update={"tasks": ds.spec.tasks[:1], "name": "other"})
    import yaml
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec.to_json()))
    ds.frame.to_csv(tmp_path / "d.csv", index=False)
    code = main(["evaluate", "--checkpoint", str(ROOT / "data/checkpoints/support2-multimodn"),
                 "--data", str(tmp_path / "d.csv"), "--spec", str(tmp_path / "spec.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "differs" in err and len(err.strip().splitlines()) == 1


BAD = [
    (["describe"], "give --dataset"),
    (["describe", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["describe", "--data", "missing.csv", "--spec", "missing.yaml"], "spec file not found"),
    (["train", "--dataset", "synthetic"], "--out"),
    (["train", "--dataset", "synthetic", "--epochs", "0", "--out", "x"], "--epochs"),
    (["evaluate", "--checkpoint", "/nonexistent"], "not a checkpoint"),
    (["compare", "--dataset", "synthetic", "--folds", "1"], "--folds"),
    (["mnar", "--dataset", "synthetic", "--modality", "labz", "--task", "outcome"], "unknown modality 'labz'"),
    (["mnar", "--dataset", "synthetic", "--modality", "labs", "--task", "score"], "needs a binary task"),
    (["mnar", "--dataset", "synthetic", "--modality", "labs", "--task", "outcome", "--rates", "a,b"], "--rates"),
    (["frobnicate"], "invalid choice"),
    (["train", "--dataset", "synthetic", "--seed", "-1", "--out", "x"], "--seed"),
    (["train", "--dataset", "synthetic", "--seed", str(2**32), "--out", "x"], "--seed"),
    (["compare", "--dataset", "synthetic", "--folds", "5000"], "--folds"),
    (["compare", "--dataset", "synthetic", "--epochs", "-3"], "--epochs"),
    (["mnar", "--dataset", "synthetic", "--modality", "labs", "--task", "outcome", "--rates", "1.5"], "--rates"),
    (["mnar", "--dataset", "synthetic", "--modality", "labs", "--task", "outcome", "--rates", "nan"], "--rates"),
    (["explain", "--checkpoint", "x"], "--record"),
]


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_real_process_bad_input_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    spec = ROOT / "data/support2/spec.yaml"
    p = subprocess.run([sys.executable, "-m", "mmn_core", "describe", "--data", str(bad), "--spec", str(spec)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "bad.csv" in p.stderr


# --- names as people write them ------------------------------------------------------------------------------
SLIDE_NAMES = {"modalities": ["liver panel", "Week 20 CD4", "Stage (I–IV)", "train", "肝臓"],
               "tasks": ["Death (1 yr)", "prior"]}


@pytest.fixture
def slide_named(tmp_path):
    """60 records whose modalities, tasks and columns carry spaces, capitals, unicode, brackets, dots and
    names torch reserves (`train`) or the engine uses for a step (`prior`); one modality is a sequence."""
    import pandas as pd
    import yaml
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame({"patient id": [f"p {i}" for i in range(n)],
                          "ALT (U/L)": rng.normal(30, 5, n), "AST.1": rng.normal(25, 5, n),
                          "CD4 ⁺ count": rng.normal(500, 50, n), "stage": rng.choice(["I", "II", "III"], n),
                          "Blutdruck ä": rng.normal(120, 10, n), "died (1 yr)": rng.integers(0, 2, n),
                          "score ½": rng.normal(0, 1, n)})
    frame.loc[::4, ["ALT (U/L)", "AST.1"]] = np.nan
    visits = pd.DataFrame({"patient id": [f"p {i % n}" for i in range(3 * n)], "day №": np.arange(3 * n) // n,
                           "中文 value": rng.normal(0, 1, 3 * n)})
    spec = {"name": "slides", "id_column": "patient id", "modalities": [
        {"name": "liver panel", "columns": ["ALT (U/L)", "AST.1"]},
        {"name": "Week 20 CD4", "columns": ["CD4 ⁺ count"]},
        {"name": "Stage (I–IV)", "columns": ["stage"]},
        {"name": "train", "columns": ["Blutdruck ä"]},
        {"name": "肝臓", "kind": "sequence", "table": "visits.csv", "key": "patient id", "time_column": "day №",
         "columns": ["中文 value"]}],
        "tasks": [{"name": "Death (1 yr)", "column": "died (1 yr)", "type": "binary"},
                  {"name": "prior", "column": "score ½", "type": "regression", "units": "points"}],
        "mnar_rules": [{"name": "Liver tests when sick", "modality": "liver panel", "column": "CD4 ⁺ count",
                        "op": "<", "value": 520}]}
    frame.to_csv(tmp_path / "d.csv", index=False)
    visits.to_csv(tmp_path / "visits.csv", index=False)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return ["--data", str(tmp_path / "d.csv"), "--spec", str(tmp_path / "spec.yaml")], tmp_path


def test_names_as_people_write_them_work_end_to_end(capsys, slide_named):
    src, folder = slide_named
    d = run_json(capsys, "describe", *src)
    assert [m["label"] for m in d["modalities"]] == SLIDE_NAMES["modalities"]
    assert [t["label"] for t in d["tasks"]] == SLIDE_NAMES["tasks"]
    keys = [m["name"] for m in d["modalities"]] + [t["name"] for t in d["tasks"]]
    assert len(set(keys)) == len(keys) and all(k.isascii() and k == k.lower() and " " not in k for k in keys)
    assert "train" not in keys and "prior" not in keys          # torch / the engine reserve these
    assert main(["describe", *src]) == 0                          # the text table shows the names as written
    text = capsys.readouterr().out
    assert all(name in text for name in SLIDE_NAMES["modalities"] + SLIDE_NAMES["tasks"])

    out = folder / "ck"
    tr = run_json(capsys, "train", *src, "--epochs", "1", "--out", str(out))
    assert len(tr["steps"]) == 6 and tr["steps"][0] == "prior"
    ev = run_json(capsys, "evaluate", "--checkpoint", str(out), *src)
    assert ev["records"] == 60 and set(ev["tasks"]) == {t["name"] for t in d["tasks"]}
    ex = run_json(capsys, "explain", "--checkpoint", str(out), *src, "--record", "p 1", "--task", "Death (1 yr)")
    death = d["tasks"][0]["name"]
    assert list(ex["tasks"]) == [death]
    story = " ".join(ex["narrative"][death])
    assert "liver panel" in story or "Week 20 CD4" in story       # sentences name modalities as written
    cv = run_json(capsys, "compare", *src, "--folds", "2", "--epochs", "1")
    assert set(cv["tasks"]) == {t["name"] for t in d["tasks"]}
    mn = run_json(capsys, "mnar", *src, "--modality", "liver panel", "--task", "Death (1 yr)", "--rates", "0,0.5",
                  "--folds", "1", "--epochs", "1")
    assert {r["rate"] for r in mn["results"]} == {0.0, 0.5}
    rule = run_json(capsys, "mnar", *src, "--modality", "liver panel", "--task", "Death (1 yr)", "--rule",
                    "--folds", "1", "--epochs", "1", "--rates", "0")
    assert rule["results"]
