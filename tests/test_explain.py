"""Interpretation invariants: telescoping deltas, Shapley axioms (efficiency, symmetry, dummy) and agreement with
a brute-force permutation average, batched == per record, IG completeness, a planted feature on top, one-hot and
sequence attribution layout, narrative numbers, cohort views, the CLI payload."""
import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mmn_core import ModelConfig, Preprocessor, TrainConfig, load_dataset, train_model
from mmn_core import explain as E
from mmn_core.checkpoint import Trained, build_model
from mmn_core.model import probabilities
from mmn_core.spec import spec_from_dict


@pytest.fixture(scope="module")
def fx():
    """One small MultiModN trained on the synthetic cohort (5 tabular modalities + the `visits` GRU; lactate is
    planted in `labs` for `outcome`), and the cohort as tensors."""
    ds = load_dataset("synthetic", n=1200, seed=0)
    trained = train_model(ds, "multimodn", ModelConfig(state_size=16, hidden=32, dropout=0.0),
                          TrainConfig(epochs=25, seed=0, patience=5))
    data = trained.prep.transform(ds)
    return ds, trained, data


@pytest.fixture(scope="module")
def mixed(fx):
    """60 records, with rows 0-4 having every modality and rows 5-9 none (hidden by a mask)."""
    _, _, data = fx
    all_idx = torch.nonzero(torch.stack([data.present[m] for m in data.present]).all(0)).ravel()[:5]
    idx = torch.cat([all_idx, torch.arange(10, 65)])
    sub = data.subset(idx)
    none = torch.ones(len(sub), dtype=torch.bool)
    none[5:10] = False
    return sub, {m: none for m in sub.present}


def _logits_final(trained, data, present, order=None):
    with torch.no_grad():
        return trained.model(data.x, present, data.lengths, order).logits


# --- trace ---------------------------------------------------------------------------------------------------
def test_trace_telescopes_and_skips(fx, mixed):
    _, trained, _ = fx
    data, mask = mixed
    tr = E.trace(trained, data, mask)
    k, n = len(tr.steps) - 1, len(data)
    assert tr.steps == ["prior", *trained.model.modality_names]
    assert tr.states.shape == (k + 1, n, 16) and tr.skipped.shape == (k, n)
    for t, v in tr.value.items():
        assert np.allclose(v[0] + tr.delta[t].sum(0), v[-1], atol=1e-12, rtol=0)
        skipped = tr.skipped.reshape(tr.skipped.shape + (1,) * (v.ndim - 2))
        assert np.all(np.where(skipped, tr.delta[t], 0) == 0)          # a skipped step changes nothing, exactly
    for j, m in enumerate(tr.steps[1:]):
        assert np.array_equal(tr.skipped[j], ~tr.present[m])
    assert not tr.present["labs"][5:10].any() and tr.skipped[:, 5:10].all()
    assert np.array_equal(tr.measured["labs"], data.present["labs"].numpy())
    # values are the model's probabilities / decoded predictions
    logits = _logits_final(trained, data, E._present(data, mask))
    assert np.allclose(tr.value["outcome"], torch.sigmoid(logits["outcome"][..., 0]).numpy(), atol=1e-6)
    assert np.allclose(tr.value["stage"].sum(-1), 1.0, atol=1e-6)
    mean, std = trained.prep.target_stats["score"]
    assert np.allclose(tr.value["score"], logits["score"][..., 0].numpy() * std + mean, atol=1e-4)
    y = data.y["score"].numpy()
    assert np.allclose(tr.label["score"], y * std + mean, equal_nan=True)
    assert tr.classes["outcome"] == ["0", "1"] and tr.classes["stage"] == trained.prep.classes["stage"]


def test_batched_trace_equals_per_record(fx, mixed):
    _, trained, _ = fx
    data, mask = mixed
    order = list(reversed(trained.model.modality_names))
    batch = E.trace(trained, data, mask, order)
    for i in range(0, len(data), 7):
        one = E.trace(trained, data.subset([i]), {m: v[i:i + 1] for m, v in mask.items()}, order)
        assert one.steps == batch.steps
        assert np.allclose(one.states[:, 0], batch.states[:, i], atol=1e-6)
        assert np.array_equal(one.skipped[:, 0], batch.skipped[:, i])
        for t in batch.value:
            assert np.allclose(one.value[t][:, 0], batch.value[t][:, i], atol=1e-6)


