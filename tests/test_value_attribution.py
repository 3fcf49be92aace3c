"""Presence vs value. Analytic ground truth: encoder m adds c_m · x_m + b_m to a state a linear regression
decoder reads, so skipping m removes c_m x_m + b_m (presence and value) while setting m to its reference
value r_m removes only c_m (x_m − r_m). A pure-noise, always-present modality (c = 0, b ≠ 0) must get exactly
0 value credit and its full presence effect b as skip credit. On the bundled synthetic checkpoint, the planted
pure-noise, always-present `notes` modality gets far less value credit than skip credit."""
import numpy as np
import pandas as pd
import pytest
import torch

from mmn_core import ModelConfig, Preprocessor, load_dataset
from mmn_core import faithfulness as F
from mmn_core import value_attribution as V
from mmn_core.checkpoint import Trained, build_model, load
from mmn_core.data import Dataset

from mmn_core.spec import spec_from_dict

COEF = {"a": 2.0, "b": -1.0, "n": 0.0}
BIAS = {"a": 0.3, "b": 0.0, "n": 1.5}       # n: pure noise values, but its presence shifts the state


def _analytic(n=60, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "y": rng.normal(size=n),
                          **{f"{m}1": rng.normal(size=n) for m in COEF}})
    spec = spec_from_dict({"name": "analytic", "id_column": "id",
                           "modalities": [{"name": m, "columns": [f"{m}1"]} for m in COEF],
                           "tasks": [{"name": "y", "column": "y", "type": "regression"}]})
    ds = Dataset(spec, frame)
    prep = Preprocessor.fit(ds)
    model = build_model("multimodn", spec, prep, ModelConfig(state_size=4, hidden=4, dropout=0.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for m, c in COEF.items():
            first, last = model.encoders[m].net[0], model.encoders[m].net[-1]
            first.weight[0, 4], first.bias[0] = 1.0, 10.0       # hidden0 = x + 10
            last.weight[0, 0], last.bias[0] = c, -10.0 * c + BIAS[m]
        d0, d1 = model.decoders["y"].net[0], model.decoders["y"].net[-1]
        d0.weight[0, 0], d0.bias[0] = 1.0, 50.0
        d1.weight[0, 0], d1.bias[0] = 1.0, -50.0               # output = state[0]
    data = prep.transform(ds)
    gen = torch.Generator().manual_seed(seed)
    for m in ("a", "b"):
        data.present[m] = torch.rand(n, generator=gen) < 0.7
    return Trained(model, spec, prep), data


def test_value_and_skip_shapley_match_the_analytic_truth():
    trained, data = _analytic()
    ctx = F._context(trained, data, "y")
    ref = V.reference_inputs(trained, data)
    x = np.stack([data.x[m][:, 0].double().numpy() for m in COEF], 1)
    r = np.array([ref[m][0].item() for m in COEF])
    c, b = np.array(list(COEF.values())), np.array(list(BIAS.values()))
    assert r[0] == pytest.approx(x[ctx.has[:, 0], 0].mean(), abs=1e-6)       # mean over records having a
    value = V.value_shapley(ctx, ref)                                          # standardized output
    skip = F.importances(ctx, ["shapley"])["shapley"]                         # target units
    sd = float(trained.prep.target_stats["y"][1])
    assert np.allclose(value, ctx.sign[:, None] * c * (x - r) * ctx.has, atol=1e-4)
    assert np.allclose(skip, sd * ctx.sign[:, None] * (c * x + b) * ctx.has, atol=1e-4)
    rep = V.value_vs_presence(trained, data, "y", records=60)
    n = rep.modalities["n"]
    assert n.ood_skip and n.absent_in_training == 0.0 and not rep.modalities["a"].ood_skip
    assert n.value_credit < 1e-5 and n.skip_credit == pytest.approx(1.5 * sd, abs=1e-4)
    assert rep.modalities["a"].value_credit > 0.5
    # flagged rows: those whose top skip-ranked modality is n
    top_n = F._ranks(rep.per_record["skip"], ctx.has)[:, 2] == 0
    assert rep.ood_explanations == pytest.approx(top_n.mean()) and 0 < top_n.mean() < 1
    # removal by reference value: the value ranking is the best order for this additive game
    assert rep.value_deletion_aopc["value_shapley"] > rep.value_deletion_aopc["random"] + 0.1
    assert rep.value_deletion_aopc["value_shapley"] >= rep.value_deletion_aopc["shapley"] - 1e-9
    i = int(np.flatnonzero(top_n)[0])
    rec = V.record_value_vs_presence(trained, data, i, "y")
    assert rec.rests_on_ood_skip and "presence, more than its values" in rec.sentence and "Caution: n" in rec.sentence
    assert rec.value["n"] == pytest.approx(0.0, abs=1e-5)


def test_value_efficiency_on_a_sequence_model():
    trained = load("data/checkpoints/synthetic-multimodn")
    data = trained.prep.transform(load_dataset("synthetic")).subset(np.arange(40))
    ctx = F._context(trained, data, "stage")
    ref = V.reference_inputs(trained, data)
    value = V.value_shapley(ctx, ref)
    e = len(ctx.players)
    at_ref = V._value_forward(ctx, ref, np.arange(40), np.zeros(40, np.int64))
    own = V._value_forward(ctx, ref, np.arange(40), np.full(40, (1 << e) - 1))
    assert np.allclose(own, ctx.full, atol=1e-6)
    assert np.allclose(value.sum(1), own - at_ref, atol=1e-6)


def test_pure_noise_always_present_modality_on_bundled_synthetic():
    """Measured (500 records, seed 0): outcome notes value 0.009 vs labs 0.22; score notes skip 0.48, value 0.019."""
    trained = load("data/checkpoints/synthetic-multimodn")
    ds = load_dataset("synthetic")
    out = V.value_vs_presence(trained, ds, "outcome", records=300)
    score = V.value_vs_presence(trained, ds, "score", records=300)
    notes, labs = out.modalities["notes"], out.modalities["labs"]
    assert notes.ood_skip and notes.absent_in_training == 0.0
    assert notes.value_credit < 0.1 * labs.value_credit
    s = score.modalities["notes"]
    assert s.value_credit < 0.2 * s.skip_credit
    assert s.skip_credit > 0.5 * score.modalities["imaging"].skip_credit       # skip credit large, value not
    with pytest.raises(ValueError):
        V.value_vs_presence(trained, ds, "outcome", records=0)
