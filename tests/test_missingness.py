"""MNAR injection: exact counts removed, inputs untouched, reversed split, rule-based MNAR, presence balancing."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmn_core import load_dataset
from mmn_core.missingness import (apply_rule, class_mask, inject_mnar, n_chosen, presence_by_class, remove_modality,
                                  removed_rows, reverse_mnar, rule_mask, select_mnar)
from mmn_core.spec import MnarRule
from mmn_core.train import balance_presence


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", n=600, seed=3)


def _snapshot(d):
    return d.frame.copy(deep=True), {k: v.copy(deep=True) for k, v in d.sequences.items()}


def _unchanged(d, snap):
    frame, seqs = snap
    pd.testing.assert_frame_equal(d.frame, frame)
    for k in seqs:
        pd.testing.assert_frame_equal(d.sequences[k], seqs[k])


def test_n_chosen_is_ceiling_without_float_noise():
    assert n_chosen(0.6, 5) == 3          # 0.6 * 5 = 3.0000000000000004 in floating point
    assert n_chosen(0.2, 11) == 3
    assert n_chosen(0.0, 7) == 0 and n_chosen(1.0, 7) == 7
    with pytest.raises(ValueError):
        n_chosen(1.5, 10)


@pytest.mark.parametrize("file_order", [False, True])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_inject_removes_exact_count_among_positives(ds, rate, file_order):
    rows = np.arange(0, len(ds), 2)                        # "train + validation" = even positions
    pos = class_mask(ds, "outcome", 1)
    n_pos = int(pos[rows].sum())
    snap = _snapshot(ds)
    out = inject_mnar(ds, "labs", "outcome", rate, rows=rows, seed=11, file_order=file_order)
    _unchanged(ds, snap)                                   # the input is never modified
    chosen = select_mnar(ds, "outcome", rate, rows=rows, label=1, seed=11, file_order=file_order)
    assert len(chosen) == math.ceil(round(rate * n_pos, 9))
    assert set(chosen) <= set(rows) and pos[chosen].all()
    if file_order:                                         # the official code: the first positives in file order
        assert np.array_equal(chosen, rows[pos[rows]][:len(chosen)])
    before, after = ds.presence()["labs"].to_numpy(), out.presence()["labs"].to_numpy()
    assert not after[chosen].any()
    gone = removed_rows(ds, out, "labs")
    assert np.array_equal(gone, chosen[before[chosen]])    # exactly the chosen records that had labs
    others = np.setdiff1d(np.arange(len(ds)), chosen)
    pd.testing.assert_frame_equal(out.frame.iloc[others].reset_index(drop=True).astype(object),
                                  ds.frame.iloc[others].reset_index(drop=True).astype(object))
    untouched = [c for c in ds.frame.columns if c not in ds.spec.modality("labs").columns]
    pd.testing.assert_frame_equal(out.frame[untouched], ds.frame[untouched])
    assert (out.presence().drop(columns="labs") == ds.presence().drop(columns="labs")).all().all()


def test_random_choice_is_seeded_and_nested(ds):
    a = select_mnar(ds, "outcome", 0.4, seed=5)
    b = select_mnar(ds, "outcome", 0.8, seed=5)
    assert np.array_equal(a, select_mnar(ds, "outcome", 0.4, seed=5))
    assert set(a) < set(b)
    assert not np.array_equal(a, select_mnar(ds, "outcome", 0.4, seed=6))


def test_reversed_split_removes_only_negatives(ds):
    rows = np.arange(1, len(ds), 2)                        # the "test" positions
    neg = class_mask(ds, "outcome", 0)
    out = reverse_mnar(ds, "labs", "outcome", 0.6, rows=rows, seed=2)
    gone = removed_rows(ds, out, "labs")
    chosen = select_mnar(ds, "outcome", 0.6, rows=rows, label=0, seed=2)
    assert len(chosen) == math.ceil(round(0.6 * neg[rows].sum(), 9))
    assert neg[gone].all() and set(gone) <= set(rows) and len(gone) > 0
    shares_before = presence_by_class(ds, "labs", "outcome", rows)
    shares_after = presence_by_class(out, "labs", "outcome", rows)
    assert shares_after["pos"] == shares_before["pos"]     # positives untouched
    assert shares_after["neg"] == pytest.approx(shares_before["neg"] * 0.4, abs=0.08)


def test_sequence_modality_drops_the_records_rows(ds):
    snap = _snapshot(ds)
    chosen = select_mnar(ds, "outcome", 0.5, seed=1)
    out = remove_modality(ds, "visits", chosen)
    _unchanged(ds, snap)
    ids = set(np.asarray(ds.ids)[chosen])
    seq_before, seq_after = ds.sequences["visits"], out.sequences["visits"]
    assert not seq_after["id"].isin(ids).any()
    assert len(seq_after) == int((~seq_before["id"].isin(ids)).sum())
    assert not out.presence()["visits"].to_numpy()[chosen].any()
    pd.testing.assert_frame_equal(out.frame, ds.frame)


def test_non_binary_task_and_bad_rate_are_refused(ds):
    with pytest.raises(ValueError, match="binary"):
        inject_mnar(ds, "labs", "stage", 0.5)
    with pytest.raises(ValueError, match="rate"):
        inject_mnar(ds, "labs", "outcome", 1.2)


def test_spec_rule_observes_modality_exactly_where_it_fires(ds):
    rule = ds.spec.mnar_rules[0]                           # labs only when heart_rate >= 90
    snap = _snapshot(ds)
    out = apply_rule(ds, rule)
    _unchanged(ds, snap)
    fires = ds.frame["heart_rate"].to_numpy() >= 90
    before, after = ds.presence()["labs"].to_numpy(), out.presence()["labs"].to_numpy()
    assert np.array_equal(after, before & fires)
    reversed_ = apply_rule(ds, rule, invert=True)
    assert np.array_equal(reversed_.presence()["labs"].to_numpy(), before & ~fires)


def test_predicate_rule_on_part_of_the_rows(ds):
    rows = np.arange(300)
    out = apply_rule(ds, lambda f: f["age"] > 60, modality="imaging", rows=rows, rate=0.5, seed=4)
    before, after = ds.presence()["imaging"].to_numpy(), out.presence()["imaging"].to_numpy()
    assert np.array_equal(after[300:], before[300:])       # rows outside `rows` untouched
    gone = removed_rows(ds, out, "imaging")
    old = ds.frame["age"].to_numpy()[gone]
    assert (old <= 60).all() and set(gone) <= set(rows)
    # the rule was enforced on ceil(0.5 * 300) = 150 records: about half of the eligible ones lose imaging
    eligible = int((before[:300] & (ds.frame["age"].to_numpy()[:300] <= 60)).sum())
    assert 0.3 * eligible < len(gone) < 0.7 * eligible
    with pytest.raises(ValueError, match="modality"):
        apply_rule(ds, lambda f: f["age"] > 60)


def test_rule_does_not_fire_on_missing_values(ds):
    frame = ds.frame.copy()
    frame.loc[:9, "heart_rate"] = np.nan
    from mmn_core.data import Dataset
    d2 = Dataset(ds.spec, frame, ds.sequences)
    rule = MnarRule(name="r", modality="labs", column="heart_rate", op="<", value=1000)
    mask = rule_mask(d2, rule)
    assert not mask[:10].any() and mask[10:].all()


def test_presence_balancing_equalizes_presence_across_classes():
    """P(M present | y) after balancing is equal across classes in expectation. n = 20,000 per run, rates
    0.3 vs 0.8: the per-class rate has sd ≈ 0.005, so a tolerance of 0.02 is four standard deviations."""
    gen = torch.Generator().manual_seed(12345)       # not a balancing seed: the streams must be independent
    n = 20000
    y = (torch.rand(n, generator=gen) < 0.5).float()
    y[:200] = float("nan")                                 # unlabelled records are left alone
    p = torch.where(y == 1, torch.rand(n, generator=gen) < 0.3, torch.rand(n, generator=gen) < 0.8)
    diffs = []
    for seed in range(5):                                  # fresh draw per epoch: average over draws
        out = balance_presence({"m": p}, y, ["m"], torch.Generator().manual_seed(seed))["m"]
        assert not (out & ~p).any()                        # balancing only skips, never adds
        assert torch.equal(out[y == 1], p[y == 1])         # the class with the lower rate is untouched
        assert torch.equal(out[:200], p[:200])
        r1, r0 = out[y == 1].float().mean().item(), out[y == 0].float().mean().item()
        assert abs(r1 - r0) < 0.02
        diffs.append(r1 - r0)
    assert abs(np.mean(diffs)) < 0.01


# --- latent (unobserved) MNAR, the random control, and honest names -------------------------------------------
def test_latent_severity_is_the_generators_hidden_z_and_not_a_column():
    from mmn_core.synthetic import latent_severity, make_synthetic
    d = make_synthetic(n=2000, seed=7)
    z = latent_severity(2000, 7)
    # score = 10 + 3 z + N(0, 1): z explains it almost entirely (corr = 3 / sqrt(10) ≈ 0.95)
    assert np.corrcoef(z, d.frame["score"].to_numpy())[0, 1] > 0.93
    inputs = [c for m in d.spec.modalities if m.kind == "tabular" for c in m.columns]
    assert all(abs(np.corrcoef(z, d.frame[c].astype(float).fillna(d.frame[c].astype(float).mean()))[0, 1]) < 0.9
               for c in inputs if pd.api.types.is_numeric_dtype(d.frame[c]))
    assert not any(np.allclose(d.frame[c].to_numpy(dtype=float, na_value=np.nan), z, equal_nan=True)
                   for c in d.frame.columns if pd.api.types.is_numeric_dtype(d.frame[c]))


def test_gap_free_synthetic_changes_only_the_missingness():
    from mmn_core.synthetic import make_synthetic
    a, b = make_synthetic(n=500, seed=2), make_synthetic(n=500, seed=2, gaps=False)
    assert b.presence().all().all() and not a.presence().all().all()
    keep = a.presence().all(axis=1).to_numpy()
    pd.testing.assert_frame_equal(a.frame[keep].reset_index(drop=True), b.frame[keep].reset_index(drop=True),
                                  check_dtype=False)


def test_latent_removal_follows_the_hidden_score_and_is_label_linked():
    from mmn_core.missingness import inject_latent, select_latent
    from mmn_core.synthetic import latent_severity, make_synthetic
    d = make_synthetic(n=3000, seed=1, gaps=False)
    z = latent_severity(3000, 1)
    rows = np.arange(0, 3000, 2)
    chosen = select_latent(z, 0.8, rows, seed=3)
    assert len(chosen) == math.ceil(0.8 * 750) and set(chosen) <= set(rows)
    # removed records are the sick ones: their mean severity is far above the rest's
    rest = np.setdiff1d(rows, chosen)
    assert z[chosen].mean() - z[rest].mean() > 1.0
    low = select_latent(z, 0.8, rows, seed=3, high=False)
    assert z[low].mean() < z[np.setdiff1d(rows, low)].mean() - 1.0
    # nested across rates and seeded
    assert set(select_latent(z, 0.4, rows, seed=3)) < set(chosen)
    assert np.array_equal(chosen, select_latent(z, 0.8, rows, seed=3))
    out = inject_latent(d, "labs", z, 0.8, rows=rows, seed=3)
    assert np.array_equal(removed_rows(d, out, "labs"), chosen)
    # label-linked through z (outcome logit = 1.5 z + ...): positives lose labs much more often
    shares = presence_by_class(out, "labs", "outcome", rows)
    assert shares["neg"] - shares["pos"] > 0.25
    rev = inject_latent(d, "labs", z, 0.8, rows=rows, seed=3, high=False)
    shares = presence_by_class(rev, "labs", "outcome", rows)
    assert shares["pos"] - shares["neg"] > 0.25
    with pytest.raises(ValueError, match="latent"):
        inject_latent(d, "labs", z[:10], 0.5)


def test_random_removal_is_label_independent_with_the_exact_count():
    from mmn_core.missingness import random_removal
    from mmn_core.synthetic import make_synthetic
    d = make_synthetic(n=4000, seed=5, gaps=False)
    rows = np.arange(1, 4000, 2)
    out = random_removal(d, "labs", 800, rows=rows, seed=9)
    gone = removed_rows(d, out, "labs")
    assert len(gone) == 800 and set(gone) <= set(rows)
    shares = presence_by_class(out, "labs", "outcome", rows)
    assert abs(shares["pos"] - shares["neg"]) < 0.06     # 0.4 removed in each class; sd of the gap ≈ 0.022
