"""Choosing a record as a clinician would (mmn_core.explain.choosing.rank_records), on hand-made cohorts."""
from __future__ import annotations

import numpy as np
import pytest

from mmn_core.explain.choosing import correct, rank_records

# six binary records: P(death), actual, measured kinds of data
P = np.array([0.95, 0.80, 0.52, 0.10, 0.30, 0.85])
Y = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
PATS = np.array(["a|b|c", "a|b|c", "a|b|c", "a", "a|b|c", "a|b"])


def test_correct_predictions():
    np.testing.assert_array_equal(correct(P, Y, "binary"), [False, True, True, True, True, True])
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    np.testing.assert_array_equal(correct(probs, np.array([0, 0, np.nan]), "multiclass"), [True, False, False])


def test_typical_is_correct_common_and_usual():
    order = rank_records(P, Y, "binary", PATS, "typical")
    # correct + most common pattern 'a|b|c': records 1, 2 (died; median P of correct died = 0.80) and 4 (survived;
    # median P of correct survivors = 0.20): distances 0.00, 0.28, 0.10 → 1, 4, 2; then the other correct ones
    # (3: 0.10 from 0.20; 5: 0.05 from 0.80), then the wrong one.
    assert order.tolist() == [1, 4, 2, 5, 3, 0]


def test_surprising_borderline_and_missing():
    assert rank_records(P, Y, "binary", PATS, "surprising").tolist()[:2] == [0, 2]        # |0 − .95|, |1 − .52|
    assert rank_records(P, Y, "binary", PATS, "borderline").tolist()[:2] == [2, 4]        # |.52 − .5|, |.3 − .5|
    assert rank_records(P, Y, "binary", PATS, "most_missing").tolist()[:2] == [3, 5]      # 1 kind, then 2
    probs = np.array([[0.5, 0.4, 0.1], [0.9, 0.05, 0.05], [0.34, 0.33, 0.33]])
    assert rank_records(probs, np.array([0, 0, 1]), "multiclass", ["a"] * 3, "borderline").tolist() == [2, 0, 1]


def test_every_ranking_is_a_permutation_and_bad_choices_fail():
    for how in ("typical", "surprising", "borderline", "most_missing"):
        assert sorted(rank_records(P, Y, "binary", PATS, how).tolist()) == list(range(6))
    with pytest.raises(ValueError, match="regression"):
        rank_records(P * 100, Y * 100, "regression", PATS, "borderline")
    with pytest.raises(ValueError, match="unknown choice"):
        rank_records(P, Y, "binary", PATS, "random")
    with pytest.raises(ValueError, match="must match"):
        rank_records(P[:3], Y, "binary", PATS, "typical")
