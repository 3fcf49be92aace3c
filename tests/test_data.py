"""Data: preprocessing fitted on train only, one-hot with '(missing)', presence rules, sequence tables (lengths,
last-T truncation, key joining), missing labels kept and masked."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mmn_core import Preprocessor, load_data, load_dataset, split
from mmn_core.data import MISSING_CAT

SPEC = {
    "name": "toy",
    "id_column": "pid",
    "modalities": [
        {"name": "labs", "columns": ["alk.phos", "glucose level", "säure"]},
        {"name": "social", "columns": ["smoker", "age"]},
        {"name": "visits", "kind": "sequence", "table": "visits.csv", "key": "patient", "time_column": "day",
         "columns": ["bp", "mood"]},
    ],
    "tasks": [
        {"name": "death", "column": "died", "type": "binary", "positive": 1},
        {"name": "grade", "column": "grade", "type": "multiclass"},
        {"name": "los", "column": "length of stay", "type": "regression"},
    ],
}
MAIN = pd.DataFrame({
    "pid": ["p1", "p2", "p3", "p4", "p5", "p6"],
    "alk.phos": [1.0, np.nan, 3.0, np.nan, 5.0, 6.0],
    "glucose level": [10.0, np.nan, np.nan, np.nan, 50.0, 70.0],
    "säure": [0.1, np.nan, 0.3, np.nan, 0.5, 0.2],
    "smoker": ["yes", "no", np.nan, "no", "yes", np.nan],
    "age": [50, 60, np.nan, 70, 80, 40],
    "died": [1, 0, np.nan, 1, 0, 0],
    "grade": ["a", "b", "c", np.nan, "a", "b"],
    "length of stay": [3.0, 5.5, 2.0, np.nan, 10.0, 1.0],
})
VISITS = pd.DataFrame({      # unsorted on purpose; p3 has no rows; p6 has rows that are all-NaN; ghost matches none
    "patient": ["p2", "p1", "p1", "p2", "p1", "ghost", "p4", "p6", "p2", "p4"],
    "day": [3, 2, 0, 1, 1, 0, 5, 0, 2, 4],
    "bp": [120.0, 110.0, 100.0, 130.0, np.nan, 999.0, 90.0, np.nan, 125.0, 95.0],
    "mood": ["ok", "bad", "ok", "ok", "good", "ok", np.nan, np.nan, "bad", "ok"],
})


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC, allow_unicode=True), encoding="utf-8")
    MAIN.to_csv(tmp_path / "main.csv", index=False)
    VISITS.to_csv(tmp_path / "visits.csv", index=False)
    return load_data(tmp_path / "main.csv", tmp_path / "spec.yaml")


def test_presence_rules(toy):
    pres = toy.presence()
    # labs: p2 and p4 have all three columns missing → absent; p3 has one value → present
    assert pres["labs"].tolist() == [True, False, True, False, True, True]
    # social: p3 has both missing → absent; p6 has only age → present
    assert pres["social"].tolist() == [True, True, False, True, True, True]
    # visits: p3 has no rows, p6 has only all-NaN rows → absent
    assert pres["visits"].tolist() == [True, True, False, True, False, False]


def test_preprocessing_is_fitted_on_train_only(synthetic_small):
    ds = synthetic_small
    tr, va, te = split(ds, seed=0)
    prep = Preprocessor.fit(ds.subset(tr))
    train_frame = ds.frame.iloc[tr]
    for col in ["heart_rate", "lactate", "age"]:
        m = next(m.name for m in ds.spec.modalities if col in m.columns)
        v = train_frame[col].to_numpy(dtype=float)
        assert prep.numeric[m][col] == pytest.approx([np.nanmean(v), np.nanstd(v)], rel=1e-12)
        full = ds.frame[col].to_numpy(dtype=float)
        assert prep.numeric[m][col][0] != pytest.approx(np.nanmean(full), rel=1e-9)
    # regression target statistics also come from train only
    y = train_frame["score"].to_numpy(dtype=float)
    assert prep.target_stats["score"] == pytest.approx([y.mean(), y.std()])
    # wild values in validation and test rows move nothing
    frame = ds.frame.copy()
    rows = np.r_[va, te]
    frame.loc[rows, "heart_rate"] = 1e6
    frame.loc[rows, "sex"] = "unknown"
    frame.loc[rows, "score"] = -1e6
    moved = type(ds)(ds.spec, frame, ds.sequences)
    assert Preprocessor.fit(moved.subset(tr)) == prep
    # a test value is standardized with the training statistics
    data = prep.transform(moved)
    mean, std = prep.numeric["vitals"]["heart_rate"]
    hr = ds.spec.modality("vitals").columns.index("heart_rate")
    assert float(data.x["vitals"][te[0], hr]) == pytest.approx((1e6 - mean) / std, rel=1e-5)


def test_visits_standardized_with_train_rows_only(synthetic_small):
    ds = synthetic_small
    tr, _, _ = split(ds, seed=0)
    sub = ds.subset(tr)
    prep = Preprocessor.fit(sub)
    ids = set(ds.frame["id"].iloc[tr])
    seq = ds.sequences["visits"]
    train_markers = seq.loc[seq["id"].isin(ids), "marker"].to_numpy(dtype=float)
    assert prep.numeric["visits"]["marker"] == pytest.approx([train_markers.mean(), train_markers.std()])
    assert len(sub.sequences["visits"]) == len(train_markers) < len(seq)


def test_categorical_one_hot_with_missing(toy):
    prep = Preprocessor.fit(toy)
    social = toy.spec.modality("social")
    assert prep.categories["social"]["smoker"] == ["no", "yes"]
    assert prep.feature_names(social) == ["smoker=no", "smoker=yes", f"smoker={MISSING_CAT}", "age"]
    assert prep.source_columns(social) == ["smoker", "smoker", "smoker", "age"]
    data = prep.transform(toy)
    x = data.x["social"]
    assert x.shape == (6, 4)
    assert x[:, :3].tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    age_mean, age_std = prep.numeric["social"]["age"]
    assert age_mean == pytest.approx(60.0) and age_std == pytest.approx(np.std([50, 60, 70, 80, 40]))
    assert float(x[0, 3]) == pytest.approx((50 - 60) / age_std, rel=1e-6)
    assert float(x[2, 3]) == 0.0                        # a gap in a modality is imputed with the train mean


def test_gaps_inside_a_present_modality_are_train_means(toy):
    prep = Preprocessor.fit(toy)
    x = prep.transform(toy).x["labs"]
    assert x.shape == (6, 3)
    assert float(x[2, 1]) == 0.0                        # p3's glucose missing → standardized mean = 0
    mean, std = prep.numeric["labs"]["alk.phos"]
    assert mean == pytest.approx(np.mean([1, 3, 5, 6]))
    assert float(x[0, 0]) == pytest.approx((1 - mean) / std, rel=1e-6)


def test_sequence_lengths_order_and_key_joining(toy):
    prep = Preprocessor.fit(toy)
    assert prep.seq_len["visits"] == 3                 # the longest record in train (p1, p2: 3 rows)
    data = prep.transform(toy)
    lengths = data.lengths["visits"].tolist()
    assert lengths == [3, 3, 0, 2, 0, 0]               # p6's all-NaN rows are not steps; 'ghost' is ignored
    x = data.x["visits"]
    assert x.shape == (6, 3, prep.n_features(toy.spec.modality("visits")))
    names = prep.feature_names(toy.spec.modality("visits"))
    bp = names.index("bp")
    mean, std = prep.numeric["visits"]["bp"]
    # rows sorted by time within a record: p1 days 0, 1, 2 → bp 100, NaN (imputed → 0), 110
    got = x[0, :, bp].tolist()
    assert got[0] == pytest.approx((100 - mean) / std, rel=1e-5) and got[1] == 0.0
    assert got[2] == pytest.approx((110 - mean) / std, rel=1e-5)
    assert x[1, :, bp].tolist() == pytest.approx([(v - mean) / std for v in (130, 125, 120)], rel=1e-5)
    # mood one-hot at p4's first step (day 4, mood 'ok'); its day-5 step has mood missing
    assert x[3, 0, names.index("mood=ok")] == 1.0 and x[3, 1, names.index(f"mood={MISSING_CAT}")] == 1.0
    # padding after a record's length is exact zeros
    assert torch.equal(x[3, 2], torch.zeros(x.shape[-1])) and torch.equal(x[2], torch.zeros_like(x[2]))
    assert data.present["visits"].tolist() == [True, True, False, True, False, False]


def test_sequence_keeps_the_last_T_steps(toy):
    """Fitted on records with ≤ 2 steps, T = 2: a longer record keeps its 2 most recent steps."""
    train = toy.subset([3, 2])                      # p4 (2 steps) and p3 (none)
    prep = Preprocessor.fit(train)
    assert prep.seq_len["visits"] == 2
    data = prep.transform(toy)
    assert data.lengths["visits"].tolist() == [2, 2, 0, 2, 0, 0]
    bp = prep.feature_names(toy.spec.modality("visits")).index("bp")
    mean, std = prep.numeric["visits"]["bp"]
    # p2's days 1, 2, 3 → bp 130, 125, 120: the last two are kept
    assert data.x["visits"][1, :, bp].tolist() == pytest.approx([(125 - mean) / std, (120 - mean) / std],
                                                                rel=1e-5)


def test_max_sequence_length_caps_T(toy, monkeypatch):
    import mmn_core.data as data_mod
    monkeypatch.setattr(data_mod, "MAX_SEQ_LEN", 1)
    prep = Preprocessor.fit(toy)
    data = prep.transform(toy)
    assert prep.seq_len["visits"] == 1 and data.x["visits"].shape[1] == 1
    bp = prep.feature_names(toy.spec.modality("visits")).index("bp")
    mean, std = prep.numeric["visits"]["bp"]
    assert float(data.x["visits"][1, 0, bp]) == pytest.approx((120 - mean) / std, rel=1e-5)   # p2's last day


def test_missing_labels_are_kept_and_masked(toy):
    prep = Preprocessor.fit(toy)
    data = prep.transform(toy)
    assert len(data) == 6 and data.ids == ["p1", "p2", "p3", "p4", "p5", "p6"]
    assert prep.classes["death"] == ["0", "1"]       # 1.0 in a column with gaps is the class "1"
    death = data.y["death"]
    assert death[:2].tolist() == [1.0, 0.0] and math.isnan(death[2]) and death[3:].tolist() == [1.0, 0.0, 0.0]
    assert prep.classes["grade"] == ["a", "b", "c"]
    assert data.y["grade"].tolist() == [0, 1, 2, -1, 0, 1]
    los = data.y["los"]
    mean, std = prep.target_stats["los"]
    assert mean == pytest.approx(np.mean([3, 5.5, 2, 10, 1])) and math.isnan(los[3])
    assert float(los[0]) == pytest.approx((3 - mean) / std, rel=1e-6)
    assert prep.decode_target(toy.spec.task("los"), float(los[4])) == pytest.approx(10.0, rel=1e-5)


def test_positive_class_given_as_text(tmp_path):
    spec = {**SPEC, "tasks": [{"name": "death", "column": "died", "type": "binary", "positive": "no"}]}
    frame = MAIN.assign(died=["yes", "no", np.nan, "no", "yes", "yes"])
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    frame.to_csv(tmp_path / "main.csv", index=False)
    VISITS.to_csv(tmp_path / "visits.csv", index=False)
    ds = load_data(tmp_path / "main.csv", tmp_path / "spec.yaml")
    prep = Preprocessor.fit(ds)
    assert prep.classes["death"] == ["yes", "no"]      # [negative, positive]
    y = prep.transform(ds).y["death"]
    assert y[[0, 1, 3]].tolist() == [0.0, 1.0, 1.0] and math.isnan(y[2])


def test_preprocessor_json_round_trip(toy):
    import json
    prep = Preprocessor.fit(toy)
    back = Preprocessor.from_json(json.loads(json.dumps(prep.to_json())))
    assert back == prep
    a, b = prep.transform(toy), back.transform(toy)
    assert all(torch.equal(a.x[k], b.x[k]) for k in a.x)


def test_subset_and_with_present(toy):
    data = Preprocessor.fit(toy).transform(toy)
    sub = data.subset([4, 0])
    assert sub.ids == ["p5", "p1"] and torch.equal(sub.x["labs"][1], data.x["labs"][0])
    assert torch.equal(sub.lengths["visits"], data.lengths["visits"][[4, 0]])
    off = data.with_present({"labs": torch.zeros(6, dtype=torch.bool)})
    assert not off.present["labs"].any() and torch.equal(off.present["social"], data.present["social"])
    assert data.present["labs"].any()                     # the original is not modified
    ds_sub = toy.subset([0, 3])
    assert sorted(ds_sub.sequences["visits"]["patient"].unique()) == ["p1", "p4"]


def test_split_is_disjoint_stratified_and_seeded(synthetic_small):
    ds = synthetic_small
    tr, va, te = split(ds, seed=1)
    assert len(set(tr) | set(va) | set(te)) == len(ds) and not (set(tr) & set(te)) and not (set(va) & set(te))
    y = ds.frame["outcome"].to_numpy()
    assert abs(y[tr].mean() - y[te].mean()) < 0.02
    assert all(np.array_equal(a, b) for a, b in zip(split(ds, seed=1), (tr, va, te)))
    assert not np.array_equal(split(ds, seed=2)[2], te)


def test_synthetic_generator_is_seeded():
    a, b = load_dataset("synthetic", n=50, seed=4), load_dataset("synthetic", n=50, seed=4)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not load_dataset("synthetic", n=50, seed=5).frame.equals(a.frame)


# --- a numeric column declared categorical ------------------------------------------------------------------
def test_declared_categorical_numbers_are_one_hot(tmp_path):
    """Codes such as 1/2/3 listed under `categorical` become categories (1, 1.0 and '1' are one), with
    '(missing)' for a gap; without the declaration the same column is one standardized number."""
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(8)], "code": [1, 2, 3, 1, np.nan, 2, 3, 1],
                          "x": np.arange(8.0), "y": [0, 1, 0, 1, 0, 1, 0, 1]})
    frame.to_csv(tmp_path / "d.csv", index=False)       # the gap makes the CSV column float: 1.0, 2.0, 3.0
    spec = {"name": "c", "id_column": "id", "modalities": [{"name": "m", "columns": ["code", "x"],
                                                            "categorical": ["code"]}],
            "tasks": [{"name": "t", "column": "y", "type": "binary"}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    ds = load_data(tmp_path / "d.csv", tmp_path / "spec.yaml")
    prep = Preprocessor.fit(ds)
    m = ds.spec.modality("m")
    assert prep.categories["m"] == {"code": ["1", "2", "3"]} and list(prep.numeric["m"]) == ["x"]
    assert prep.feature_names(m) == ["code=1", "code=2", "code=3", f"code={MISSING_CAT}", "x"]
    x = prep.transform(ds).x["m"][:, :4].numpy()
    expect = np.zeros((8, 4), dtype=np.float32)
    for i, v in enumerate(frame["code"]):
        expect[i, 3 if np.isnan(v) else int(v) - 1] = 1
    np.testing.assert_array_equal(x, expect)
    assert Preprocessor.from_json(prep.to_json()) == prep
    spec["modalities"][0]["categorical"] = []
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    plain = Preprocessor.fit(load_data(tmp_path / "d.csv", tmp_path / "spec.yaml"))
    assert plain.categories["m"] == {} and set(plain.numeric["m"]) == {"code", "x"}


def test_declared_categorical_allows_codes_with_text(tmp_path):
    """A mostly-numeric column with a stray '?' is refused (it would silently turn categorical) unless the
    spec declares it categorical; the refusal names the declaration as one of the fixes."""
    from mmn_core import SpecError
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(40)], "code": [str(i % 5) for i in range(39)] + ["?"],
                          "y": [i % 2 for i in range(40)]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    spec = {"name": "c", "id_column": "id", "modalities": [{"name": "m", "columns": ["code"]}],
            "tasks": [{"name": "t", "column": "y", "type": "binary"}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="list it under 'categorical'"):
        load_data(tmp_path / "d.csv", tmp_path / "spec.yaml")
    spec["modalities"][0]["categorical"] = ["code"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    prep = Preprocessor.fit(load_data(tmp_path / "d.csv", tmp_path / "spec.yaml"))
    assert prep.categories["m"]["code"] == ["0", "1", "2", "3", "4", "?"]
    spec["modalities"][0]["categorical"] = ["nope"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="categorical column 'nope' of modality 'm' is not one of its columns"):
        load_data(tmp_path / "d.csv", tmp_path / "spec.yaml")


def test_declared_categorical_counts_against_the_caps(tmp_path, monkeypatch):
    import mmn_core.validate as V
    from mmn_core import SpecError
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(50)], "zip": np.arange(10_000, 10_050),
                          "y": [i % 2 for i in range(50)]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    spec = {"name": "c", "id_column": "id", "modalities": [{"name": "m", "columns": ["zip"],
                                                            "categorical": ["zip"]}],
            "tasks": [{"name": "t", "column": "y", "type": "binary"}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(V, "MAX_CATEGORIES", 49)
    with pytest.raises(SpecError, match="'zip' .* 50 distinct values, over the 49 cap"):
        load_data(tmp_path / "d.csv", tmp_path / "spec.yaml")
    monkeypatch.setattr(V, "MAX_CATEGORIES", 1000)
    monkeypatch.setattr(V, "MAX_INPUT_CELLS", 50 * 51 - 1)   # 50 records x (50 zips + '(missing)')
    with pytest.raises(SpecError, match="model input would have 2,550 values"):
        load_data(tmp_path / "d.csv", tmp_path / "spec.yaml")


# --- compressed tables: bounded while they expand --------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz", ".zip"])
def test_compressed_tables_load_and_are_capped_while_expanding(tmp_path, monkeypatch, suffix):
    import bz2
    import gzip
    import lzma
    import zipfile

    import mmn_core.validate as V
    from mmn_core import SpecError
    text = ("id,x,y\n" + "".join(f"r{i},{i % 7},{i % 2}\n" for i in range(20_000))).encode()
    path = tmp_path / f"d{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("d.csv", text)
    else:
        path.write_bytes({".csv.gz": gzip.compress, ".csv.bz2": bz2.compress, ".csv.xz": lzma.compress}[suffix](text))
    assert path.stat().st_size < (len(text) - 1) / 2       # the file itself is well under the cap set below
    spec = {"name": "c", "id_column": "id", "modalities": [{"name": "m", "columns": ["x"]}],
            "tasks": [{"name": "t", "column": "y", "type": "binary"}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert len(load_data(path, tmp_path / "spec.yaml")) == 20_000
    monkeypatch.setattr(V, "MAX_DECOMPRESSED_BYTES", len(text) - 1)      # the file is small; its content is not
    with pytest.raises(SpecError) as err:
        load_data(path, tmp_path / "spec.yaml")
    msg = str(err.value)
    assert str(path) in msg and "once decompressed" in msg and "\n" not in msg


def test_zip_with_two_tables_and_over_wide_tables_are_refused(tmp_path, monkeypatch):
    import zipfile

    import mmn_core.validate as V
    from mmn_core import SpecError
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.writestr("a.csv", "x\n1\n")
        z.writestr("b.csv", "x\n2\n")
    with pytest.raises(SpecError, match="exactly one table, found 2 files"):
        V.read_table(tmp_path / "d.zip")
    monkeypatch.setattr(V, "MAX_COLUMNS", 3)
    (tmp_path / "w.csv").write_text("a,b,c,d\n1,2,3,4\n")
    with pytest.raises(SpecError, match="4 columns, over the 3 cap"):
        V.read_table(tmp_path / "w.csv")
    pd.DataFrame({c: [1] for c in "abcd"}).to_parquet(tmp_path / "w.parquet")
    with pytest.raises(SpecError, match="4 columns, over the 3 cap"):
        V.read_table(tmp_path / "w.parquet")
    monkeypatch.setattr(V, "MAX_DECOMPRESSED_BYTES", 10)
    with pytest.raises(SpecError, match="once decompressed"):
        V.read_table(tmp_path / "w.parquet")
