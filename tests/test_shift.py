"""A natural (site) shift: training never sees a held-out site; the sizes, presence shares and scores add up."""
import numpy as np
import pytest

from mmn_core.metrics import metric_matrix
from mmn_core.shift import natural_shift, site_rows
from mmn_core.train import TrainConfig, predict


def test_site_rows_partition_and_refuse_bad_splits():
    groups = np.array(["a", "b", "a", "c", "b"])
    inside, outside = site_rows(groups, ["b"])
    assert inside.tolist() == [0, 2, 3] and outside.tolist() == [1, 4]
    with pytest.raises(ValueError, match="do not occur"):
        site_rows(groups, ["z"])
    with pytest.raises(ValueError, match="both sides"):
        site_rows(groups, ["a", "b", "c"])


def test_natural_shift_trains_on_the_training_sites_only(synthetic_small):
    ds = synthetic_small
    groups = np.where(np.arange(len(ds)) % 4 == 0, "site B", "site A")
    res = natural_shift(ds, groups, ["site B"], seed=1, config=TrainConfig(epochs=3, seed=1), workers=1)
    n_out = int((groups == "site B").sum())
    s = res.sizes
    assert s["out_test"] == n_out and s["train"] + s["validation"] + s["in_test"] == len(ds) - n_out
    assert res.test_train_ratio == pytest.approx(s["in_test"] / s["train"])
    pres = ds.presence()
    for m, shares in res.presence.items():
        assert shares["out"] == pytest.approx(pres[m].to_numpy()[groups == "site B"].mean())
        assert 0 <= shares["in"] <= 1
    binary = [t.name for t in ds.spec.tasks if t.type == "binary"]
    assert set(res.auroc) == {"multimodn", "pfusion"}
    for kind in res.auroc:
        assert sorted(res.auroc[kind]) == sorted(binary)
        for v in res.auroc[kind].values():
            assert 0.5 < v["in"] <= 1 and 0.5 < v["out"] <= 1          # the synthetic signal holds on both sides
    assert res.to_json()["sizes"] == s


def test_out_of_site_score_is_the_models_own_score_there(synthetic_small):
    """Recompute the held-out sites' AUROC from a model trained the same way (same seed, same rows)."""
    from mmn_core.data import split
    from mmn_core.train import train_model
    ds = synthetic_small
    groups = np.where(np.arange(len(ds)) < 300, "early", "late")
    cfg = TrainConfig(epochs=2, seed=0)
    res = natural_shift(ds, groups, ["early"], seed=0, config=cfg, kinds=("multimodn",), workers=1)
    inside, outside = site_rows(groups, ["early"])
    tr, va, te = (inside[p] for p in split(ds.subset(inside), seed=0))
    t = train_model(ds, "multimodn", config=cfg, rows=(tr, va, te))
    data = t.prep.transform(ds.subset(outside))
    m = metric_matrix(predict(t.model, data), data.y, t.model.tasks, t.prep.target_stats)
    task = next(iter(res.auroc["multimodn"]))
    assert res.auroc["multimodn"][task]["out"] == pytest.approx(m["tasks"][task]["auroc"][-1], abs=1e-9)
    assert res.auroc["multimodn"][task]["in"] == pytest.approx(t.metrics["tasks"][task]["auroc"][-1], abs=1e-9)
