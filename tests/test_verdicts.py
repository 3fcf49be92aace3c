"""Verdict sentences follow the intervals: direction only when the 95 % interval excludes 0, equivalence only
when TOST passes, 'no detectable difference' otherwise, 'undetermined' without an interval."""
import math

import numpy as np
import pytest

from mmn_core.stats import mean_interval
from mmn_core.verdicts import (against_reference, difference_verdict, mnar_robustness, parity, robustness,
                               signed3)

RNG = np.random.default_rng(0)
A = 0.8 + RNG.normal(0, 0.01, 15)


def test_large_positive_difference_is_more_robust_with_its_interval():
    b = A - 0.12 + RNG.normal(0, 0.01, 15)
    v = robustness(A, b, 0.25)
    iv = mean_interval(A - b, 0.25)
    assert v.kind == "higher"
    assert v.text == (f"MultiModN more robust (difference {signed3(iv.mean)}, 95% CI {signed3(iv.low)} to "
                      f"{signed3(iv.high)})")
    assert v.low == pytest.approx(iv.low) and v.low > 0 and v.n == 15


def test_negative_difference_is_less_robust():
    v = robustness(A, A + 0.05 + RNG.normal(0, 0.01, 15), 0.25)
    assert v.kind == "lower" and v.text.startswith("MultiModN less robust (difference −0.05")
    assert v.high < 0


def test_interval_with_zero_and_wide_is_no_detectable_difference():
    d = np.array([0.06, -0.05, 0.04, -0.06, 0.02, -0.01])
    v = robustness(A[:6], A[:6] - d, 0.25, margin=0.02)
    assert v.kind == "no-difference" and v.low < 0 < v.high
    assert v.text.startswith("no detectable difference (difference ") and "not shown equivalent within ±0.020" in v.text


def test_tost_pass_is_equivalent_and_checked_before_direction():
    b = A - 0.003 + RNG.normal(0, 0.001, 15)     # consistent but tiny difference, inside the margin
    v = parity(A, b, 0.25, margin=0.02)
    assert v.kind == "equivalent" and v.text.startswith("equivalent within ±0.020")
    assert "90% CI" in v.text and "MultiModN higher, by less than the margin" in v.text
    assert v.equivalence_p < 0.05
    same = parity(A, A, 0.25)
    assert same.kind == "equivalent" and same.difference == 0 and "TOST p = < 0.001" in same.text


def test_no_margin_means_no_equivalence_claim():
    v = difference_verdict(A, A, 0.25, "up", "down", margin=None)
    assert v.kind == "no-difference" and math.isnan(v.equivalence_p) and "equivalent" not in v.text


def test_one_fold_is_undetermined():
    v = against_reference([0.7], [0.8], 0.25, "the reversed-trained reference")
    assert v.kind == "undetermined" and "1 paired fold" in v.text and math.isnan(v.low)
    v = against_reference(A, A - 0.1, 0.25, "the reversed-trained reference")
    assert v.kind == "higher" and v.text.startswith("above the reversed-trained reference")


def test_naive_and_corrected_intervals_can_disagree():
    """A difference 'significant' without the overlap correction is not once it is corrected."""
    d = np.full(25, 0.01) + RNG.normal(0, 0.02, 25)
    d = d - d.mean() + 0.01                      # mean exactly 0.01
    naive = difference_verdict(d, np.zeros(25), None, "up", "down")
    nb = difference_verdict(d, np.zeros(25), 0.25, "up", "down")
    assert naive.kind == "higher" and nb.kind == "no-difference"


def _result(mmn, pf, rate=0.8):
    rows = []
    for f, (a, b) in enumerate(zip(mmn, pf)):
        rows += [{"rate": rate, "model": "multimodn", "test": "reversed", "fold": f, "seed": 0, "auroc": a},
                 {"rate": rate, "model": "pfusion", "test": "reversed", "fold": f, "seed": 0, "auroc": b},
                 {"rate": rate, "model": "pfusion", "test": "clean", "fold": f, "seed": 0, "auroc": 0.9}]
    return {"rates": [0.0, rate], "per_fold": rows, "config": {"test_train_ratio": 0.5}}


def test_mnar_robustness_pairs_the_reversed_folds():
    v = mnar_robustness(_result([0.70, 0.72, 0.71], [0.50, 0.52, 0.49]))
    iv = mean_interval(np.array([0.70, 0.72, 0.71]) - np.array([0.50, 0.52, 0.49]), 0.5)
    assert v.kind == "higher" and v.difference == pytest.approx(iv.mean) and v.high == pytest.approx(iv.high)
    assert mnar_robustness(_result([0.70], [0.50])).kind == "undetermined"
    assert mnar_robustness({"rates": [0.8], "per_fold": []}) is None


def test_factor_summary_groups_factors_by_their_verdict():
    from mmn_core.verdicts import factor_summary
    lower = robustness(A, A + 0.1 + RNG.normal(0, 0.01, 15), 0.25)
    flat = robustness(A, A, 0.25)
    one = robustness([0.5], [0.6], 0.25)
    s = factor_summary({"per-record skip": lower, "batch 64": flat, "batch 1": one})
    assert s == ("Changed alone from the baseline, lowers reversed AUROC: per-record skip; no detectable change: "
                 "batch 64; undetermined (too few folds): batch 1")
    assert factor_summary({}) == "No factor was measured for reversed AUROC."
