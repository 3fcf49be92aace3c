"""Property tests (Hypothesis): malformed CSV / spec combinations raise one SpecError line naming the offending
file, column or key; valid ones (column names with dots, spaces, unicode) load and run through a model.

Each case is a small random dataset (2 tabular modalities, binary + regression + multiclass tasks, optionally
a sequence table) with exactly one fault injected. Every fault kind is its own parametrized Hypothesis test,
so each kind is exercised on many random datasets (≥ 300 malformed combinations in all).
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import mmn_core.validate as validate_mod
from mmn_core import ModelConfig, Preprocessor, SpecError, load_data
from mmn_core.checkpoint import build_model

# Column names: letters, unicode, dots, spaces, dashes, quotes, digits (never empty or all blanks)
NAME = st.text("abxyzÄéßβЖ中 .-_1'", min_size=1, max_size=6).filter(lambda s: s.strip() != "")
SENTINEL = "QQSENTINELQQ"


@dataclass
class Case:
    """A valid dataset as Python objects; faults edit it before it is written to disk."""
    spec: dict
    frame: pd.DataFrame
    seq: pd.DataFrame | None
    cols: dict                      # role -> column name
    spec_text: str | None = None    # raw spec text overriding `spec`
    spec_bytes: bytes | None = None  # raw spec bytes overriding both
    data_bytes: bytes | None = None  # raw main-table bytes overriding `frame`
    seq_bytes: bytes | None = None
    cap: str | None = None          # "data" / "seq": set MAX_FILE_BYTES just below that file's size
    expect: list = field(default_factory=list)   # fragments the message must contain ("{data}" etc. = paths)


@st.composite
def cases(draw, sequence=None) -> Case:
    names = draw(st.lists(NAME, min_size=13, max_size=13, unique=True))
    roles = ["id", "a1", "a2", "b1", "b2", "yb", "yr", "ym", "key", "time", "s1", "s2", "extra"]
    cols = dict(zip(roles, names))
    n = draw(st.integers(6, 14))
    seed = draw(st.integers(0, 2**31 - 1))
    with_seq = draw(st.booleans()) if sequence is None else sequence
    rng = np.random.default_rng(seed)
    ids = [f"{p}{i}" for i, p in enumerate(draw(st.lists(st.sampled_from(["r", "P-", "id.", "ü"]),
                                                           min_size=n, max_size=n)))]
    frame = pd.DataFrame({cols["id"]: ids})
    frame[cols["a1"]] = np.round(rng.normal(size=n), 3)
    frame[cols["a2"]] = rng.integers(0, 100, n).astype(float)
    frame[cols["b1"]] = rng.choice(["low", "high", "中"], n)
    frame[cols["b2"]] = np.round(rng.normal(5, 2, n), 2)
    # gaps, but row 0 has everything so that every modality is present somewhere
    for c in ("a1", "a2", "b1", "b2"):
        gaps = rng.random(n) < 0.3
        gaps[0] = False
        frame.loc[gaps, cols[c]] = np.nan
    yb = rng.integers(0, 2, n).astype(float)
    yb[:2] = [0, 1]
    yb[(rng.random(n) < 0.2) & (np.arange(n) >= 2)] = np.nan
    frame[cols["yb"]] = yb
    frame[cols["yr"]] = np.round(rng.normal(50, 10, n), 1)
    ym = rng.choice(["mild", "severe", "moderate"], n).astype(object)
    ym[:2] = ["mild", "severe"]
    frame[cols["ym"]] = ym
    spec = {"name": "case", "data": "data.csv", "id_column": cols["id"],
            "modalities": [{"name": "alpha", "columns": [cols["a1"], cols["a2"]]},
                           {"name": "beta", "columns": [cols["b1"], cols["b2"]]}],
            "tasks": [{"name": "event", "column": cols["yb"], "type": "binary"},
                      {"name": "level", "column": cols["yr"], "type": "regression"},
                      {"name": "grade", "column": cols["ym"], "type": "multiclass"}]}
    seq = None
    if with_seq:
        rows = []
        for i, rid in enumerate(ids):
            for t in range(int(rng.integers(1 if i == 0 else 0, 5))):
                rows.append((rid, float(t * 2 + rng.random()), float(np.round(rng.normal(), 3)),
                             str(rng.choice(["up", "down"]))))
        seq = pd.DataFrame(rows, columns=[cols["key"], cols["time"], cols["s1"], cols["s2"]])
        seq = seq.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)    # unsorted on disk
        spec["modalities"].append({"name": "visits", "kind": "sequence", "table": "visits.csv", "key": cols["key"],
                                   "time_column": cols["time"], "columns": [cols["s1"], cols["s2"]]})
    return Case(spec, frame, seq, cols)


def write(case: Case, folder: Path) -> tuple[Path, Path]:
    spec_path, data_path, seq_path = folder / "spec.yaml", folder / "data.csv", folder / "visits.csv"
    text = case.spec_text if case.spec_text is not None else yaml.safe_dump(case.spec, allow_unicode=True,
                                                                             sort_keys=False)
    spec_path.write_bytes(case.spec_bytes if case.spec_bytes is not None else text.encode("utf-8"))
    data_path.write_bytes(case.data_bytes if case.data_bytes is not None else
                          case.frame.to_csv(index=False).encode("utf-8"))
    if case.seq is not None or case.seq_bytes is not None:
        seq_path.write_bytes(case.seq_bytes if case.seq_bytes is not None else
                             case.seq.to_csv(index=False).encode("utf-8"))
    return spec_path, data_path


# --- faults: each edits a valid case and says which names the message must contain -------------------------
def _c(case, role):
    return case.cols[role]


def f_missing_feature_column(case):
    case.frame = case.frame.drop(columns=[_c(case, "b2")])
    case.expect = ["{data}", _c(case, "b2"), "beta"]


def f_missing_target_column(case):
    case.frame = case.frame.drop(columns=[_c(case, "yr")])
    case.expect = ["{data}", _c(case, "yr"), "level"]


def f_missing_id_column(case):
    case.frame = case.frame.drop(columns=[_c(case, "id")])
    case.expect = ["{data}", _c(case, "id")]


def f_column_in_two_modalities(case):
    case.spec["modalities"][1]["columns"].append(_c(case, "a1"))
    case.expect = ["{spec}", _c(case, "a1"), "alpha", "beta"]


def f_target_used_as_feature(case):
    case.spec["modalities"][0]["columns"].append(_c(case, "yb"))
    case.expect = ["{spec}", _c(case, "yb"), "event"]


def f_id_used_as_feature(case):
    case.spec["modalities"][1]["columns"].append(_c(case, "id"))
    case.expect = ["{spec}", _c(case, "id")]


def f_unknown_task_type(case):
    case.spec["tasks"][1]["type"] = "survival"
    case.expect = ["{spec}", f"tasks[{case.spec['tasks'][1]['name']}].type", "regression"]  # named, not numbered


def f_binary_three_values(case):
    n = len(case.frame)
    case.frame[_c(case, "yb")] = [i % 3 for i in range(n)]
    case.expect = ["{data}", "event", _c(case, "yb"), "3"]


def f_positive_never_occurs(case):
    case.spec["tasks"][0]["positive"] = "yes"
    case.expect = ["{data}", "event", "yes"]


def f_regression_target_text(case):
    case.frame[_c(case, "yr")] = case.frame[_c(case, "yr")].astype(object)
    case.frame.loc[len(case.frame) - 1, _c(case, "yr")] = "high"
    case.expect = ["{data}", _c(case, "yr")]


def f_regression_target_inf(case):
    case.frame.loc[1, _c(case, "yr")] = -np.inf
    case.expect = ["{data}", _c(case, "yr"), "infinite"]


def f_feature_inf(case):
    case.frame.loc[0, _c(case, "a1")] = np.inf
    case.expect = ["{data}", _c(case, "a1"), "infinite"]


def f_task_without_labels(case):
    case.frame[_c(case, "yb")] = np.nan
    case.expect = ["{data}", "event"]


def f_multiclass_one_class(case):
    case.frame[_c(case, "ym")] = "mild"
    case.expect = ["{data}", "grade"]


def f_empty_file(case):
    case.data_bytes = b""
    case.expect = ["{data}", "empty"]


def f_header_only(case):
    case.data_bytes = case.frame.head(0).to_csv(index=False).encode("utf-8")
    case.expect = ["{data}", "no rows"]


def f_non_utf8(case):
    case.frame[_c(case, "b1")] = case.frame[_c(case, "b1")].astype(object)
    case.frame.loc[len(case.frame) - 1, _c(case, "b1")] = SENTINEL
    case.data_bytes = case.frame.to_csv(index=False).encode("utf-8").replace(SENTINEL.encode(), b"caf\xe9")
    case.expect = ["{data}", "UTF-8"]


def f_over_size_cap(case):
    case.cap = "data"
    case.expect = ["{data}", "cap", " bytes"]      # a small cap is shown in bytes, not as '0 MB'



def f_duplicate_ids(case):
    ids = case.frame[_c(case, "id")].tolist()
    case.frame.loc[len(ids) - 1, _c(case, "id")] = ids[0]
    case.expect = ["{data}", _c(case, "id"), ids[0]]


def f_empty_id(case):
    case.frame.loc[2, _c(case, "id")] = np.nan
    case.expect = ["{data}", _c(case, "id")]


def f_duplicate_header(case):
    frame = pd.concat([case.frame, case.frame[[_c(case, "a2")]]], axis=1)    # the header names a2 twice
    case.data_bytes = frame.to_csv(index=False).encode("utf-8")
    case.expect = ["{data}", _c(case, "a2"), "twice"]


def f_never_present(case):
    case.frame[_c(case, "b1")] = np.nan
    case.frame[_c(case, "b2")] = np.nan
    case.expect = ["{data}", "beta", "never present"]


def f_bad_yaml(case):
    case.spec_text = "name: case\nmodalities: [unclosed\n"
    case.expect = ["{spec}", "YAML"]


def f_spec_not_mapping(case):
    case.spec_text = "- just\n- a list\n"
    case.expect = ["{spec}", "mapping"]


def f_spec_missing_tasks(case):
    case.spec.pop("tasks")
    case.expect = ["{spec}", "tasks"]


def f_spec_bad_modality_name(case):
    # any non-empty name is accepted (`Alpha Labs` gets the key `alpha_labs`); a blank one is not
    case.spec["modalities"][0]["name"] = "   "
    case.expect = ["{spec}", "modality name is empty"]


def f_spec_modality_name_not_text(case):
    case.spec["modalities"][0]["name"] = ["Alpha", "Labs"]
    case.expect = ["{spec}", "name"]


def f_spec_non_utf8(case):
    case.spec["title"] = SENTINEL
    text = yaml.safe_dump(case.spec, allow_unicode=True).encode("utf-8")
    case.spec_bytes = text.replace(SENTINEL.encode(), b"caf\xe9")
    case.expect = ["{spec}", "UTF-8"]


def f_seq_key_matches_none(case):
    case.seq[_c(case, "key")] = [f"nobody{i}" for i in range(len(case.seq))]
    case.expect = ["{seq}", _c(case, "key")]


def f_seq_missing_column(case):
    case.seq = case.seq.drop(columns=[_c(case, "s1")])
    case.expect = ["{seq}", _c(case, "s1"), "visits"]


def f_seq_time_not_numeric(case):
    case.seq[_c(case, "time")] = [f"t{i}" for i in range(len(case.seq))]
    case.expect = ["{seq}", _c(case, "time")]


def f_seq_inf(case):
    case.seq.loc[0, _c(case, "s1")] = np.inf
    case.expect = ["{seq}", _c(case, "s1"), "infinite"]


def f_seq_never_present(case):
    case.seq[_c(case, "s1")] = np.nan
    case.seq[_c(case, "s2")] = np.nan
    case.expect = ["{seq}", "visits", "never present"]


def f_seq_file_missing(case):
    case.spec["modalities"][2]["table"] = "elsewhere.csv"
    case.expect = ["elsewhere.csv", "not found"]


def f_seq_empty_file(case):
    case.seq_bytes = b""
    case.expect = ["{seq}", "empty"]


def f_seq_non_utf8(case):
    case.seq[_c(case, "s2")] = case.seq[_c(case, "s2")].astype(object)
    case.seq.loc[0, _c(case, "s2")] = SENTINEL
    case.seq_bytes = case.seq.to_csv(index=False).encode("utf-8").replace(SENTINEL.encode(), b"\xff\xfe")
    case.expect = ["{seq}", "UTF-8"]


def f_seq_over_size_cap(case):
    case.cap = "seq"
    case.expect = ["{seq}", "cap"]


SEQUENCE_FAULTS = {f_seq_key_matches_none, f_seq_missing_column, f_seq_time_not_numeric, f_seq_inf,
                   f_seq_never_present, f_seq_file_missing, f_seq_empty_file, f_seq_non_utf8, f_seq_over_size_cap}
FAULTS = [f for name, f in sorted(globals().items()) if name.startswith("f_")]


def _load(case: Case, folder: Path):
    spec_path, data_path = write(case, folder)
    if case.cap is None:
        return load_data(data_path, spec_path)
    target = data_path if case.cap == "data" else folder / "visits.csv"
    if case.cap == "seq" and target.stat().st_size <= data_path.stat().st_size:
        # the cap must catch the sequence table only: pad it with blank lines (pandas skips them)
        with open(target, "a", encoding="utf-8") as f:
            f.write("\n" * (data_path.stat().st_size - target.stat().st_size + 2))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(validate_mod, "MAX_FILE_BYTES", target.stat().st_size - 1)
        return load_data(data_path, spec_path)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__[2:])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_malformed_input_raises_one_clear_line(fault, data, tmp_path):
    case = data.draw(cases(sequence=True if fault in SEQUENCE_FAULTS else None))
    fault(case)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    with pytest.raises(SpecError) as err:
        _load(case, folder)
    msg = str(err.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    paths = {"{data}": str(folder / "data.csv"), "{spec}": str(folder / "spec.yaml"),
             "{seq}": str(folder / "visits.csv")}
    for fragment in case.expect:
        assert paths.get(fragment, fragment) in msg, (fragment, msg)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_valid_inputs_load_and_run(case, tmp_path):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    ds = _load(case, folder)
    n = len(case.frame)
    assert len(ds) == n and ds.ids == case.frame[case.cols["id"]].tolist()
    assert list(ds.frame.columns) == list(case.frame.columns)        # names with dots/spaces/unicode intact
    pres = ds.presence()
    assert pres.iloc[0].all()
    expect_alpha = case.frame[[case.cols["a1"], case.cols["a2"]]].notna().any(axis=1).to_numpy()
    assert np.array_equal(pres["alpha"].to_numpy(), expect_alpha)
    prep = Preprocessor.fit(ds)
    data = prep.transform(ds)
    assert data.x["alpha"].shape == (n, 2)
    assert data.x["beta"].shape == (n, prep.n_features(ds.spec.modality("beta")))
    assert all(torch.isfinite(v).all() for v in data.x.values())
    assert prep.classes["event"] == ["0", "1"]
    labelled = case.frame[case.cols["yb"]].notna().to_numpy()
    assert np.array_equal(~torch.isnan(data.y["event"]).numpy(), labelled)
    if case.seq is not None:
        counts = case.seq.groupby(case.cols["key"]).size()
        want = [int(counts.get(i, 0)) for i in ds.ids]
        assert data.lengths["visits"].tolist() == [min(c, prep.seq_len["visits"]) for c in want]
    torch.manual_seed(0)
    model = build_model("multimodn", ds.spec, prep, ModelConfig(state_size=4, hidden=8)).eval()
    with torch.no_grad():
        out = model(data.x, data.present, data.lengths)
    assert all(torch.isfinite(v).all() for v in out.logits.values())
    assert not math.isnan(float(model.loss(out, data.y)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases(sequence=False))
def test_parquet_and_gzip_load_like_csv(case, tmp_path):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    spec_path, data_path = write(case, folder)
    base = load_data(data_path, spec_path).frame
    case.frame.to_csv(folder / "data.csv.gz", index=False)
    case.frame.to_parquet(folder / "data.parquet", index=False)
    for other in ("data.csv.gz", "data.parquet"):
        frame = load_data(folder / other, spec_path).frame
        pd.testing.assert_frame_equal(frame, base, check_dtype=False)


def test_corrupt_parquet_is_a_spec_error(tmp_path):
    (tmp_path / "data.parquet").write_bytes(b"PAR1 this is not really parquet PAR1")
    spec = {"name": "p", "modalities": [{"name": "a", "columns": ["x"]}],
            "tasks": [{"name": "t", "column": "y", "type": "regression"}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError) as err:
        load_data(tmp_path / "data.parquet", tmp_path / "spec.yaml")
    assert str(tmp_path / "data.parquet") in str(err.value) and "\n" not in str(err.value)


# --- names as people write them: keys derived, names kept -----------------------------------------------------
DISPLAY = st.text("abAB zß中Ж.()–-_1'⁺", min_size=1, max_size=12).filter(lambda s: s.strip() != "") | \
    st.sampled_from(["train", "eval", "keys", "prior", "all modalities", "liver panel", "Liver panel", "x" * 90])


def _named_spec(mods: list[str], tasks: list[str]) -> dict:
    return {"name": "n", "modalities": [{"name": m, "columns": [f"c{i}"]} for i, m in enumerate(mods)],
            "tasks": [{"name": t, "column": f"y{i}", "type": "regression"} for i, t in enumerate(tasks)],
            "mnar_rules": [{"name": mods[0], "modality": mods[-1], "column": "c0", "op": ">", "value": 0}]}


@settings(max_examples=200, deadline=None)
@given(mods=st.lists(DISPLAY, min_size=1, max_size=5, unique_by=str.strip),
       tasks=st.lists(DISPLAY, min_size=1, max_size=3, unique_by=str.strip))
def test_any_name_gets_a_unique_safe_key_and_keeps_its_text(mods, tasks):
    from mmn_core.spec import is_key, spec_from_dict
    from torch import nn
    spec = spec_from_dict(_named_spec(mods, tasks))
    for entries, names in ((spec.modalities, mods), (spec.tasks, tasks)):
        keys = [e.name for e in entries]
        assert len(set(keys)) == len(keys) and all(is_key(k) for k in keys)
        assert [e.display for e in entries] == [n if is_key(n) else n.strip() for n in names]
        nn.ModuleDict({k: nn.Identity() for k in keys})          # torch accepts every key
    assert spec.mnar_rules[0].modality == spec.modalities[-1].name   # the rule follows its modality's key
    for m, name in zip(spec.modalities, mods):
        assert spec.modality(name) is m and spec.modality(m.name) is m
    for t, name in zip(spec.tasks, tasks):
        assert spec.task(name) is t
    assert spec_from_dict(spec.to_json()) == spec                  # checkpoints store the keys: stable


@pytest.mark.parametrize("mods,needle", [
    (["  ", "b"], "a modality name is empty"),
    (["liver panel", "liver panel"], "modality name used twice: liver panel"),
    (["a", " a "], "modality name used twice: a"),
])
def test_empty_or_repeated_names_are_refused(mods, needle, tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(_named_spec(mods, ["t"])))
    from mmn_core.spec import load_spec
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "spec.yaml")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_keys_are_readable_where_they_can_be():
    from mmn_core.spec import derive_key
    assert derive_key("liver panel") == "liver_panel"
    assert derive_key("Week 20 CD4") == "week_20_cd4"
    assert derive_key("Stage (I–IV)") == "stage_i_iv"
    assert derive_key("Blutdruck ä") == "blutdruck_a"
    assert derive_key("labs") == "labs"                              # a key as written stays as it is
    assert derive_key("liver panel", {"liver_panel"}).startswith("liver_panel_")
