"""Hostile input to the commands that use data: exit 2, one stderr line, no traceback, no hang, bounded memory.

A seeded generator builds small valid (table, spec, args) cases and injects one fault each: out-of-range CLI
values, cohorts too small for the split or the folds, inf / huge numbers, a stray '?' in a numeric column,
too many categories, duplicated columns, deeply nested specs, broken files, duplicate YAML keys, sequence tables
outside the spec's folder, compressed tables that expand past the cap, over-wide tables, MNAR splits that lack
a class. Every case runs `python -m mmn_core`'s
`main` in a child forked from this process (the engine is already imported, so a case costs milliseconds) under
RLIMIT_AS and a wall-clock timeout; stderr comes back through a pipe. Valid-but-unusual cases must still exit 0.
"""
from __future__ import annotations

import os
import resource
import select
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import mmn_core.checkpoint  # noqa: F401  (imported before forking so each child starts warm)
import mmn_core.experiments  # noqa: F401
import mmn_core.train  # noqa: F401
from mmn_core.cli import main

torch.set_num_threads(1)
CASES_PER_FAULT = 10          # 44 faults x 10 = 440 malformed cases
TIMEOUT = 60                  # seconds per case: a hang fails instead of blocking the suite


def _mem_limit() -> int:
    """~3 GB of address space for the child, or 1.5 GB above what this process already maps."""
    vm = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                vm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return max(3 * 2**30, vm + 3 * 2**29)


def run_forked(argv: list[str], timeout: float = TIMEOUT, setup=None) -> tuple[int, str]:
    """(exit code, stderr) of main(argv) in a forked child; -9 and a note for a timeout. `setup()` runs in the
    child first (e.g. to lower a cap so a small file can stand in for a huge one)."""
    limit = _mem_limit()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: never return into pytest
        code = 99
        try:
            os.close(r)
            sys.stderr = os.fdopen(w, "w", buffering=1)
            sys.stdout = open(os.devnull, "w")
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            if setup is not None:
                setup()
            code = main(argv)
        except BaseException:   # noqa: BLE001 - an escaped exception is exactly what the test must see
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(code if isinstance(code, int) else 98)
    os.close(w)
    chunks, deadline, timed_out = [], time.monotonic() + timeout, False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            data = os.read(r, 65536)
            if not data:
                break
            chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    err = b"".join(chunks).decode("utf-8", "replace")
    if timed_out:
        return -9, err + f"\n(timed out after {timeout} s)"
    return (os.waitstatus_to_exitcode(status), err)


# --- a small valid case ----------------------------------------------------------------------------------
NAMES = ["age", "heart rate", "Blutdruck ä", "x.1", "col-2", "β", "lab_a", "score'", "中文"]