def test_mask_cannot_invent_a_modality(fx):
    _, trained, data = fx
    sub = data.subset(range(40))
    tr = E.trace(trained, sub, {"labs": True})          # ask for labs everywhere: only records that have them
    assert np.array_equal(tr.present["labs"], sub.present["labs"].numpy())


# --- Shapley -------------------------------------------------------------------------------------------------
def test_shapley_efficiency_and_absent_zero(fx, mixed):
    _, trained, _ = fx
    data, mask = mixed
    sh = E.shapley(trained, data, mask)
    tr = E.trace(trained, data, mask)
    pres = E._present(data, mask)
    assert sh.modalities == trained.model.modality_names and sh.exact.all()
    for t, v in sh.values.items():
        assert np.allclose(v.sum(1), sh.f_all[t] - sh.f_none[t], atol=1e-5, rtol=0)
        assert np.allclose(sh.f_all[t], tr.value[t][-1], atol=1e-5)
        assert np.allclose(sh.f_none[t], tr.value[t][0], atol=1e-5)
        for j, m in enumerate(sh.modalities):
            assert np.all(v[~pres[m].numpy(), j] == 0)              # a modality the record lacks: exactly 0
    assert np.abs(sh.values["outcome"][:5]).sum() > 0.01             # not trivially zero


def _brute_force(trained, data, i, task):
    """Permutation average of marginal contributions, one forward per coalition (no tiling, no weights)."""
    names = trained.model.modality_names
    here = [m for m in names if bool(data.present[m][i])]
    one = data.subset([i])
    cache = {}

    def v(coal):
        key = frozenset(coal)
        if key not in cache:
            p = {m: torch.tensor([m in key]) & one.present[m] for m in names}
            lg = _logits_final(trained, one, p)[task][-1]
            task_type = next(t.type for t in trained.model.tasks if t.name == task)
            cache[key] = float(probabilities(task_type, lg.double())[0])
        return cache[key]

    phi = dict.fromkeys(names, 0.0)
    perms = list(itertools.permutations(here))
    for perm in perms:
        for j, m in enumerate(perm):
            phi[m] += (v(perm[:j + 1]) - v(perm[:j])) / len(perms)
    return np.array([phi[m] for m in names])


def test_exact_shapley_equals_brute_force_permutation_average(fx, mixed):
    _, trained, _ = fx
    data, _ = mixed
    sh = E.shapley(trained, data.subset([0, 1, 12, 13]))
    for r, i in enumerate([0, 1, 12, 13]):
        expected = _brute_force(trained, data, i, "outcome")
        assert np.allclose(sh.values["outcome"][r], expected, atol=1e-5), (sh.values["outcome"][r], expected)


def test_sampled_shapley_keeps_efficiency_and_approaches_exact(fx, mixed):
    _, trained, _ = fx
    data, _ = mixed
    sub = data.subset(range(5))                        # all six modalities present
    exact = E.shapley(trained, sub)
    sampled = E.shapley(trained, sub, max_exact=3, samples=3000, seed=1)
    assert not sampled.exact.any()
    for t in exact.values:
        assert np.allclose(sampled.values[t].sum(1), sampled.f_all[t] - sampled.f_none[t], atol=1e-6)
    err = np.abs(sampled.values["outcome"] - exact.values["outcome"]).max()
    assert err < 0.02, err
    again = E.shapley(trained, sub, max_exact=3, samples=3000, seed=1)
    assert np.array_equal(again.values["outcome"], sampled.values["outcome"])      # seeded


def test_shapley_per_record_independent_of_batch(fx, mixed):
    _, trained, _ = fx
    data, mask = mixed
    batch = E.shapley(trained, data, mask)
    for i in (0, 6, 20, 41):
        one = E.shapley(trained, data.subset([i]), {m: v[i:i + 1] for m, v in mask.items()})
        for t in batch.values:
            assert np.allclose(one.values[t][0], batch.values[t][i], atol=1e-6)


