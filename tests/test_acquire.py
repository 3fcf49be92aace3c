"""What to measure next (mmn_core/acquire.py): a planted modality that decides the label ranks first and pure noise
last; donors are training records that have the modality, never the record itself, and are the K nearest in state;
outcomes are real forwards; a complete record has nothing to acquire; hindsight and validation numbers; the CLI."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mmn_core import ModelConfig, TrainConfig, save, train_model
from mmn_core import acquire as A
from mmn_core import cli
from mmn_core.checkpoint import build_model
from mmn_core.explain import _values
from mmn_core.spec import spec_from_dict

N = 1500
SPEC = {
    "name": "planted", "title": "Planted acquisition test", "id_column": "id",
    "modalities": [
        {"name": "base", "columns": ["b1"]},               # always present, weak signal
        {"name": "key", "columns": ["k1"]},                # decides the label
        {"name": "medium", "columns": ["m1"]},             # some signal
        {"name": "noise", "columns": ["n1", "n2"]},        # none
    ],
    "tasks": [{"name": "y", "column": "y", "type": "binary", "positive": 1},
              {"name": "r", "column": "r", "type": "regression"}],
}


def _table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    b, k, m = rng.normal(size=(3, N))
    f = pd.DataFrame({"id": [f"P{i:04d}" for i in range(N)], "b1": b, "k1": k, "m1": m,
                      "n1": rng.normal(size=N), "n2": rng.normal(size=N)})
    f["y"] = (rng.random(N) < 1 / (1 + np.exp(-(6 * k + 1.0 * m + 0.3 * b)))).astype(int)
    f["r"] = 3 * k + m + rng.normal(0, 0.3, N)
    for cols in (["k1"], ["m1"], ["n1", "n2"]):
        f.loc[rng.random(N) < 0.45, cols] = np.nan
    return f


@pytest.fixture(scope="module")
def fx():
    from mmn_core.data import load_data
    spec = spec_from_dict(SPEC, "planted")
    ds = load_data(_table(), spec)
    trained = train_model(ds, "multimodn", ModelConfig(state_size=8, hidden=16, dropout=0.0),
                          TrainConfig(epochs=20, seed=0, patience=4))
    data = trained.prep.transform(ds)
    donors = A.Donors(trained, data, A.training_pool(trained, ds))
    return ds, trained, data, donors


def _pres(data):
    return {m: data.present[m].numpy() for m in data.present}


def test_training_pool_is_the_training_split(fx):
    ds, trained, _, donors = fx
    assert len(donors.pool) == trained.info["rows"]["train"]
    test = set(A.held_out_rows(trained, ds).tolist())
    assert len(test) == trained.info["rows"]["test"] and not test & set(donors.pool.tolist())


def test_planted_modality_ranks_first_and_noise_last(fx):
    ds, trained, data, donors = fx
    p = _pres(data)
    rows = np.flatnonzero(~p["key"] & ~p["medium"] & ~p["noise"])[:40]
    assert len(rows) >= 20
    first = last = 0
    gaps = []
    for r in rows:
        est = A.estimate(trained, data, int(r), donors, k=20)
        assert set(est.candidates) == {"key", "medium", "noise"} and not est.no_donors
        order = est.ranked("y")
        first += order[0] == "key"
        last += order[-1] == "noise"
        e = {m: est.modalities[m].tasks["y"].expected_abs_change for m in order}
        gaps.append(e["key"] - e["noise"])
        assert est.ranked("r")[0] == "key"
    assert first / len(rows) >= 0.95
    assert last / len(rows) >= 0.8
    assert np.mean(gaps) > 0.15            # the label-deciding value moves P(y) a lot; noise barely


def test_neighbours_are_nearest_training_records_having_the_modality(fx):
    ds, trained, data, _ = fx
    everyone = A.Donors(trained, data, np.arange(len(data)))   # the record itself is in this pool
    p = _pres(data)
    r = int(np.flatnonzero(~p["key"] & p["medium"])[0])
    pattern = tuple(bool(p[m][r]) for m in everyone.names)
    est = A.estimate(trained, data, r, everyone, k=15)
    me = est.modalities["key"]
    assert len(me.neighbours) == 15 and r not in me.neighbours.tolist()
    assert p["key"][me.neighbours].all()
    assert list(me.neighbour_ids) == [data.ids[i] for i in me.neighbours]
    assert np.all(np.diff(me.distances) >= 0)
    # brute force: every candidate's state under the record's pattern, by the full model
    with torch.no_grad():
        pres = {m: data.present[m] & b for m, b in zip(everyone.names, pattern)}
        states = trained.model(data.x, pres, data.lengths).states[-1]
    d = (states - states[r]).pow(2).sum(-1).sqrt().numpy()
    cand = np.flatnonzero(p["key"] & (np.arange(len(data)) != r))
    assert np.allclose(np.sort(d[cand])[:15], me.distances, atol=1e-4)
    # a record's own row is never a donor for a modality it has (hindsight), even if it is in the pool
    r2 = int(np.flatnonzero(p["key"])[0])
    h = A.what_if_not_measured(trained, data, r2, everyone, k=10, modalities=("key",))
    assert r2 not in h["key"].estimate.neighbours.tolist()


def test_outcomes_are_real_forwards_and_summaries_follow(fx):
    ds, trained, data, donors = fx
    p = _pres(data)
    r = int(np.flatnonzero(~p["key"] & ~p["noise"])[0])
    est = A.estimate(trained, data, r, donors, k=8, threshold=0.5)
    me = est.modalities["key"]
    y = me.tasks["y"]
    names = donors.names
    for j, d in enumerate(me.neighbours[:3]):
        x = {m: v[[r]].clone() for m, v in data.x.items()}
        x["key"] = data.x["key"][[int(d)]]
        pres = {m: torch.tensor([bool(p[m][r]) or m == "key"]) for m in names}
        with torch.no_grad():
            v = _values(trained, "y", trained.model(x, pres, {}).logits["y"][-1, 0])
        assert abs(float(v) - y.outcomes[j]) < 1e-5
    assert y.outcomes.shape == (8,)
    assert np.isclose(y.expected_abs_change, np.mean(np.abs(y.outcomes - y.current)))
    assert np.isclose(y.flip_probability, np.mean((y.outcomes >= 0.5) != (y.current >= 0.5)))
    ent = lambda q: -(q * np.log(q) + (1 - q) * np.log(1 - q))
    assert np.isclose(y.uncertainty_reduction, ent(y.current) - ent(y.outcomes).mean(), atol=1e-6)
    rr = me.tasks["r"]
    assert np.isnan(rr.flip_probability) and np.isclose(rr.uncertainty_reduction, np.std(rr.outcomes))
    assert rr.cls is None and y.cls == int(y.current >= 0.5)


def test_complete_record_has_nothing_to_acquire(fx):
    ds, trained, data, donors = fx
    p = _pres(data)
    r = int(np.flatnonzero(p["key"] & p["medium"] & p["noise"])[0])
    est = A.estimate(trained, data, r, donors, k=10)
    assert est.candidates == () and est.modalities == {} and est.no_donors == ()
    hs = A.what_if_not_measured(trained, data, r, donors, k=10)
    assert set(hs) == {"base", "key", "medium", "noise"}
    with torch.no_grad():
        full = _values(trained, "y", trained.model(*[{m: v[[r]] for m, v in d.items()}
                                                     for d in (data.x, data.present, data.lengths)]).logits["y"][-1, 0])
    for h in hs.values():
        assert abs(h.actual["y"] - float(full)) < 1e-5
        assert np.isclose(h.actual_abs_change["y"], abs(h.actual["y"] - h.estimate.tasks["y"].current))


def test_bad_inputs_and_pfusion_refused(fx):
    ds, trained, data, donors = fx
    with pytest.raises(ValueError, match="k must be at least 1"):
        A.estimate(trained, data, 0, donors, k=0)
    with pytest.raises(ValueError, match="unknown modality"):
        A.estimate(trained, data, 0, donors, hide=("nope",))
    pf = type(trained)(build_model("pfusion", trained.spec, trained.prep, ModelConfig(state_size=8, hidden=16)),
                       trained.spec, trained.prep)
    with pytest.raises(ValueError, match="P-Fusion"):
        A.Donors(pf, data, donors.pool)


def test_validation_finds_the_planted_modality(fx):
    ds, trained, data, _ = fx
    ev = A.evaluate_acquisition(trained, ds, records=120, seed=0, k=20, task="y", data=data)
    assert ev.records <= 120 and ev.pairs == len(ev.expected) == len(ev.actual) >= ev.records
    assert ev.spearman > 0.5
    assert ev.top1_hit_rate >= 0.7
    assert max(ev.cohort_importance, key=ev.cohort_importance.get) == "key"
    assert ev.cohort_importance["noise"] < ev.cohort_importance["key"] / 5
    assert ev.calibration_slope > 0.3


def test_cli_json(fx, tmp_path, capsys):
    ds, trained, data, _ = fx
    save(trained, tmp_path / "ck")
    ds.frame.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(ds.spec.to_json()))
    src = ["--checkpoint", str(tmp_path / "ck"), "--data", str(tmp_path / "d.csv"), "--spec",
           str(tmp_path / "spec.yaml")]
    p = _pres(data)
    rid = data.ids[int(np.flatnonzero(~p["key"] & ~p["noise"])[0])]
    assert cli.main(["acquire", *src, "--record", rid, "--k", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["record"] == rid and set(out["missing"]) >= {"key", "noise"}
    assert set(out["tasks"]) == {"y", "r"}
    for task, mods in out["tasks"].items():
        assert set(mods) == set(out["missing"])
        for v in mods.values():
            assert {"expected_abs_change", "flip_probability", "uncertainty_reduction"} <= set(v)
            assert len(v["outcomes"]) == 10
    assert out["tasks"]["r"]["key"]["flip_probability"] is None
    assert out["missing"][0] == "key"
    assert cli.main(["acquire", *src, "--evaluate", "--records", "30", "--k", "10", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert {"records", "spearman", "top1_hit_rate", "baseline_top1_hit_rate", "calibration_slope"} <= set(ev)
    assert 0 < ev["records"] <= 30 and -1 <= ev["spearman"] <= 1
    for bad, msg in ((["--record", "nope"], "not in dataset"), (["--record", rid, "--k", "0"], "--k"),
                     (["--record", rid, "--task", "zzz"], "zzz")):
        assert cli.main(["acquire", *src, *bad, "--json"]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1


def test_k_is_capped_by_donors_and_no_donor_is_reported(fx):
    ds, trained, data, _ = fx
    p = _pres(data)
    r = int(np.flatnonzero(~p["key"] & ~p["noise"])[0])
    with_key = np.flatnonzero(p["key"] & ~p["noise"])[:5]
    without_noise = np.flatnonzero(~p["noise"] & ~p["key"])
    small = A.Donors(trained, data, np.union1d(with_key, without_noise[:50]))
    est = A.estimate(trained, data, r, small, k=50)
    assert len(est.modalities["key"].neighbours) == 5 and set(est.modalities["key"].neighbours) == set(with_key)
    assert "noise" not in est.modalities and "noise" in est.no_donors
    assert "noise" not in est.ranked("y")
