"""'How sure' in plain terms (mmn_core.calibration): reliability bins against a hand-computed case, the sentence
beside a headline, and the shipped model's held-out bins against an independent count."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmn_core.calibration import held_out_reliability, how_sure, reliability_bins


def test_binary_bins_by_hand():
    pred = np.array([0.05, 0.10, 0.15, 0.95, 0.92, 0.99, 0.91, 1.0, 0.5])
    died = np.array([0, 1, 1, 1, 1, 0, 1, 1, np.nan])            # the last has no label: left out
    rel = reliability_bins(pred, died)
    assert rel.records == 8
    np.testing.assert_array_equal(rel.n, [1, 2, 0, 0, 0, 0, 0, 0, 0, 5])   # 0.10 opens the second bin
    assert rel.observed[0] == 0.0 and rel.observed[1] == 1.0 and np.isnan(rel.observed[2])
    assert rel.observed[9] == pytest.approx(4 / 5)                  # 1.0 belongs to the last, closed bin
    assert rel.mean_pred[9] == pytest.approx((0.95 + 0.92 + 0.99 + 0.91 + 1.0) / 5)
    sure = how_sure(rel, 0.97, "death")
    assert (sure.lo, sure.hi, sure.n, sure.observed) == (pytest.approx(0.9), 1.0, 5, pytest.approx(0.8))
    assert sure.sentence == ("Of 5 held-out records given 90–100%, 80% actually had death. Only a few records: "
                             "a rough guide.")
    assert how_sure(rel, 0.45, "death").sentence.startswith("No held-out record got a prediction in the 40–50%")


def test_many_records_no_caveat_and_multiclass_wording():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.9, 1.0, 200)
    right = (rng.uniform(size=200) < 0.87).astype(float)
    rel = reliability_bins(p, right, kind="multiclass")
    s = how_sure(rel, np.array([0.02, 0.95, 0.03]), "", class_label="Poor").sentence
    assert s == f"Of 200 held-out records where the model's top answer had 90–100%, it was right for " \
                f"{100 * right.mean():.0f}% (this one's top answer: 'Poor')."


def test_regression_bins_hold_the_median_absolute_error():
    pred = np.arange(10, dtype=float)                 # two bins of five by quantile
    actual = pred + np.array([1, -2, 3, -4, 5, 0, 0, 1, 1, -10])
    rel = reliability_bins(pred, actual, bins=2, kind="regression")
    np.testing.assert_array_equal(rel.n, [5, 5])
    assert rel.observed[0] == 3.0 and rel.observed[1] == 1.0     # median of |1,2,3,4,5| and |0,0,1,1,10|
    s = how_sure(rel, 8.0, "score", units="points").sentence
    assert s == "For 5 held-out records predicted between 4.50 points and 9 points, half were within 1 points of " \
                "the prediction. Only a few records: a rough guide."


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same 1-D shape"):
        reliability_bins(np.zeros(3), np.zeros(4))


def test_shipped_model_bins_count_its_held_out_records():
    from mmn_core import explain as E, load, load_dataset
    ckpt = Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "support2-multimodn"
    if not (ckpt / "config.json").is_file():
        pytest.skip("shipped checkpoint missing")
    trained, ds = load(ckpt), load_dataset("support2")
    rel = held_out_reliability(trained, ds, "death")
    test = set(trained.info["test_ids"])
    data = trained.prep.transform(ds)
    rows = [i for i, r in enumerate(data.ids) if r in test]
    tr = E.trace(trained, data.subset(rows))
    p, y = tr.value["death"][-1], tr.label["death"]
    ok = ~np.isnan(y)
    assert rel.records == int(ok.sum()) == int(rel.n.sum())
    top = (p >= 0.9) & ok
    assert rel.n[9] == int(top.sum())
    assert rel.observed[9] == pytest.approx(y[top].astype(float).mean(), abs=1e-12)