def _twin_model(seed=0, n=80):
    """A 4-modality model where `a` and `b` are twins (same encoder weights, same inputs) and `d` is dummy
    (its encoder's last layer is zero, so the residual encoder is the identity)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 2))
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a1": a[:, 0], "a2": a[:, 1], "b1": a[:, 0],
                          "b2": a[:, 1], "c1": rng.normal(size=n), "d1": rng.normal(size=n),
                          "y": rng.integers(0, 2, n), "k": rng.choice(["x", "y", "z"], n)})
    spec = spec_from_dict({"name": "twins", "id_column": "id",
                           "modalities": [{"name": "c", "columns": ["c1"]}, {"name": "a", "columns": ["a1", "a2"]},
                                          {"name": "b", "columns": ["b1", "b2"]}, {"name": "d", "columns": ["d1"]}],
                           "tasks": [{"name": "y", "column": "y", "type": "binary"},
                                     {"name": "k", "column": "k", "type": "multiclass"}]})
    from mmn_core.data import Dataset
    ds = Dataset(spec, frame)
    prep = Preprocessor.fit(ds)
    torch.manual_seed(seed)
    model = build_model("multimodn", spec, prep, ModelConfig(state_size=8, hidden=16, dropout=0.0)).eval()
    with torch.no_grad():
        model.init_state.normal_()
        model.encoders["b"].load_state_dict(model.encoders["a"].state_dict())
        model.encoders["d"].net[-1].weight.zero_()
        model.encoders["d"].net[-1].bias.zero_()
    data = prep.transform(ds)
    gen = torch.Generator().manual_seed(seed)
    for m in ("c", "d"):
        data.present[m] = torch.rand(n, generator=gen) < 0.7
    return Trained(model, spec, prep), data


def test_shapley_symmetry_and_dummy():
    """Twins adjacent in the order: for every coalition S without them, S+a and S+b run the same computation,
    so the symmetry axiom applies exactly; the identity encoder leaves every coalition's value unchanged."""
    trained, data = _twin_model()
    for order in (["c", "a", "b", "d"], ["a", "b", "d", "c"], ["d", "c", "b", "a"]):
        sh = E.shapley(trained, data, order=order)
        ja, jb, jd = (sh.modalities.index(m) for m in "abd")
        for t, v in sh.values.items():
            assert np.allclose(v[:, ja], v[:, jb], atol=1e-6)
            assert np.abs(v[:, ja]).max() > 1e-3            # twins matter, so the equality is not 0 == 0
            assert np.allclose(v[:, jd], 0, atol=1e-6)
            assert np.allclose(v.sum(1), sh.f_all[t] - sh.f_none[t], atol=1e-5)
        loo = E.leave_one_out(trained, data, order=order)
        assert np.allclose(loo["y"][:, jd], 0, atol=1e-6)


def test_leave_one_out_matches_direct_runs(fx, mixed):
    _, trained, _ = fx
    data, mask = mixed
    loo = E.leave_one_out(trained, data, mask)
    full = E.trace(trained, data, mask)
    for j, m in enumerate(trained.model.modality_names):
        without = E.trace(trained, data, {**mask, m: mask[m] & False})
        for t in loo:
            expected = full.value[t][-1] - without.value[t][-1]
            assert np.allclose(loo[t][:, j], expected, atol=1e-5)
        assert np.all(loo["outcome"][~full.present[m], j] == 0)


# --- Captum attributions --------------------------------------------------------------------------------------
def _present_rows(data, m, count, start=0):
    return [int(i) for i in torch.nonzero(data.present[m]).ravel()[start:start + count]]


@pytest.mark.parametrize("modality,task", [("labs", "outcome"), ("imaging", "stage"), ("visits", "score"),
                                           ("vitals", "outcome")])
def test_integrated_gradients_completeness(fx, modality, task):
    """Σ attributions = F(x) − F(baseline) within 1e-2 + 1 % (Gauss–Legendre, 64 steps on a ReLU network)."""
    _, trained, data = fx
    for i in _present_rows(data, modality, 3):
        a = E.attribute(trained, data, i, modality, task)
        gap = a.target_logit - a.baseline_logit
        assert abs(a.values.sum() - gap) <= 1e-2 + 0.01 * abs(gap), (a.values.sum(), gap)
        assert abs(a.delta) <= 1e-2 + 0.01 * abs(gap)
        assert a.step == len(trained.model.modality_names) and a.present
        # target logit is the model's logit at that step
        lg = _logits_final(trained, data.subset([i]), {m: v[i:i + 1] for m, v in data.present.items()})[task]
        c = 0 if a.target_class is None else a.target_class
        assert abs(float(lg[a.step, 0, c]) - a.target_logit) < 1e-5


