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
