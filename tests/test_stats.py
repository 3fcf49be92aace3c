"""mmn_core.stats against hand-computed numbers and known cases."""
import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from mmn_core.stats import (brier, expected_calibration_error, kfold_ratio, mean_interval, paired_differences,
                            paired_test, tost)

D = [0.01, 0.03, 0.02, 0.04, 0.00]        # mean 0.02, sample variance 0.00025


def test_nadeau_bengio_interval_by_hand():
    iv = mean_interval(D, test_train_ratio=0.25)
    # var = 0.00025; corrected var of the mean = (1/5 + 0.25) * 0.00025 = 1.125e-4; se = 0.0106066
    se = math.sqrt(0.45 * 0.00025)
    t975 = 2.7764451051977987              # t_{0.975, 4}
    assert iv.mean == pytest.approx(0.02)
    assert iv.se == pytest.approx(se, rel=1e-9)
    assert iv.low == pytest.approx(0.02 - t975 * se, rel=1e-9)
    assert iv.high == pytest.approx(0.02 + t975 * se, rel=1e-9)
    assert iv.df == 4 and iv.n == 5 and iv.method == "nadeau-bengio"


def test_naive_interval_by_hand_and_nb_is_wider():
    naive = mean_interval(D)
    assert naive.se == pytest.approx(math.sqrt(0.00025 / 5))
    nb = mean_interval(D, test_train_ratio=kfold_ratio(5))
    assert nb.high - nb.low > naive.high - naive.low
    # the width ratio is exactly sqrt((1/n + ratio) / (1/n))
    assert (nb.high - nb.low) / (naive.high - naive.low) == pytest.approx(math.sqrt((0.2 + 0.25) / 0.2))


def test_interval_drops_nan_and_needs_two_values():
    iv = mean_interval([0.1, math.nan, 0.3], 0.25)
    assert iv.n == 2 and iv.mean == pytest.approx(0.2)
    one = mean_interval([0.5], 0.25)
    assert one.mean == 0.5 and math.isnan(one.low) and math.isnan(one.high)
    with pytest.raises(ValueError):
        mean_interval(D, level=1.5)
    with pytest.raises(ValueError):
        mean_interval(D, test_train_ratio=-1)


def test_kfold_ratio():
    assert kfold_ratio(5) == 0.25 and kfold_ratio(2) == 1.0
    with pytest.raises(ValueError):
        kfold_ratio(1)


def test_paired_test_matches_hand_t_and_scipy_when_uncorrected():
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.02, 25)
    b = a - 0.01 + rng.normal(0, 0.01, 25)
    naive = paired_test(a, b, None)
    ref = sps.ttest_rel(a, b)                 # the uncorrected paired t-test
    assert naive.t == pytest.approx(ref.statistic) and naive.p == pytest.approx(ref.pvalue)
    nb = paired_test(a, b, 0.25)
    d = a - b
    t = d.mean() / math.sqrt((1 / 25 + 0.25) * d.var(ddof=1))
    assert nb.t == pytest.approx(t) and nb.p == pytest.approx(2 * sps.t.sf(abs(t), 24))
    assert nb.p > naive.p                     # the correction is conservative


def test_paired_test_zero_variance_and_length_mismatch():
    same = paired_test([0.7, 0.8, 0.9], [0.7, 0.8, 0.9], 0.25)
    assert same.mean == 0 and same.p == 1.0 and same.interval.low == same.interval.high == 0
    shifted = paired_test([0.7, 0.8, 0.9], [0.6, 0.7, 0.8], 0.25)
    assert shifted.mean == pytest.approx(0.1) and shifted.p == 0.0
    with pytest.raises(ValueError, match="same number"):
        paired_differences([1, 2], [1, 2, 3])


def test_tost_identical_models_are_equivalent():
    a = [0.80, 0.82, 0.79, 0.81, 0.80]
    eq = tost(a, a, margin=0.02, test_train_ratio=0.25)
    assert eq.equivalent and eq.p == 0.0


def test_tost_small_noisy_difference_and_large_difference():
    rng = np.random.default_rng(1)
    a = rng.normal(0.8, 0.01, 25)
    close = tost(a, a - 0.002 + rng.normal(0, 0.003, 25), margin=0.02, test_train_ratio=0.25)
    assert close.equivalent and close.p < 0.05
    assert -0.02 < close.interval.low and close.interval.high < 0.02 and close.interval.level == pytest.approx(0.9)
    far = tost(a, a - 0.05 + rng.normal(0, 0.003, 25), margin=0.02, test_train_ratio=0.25)
    assert not far.equivalent and far.p > 0.5
    # hand check of the TOST p-value: the larger of the two one-sided p-values
    d = np.asarray(a) - (np.asarray(a) - 0.05)
    assert tost(a, a - 0.05, 0.02, 0.25).p == 1.0 and d.std() < 1e-12   # zero variance, |mean| > margin


def test_tost_wide_interval_is_not_equivalent_even_with_mean_zero():
    d = np.array([0.05, -0.05, 0.04, -0.04, 0.0])   # mean 0, but far too spread for a 0.02 margin
    eq = tost(d, np.zeros(5), margin=0.02, test_train_ratio=0.25)
    assert not eq.equivalent and eq.interval.contains(0.0)
    with pytest.raises(ValueError, match="positive"):
        tost(d, d, margin=0, test_train_ratio=0.25)


def test_brier_matches_sklearn_and_hand():
    y = [0, 1, 1, 0]
    p = [0.1, 0.9, 0.6, 0.4]
    assert brier(y, p) == pytest.approx((0.01 + 0.01 + 0.16 + 0.16) / 4)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p))


def test_ece_by_hand_and_against_calibration_curve():
    # bin [0.1, 0.2): p = 0.15 x2, y = 0, 1 -> |0.5 - 0.15| = 0.35, weight 2/4
    # bin [0.9, 1.0]: p = 0.95 x2, y = 1, 1 -> |1 - 0.95| = 0.05, weight 2/4
    y, p = [0, 1, 1, 1], [0.15, 0.15, 0.95, 0.95]
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.35 + 0.5 * 0.05)
    # perfectly calibrated in expectation: large sample, y ~ Bernoulli(p) -> ECE small
    rng = np.random.default_rng(0)
    pr = rng.random(50000)
    yy = (rng.random(50000) < pr).astype(int)
    assert expected_calibration_error(yy, pr) < 0.01
    # systematic over-confidence is caught, and equals the weighted calibration_curve gap
    over = np.clip(pr * 1.5 - 0.25, 0, 1)
    ece = expected_calibration_error(yy, over)
    frac, mean = calibration_curve(yy, over, n_bins=10)
    assert ece > 0.05 and ece <= np.abs(frac - mean).max()