def test_planted_lactate_gets_top_attribution(fx):
    _, trained, data = fx
    rows = _present_rows(data, "labs", 40)
    step = trained.model.modality_names.index("labs") + 1
    totals = dict.fromkeys(["lactate", "creatinine", "sodium"], 0.0)
    for i in rows:
        a = E.attribute(trained, data, i, "labs", "outcome", step=step)
        for c in totals:
            totals[c] += abs(a.by_column[c]) / len(rows)
    assert max(totals, key=totals.get) == "lactate", totals
    assert totals["lactate"] > 2 * max(totals["creatinine"], totals["sodium"]), totals


@pytest.mark.parametrize("method", ["ig", "ablation", "shapley"])
def test_one_hot_attributions_sum_back_to_their_column(fx, method):
    ds, trained, data = fx
    i = _present_rows(data, "imaging", 1, start=2)[0]
    a = E.attribute(trained, data, i, "imaging", "outcome", method=method, frame=ds)
    mspec = trained.spec.modality("imaging")
    assert a.features == trained.prep.feature_names(mspec) and a.columns == ["opacity", "effusion"]
    onehot = [j for j, f in enumerate(a.features) if f.startswith("effusion=")]
    assert len(onehot) == 4                                  # none / small / large / (missing)
    assert a.by_column["effusion"] == pytest.approx(float(a.values[onehot].sum()), abs=1e-9)
    assert set(a.by_column) == {"opacity", "effusion"}
    assert a.raw["effusion"] == ds.frame["effusion"].iloc[i]
    if method == "ablation":   # the whole column ablated to the baseline: check against a direct run
        x = {k: v[i:i + 1].clone() for k, v in data.x.items()}
        p = {k: v[i:i + 1] for k, v in data.present.items()}
        lg0 = _logits_final(trained, data.subset([i]), p)["outcome"][-1, 0, 0]
        x["imaging"][0, onehot] = 0
        with torch.no_grad():
            lg1 = trained.model(x, p, {k: v[i:i + 1] for k, v in data.lengths.items()}).logits["outcome"][-1, 0, 0]
        assert a.by_column["effusion"] == pytest.approx(float(lg0 - lg1), abs=1e-5)
    if method == "shapley":    # each sampled permutation telescopes: Σ over all groups = F(x) − F(baseline)
        assert float(a.values.sum()) == pytest.approx(a.target_logit - a.baseline_logit, abs=1e-5)
    if method == "ig":
        assert a.delta is not None
    else:
        assert a.delta is None


def test_sequence_attributions_are_time_by_channel(fx):
    ds, trained, data = fx
    for i in _present_rows(data, "visits", 4):
        a = E.attribute(trained, data, i, "visits", "outcome", frame=ds)
        length = int(data.lengths["visits"][i])
        assert a.values.shape == (length, 1) and a.inputs.shape == (length, 1)
        assert a.by_column["marker"] == pytest.approx(float(a.values.sum()), abs=1e-9)
        assert len(a.raw["marker"]) == length and a.raw["day"] == sorted(a.raw["day"])
        for method in ("ablation", "shapley"):
            b = E.attribute(trained, data, i, "visits", "outcome", method=method)
            assert b.values.shape == (length, 1)
            if method == "shapley":
                assert float(b.values.sum()) == pytest.approx(b.target_logit - b.baseline_logit, abs=1e-5)


def test_absent_modality_attribution_is_zero(fx):
    _, trained, data = fx
    i = int(torch.nonzero(~data.present["labs"]).ravel()[0])
    a = E.attribute(trained, data, i, "labs", "outcome")
    assert not a.present and np.all(a.values == 0) and a.target_logit == pytest.approx(a.baseline_logit, abs=1e-6)
    assert set(E.attribute_modalities(trained, data, i, "outcome")) == \
        {m for m in trained.model.modality_names if bool(data.present[m][i])}


