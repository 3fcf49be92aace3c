"""Uncertainty for cross-validated comparisons, and calibration.

Repeated k-fold CV gives n = k·r per-fold values whose training sets overlap, so the naive standard error
(sd / √n) is too small. The Nadeau–Bengio correction (Nadeau & Bengio 2003; Bouckaert & Frank 2004 for r × k
CV) replaces 1/n by 1/n + n_test/n_train in the variance of the mean, with a t distribution on n − 1 degrees
of freedom. Everything here is pure: arrays in, frozen dataclasses out.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss


@dataclass(frozen=True)
class Interval:
    """Mean of per-fold values (or differences) with a two-sided confidence interval."""
    mean: float
    low: float
    high: float
    se: float            # corrected standard error of the mean
    df: int              # degrees of freedom of the t distribution (n − 1)
    n: int               # number of per-fold values used (NaN dropped)
    level: float         # e.g. 0.95
    method: str          # "nadeau-bengio" or "naive"

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """Corrected paired t-test of H0: mean difference = 0."""
    mean: float
    t: float
    p: float
    interval: Interval

    def to_json(self) -> dict:
        return {"mean": self.mean, "t": self.t, "p": self.p, "interval": self.interval.to_json()}


@dataclass(frozen=True)
class Equivalence:
    """TOST (two one-sided tests) of H0: |mean difference| ≥ margin; `equivalent` when p < alpha, i.e. the
    (1 − 2·alpha) interval lies inside (−margin, +margin)."""
    margin: float
    p: float
    alpha: float
    equivalent: bool
    interval: Interval   # the (1 − 2·alpha) interval that TOST inverts

    def to_json(self) -> dict:
        return {"margin": self.margin, "p": self.p, "alpha": self.alpha, "equivalent": self.equivalent,
                "interval": self.interval.to_json()}


def _clean(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def _se(v: np.ndarray, test_train_ratio: float | None) -> float:
    """Standard error of the mean; NB-corrected when `test_train_ratio` (n_test / n_train) is given."""
    n = len(v)
    # values equal up to float noise (0.7 − 0.6 vs 0.9 − 0.8) have no spread, not a tiny one
    flat = n < 2 or np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max()))
    var = 0.0 if flat else float(v.var(ddof=1))
    factor = 1.0 / n + (test_train_ratio if test_train_ratio is not None else 0.0)
    return math.sqrt(factor * var)


def mean_interval(values, test_train_ratio: float | None = None, level: float = 0.95) -> Interval:
    """t interval for the mean of per-fold values. `test_train_ratio` = n_test / n_train of one fold (for
    k-fold CV about 1 / (k − 1)); None gives the naive interval (sd / √n), for independent values only.
    Fewer than two values: the interval is NaN (no spread to estimate)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if test_train_ratio is not None and test_train_ratio < 0:
        raise ValueError(f"test_train_ratio must be ≥ 0, got {test_train_ratio}")
    v = _clean(values)
    n = len(v)
    method = "naive" if test_train_ratio is None else "nadeau-bengio"
    if n < 2:
        m = float(v.mean()) if n else math.nan
        return Interval(m, math.nan, math.nan, math.nan, max(n - 1, 0), n, level, method)
    m, se = float(v.mean()), _se(v, test_train_ratio)
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * se
    return Interval(m, m - half, m + half, se, n - 1, n, level, method)


def paired_differences(a, b) -> np.ndarray:
    """a − b per fold, dropping folds where either is NaN (folds must be paired: same index, same split)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same number of folds ({a.shape[0]} vs {b.shape[0]})")
    d = a - b
    return d[np.isfinite(d)]


def paired_test(a, b, test_train_ratio: float | None, level: float = 0.95) -> PairedTest:
    """Corrected resampled paired t-test of mean(a − b) = 0 with its interval. Zero variance: p = 1 when the
    mean difference is 0, else 0 (every fold agrees on a non-zero difference)."""
    d = paired_differences(a, b)
    iv = mean_interval(d, test_train_ratio, level)
    if iv.n < 2:
        return PairedTest(iv.mean, math.nan, math.nan, iv)
    if iv.se == 0:
        return PairedTest(iv.mean, math.copysign(math.inf, iv.mean) if iv.mean else 0.0,
                          1.0 if iv.mean == 0 else 0.0, iv)
    t = iv.mean / iv.se
    return PairedTest(iv.mean, t, float(2 * sps.t.sf(abs(t), iv.df)), iv)


def tost(a, b, margin: float, test_train_ratio: float | None, alpha: float = 0.05) -> Equivalence:
    """Equivalence of paired a and b within ±margin: both one-sided tests (mean > −margin, mean < +margin)
    must reject at `alpha`, with the same corrected standard error as `paired_test`."""
    if margin <= 0:
        raise ValueError(f"an equivalence margin must be positive, got {margin}")
    d = paired_differences(a, b)
    iv = mean_interval(d, test_train_ratio, 1 - 2 * alpha)
    if iv.n < 2:
        return Equivalence(margin, math.nan, alpha, False, iv)
    if iv.se == 0:
        p = 0.0 if abs(iv.mean) < margin else 1.0
    else:
        p_low = float(sps.t.sf((iv.mean + margin) / iv.se, iv.df))     # H0: mean ≤ −margin
        p_high = float(sps.t.cdf((iv.mean - margin) / iv.se, iv.df))   # H0: mean ≥ +margin
        p = max(p_low, p_high)
    return Equivalence(margin, p, alpha, p < alpha, iv)


def kfold_ratio(k: int) -> float:
    """n_test / n_train of one fold of k-fold CV."""
    if k < 2:
        raise ValueError(f"k-fold needs k ≥ 2, got {k}")
    return 1.0 / (k - 1)


# --- calibration --------------------------------------------------------------------------------------------
def brier(y, prob) -> float:
    """Mean squared error of P(positive) against the 0/1 label (scikit-learn's brier_score_loss)."""
    return float(brier_score_loss(np.asarray(y, dtype=int), np.asarray(prob, dtype=float), pos_label=1))


def expected_calibration_error(y, prob, n_bins: int = 10) -> float:
    """ECE with `n_bins` equal-width bins: Σ_b (n_b / N) · |mean(y in b) − mean(p in b)|. Bins as in
    scikit-learn's calibration_curve (uniform strategy), whose per-bin means it uses."""
    y, prob = np.asarray(y, dtype=int), np.asarray(prob, dtype=float)
    if len(y) == 0:
        return math.nan
    frac_pos, mean_pred = calibration_curve(y, prob, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], prob), minlength=n_bins)
    counts = counts[counts > 0]                      # calibration_curve drops empty bins
    return float(np.sum(counts / len(y) * np.abs(frac_pos - mean_pred)))
