"""The MNAR experiment: paper semantics really batch-wide, positions, and run_mnar's documented structure."""
import time

import numpy as np
import pytest
import torch

from mmn_core import ModelConfig, Preprocessor, TrainConfig, build_model, load_dataset
from mmn_core.experiments import place_modality, run_mnar
from mmn_core.train import batch_wide, fit, predict


@pytest.fixture(scope="module")
def small():
    return load_dataset("synthetic", n=1500, seed=0)


def _paper_batches_data(ds, modality="labs"):
    """Tensors whose every batch of 16 (file order) has exactly one record lacking `modality`."""
    prep = Preprocessor.fit(ds)
    data = prep.transform(ds).subset(range(320))
    p = torch.ones(320, dtype=torch.bool)
    p[::16] = False
    return prep, data.with_present({modality: p})


def test_batch_wide_helper():
    p = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, True, True])}
    out = batch_wide(p)
    assert not out["a"].any() and out["b"].all()


@pytest.mark.parametrize("semantics", ["paper", "per-record"])
def test_paper_semantics_skip_the_encoder_for_the_whole_batch(small, semantics):
    """One record of each batch lacks labs: under paper semantics the labs encoder never moves a state and
    gets no gradient (its weights stay bit-identical, Adam without weight decay); per record it trains."""
    prep, data = _paper_batches_data(small)
    torch.manual_seed(0)
    model = build_model("multimodn", small.spec, prep, ModelConfig(state_size=8, hidden=16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    hook = model.encoders["labs"].register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    config = TrainConfig(epochs=2, semantics=semantics, weight_decay=0.0, patience=99)
    fit(model, data, None, config)
    hook.remove()
    after = model.state_dict()
    labs_same = all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoders.labs."))
    vitals_same = all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoders.vitals."))
    assert not vitals_same
    assert calls and max(calls) == (16 if semantics == "paper" else 256)   # paper semantics: batch 16
    assert labs_same == (semantics == "paper")
    out = predict(model, data, batch_size=16, semantics=semantics)
    k = out.steps.index("labs")
    ran = out.ran[k - 1]
    moved = (out.states[k] != out.states[k - 1]).any(-1)
    if semantics == "paper":
        assert not ran.any() and not moved.any()      # no record's state moved at the labs step
    else:
        assert ran.sum() == 300 and torch.equal(moved, ran)


def test_place_modality(small):
    names = small.spec.modality_names
    assert place_modality(small, "labs", "first").spec.modality_names[0] == "labs"
    assert place_modality(small, "labs", "last").spec.modality_names[-1] == "labs"
    mid = place_modality(small, "labs", "middle").spec.modality_names
    assert mid.index("labs") == (len(names) - 1) // 2 and sorted(mid) == sorted(names)
    assert place_modality(small, "labs", "spec").spec.modality_names == names
    assert small.spec.modality_names == names            # input untouched
    with pytest.raises(ValueError, match="position"):
        place_modality(small, "labs", "centre")


def test_run_mnar_tiny_structure_and_speed(small):
    seen = []
    t0 = time.perf_counter()
    res = run_mnar(small, "labs", "outcome", rates=(0, 0.8), folds=1, epochs=4, position="last",
                   progress=seen.append)
    assert time.perf_counter() - t0 < 30
    assert res["rates"] == [0.0, 0.8]
    assert {(r["rate"], r["model"], r["test"]) for r in res["results"]} == {
        (r, m, t) for r in (0.0, 0.8) for m in ("multimodn", "pfusion") for t in ("clean", "reversed", "random")}
    for r in res["results"]:
        assert 0 <= r["auroc"] <= 1 and 0 <= r["balanced_accuracy"] <= 1 and r["n_folds"] == 1
        assert "auroc_std" in r
    for kind in ("multimodn", "pfusion"):
        ceil = {c["rate"]: c["auroc"] for c in res["ceiling"][kind]}
        assert set(ceil) == {0.0, 0.8} and all(0 <= v <= 1 for v in ceil.values())
        # at p = 0 the reversed split is the clean split, and the ceiling is the p = 0 model on it
        p0 = {r["test"]: r["auroc"] for r in res["results"] if r["rate"] == 0 and r["model"] == kind}
        assert p0["clean"] == p0["reversed"] == ceil[0.0]
    pres = {p["rate"]: p for p in res["presence"]}
    assert pres[0.8]["train_pos"] == pytest.approx(0.2 * pres[0.0]["train_pos"], abs=0.01)  # 80 % of positives
    assert pres[0.8]["reversed_neg"] < pres[0.0]["reversed_neg"]
    assert res["config"]["order"][-1] == "labs" and res["config"]["validation"] == "shifted"
    assert res["config"]["removal"] == "random" and not res["config"]["cancelled"]
    # progress is structured events, not text to parse: 2 rates x 2 models x 1 fold = 4 trainings
    trained = [e for e in seen if e["phase"] == "trained"]
    assert [e["done"] for e in trained] == [1, 2, 3, 4] and {e["total"] for e in seen} == {4}
    assert {(e["rate"], e["model"]) for e in trained} == {(r, m) for r in (0.0, 0.8) for m in ("multimodn", "pfusion")}
    assert all(e["fold"] == e["folds"] == 1 for e in seen)
    assert all(e["epoch"] >= 1 for e in seen if e["phase"] == "epoch") and len(seen) > len(trained)
    assert seen and all({"done", "total", "message"} <= set(p) for p in seen)
    assert seen[-1]["done"] == seen[-1]["total"] == 4


def test_run_mnar_paper_rule_and_cancel(small):
    res = run_mnar(small, "labs", "outcome", rates=(0.5,), folds=1, epochs=2, semantics="paper",
                   models=("multimodn",), mitigation="presence-balance")
    assert res["config"]["removal"] == "file-order" and res["config"]["validation"] == "balanced"
    assert res["config"]["train_config"]["semantics"] == "paper"
    assert len(res["results"]) == 3 and res["ceiling"]["multimodn"][0]["rate"] == 0.5
    rule = small.spec.mnar_rules[0]
    res = run_mnar(small, "labs", "outcome", rates=(0, 1.0), folds=1, epochs=2, rule=rule, models=("pfusion",))
    assert res["config"]["removal"] == "rule" and res["config"]["mechanism"].startswith("MAR")
    pres = {p["rate"]: p for p in res["presence"]}
    assert pres[1.0]["train_pos"] < pres[0.0]["train_pos"]
    res = run_mnar(small, "labs", "outcome", rates=(0, 0.8), folds=1, epochs=50, should_stop=lambda: True)
    assert res["config"]["cancelled"] and len(res["results"]) <= 3


def test_run_mnar_bad_input(small):
    with pytest.raises(ValueError, match="binary"):
        run_mnar(small, "labs", "stage", folds=1)
    with pytest.raises(ValueError, match="mitigation"):
        run_mnar(small, "labs", "outcome", folds=1, mitigation="magic")
    with pytest.raises(ValueError, match="rates"):
        run_mnar(small, "labs", "outcome", rates=(1.5,), folds=1)
    with pytest.raises(ValueError, match="controls modality"):
        run_mnar(small, "imaging", "outcome", folds=1, rule=small.spec.mnar_rules[0])


def test_run_mnar_references_latent_and_per_fold_rows(small):
    """references=True: a reversed-trained model per rate > 0, a without-M floor per fold; the random control
    split loses exactly as many M as the reversed one; per-fold rows carry seed and fold; latent MNAR."""
    from mmn_core.synthetic import latent_severity
    z = latent_severity(1500, 0)
    seen = []
    res = run_mnar(small, "labs", "outcome", rates=(0, 0.8), folds=2, epochs=2, models=("pfusion",),
                   references=True, latent=z, seed=3, progress=seen.append)
    cfg = res["config"]
    assert cfg["removal"] == "latent" and cfg["mechanism"] == "MNAR (unobserved severity)"
    assert cfg["test_train_ratio"] == pytest.approx(1 / 0.85, rel=0.02)       # 2 folds, 15 % validation
    # 2 folds x (2 rates + 1 reversed-trained + 1 without-M) = 8 trainings
    assert [e["done"] for e in seen if e["phase"] == "trained"] == list(range(1, 9))
    rows = res["per_fold"]
    cells = {(r["fold"], r["rate"], r["test"]) for r in rows}
    for f in (0, 1):
        assert (f, 0.8, "reversed-trained") in cells and (f, 0.0, "reversed-trained") not in cells
        for test in ("clean", "reversed", "random", "ceiling", "without-m"):
            assert {(f, 0.0, test), (f, 0.8, test)} <= cells
    assert all(r["seed"] == 3 for r in rows)
    by = {(r["fold"], r["rate"], r["test"]): r for r in rows}
    for f in (0, 1):
        rev, rnd = by[(f, 0.8, "reversed")], by[(f, 0.8, "random")]
        assert rev["n_m_absent"] == rnd["n_m_absent"] > by[(f, 0.8, "clean")]["n_m_absent"]
        assert rev["n_m_present"] + rev["n_m_absent"] == by[(f, 0.8, "clean")]["n_m_present"] + \
            by[(f, 0.8, "clean")]["n_m_absent"]
        assert by[(f, 0.0, "without-m")]["auroc"] == by[(f, 0.8, "without-m")]["auroc"]
        for test in ("clean", "reversed"):
            r = by[(f, 0.8, test)]
            assert 0 <= r["brier"] <= 1 and 0 <= r["ece"] <= 1 and 0 <= r["auroc_m_present"] <= 1
    summary = {(r["rate"], r["test"]): r for r in res["results"]}
    assert summary[(0.8, "reversed-trained")]["n_folds"] == 2
    assert summary[(0.8, "reversed")]["auroc"] == pytest.approx(np.mean([by[(f, 0.8, "reversed")]["auroc"]
                                                                        for f in (0, 1)]))
    with pytest.raises(ValueError, match="latent"):
        run_mnar(small, "labs", "outcome", folds=1, latent=z[:5])


def test_batch_wide_wrapper_equals_paper_semantics_and_counts_runs(small):
    """official.BatchWide at batch 16 predicts exactly what predict(semantics="paper") does, and its training
    counters see that labs never ran when every batch of 16 has one record without labs."""
    from mmn_core.official import BatchWide, Factors, gap_free
    prep, data = _paper_batches_data(small)
    torch.manual_seed(0)
    inner = build_model("multimodn", small.spec, prep, ModelConfig(state_size=8, hidden=16))
    wrapped = BatchWide(inner)
    a = predict(wrapped, data, batch_size=16).logits["outcome"]
    b = predict(inner, data, semantics="paper").logits["outcome"]
    assert torch.equal(a, b)
    assert not torch.equal(predict(inner, data).logits["outcome"], b)          # per record differs
    fit(wrapped, data, None, TrainConfig(epochs=1, batch_size=16, shuffle=False, patience=99))
    ran, batches, ran_rec, rec = wrapped.counts["labs"]
    assert batches == 20 and ran == 0 and ran_rec == 0 and rec == 300
    assert wrapped.counts["vitals"][:2] == [20, 20]
    assert Factors() == Factors(batch_wide=True, batch_size=16, shuffle=False, file_order=True)
    gf = gap_free(small, "outcome")
    assert gf.presence().all().all() and len(gf) < len(small)