class Case:
    def __init__(self, rng: np.random.Generator, n: int | None = None):
        self.rng = rng
        n = int(rng.integers(30, 61)) if n is None else n
        names = [str(x) for x in rng.choice(NAMES, 4, replace=False)]
        self.num, self.num2, self.cat, self.extra = names
        y = np.r_[np.zeros(n // 2), np.ones(n - n // 2)]
        rng.shuffle(y)
        self.frame = pd.DataFrame({
            "id": [f"r{i}" for i in range(n)],
            self.num: np.round(rng.normal(size=n), 3),
            self.num2: np.round(rng.normal(50, 10, n), 2),
            self.cat: rng.choice(["low", "mid", "high"], n),
            "label": y.astype(int),
            "target": np.round(rng.normal(size=n), 3),
        })
        self.spec = {"name": "hostile", "id_column": "id",
                     "modalities": [{"name": "vitals", "columns": [self.num, self.num2]},
                                    {"name": "notes", "columns": [self.cat]}],
                     "tasks": [{"name": "event", "column": "label", "type": "binary"},
                               {"name": "level", "column": "target", "type": "regression"}]}
        self.args: list[str] = []          # extra CLI arguments
        self.commands = ["train", "compare", "describe"]
        self.data_bytes: bytes | None = None
        self.spec_text: str | None = None
        self.data_name = "data.csv"
        self.setup = None                  # run in the child before main (see run_forked)

    def write(self, folder: Path) -> tuple[Path, Path]:
        data, spec = folder / self.data_name, folder / "spec.yaml"
        data.write_bytes(self.data_bytes if self.data_bytes is not None
                         else self.frame.to_csv(index=False).encode("utf-8"))
        spec.write_text(self.spec_text if self.spec_text is not None
                        else yaml.safe_dump(self.spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return data, spec

    def pick_row(self) -> int:
        return int(self.rng.integers(0, len(self.frame)))


def argv_for(command: str, data: Path, spec: Path, folder: Path, extra: list[str]) -> list[str]:
    base = {"train": ["train", "--epochs", "1", "--out", str(folder / "ck")],
            "compare": ["compare", "--folds", "2", "--epochs", "1"],
            "describe": ["describe"],
            "mnar": ["mnar", "--modality", "vitals", "--task", "event", "--folds", "2", "--epochs", "1"],
            "explain": ["explain", "--checkpoint", str(folder / "ck")],
            "faithfulness": ["faithfulness", "--checkpoint", str(folder / "ck")],
            "acquire": ["acquire", "--checkpoint", str(folder / "ck")]}[command]
    argv = base + ["--data", str(data), "--spec", str(spec)]
    # a later repeated option overrides the default one above (argparse keeps the last)
    return argv + extra


# --- faults: each edits a valid case; `commands` says which subcommands it is run through --------------------
def _cli(*values):
    def fault(case):
        case.args = list(values[int(case.rng.integers(0, len(values)))])
        case.commands = ["train", "compare"] if case.args[0] in ("--seed", "--epochs") else ["compare"]
    fault.__name__ = f"a_{values[0][0].strip('-')}"
    return fault


a_seed = _cli(["--seed", "-1"], ["--seed", str(2**32)], ["--seed", str(10**30)], ["--seed", "1.5"],
              ["--seed", "abc"], ["--seed", ""])
a_epochs = _cli(["--epochs", "0"], ["--epochs", "-5"], ["--epochs", str(10**12)], ["--epochs", "two"],
                ["--epochs", "1e3"])
a_folds = _cli(["--folds", "0"], ["--folds", "1"], ["--folds", "-2"], ["--folds", "x"], ["--folds", "2.5"],
                     ["--folds", str(10**9)])


def a_folds_over_cohort(case):
    case.args = ["--folds", str(len(case.frame) + int(case.rng.integers(1, 50)))]
    case.commands = ["compare"]


def a_folds_over_class(case):
    small = int(case.rng.integers(2, 5))
    y = np.r_[np.ones(small), np.zeros(len(case.frame) - small)].astype(int)
    case.frame["label"] = case.rng.permutation(y)
    case.args = ["--folds", str(small + int(case.rng.integers(1, 4)))]
    case.commands = ["compare"]


def a_rates(case):
    bad = ["1.5", "-0.1", "nan", "0,2", "a,b", "", "0.2,,0.4", "inf", "0.5;0.6", ",".join(["0.1"] * 101)]
    case.args = ["--rates", bad[int(case.rng.integers(0, len(bad)))]]
    case.commands = ["mnar"]


def a_record_missing(case):
    case.commands = ["explain"]        # --record is required: refused before the checkpoint is read


def t_one_row(case):
    case.frame = case.frame.iloc[:1]
    case.spec["tasks"] = case.spec["tasks"][1:]          # regression only: the data check itself passes
    case.commands = ["train", "compare"]                 # describing one record is fine


def t_two_rows(case):
    case.frame = case.frame.iloc[:2]
    case.spec["tasks"] = case.spec["tasks"][1:]
    case.commands = ["train", "compare"]


def t_rows_under_folds(case):
    n = int(case.rng.integers(2, 5))
    case.frame = case.frame.iloc[:n]
    case.spec["tasks"] = case.spec["tasks"][1:]
    case.args = ["--folds", str(n + int(case.rng.integers(1, 4)))]
    case.commands = ["compare"]


def _set(case, col, value):
    case.frame[col] = case.frame[col].astype(object)
    case.frame.loc[case.pick_row(), col] = value


def t_inf_feature(case):
    _set(case, case.num, ["inf", "-inf", "Infinity"][int(case.rng.integers(0, 3))])


def t_huge_feature(case):
    _set(case, case.num2, float(case.rng.choice([1e151, -1e200, 1e308, 1.7e308])))


def t_huge_label(case):
    _set(case, "target", float(case.rng.choice([1e160, -1e300, np.inf])))


def t_stray_text_in_numbers(case):
    _set(case, case.num, str(case.rng.choice(["?", "-", "unknown", "1,234", "..", "NULL!"])))


def t_thousands_separators(case):
    col = case.frame[case.num2].astype(object)
    col.iloc[0] = "1,234.5"
    case.frame[case.num2] = col


def t_many_categories(case):
    n = 1001 + int(case.rng.integers(0, 500))
    extra = n - len(case.frame)
    more = case.frame.sample(extra, replace=True, random_state=int(case.rng.integers(0, 2**31)))
    case.frame = pd.concat([case.frame, more], ignore_index=True)
    case.frame["id"] = [f"r{i}" for i in range(n)]
    case.frame[case.cat] = [f"code{i}" for i in range(n)]


def t_duplicate_label_column(case):
    text = case.frame.to_csv(index=False)
    header, rest = text.split("\n", 1)
    case.data_bytes = (header.replace("target", "label") + "\n" + rest).encode("utf-8")


def t_duplicate_feature_column(case):
    frame = pd.concat([case.frame, case.frame[[case.num]]], axis=1)
    case.data_bytes = frame.to_csv(index=False).encode("utf-8")


def t_binary_three_values(case):
    case.frame["label"] = [i % 3 for i in range(len(case.frame))]


def t_label_one_class(case):
    case.frame["label"] = 1


def t_missing_column(case):
    case.frame = case.frame.drop(columns=[case.num2])


def t_modality_never_present(case):
    case.frame[case.cat] = np.nan


def t_empty_file(case):
    case.data_bytes = b""


def t_header_only(case):
    case.data_bytes = case.frame.head(0).to_csv(index=False).encode("utf-8")


def t_binary_garbage(case):
    case.data_bytes = bytes(case.rng.integers(0, 256, int(case.rng.integers(10, 4000)), dtype=np.uint8))


def t_ragged_rows(case):
    text = case.frame.to_csv(index=False)
    case.data_bytes = (text + "a,b,c,d,e,f,g,h,i,j\n" * 3).encode("utf-8")


def t_duplicate_ids(case):
    case.frame.loc[case.pick_row(), "id"] = case.frame["id"].iloc[0]
    case.frame.loc[0, "id"] = case.frame["id"].iloc[1]


def s_deep_list(case):
    depth = int(case.rng.integers(1100, 2000))      # past Python's recursion limit; PyYAML is slow beyond
    case.spec_text = "name: hostile\nmodalities: " + "[" * depth + "]" * depth + "\n"


def s_deep_mapping(case):
    depth = int(case.rng.integers(1100, 3000))
    case.spec_text = "name: hostile\ntasks: " + "{a: " * depth + "1" + "}" * depth + "\n"


def s_deep_json(case):
    depth = int(case.rng.integers(1100, 4000))
    case.spec_text = '{"name": "hostile", "modalities": ' + '[{"x": ' * depth + "1" + "}]" * depth + "}"


def s_alias_bomb(case):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    case.spec_text = "\n".join(lines) + "\nname: hostile\nmodalities: *a8\ntasks: *a8\n"


def s_not_mapping(case):
    case.spec_text = ["- a\n- list\n", "just text", "42", "null", "[]"][int(case.rng.integers(0, 5))]


def s_bad_yaml(case):
    case.spec_text = ["name: [unclosed\n", "a: b: c\n", "\t- tab", "{{{{", "name: 'x\n"][int(case.rng.integers(0, 5))]


def s_unknown_task_type(case):
    case.spec["tasks"][0]["type"] = "survival"


def s_unknown_column(case):
    case.spec["modalities"][0]["columns"].append("no such column")


def a_explain_ranges(case):
    bad = [["--seed", "-1"], ["--seed", str(2**32)], ["--records", "0"], ["--records", "-3"], ["--records", "x"],
           ["--k", "0"], ["--k", str(10**9)], ["--k", "1.5"]]
    case.args = bad[int(case.rng.integers(0, len(bad)))]
    case.commands = ["acquire"] if case.args[0] == "--k" else ["faithfulness", "acquire"]


def t_mnar_split_lacks_a_class(case):
    y = np.zeros(len(case.frame), dtype=int)
    y[case.pick_row()] = 1                          # one positive: some part of the one split has none
    case.frame["label"] = y
    case.args = ["--folds", "1", "--rates", "0.5"]
    case.commands = ["mnar"]


def _cap(attr: str, value: int):
    def setup():
        import mmn_core.validate as V
        setattr(V, attr, value)
    return setup


def t_compressed_past_the_cap(case):
    import bz2
    import gzip
    import lzma
    text = case.frame.to_csv(index=False).encode("utf-8")
    case.data_name, pack = [("data.csv.gz", gzip.compress), ("data.csv.bz2", bz2.compress),
                            ("data.csv.xz", lzma.compress)][int(case.rng.integers(0, 3))]
    case.data_bytes = pack(text)
    case.setup = _cap("MAX_DECOMPRESSED_BYTES", len(text) // int(case.rng.integers(2, 5)))


def t_zip_with_two_tables(case):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.csv", case.frame.to_csv(index=False))
        z.writestr("b.csv", case.frame.to_csv(index=False))
    case.data_name, case.data_bytes = "data.zip", buf.getvalue()


def t_too_many_columns(case):
    wide = pd.DataFrame(0, index=case.frame.index, columns=[f"w{i}" for i in range(20_001)])
    case.data_bytes = pd.concat([case.frame, wide], axis=1).to_csv(index=False).encode("utf-8")


def s_duplicate_key(case):
    text = yaml.safe_dump(case.spec, allow_unicode=True, sort_keys=False)
    variants = [text + "name: again\n",                                              # top level
                text.replace("- name: vitals\n", "- name: vitals\n  name: again\n", 1),  # inside a modality
                text.replace("type: binary", "type: binary\n  type: regression", 1)]    # inside a task
    case.spec_text = variants[int(case.rng.integers(0, len(variants)))]


def s_sequence_table_outside(case):
    table = ["../data.csv", "/etc/hostname", "sub/../../data.csv", "../../../../../../etc/passwd"]
    case.spec["modalities"].append({"name": "visits", "kind": "sequence", "key": "id", "time_column": "target",
                                    "columns": [case.num], "table": table[int(case.rng.integers(0, len(table)))]})


def s_blank_name(case):
    blank = ["", " ", "\t", "  \n "][int(case.rng.integers(0, 4))]
    case.spec["modalities"][int(case.rng.integers(0, 2))]["name"] = blank


def s_categorical_not_a_column(case):
    case.spec["modalities"][0]["categorical"] = ["no such column"]


FAULTS = [f for name, f in sorted(globals().items()) if name[:2] in ("a_", "t_", "s_") and callable(f)]
for _name, _f in list(globals().items()):
    if _name[:2] == "a_" and callable(_f):
        _f.__name__ = _name
COVERED = {"train", "compare", "describe"}


def _make(fault, i: int, folder: Path):
    rng = np.random.default_rng([i, sum(map(ord, fault.__name__))])
    case = Case(rng)
    fault(case)
    data, spec = case.write(folder)
    command = case.commands[i % len(case.commands)]
    return argv_for(command, data, spec, folder, case.args), command, case.setup


def check_refused(argv: list[str], setup=None) -> str:
    code, err = run_forked(argv, setup=setup)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and lines[0].startswith("error: "), \
        (argv, code, err[-3000:])
    return lines[0]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
def test_hostile_input_exits_2_with_one_line(fault, tmp_path):
    for i in range(CASES_PER_FAULT):
        folder = tmp_path / str(i)
        folder.mkdir()
        argv, command, setup = _make(fault, i, folder)
        line = check_refused(argv, setup)           # exit 2, exactly one stderr line, no traceback
        assert line.startswith("error: ") and len(line) > len("error: ") + 10, (command, line)


def test_the_suite_is_large_and_runs_the_data_commands(tmp_path):
    commands = set()
    for fault in FAULTS:
        for i in range(CASES_PER_FAULT):
            commands.add(_make(fault, i, tmp_path)[1])
    assert len(FAULTS) * CASES_PER_FAULT >= 300 and COVERED <= commands


def test_messages_name_the_problem(tmp_path):
    """The fixes the user needs are in the line: the column, the value, the count."""
    def message(fault, command="describe"):
        case = Case(np.random.default_rng(0))
        fault(case)
        folder = tmp_path / fault.__name__
        folder.mkdir()
        data, spec = case.write(folder)
        return case, check_refused(argv_for(command, data, spec, folder, case.args), case.setup)

    case, msg = message(t_stray_text_in_numbers)
    assert case.num in msg and "categorical" in msg and "data.csv" in msg
    case, msg = message(t_huge_feature)
    assert case.num2 in msg and "1 row" in msg
    case, msg = message(t_many_categories)
    assert case.cat in msg and "1,000" in msg
    _, msg = message(t_duplicate_label_column)
    assert "label" in msg and "twice" in msg
    _, msg = message(s_deep_list)
    assert "nested too deeply" in msg
    _, msg = message(t_one_row, "train")
    assert "1 record" in msg
    _, msg = message(a_folds_over_class, "compare")
    assert "class" in msg and "folds" in msg
    _, msg = message(t_rows_under_folds, "compare")
    assert "folds" in msg
    _, msg = message(s_duplicate_key)
    assert "appears twice" in msg and "line " in msg
    _, msg = message(s_sequence_table_outside)
    assert "outside the spec's folder" in msg and "'visits'" in msg
    _, msg = message(t_compressed_past_the_cap)
    assert "once decompressed" in msg and "data.csv." in msg
    _, msg = message(t_zip_with_two_tables)
    assert "exactly one table" in msg
    _, msg = message(t_too_many_columns)
    assert "20,0" in msg and "columns, over the 20,000 cap" in msg
    _, msg = message(t_mnar_split_lacks_a_class, "mnar")
    assert "has no record of class" in msg
    _, msg = message(s_blank_name)
    assert "name is empty" in msg
    _, msg = message(s_categorical_not_a_column)
    assert "no such column" in msg and "not one of its columns" in msg
    _, msg = message(a_explain_ranges, "acquire")
    assert "--" in msg and ("must be between" in msg or "whole number" in msg)


def test_child_memory_is_bounded():
    """The harness itself: a child that allocates far past the limit is stopped, not the machine."""
    code, err = run_forked(["describe", "--dataset", "synthetic"])
    assert code == 0, err
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        resource.setrlimit(resource.RLIMIT_AS, (_mem_limit(), _mem_limit()))
        try:
            np.ones(8 * 2**30 // 8)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    os.close(w)
    os.close(r)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3


# --- valid but unusual input still works -----------------------------------------------------------------
def test_tiny_valid_table_trains(tmp_path):
    case = Case(np.random.default_rng(1), n=30)
    data, spec = case.write(tmp_path)
    code, err = run_forked(argv_for("train", data, spec, tmp_path, []))
    assert code == 0, err
    assert (tmp_path / "ck").is_dir()


def test_unusual_but_valid_values_work(tmp_path):
    """Large-but-finite numbers, unicode names, blank cells, 1,000 categories, --rates 1 and the seed bounds."""
    case = Case(np.random.default_rng(2), n=40)
    case.frame.loc[3, case.num] = 1e140
    case.frame.loc[4, case.num2] = np.nan
    case.frame[case.cat] = case.frame[case.cat].astype(object)
    case.frame.loc[5, case.cat] = None
    data, spec = case.write(tmp_path)
    for argv in (argv_for("train", data, spec, tmp_path, ["--seed", str(2**32 - 1)]),
                 argv_for("compare", data, spec, tmp_path, ["--seed", "0"]),
                 argv_for("describe", data, spec, tmp_path, []),
                 argv_for("mnar", data, spec, tmp_path, ["--rates", "0,1"])):
        code, err = run_forked(argv)
        assert code == 0, (argv, err[-2000:])
    many = Case(np.random.default_rng(3), n=1000)
    many.frame[many.cat] = [f"c{i}" for i in range(1000)]        # exactly at the cap
    folder = tmp_path / "many"
    folder.mkdir()
    data, spec = many.write(folder)
    code, err = run_forked(argv_for("describe", data, spec, folder, []))
    assert code == 0, err


def test_slide_names_compressed_input_and_declared_codes_work(tmp_path):
    """Valid but unusual: names as people write them, a gzip table, numeric codes declared categorical."""
    import gzip
    case = Case(np.random.default_rng(4), n=50)
    case.frame["code"] = case.rng.integers(1, 4, len(case.frame))
    case.spec["modalities"][0]["name"] = "Vital signs (day 1)"
    case.spec["modalities"][1]["name"] = "train"                     # a name torch reserves
    case.spec["modalities"][1]["columns"].append("code")
    case.spec["modalities"][1]["categorical"] = ["code"]
    case.spec["tasks"][0]["name"] = "Death (1 yr)"
    case.data_name = "data.csv.gz"
    case.data_bytes = gzip.compress(case.frame.to_csv(index=False).encode("utf-8"))
    data, spec = case.write(tmp_path)
    for argv in (argv_for("describe", data, spec, tmp_path, []),
                 argv_for("train", data, spec, tmp_path, []),
                 argv_for("compare", data, spec, tmp_path, []),
                 argv_for("mnar", data, spec, tmp_path, ["--modality", "Vital signs (day 1)", "--task",
                                                         "Death (1 yr)", "--rates", "0,0.5"])):
        code, err = run_forked(argv)
        assert code == 0, (argv[0], err[-2000:])
    from mmn_core.checkpoint import load
    trained = load(tmp_path / "ck")
    assert [m.display for m in trained.spec.modalities] == ["Vital signs (day 1)", "train"]
    assert trained.prep.categories[trained.spec.modalities[1].name]["code"] == ["1", "2", "3"]
