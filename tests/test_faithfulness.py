"""Modality-level faithfulness: on an analytic MultiModN whose encoders add c_m · x_m to a state the decoder
reads linearly (logit = Σ present c_m x_m), exact Shapley beats random orders on deletion; the curves end at the
prior / the full output exactly; batched Captum IG matches the per-record explain.attribute; randomizing the
model destroys the IG ranking; the CLI JSON has the specified keys; bad input exits 2."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mmn_core import ModelConfig, Preprocessor, TrainConfig, load_dataset, save, train_model
from mmn_core import explain as E
from mmn_core import faithfulness as F
from mmn_core.checkpoint import Trained, build_model
from mmn_core.cli import main
from mmn_core.data import Dataset
from mmn_core.spec import spec_from_dict

COEF = {"a": 2.0, "b": -1.0, "c": 0.5, "d": 0.0, "e": 1.5}      # d is a dummy: it never changes anything


def _analytic(n=80, seed=0):
    """5 one-feature modalities; encoder m adds c_m · x_m to state[0]; decoder logit = state[0] (exactly,
    for |state[0]| < 50). Presence is random, so records differ in who is present and by how much."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "y": rng.integers(0, 2, n),
                          **{f"{m}1": rng.normal(size=n) for m in COEF}})
    spec = spec_from_dict({"name": "analytic", "id_column": "id",
                           "modalities": [{"name": m, "columns": [f"{m}1"]} for m in COEF],
                           "tasks": [{"name": "y", "column": "y", "type": "binary"}]})
    ds = Dataset(spec, frame)
    prep = Preprocessor.fit(ds)
    model = build_model("multimodn", spec, prep, ModelConfig(state_size=4, hidden=4, dropout=0.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for m, c in COEF.items():
            first, last = model.encoders[m].net[0], model.encoders[m].net[-1]
            first.weight[0, 4] = 1.0           # hidden0 = relu(x + 10) = x + 10 (standardized x)
            first.bias[0] = 10.0
            last.weight[0, 0] = c              # state[0] += c (x + 10) − 10 c = c x
            last.bias[0] = -10.0 * c
        d0, d1 = model.decoders["y"].net[0], model.decoders["y"].net[-1]
        d0.weight[0, 0], d0.bias[0] = 1.0, 50.0     # hidden0 = state[0] + 50
        d1.weight[0, 0], d1.bias[0] = 1.0, -50.0    # logit = state[0]
    data = prep.transform(ds)
    gen = torch.Generator().manual_seed(seed)
    for m in COEF:
        data.present[m] = torch.rand(n, generator=gen) < 0.8
    return Trained(model, spec, prep), data


@pytest.fixture(scope="module")
def analytic():
    return _analytic()


def test_analytic_model_is_what_it_claims(analytic):
    trained, data = analytic
    with torch.no_grad():
        lg = trained.model(data.x, data.present, data.lengths).logits["y"][-1, :, 0].double().numpy()
    want = sum(c * data.x[m][:, 0].double().numpy() * data.present[m].numpy() for m, c in COEF.items())
    assert np.allclose(lg, want, atol=1e-4) and np.abs(want).max() > 1


def test_shapley_beats_random_on_deletion_and_insertion(analytic):
    trained, data = analytic
    ctx = F._context(trained, data, "y")
    p = ctx.has.sum(1)
    imp = F.importances(ctx, ["shapley"])["shapley"]
    ours = F._curves(ctx, F._ranks(imp, ctx.has)[None])
    rnd = F._curves(ctx, F._random_ranks(ctx.has, 32, 0))
    aopc_ours, aopc_rnd = F._aopc(ours[0], p)[0], F._aopc(rnd[0], p)
    assert aopc_ours.mean() > aopc_rnd.mean() + 0.05
    # per record, the best ordering is at least as good as the average random order (Shapley = exact contribution
    # in logit space; in probability space the sigmoid can swap near-ties, so compare means with a margin)
    assert (aopc_ours >= aopc_rnd.mean(0) - 1e-9).mean() > 0.9
    assert F._auc(ours[1], p)[0].mean() > F._auc(rnd[1], p).mean()
    # the dummy modality never moves a curve: its Shapley value is exactly 0
    assert np.allclose(imp[:, list(COEF).index("d")], 0, atol=1e-9)


def test_curve_ends_are_the_prior_and_the_full_output(analytic):
    trained, data = analytic
    ctx = F._context(trained, data, "y")
    p = ctx.has.sum(1)
    dele, ins = F._curves(ctx, F._random_ranks(ctx.has, 3, 1))
    none = {m: torch.zeros(len(data), dtype=torch.bool) for m in data.present}
    with torch.no_grad():
        prior = torch.sigmoid(trained.model(data.x, none, data.lengths).logits["y"][-1, :, 0]).double().numpy()
        full = torch.sigmoid(trained.model(data.x, data.present, data.lengths).logits["y"][-1, :, 0]).double().numpy()
    pred = full >= 0.5
    orient = lambda v: np.where(pred, v, 1 - v)
    rows = np.arange(len(data))
    assert np.array_equal(dele[:, rows, p], np.broadcast_to(ctx.prior, dele[:, :, 0].shape))
    assert np.allclose(ctx.prior, orient(prior), atol=1e-12) and np.allclose(ctx.full, orient(full), atol=1e-12)
    assert np.array_equal(dele[:, :, 0], np.broadcast_to(ctx.full, dele[:, :, 0].shape))
    assert np.array_equal(ins[:, rows, p], np.broadcast_to(ctx.full, ins[:, :, 0].shape))
    assert np.array_equal(ins[:, :, 0], np.broadcast_to(ctx.prior, ins[:, :, 0].shape))
    assert (ctx.full >= 0.5).all()                       # the predicted class's probability


def test_batched_captum_ig_matches_per_record_attribution(analytic):
    trained, data = analytic
    ctx = F._context(trained, data, "y")
    ig = F.importances(ctx, ["ig"], ig_steps=32)["ig"]
    for i in range(6):
        attrs = E.attribute_modalities(trained, data, i, "y", "ig")
        sign = 1.0 if ctx.cls[i] == 1 else -1.0
        for j, m in enumerate(ctx.players):
            want = sign * sum(attrs[m].by_column.values()) if m in attrs else 0.0
            assert ig[i, j] == pytest.approx(want, abs=1e-4)
    # linear logit: IG per modality is exactly c_m x_m toward the prediction
    x = np.stack([data.x[m][:, 0].double().numpy() for m in COEF], 1)
    want = x * np.array(list(COEF.values())) * ctx.has * np.where(ctx.cls == 1, 1.0, -1.0)[:, None]
    assert np.allclose(ig, want, atol=1e-4)


def test_captum_shapley_sampling_approaches_exact(analytic):
    trained, data = analytic
    ctx = F._context(trained, data, "y")
    imp = F.importances(ctx, ["shapley", "shapley_sampling"], samples=200)
    assert np.abs(imp["shapley_sampling"] - imp["shapley"]).max() < 0.05
    assert F._row_spearman(imp["shapley"], imp["shapley_sampling"], ctx.has) > 0.9
    assert F._row_spearman(imp["shapley"], imp["shapley"], ctx.has) == pytest.approx(1.0)


def test_randomization_destroys_the_ig_ranking(analytic):
    trained, data = analytic
    casc = F.randomization_cascade(trained, data, "y", ["ig", "shapley"], seed=0)
    assert casc["stages"][0] == "decoders" and len(casc["stages"]) == 1 + len(COEF)
    assert len(casc["ig"]) == len(casc["stages"])
    assert casc["ig"][-1] < 0.5 and casc["shapley"][-1] < 0.5
    # the trained model is untouched by the cascade (it runs on a deep copy)
    assert trained.model.decoders["y"].net[-1].bias.item() == -50.0


def test_cohort_report_and_record_sentence(analytic):
    trained, data = analytic
    rep = F.cohort_faithfulness(trained, data, "y", records=50, seed=0, random_orders=16)
    js = rep.to_json()
    assert js["records"] == 50 and js["task"] == "y"
    assert set(js["methods"]) == set(F.METHODS) | {"random"}
    assert js["methods"]["shapley"]["deletion_aopc"] > js["methods"]["random"]["deletion_aopc"]
    assert js["methods"]["random"]["randomization_spearman"] is None
    assert len(js["agreement"]) == len(F.METHODS) * (len(F.METHODS) - 1) // 2
    assert js["agreement"]["shapley|shapley_sampling"] > 0.7
    assert js["absent_in_training"]["a"] == pytest.approx(1 - data.present["a"].float().mean().item())
    i = int(np.flatnonzero(np.stack([data.present[m].numpy() for m in COEF]).sum(0) >= 4)[0])
    r = F.record_faithfulness(trained, data, i, "y", "shapley")
    assert len(r.deletion) == len(r.removed) + 1 == len(r.random) and r.deletion[0] == pytest.approx(r.random[0])
    assert r.removed[0] in COEF and r.deletion[-1] == pytest.approx(r.random[-1])
    assert "as much as removing two at random" in r.sentence or "does not move it" in r.sentence
    assert "Caution" not in r.sentence and not r.ood_skips          # every modality is absent ~20% of the time
    with pytest.raises(ValueError):
        F.cohort_faithfulness(trained, data, "y", records=0)
    with pytest.raises(ValueError):
        F.cohort_faithfulness(trained, data, "nope")


def test_ood_skip_flag():
    trained, data = _analytic(n=40, seed=2)
    data.present["a"] = torch.ones(40, dtype=torch.bool)          # never absent: skipping it is OOD
    absent = F.absent_in_training(trained, data)
    assert absent["a"] == 0.0
    ctx = F._context(trained, data, "y")
    imp = F.importances(ctx, ["shapley"])["shapley"]
    ranks = F._ranks(imp, ctx.has)
    a = np.array([absent[m] for m in ctx.players])
    top_is_a = (ranks[:, 0] == 0)
    assert F._ood(ranks, ctx.has, a) == pytest.approx(top_is_a.mean()) and 0 < top_is_a.mean() < 1
    i = int(np.flatnonzero(top_is_a & (ctx.has.sum(1) >= 3))[0])
    r = F.record_faithfulness(trained, data, i, "y", "shapley")
    assert r.removed[0] == "a" and r.ood_skips[0] == "a" and "Caution: a was almost never missing" in r.sentence


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ds = load_dataset("synthetic")
    rows = (np.arange(300), np.arange(300, 400), np.arange(400, 500))       # small splits: fast, same spec
    trained = train_model(ds, "multimodn", ModelConfig(state_size=8, hidden=16, dropout=0.0),
                          TrainConfig(epochs=1, seed=0), rows=rows)
    return save(trained, tmp_path_factory.mktemp("ck") / "synthetic-tiny")


def test_cli_json(checkpoint, capsys):
    assert main(["faithfulness", "--checkpoint", str(checkpoint), "--task", "stage", "--records", "12",
                 "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["task"] == "stage" and js["records"] == 12
    assert set(js["methods"]) == set(F.METHODS) | {"random"}
    for m, s in js["methods"].items():
        assert {"deletion_aopc", "insertion_auc", "randomization_spearman"} <= set(s)
        assert 0 <= s["insertion_auc"] <= 1
    assert all("|" in k for k in js["agreement"])


@pytest.mark.parametrize("extra", [["--task", "nope"], ["--records", "0"]])
def test_cli_bad_input(checkpoint, capsys, extra):
    assert main(["faithfulness", "--checkpoint", str(checkpoint), "--json", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def _analytic_pfusion(n=80, seed=0):
    """The same additive ground truth as `_analytic`, as a P-Fusion: embedder m gives x_m + 10 (absent:
    zero-filled x = 0 → 10), the head sums c_m (e_m − 10), so logit = Σ present c_m x_m."""
    mm, data = _analytic(n, seed)
    model = build_model("pfusion", mm.spec, mm.prep, ModelConfig(state_size=4, hidden=4, dropout=0.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for m in COEF:
            first, last = model.embedders[m].net[0], model.embedders[m].net[3]
            first.weight[0, 0], first.bias[0] = 1.0, 10.0
            last.weight[0, 0] = 1.0
        h0, h1 = model.heads["y"][0], model.heads["y"][3]
        for j, (m, c) in enumerate(COEF.items()):
            h0.weight[0, 4 * j] = c
        h0.bias[0] = 50.0 - 10.0 * sum(COEF.values())
        h1.weight[0, 0], h1.bias[0] = 1.0, -50.0
    return Trained(model, mm.spec, mm.prep), data


def test_pfusion_cohort_faithfulness_side_by_side():
    trained, data = _analytic_pfusion()
    with torch.no_grad():
        lg = trained.model(data.x, data.present, data.lengths).logits["y"][-1, :, 0].double().numpy()
    want = sum(c * data.x[m][:, 0].double().numpy() * data.present[m].numpy() for m, c in COEF.items())
    assert np.allclose(lg, want, atol=1e-4)
    rep = F.cohort_faithfulness(trained, data, "y", records=50, seed=0, random_orders=16)
    js = rep.to_json()
    assert js["model_kind"] == "pfusion" and set(js["methods"]) == set(F.METHODS) - {"step_delta"} | {"random"}
    assert "step_delta" in js["not_applicable"] and "no per-modality steps" in js["not_applicable"]["step_delta"]
    assert js["methods"]["shapley"]["deletion_aopc"] > js["methods"]["random"]["deletion_aopc"] + 0.05
    assert js["methods"]["ig"]["deletion_aopc"] > js["methods"]["random"]["deletion_aopc"] + 0.05
    assert js["randomization_cascade"]["stages"][0] == "heads" and len(js["randomization_cascade"]["stages"]) == 6
    assert rep.per_record["aopc"]["shapley"].shape == (50,) and len(rep.per_record["ids"]) == 50
    # zero-fill of every modality is P-Fusion's prior: logit 0, probability 0.5 of the predicted class
    ctx = F._context(trained, data, "y")
    dele, _ = F._curves(ctx, F._random_ranks(ctx.has, 2, 0))
    assert np.allclose(dele[:, np.arange(len(data)), ctx.has.sum(1)], 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="no per-modality steps"):
        F.record_faithfulness(trained, data, 0, "y", "step_delta")
    r = F.record_faithfulness(trained, data, 0, "y", "shapley")
    assert r.deletion[-1] == pytest.approx(0.5, abs=1e-6)


def test_cli_pfusion(tmp_path, capsys):
    ds = load_dataset("synthetic")
    rows = (np.arange(300), np.arange(300, 400), np.arange(400, 500))
    trained = train_model(ds, "pfusion", ModelConfig(state_size=8, hidden=16, dropout=0.0),
                          TrainConfig(epochs=1, seed=0), rows=rows)
    ck = save(trained, tmp_path / "synthetic-pf")
    assert main(["faithfulness", "--checkpoint", str(ck), "--task", "outcome", "--records", "10", "--json",
                 "--values"]) == 0
    js = json.loads(capsys.readouterr().out)
    vp = js["value_vs_presence"]
    assert vp["records"] == 10 and set(vp["modalities"]) == set(trained.model.modality_names)
    assert vp["modalities"]["notes"]["ood_skip"] and {"skip_credit", "value_credit"} <= set(vp["modalities"]["notes"])
    assert js["model_kind"] == "pfusion" and "step_delta" not in js["methods"] and "step_delta" in js["not_applicable"]