def test_attribution_rejects_bad_input(fx):
    _, trained, data = fx
    with pytest.raises(ValueError, match="unknown attribution method"):
        E.attribute(trained, data, 0, "labs", "outcome", method="lime")
    with pytest.raises(ValueError, match="unknown modality 'xray'"):
        E.attribute(trained, data, 0, "xray", "outcome")
    with pytest.raises(ValueError, match="unknown task"):
        E.attribute(trained, data, 0, "labs", "death")
    with pytest.raises(ValueError, match="outside"):
        E.attribute(trained, data, len(data), "labs", "outcome")
    with pytest.raises(ValueError, match="twice"):
        E.trace(trained, data.subset([0]), order=["labs", "labs"])


# --- narrative ------------------------------------------------------------------------------------------------
def _numbers(sentence):
    return [float(x) for x in re.findall(r"(-?\d+(?:\.\d+)?) ?%", sentence)]


def test_narrative_numbers_match_the_trace(fx, mixed):
    _, trained, _ = fx
    data, mask = mixed
    tr = E.trace(trained, data, mask)
    for i in (0, 7, 15, 30):
        lines = E.narrative(tr, i, "outcome", trained.spec)
        assert len(lines) == len(tr.steps)
        v = tr.value["outcome"][:, i] * 100
        assert _numbers(lines[0]) == [pytest.approx(round(v[0]), abs=0)]
        for k in range(1, len(tr.steps)):
            nums = _numbers(lines[k])
            label = trained.spec.modality(tr.steps[k]).display
            assert label in lines[k]
            if tr.skipped[k - 1, i]:
                assert "skipped" in lines[k] and nums == [round(v[k])]
            elif len(nums) == 2:
                assert nums == [round(v[k - 1]), round(v[k])]
                assert ("raised" in lines[k]) == (v[k] > v[k - 1])
            else:
                assert nums == [round(v[k])] and round(v[k - 1]) == round(v[k])
    # regression in target units, multiclass the predicted class
    score = E.narrative(tr, 0, "score", trained.spec)
    assert "points" in score[0] and float(re.findall(r"(-?\d+\.?\d*) points", score[0])[0]) == \
        pytest.approx(tr.value["score"][0, 0], abs=0.01)
    stage = E.narrative(tr, 0, "stage", trained.spec)
    cls = tr.classes["stage"][int(tr.value["stage"][-1, 0].argmax())]
    assert all(f"'{cls}'" in s for s in stage if "skipped" not in s)


def test_narrative_names_the_largest_push(fx):
    ds, trained, data = fx
    i = _present_rows(data, "labs", 1)[0]
    tr = E.trace(trained, data.subset([i]))
    attrs = E.attribute_modalities(trained, data, i, "outcome", own_step=True, frame=ds)
    lines = E.narrative(tr, 0, "outcome", trained.spec, attrs)
    k = tr.steps.index("labs")
    up = tr.value["outcome"][k, 0] > tr.value["outcome"][k - 1, 0]
    by = attrs["labs"].by_column
    top = max(by, key=lambda c: by[c] if up else -by[c])
    if (by[top] > 0) == up:
        assert "came from" in lines[k] and top in lines[k]
    assert lines == E.narrative(tr, 0, "outcome", trained.spec, attrs)        # deterministic


# --- order, cohort, patterns, state map, CLI payload -----------------------------------------------------------
def test_order_sensitivity_matches_brute_force(fx, mixed):
    _, trained, _ = fx
    data, _ = mixed
    sub = data.subset([0, 12])
    res = E.order_sensitivity(trained, sub, "outcome")
    names = trained.model.modality_names
    for r in range(2):
        here = [m for m in names if bool(sub.present[m][r])]
        assert res["n_orders"][r] == math.factorial(len(here)) and res["exhaustive"][r]
    one = sub.subset([1])
    here = [m for m in names if bool(one.present[m][0])]
    finals = [E.trace(trained, one, order=list(p)).value["outcome"][-1, 0] for p in itertools.permutations(names)]
    assert res["max"][1] == pytest.approx(max(finals), abs=1e-5)
    assert res["min"][1] == pytest.approx(min(finals), abs=1e-5)
    assert res["spread"][1] == pytest.approx(max(finals) - min(finals), abs=1e-5)
    assert res["default"][1] == pytest.approx(E.trace(trained, one).value["outcome"][-1, 0], abs=1e-6)
    reached = E.trace(trained, one, order=res["max_order"][1]).value["outcome"][-1, 0]
    assert reached == pytest.approx(res["max"][1], abs=1e-5)
    sampled = E.order_sensitivity(trained, sub.subset([0]), "stage", max_orders=50, seed=0)
    assert sampled["n_orders"][0] == 50 and not sampled["exhaustive"][0]


