"""Batched sweeps: training models together in worker processes gives exactly what training them one by one does."""
from dataclasses import replace

import pytest
import torch

from mmn_core.checkpoint import build_model
from mmn_core.data import Preprocessor, split
from mmn_core.experiments import fold_rows
from mmn_core.model import ModelConfig
from mmn_core.sweep import Job, train_many, train_models
from mmn_core.train import TrainConfig, fit, train_model

CONFIG = TrainConfig(epochs=3, seed=3)


def _jobs(ds, seeds_and_kinds):
    """Independent jobs with their own rows, masks and options (one with presence balancing, one modality
    dropout), built twice from the same seeds."""
    jobs = []
    for seed, kind, extra in seeds_and_kinds:
        tr, va, _ = split(ds, seed=seed)
        prep = Preprocessor.fit(ds.subset(tr))
        torch.manual_seed(seed)
        model = build_model(kind, ds.spec, prep, ModelConfig())
        data = prep.transform(ds)
        jobs.append(Job(model, data.subset(tr), data.subset(va), replace(CONFIG, seed=seed, **extra)))
    return jobs


RUNS = [(0, "multimodn", {}), (1, "pfusion", {}),
        (2, "multimodn", {"balance_modalities": ("labs",), "balance_task": "outcome"}),
        (3, "multimodn", {"modality_dropout": 0.3, "shuffle_order": True})]


def test_train_many_in_processes_equals_one_by_one(synthetic_small):
    ref = _jobs(synthetic_small, RUNS)
    ref_hist = [fit(j.model, j.train, j.val, j.config) for j in ref]
    got = _jobs(synthetic_small, RUNS)
    untrained = [{k: v.clone() for k, v in j.model.state_dict().items()} for j in got]
    seen = []
    hist = train_many(got, workers=2, progress=seen.append)
    assert sorted(e["job"] for e in seen) == [0, 1, 2, 3] and seen[-1]["done"] == 4
    for r, g, hr, hg, u in zip(ref, got, ref_hist, hist, untrained):
        assert [row["epoch"] for row in hg] == [row["epoch"] for row in hr]
        assert [row["val_loss"] for row in hg] == pytest.approx([row["val_loss"] for row in hr], abs=1e-7)
        rs, gs = r.model.state_dict(), g.model.state_dict()
        assert any(not torch.equal(gs[k], u[k]) for k in gs)           # it trained at all
        for k in rs:
            torch.testing.assert_close(gs[k], rs[k], rtol=0, atol=1e-6)
    # different jobs really are different models
    assert not torch.equal(got[0].model.init_state, got[2].model.init_state)


def test_train_models_equals_train_model_per_fold(synthetic_small):
    """compare's folds trained together give train_model's test metrics, fold by fold."""
    rows = list(fold_rows(synthetic_small, 2, seed=0))
    runs = [("multimodn", rows[0]), ("pfusion", rows[0]), ("multimodn", rows[1])]
    got = train_models(synthetic_small, runs, config=CONFIG, workers=2)
    for (kind, r), trained in zip(runs, got):
        ref = train_model(synthetic_small, kind, config=CONFIG, rows=r)
        assert trained.kind == kind and trained.info == ref.info
        for task, ms in ref.metrics["tasks"].items():
            for metric, values in ms.items():
                assert trained.metrics["tasks"][task][metric] == pytest.approx(values, abs=1e-6, nan_ok=True)


def test_should_stop_cancels_jobs_not_started(synthetic_small):
    jobs = _jobs(synthetic_small, RUNS[:3])
    hist = train_many(jobs, workers=1, should_stop=lambda: True)
    assert hist == [[], [], []]


def test_cross_validate_with_workers_equals_one_by_one(synthetic_small):
    from mmn_core.experiments import cross_validate
    seen = []
    one = cross_validate(synthetic_small, folds=2, config=CONFIG)
    two = cross_validate(synthetic_small, folds=2, config=CONFIG, workers=2, progress=seen.append)
    assert sorted((e["fold"], e["model"]) for e in seen) == [(1, "multimodn"), (1, "pfusion"), (2, "multimodn"),
                                                              (2, "pfusion")]
    for kind in ("multimodn", "pfusion"):
        for f1, f2 in zip(one["per_fold"][kind], two["per_fold"][kind]):
            for task, ms in f1.items():
                assert f2[task] == pytest.approx(ms, abs=1e-6, nan_ok=True)


def test_run_mnar_with_workers_equals_one_by_one(synthetic_small):
    """Every per-fold row (clean, reversed, random, ceiling and both references) is the same when the MNAR grid's
    trainings run together in worker processes."""
    from mmn_core.experiments import run_mnar
    kw = dict(rates=(0.0, 0.8), folds=2, epochs=2, references=True, mitigation="presence-balance")
    one = run_mnar(synthetic_small, "labs", "outcome", **kw)
    events = []
    two = run_mnar(synthetic_small, "labs", "outcome", workers=2, progress=events.append, **kw)
    n = 2 * (2 * 2 + 2 + 2)         # folds x (rates x models + reversed-trained per model at p > 0 + floor per model)
    assert len(one["per_fold"]) == len(two["per_fold"]) > n
    assert [e["done"] for e in events] == list(range(1, n + 1)) and {e["phase"] for e in events} == {"trained"}
    key = lambda r: (r["fold"], r["rate"], r["model"], r["test"])  # noqa: E731
    a, b = sorted(one["per_fold"], key=key), sorted(two["per_fold"], key=key)
    for ra, rb in zip(a, b):
        assert key(ra) == key(rb)
        assert rb == pytest.approx(ra, abs=1e-6, nan_ok=True)
    assert len(one["results"]) == len(two["results"]) > 0
    for ra, rb in zip(one["results"], two["results"]):
        assert rb == pytest.approx(ra, abs=1e-6, nan_ok=True)


def test_a_process_forked_after_a_sweep_can_run_its_own(synthetic_small):
    """A forked child inherits the parent's fork server, which it cannot wait on; it must start its own."""
    import os
    train_many(_jobs(synthetic_small, RUNS[:2]), workers=2)           # the parent's fork server is running
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            jobs = _jobs(synthetic_small, RUNS[:2])
            hist = train_many(jobs, workers=2)
            code = 0 if all(len(h) == CONFIG.epochs for h in hist) else 1
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
