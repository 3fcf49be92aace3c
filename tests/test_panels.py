"""The engine side of the record panels (mmn_core.panels, mmn_core.explain.browse, narration): the numbers the
Explorer, the report and the CLI show equal the measuring modules' own (faithfulness, acquire, trace)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmn_core import acquire as AQ
from mmn_core import explain as E
from mmn_core import faithfulness as FA
from mmn_core import panels as P
from mmn_core.checkpoint import load
from mmn_core.datasets import load_dataset
from mmn_core.explain import browse as B
from mmn_core.missingness import PATTERN_NAMES

from conftest import ROOT

CK = ROOT / "data" / "checkpoints"
pytestmark = pytest.mark.skipif(not (CK / "support2-multimodn" / "config.json").is_file(),
                                reason="shipped checkpoints missing: run python data/train_checkpoints.py")


@pytest.fixture(scope="module")
def s2():
    trained = load(CK / "support2-multimodn")
    ds = load_dataset("support2")
    data = trained.prep.transform(ds)
    return trained, ds, data


def _row_with(data, names, want):
    """The first record whose presence equals `want` (a predicate over {modality: bool})."""
    for i in range(len(data)):
        p = {m: bool(data.present[m][i]) for m in names}
        if want(p):
            return i
    raise AssertionError("no such record")


def test_one_pattern_vocabulary(s2):
    trained = s2[0]
    spec = trained.spec
    names = spec.modality_names
    assert B.pattern_label(spec, {m: True for m in names}) == PATTERN_NAMES["all"]
    assert B.pattern_label(spec, {m: False for m in names}) == PATTERN_NAMES["none"]
    one_off = {m: m != names[1] for m in names}
    assert B.pattern_label(spec, one_off) == f"Missing: {spec.modality(names[1]).display}"
    assert E.pattern_name(trained, one_off) == B.pattern_label(spec, one_off)       # the engine's table agrees
    key = "|".join(m for m in names if one_off[m])
    assert B.pattern_key_label(spec, key) == B.pattern_label(spec, one_off)


def test_record_table_and_filters(s2):
    trained, _, data = s2
    sub = data.subset(np.arange(600))
    table = B.record_table(trained, sub)
    tr = E.trace(trained, sub)
    np.testing.assert_allclose(table["death__pred"], tr.value["death"][-1], atol=1e-6)
    lab = table["death__label"].to_numpy()
    ok = ~np.isnan(lab)
    np.testing.assert_allclose(table["death__surprise"][ok], np.abs(lab[ok] - tr.value["death"][-1][ok]), atol=1e-6)
    # binary filter: exactly the records with that label; surprise sorted, largest first
    classes = trained.prep.classes["death"]
    pos = B.filter_records(table, trained.spec.task("death"), classes, outcome=classes[1])
    assert len(pos) == int((lab == 1).sum()) and (pos["death__label"] == 1).all()
    assert np.all(np.diff(pos["death__surprise"].to_numpy()) <= 0)
    # id search and pattern filter
    rid = table["id"].iloc[5]
    assert rid in B.filter_records(table, trained.spec.task("death"), classes, query=rid)["id"].tolist()
    pat = table["pattern"].iloc[0]
    got = B.filter_records(table, trained.spec.task("death"), classes, pattern=pat)
    assert len(got) == B.pattern_options(table)[pat] and (got["pattern"] == pat).all()


def test_regression_terciles_split_the_table_in_three():
    trained = load(CK / "star-multimodn")
    data = trained.prep.transform(load_dataset("star"))
    table = B.record_table(trained, data.subset(np.arange(900)))
    t = next(t for t in trained.spec.tasks if t.type == "regression")
    parts = [B.filter_records(table, t, None, outcome=o) for o in B.TERCILES]
    labelled = int(table[f"{t.name}__label"].notna().sum())
    assert sum(len(p) for p in parts) == labelled
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 0.1 * labelled    # thirds, ties aside
    assert parts[0][f"{t.name}__label"].max() <= parts[2][f"{t.name}__label"].min()
    assert B.outcome_options(t, None) == [B.ALL, *B.TERCILES]


def test_headlines_are_prior_to_final(s2):
    trained, _, data = s2
    view = E.record_view(trained, data.subset([0]))
    h = B.headlines(view, trained.spec.tasks)
    v = view.value["death"]
    assert h["death"].prior == pytest.approx(v[0]) and h["death"].final == pytest.approx(v[-1])
    assert h["death"].change == pytest.approx(v[-1] - v[0])
    assert h["death"].direction == ("up" if v[-1] > v[0] else "down")
    m = view.value["sfdm2"]
    assert h["sfdm2"].cls == int(m[-1].argmax()) and h["sfdm2"].final == pytest.approx(m[-1].max())


def test_record_trust_is_the_faithfulness_curve_in_shown_units(s2):
    trained, _, data = s2
    names = trained.spec.modality_names
    row = _row_with(data, names, lambda p: sum(p.values()) >= 5)
    use = [m for m in names if bool(data.present[m][row])][1:]          # one measured modality switched off
    t = P.record_trust(trained, data, row, "death", use=use)
    tr = E.trace(trained, data.subset([row]), {m: np.array([m in use]) for m in names})
    final, prior = float(tr.value["death"][-1, 0]), float(tr.value["death"][0, 0])
    assert t.available and len(t.removed) == len(use) and set(t.removed) == set(use)
    assert t.deletion[0] == pytest.approx(final, abs=1e-5)        # nothing removed: the shown prediction
    assert t.deletion[-1] == pytest.approx(prior, abs=1e-5)       # everything removed: the prior
    assert t.random[0] == pytest.approx(final, abs=1e-5) and t.random[-1] == pytest.approx(prior, abs=1e-5)
    # the same numbers as faithfulness.record_faithfulness on the same presence (P(predicted class) there)
    pres = {m: v.clone() for m, v in data.present.items()}
    for m in names:
        pres[m][row] = bool(pres[m][row]) and m in use
    rf = FA.record_faithfulness(trained, data.with_present(pres), row, "death")
    want = rf.deletion if final >= 0.5 else 1 - rf.deletion
    np.testing.assert_allclose(t.deletion, want, atol=1e-9)
    import re
    ratio = re.search(r"(\d+\.\d)x as much", rf.sentence)
    assert ratio and f"moves the prediction {ratio.group(1)} times as much" in t.sentence    # the engine's ratio
    top = trained.spec.modality(t.removed[0]).display
    assert top in t.sentence and t.removed[0] not in t.sentence.replace(top, "")      # display names only


def test_record_trust_for_pfusion_says_why_not():
    pf = load(CK / "support2-pfusion")
    data = pf.prep.transform(load_dataset("support2"))
    t = P.record_trust(pf, data, 0, "death")
    assert not t.available and "P-Fusion" in t.reason and len(t.deletion) == 0
    assert all(m.mode == "unavailable" and "P-Fusion" in m.reason for m in P.measure_next(pf, data, 0, None).values())


def test_measure_next_equals_the_acquire_estimate(s2):
    trained, ds, data = s2
    names = trained.spec.modality_names
    donors = AQ.Donors(trained, data, AQ.training_pool(trained, ds))
    row = _row_with(data, names, lambda p: 2 <= sum(not v for v in p.values()) <= 4)
    got = P.measure_next(trained, data, row, donors, k=20)
    est = AQ.estimate(trained, data, row, donors, 20)
    for t, mn in got.items():
        assert mn.mode == "missing" and [r.modality for r in mn.rows] == est.ranked(t)
        for r in mn.rows:
            e = est.modalities[r.modality].tasks[t]
            assert r.expected_abs_change == e.expected_abs_change and r.current == e.current
            np.testing.assert_array_equal(r.outcomes, e.outcomes)
            assert len(r.neighbour_ids) == 20 and data.ids[row] not in r.neighbour_ids
        top = trained.spec.modality(mn.rows[0].modality).display
        assert mn.sentence.startswith(f"Measuring {top} ")
    # a measured modality switched off becomes a candidate, estimated as if missing
    have = [m for m in names if bool(data.present[m][row])]
    off = P.measure_next(trained, data, row, donors, use=have[1:], k=20)
    assert have[0] in [r.modality for r in off["death"].rows]
    hid = AQ.estimate(trained, data, row, donors, 20, hide=(have[0],))
    assert off["death"].rows[0].expected_abs_change == hid.modalities[hid.ranked("death")[0]].tasks[
        "death"].expected_abs_change


def test_measure_next_for_a_fully_measured_record_is_hindsight(s2):
    trained, ds, data = s2
    names = trained.spec.modality_names
    donors = AQ.Donors(trained, data, AQ.training_pool(trained, ds))
    row = _row_with(data, names, lambda p: all(p.values()))
    got = P.measure_next(trained, data, row, donors, k=20)
    final = float(E.trace(trained, data.subset([row])).value["death"][-1, 0])
    hs = AQ.what_if_not_measured(trained, data, row, donors, 20)
    mn = got["death"]
    assert mn.mode == "hindsight" and {r.modality for r in mn.rows} == set(hs)
    for r in mn.rows:
        assert r.actual == pytest.approx(final, abs=1e-6)            # its real value: the record's prediction
        assert r.expected_abs_change == hs[r.modality].estimate.tasks["death"].expected_abs_change
    assert [r.expected_abs_change for r in mn.rows] == sorted((r.expected_abs_change for r in mn.rows), reverse=True)
    assert mn.sentence.startswith("Everything was measured.")


def test_neighbour_values_are_the_donors_rows(s2):
    _, ds, _ = s2
    ids = ds.ids[10:13]
    got = B.neighbour_values(ds, "vitals", ids)
    cols = list(ds.spec.modality("vitals").columns)
    assert got["id"].tolist() == list(ids)
    np.testing.assert_allclose(got[cols].to_numpy(float), ds.frame.iloc[10:13][cols].to_numpy(float))


def test_cli_explain_json_has_a_faithfulness_field(capsys, s2):
    from mmn_core.cli import main
    trained, _, data = s2
    rid = trained.info["test_ids"][0]
    assert main(["explain", "--checkpoint", str(CK / "support2-multimodn"), "--record", rid, "--task", "death",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    f = out["faithfulness"]["death"]
    assert set(f) >= {"method", "available", "removed", "deletion", "random", "sentence"}
    want = P.record_trust(trained, data, data.ids.index(rid), "death")
    np.testing.assert_allclose(f["deletion"], want.deletion, atol=1e-9)
    assert f["sentence"] == want.sentence and f["available"] is True