def test_cohort_importance_matches_direct_computation(fx):
    _, trained, data = fx
    sub = data.subset(range(300))
    df = E.cohort_importance(trained, sub, batch_size=128, shapley_sample=300)
    assert len(df) == 3 * 6 and set(df["task"]) == {"outcome", "score", "stage"}
    tr = E.trace(trained, sub)
    sh = E.shapley(trained, sub)
    for _, row in df[df["task"] != "stage"].iterrows():
        m, t = row["modality"], row["task"]
        has = tr.present[m]
        k = tr.steps.index(m) - 1
        assert row["n_present"] == has.sum()
        assert row["mean_abs_delta"] == pytest.approx(np.abs(tr.delta[t][k][has]).mean(), abs=1e-6)
        phi = sh.values[t][has, sh.modalities.index(m)]
        assert row["mean_shapley"] == pytest.approx(phi.mean(), abs=1e-6)
        assert row["q50"] == pytest.approx(np.median(phi), abs=1e-6)
    notes = df[(df.task == "outcome")].set_index("modality")
    assert notes.loc["labs", "mean_abs_shapley"] > notes.loc["notes", "mean_abs_shapley"]   # noise ranks below


def test_pattern_metrics(fx):
    _, trained, data = fx
    df = E.pattern_metrics(trained, data)
    assert df["n"].sum() == len(data) and df["n"].is_monotonic_decreasing
    names = trained.model.modality_names
    tr = E.trace(trained, data)
    top = df.iloc[0]
    rec = np.all([tr.present[m] == top[m] for m in names], axis=0)
    y = data.y["outcome"].numpy()[rec]
    assert top["outcome_label_rate"] == pytest.approx(np.nanmean(y))
    assert top["outcome_auroc"] == pytest.approx(roc_auc_score(y, tr.value["outcome"][-1, rec]), abs=1e-6)
    mae = np.nanmean(np.abs(tr.value["score"][-1, rec] - tr.label["score"][rec]))
    assert top["score_mae"] == pytest.approx(mae, abs=1e-4)
    assert all(f"stage_rate_{c}" in df for c in trained.prep.classes["stage"])


def test_state_map(fx):
    _, trained, data = fx
    sub = data.subset(range(200))
    sm = E.StateMap.fit(trained, sub)
    assert sm.cloud.shape == (7, 200, 2) and sm.explained.sum() <= 1 + 1e-9
    tr = E.trace(trained, sub.subset([3]))
    assert np.allclose(sm.transform(tr.states)[:, 0], sm.cloud[:, 3], atol=1e-4)
    other = E.StateMap().fit(trained, sub)
    assert np.allclose(other.cloud, sm.cloud)
    with pytest.raises(ValueError, match="not fitted"):
        E.StateMap().transform(tr.states)


def test_pfusion_trace_and_shapley(fx):
    ds, trained, data = fx
    torch.manual_seed(0)
    model = build_model("pfusion", trained.spec, trained.prep, ModelConfig(state_size=8, hidden=16)).eval()
    pf = Trained(model, trained.spec, trained.prep)
    sub = data.subset(range(30))
    tr = E.trace(pf, sub)
    assert tr.steps == ["all modalities"] and tr.skipped.shape == (0, 30)
    sh = E.shapley(pf, sub)
    for t in sh.values:
        assert np.allclose(sh.values[t].sum(1), sh.f_all[t] - sh.f_none[t], atol=1e-5)
        assert np.allclose(sh.f_all[t], tr.value[t][-1], atol=1e-5)
    assert E.narrative(tr, 0, "outcome", pf.spec)[0].startswith("Using all modalities")
    with pytest.raises(ValueError, match="P-Fusion"):
        E.StateMap.fit(pf, sub)


def test_explain_record_payload(fx):
    ds, trained, data = fx
    rid = ds.ids[4]
    out = E.explain_record(trained, ds, rid)
    json.dumps(out, allow_nan=False)
    tr = E.trace(trained, data.subset([4]))
    assert out["record"] == rid and out["steps"] == tr.steps
    assert out["tasks"]["outcome"]["prob"] == pytest.approx(list(tr.value["outcome"][:, 0]), abs=1e-6)
    assert out["tasks"]["score"]["prob"] == pytest.approx(list(tr.value["score"][:, 0]), abs=1e-4)
    for t in ("outcome", "score", "stage"):
        assert sum(out["shapley"][t].values()) == pytest.approx(out["f_all"][t] - out["f_none"][t], abs=1e-5)
        assert set(out["features"][t]) == {m for m in tr.steps[1:] if tr.present[m][0]}
        assert len(out["narrative"][t]) == len(tr.steps)
    stage = out["tasks"]["stage"]
    c = stage["classes"].index(stage["class"])
    assert stage["prob"] == pytest.approx([p[c] for p in stage["probs"]])
    assert out["features"]["outcome"]["labs" if "labs" in out["features"]["outcome"] else "vitals"]
    with pytest.raises(ValueError, match="not in dataset"):
        E.explain_record(trained, ds, "nobody")
    one = E.explain_record(trained, ds, rid, task="outcome")
    assert list(one["tasks"]) == ["outcome"]


def test_attribution_at_a_step_before_the_modality_is_zero(fx):
    _, trained, data = fx
    i = _present_rows(data, "labs", 1)[0]
    k = trained.model.modality_names.index("labs")          # the step just before labs is encoded
    a = E.attribute(trained, data, i, "labs", "outcome", step=k)
    assert a.present and np.all(a.values == 0)
    assert a.target_logit == pytest.approx(a.baseline_logit, abs=1e-6)
    b = E.attribute(trained, data, i, "labs", "outcome", step=k + 1)
    assert np.abs(b.values).sum() > 0
    tr = E.trace(trained, data.subset([i]))
    p = float(torch.sigmoid(torch.tensor(b.target_logit)))
    assert p == pytest.approx(tr.value["outcome"][k + 1, 0], abs=1e-5)


def test_record_view_is_the_trace_and_shapley_of_one_record():
    """The typed view every page and report reads: the same numbers as trace / shapley, deltas telescope,
    Shapley efficiency holds, and a switched-off modality shows as skipped though measured."""
    ds = load_dataset("synthetic", n=400, seed=1)
    trained = train_model(ds, "multimodn", ModelConfig(state_size=8, hidden=16), TrainConfig(epochs=2, seed=0))
    data = trained.prep.transform(ds)
    names = trained.spec.modality_names
    row = next(i for i in range(len(ds)) if all(bool(data.present[m][i]) for m in names))
    one = data.subset([row])
    off = {m: np.array([m != names[1]]) for m in names}
    view = E.record_view(trained, one, off, names)
    tr, sh = E.trace(trained, one, off, names), E.shapley(trained, one, off, names)
    assert view.steps == ["prior", *names]
    assert view.measured[names[1]] and bool(view.skipped[1]) and not view.skipped[0]
    for t in tr.value:
        np.testing.assert_array_equal(view.value[t], tr.value[t][:, 0])
        np.testing.assert_allclose(view.delta(t).sum(axis=0), view.value[t][-1] - view.value[t][0], atol=1e-6)
        np.testing.assert_allclose(np.asarray(view.shapley[t]).sum(axis=0), view.f_all[t] - view.f_none[t],
                                   atol=1e-5)
        np.testing.assert_array_equal(view.shapley[t], sh.values[t][0])
        assert len(view.narrative[t]) == len(view.steps)
    j = view.shapley_modalities.index(names[1])            # switched off: a dummy player, credit 0
    assert all(np.allclose(np.asarray(view.shapley[t])[j], 0) for t in view.shapley)
    with pytest.raises(ValueError, match="one record"):
        E.record_view(trained, data.subset([0, 1]))
