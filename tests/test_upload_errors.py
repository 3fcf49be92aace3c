"""Upload errors (issue 15 item 7.2): every problem of an upload in one pass, in the user's own file names, never a
path of the private upload folder nor the name the main table is stored under."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import state as S
from app import uploads as U
from mmn_core import SpecError
from mmn_core.data import load_data

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
USER_CSV = "My patients (ward 3).csv"
SPEC = (b"name: two_problems\nid_column: id\nmodalities:\n- name: labs\n  columns: [a, sodium]\n"
        b"- name: vitals\n  columns: [b]\ntasks:\n- name: y\n  column: outcome\n  type: binary\n")


def two_problem_csv() -> bytes:
    """Column 'sodium' and target column 'outcome' are both missing."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": range(60), "a": rng.normal(size=60), "b": rng.normal(size=60)}).to_csv(
        index=False).encode()


def no_private_path(text: str, folder: Path) -> None:
    assert str(folder) not in text and "/tmp" not in text and "main-table" not in text, text
    assert not re.search(r"(/[\w.-]+){2,}", text), text                     # no absolute path of any kind


def test_check_dataset_reports_every_problem(tmp_path):
    (tmp_path / "d.csv").write_bytes(two_problem_csv())
    (tmp_path / "spec.yaml").write_bytes(SPEC)
    with pytest.raises(SpecError) as info:
        load_data(tmp_path / "d.csv", tmp_path / "spec.yaml")
    problems = info.value.problems
    assert len(problems) == 2
    assert "'sodium'" in problems[0] and "'outcome'" in problems[1]
    assert str(info.value) == "; ".join(problems)            # the CLI's one readable line


def test_register_upload_names_the_users_file(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(SpecError) as info:
        U.register_upload(("my spec.yaml", SPEC), [(USER_CSV, two_problem_csv())])
    problems = info.value.problems
    assert len(problems) == 2
    for p in problems:
        assert p.startswith(f"{USER_CSV}: "), p
        no_private_path(p, tmp_path)
    # two files with a wrong type: both named
    with pytest.raises(SpecError) as info:
        U.register_upload(("s.yaml", SPEC), [("a.txt", b"x"), ("b.xlsx", b"y")])
    assert [p.split(":")[0] for p in info.value.problems] == ["a.txt", "b.xlsx"]
    # a broken spec: the user's spec name, not the stored spec.yaml's path
    with pytest.raises(SpecError) as info:
        U.register_upload(("clinic spec.yaml", b"name: [unclosed"), [(USER_CSV, two_problem_csv())])
    assert "clinic spec.yaml" in str(info.value)
    no_private_path(str(info.value), tmp_path)


def test_model_page_shows_both_problems_with_the_users_file_name(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("views/model.py").run()
    at.radio(key=S.MD_SOURCE).set_value("Use your own data").run()
    at.file_uploader(key=S.MD_UPLOAD_DATA).set_value([(USER_CSV, two_problem_csv(), "text/csv")])
    at.file_uploader(key=S.MD_UPLOAD_SPEC).set_value(("my spec.yaml", SPEC, "text/yaml"))
    at.run()
    at.button(key=S.MD_USE_UPLOAD).click().run()
    assert not at.exception
    assert len(at.error) == 1
    shown = re.sub(r"\\(.)", r"\1", at.error[0].value).replace("\u2060", "")   # md's escapes removed
    assert "2 problems" in shown
    assert "sodium" in shown and "outcome" in shown
    assert shown.count(USER_CSV) == 2, shown
    no_private_path(shown, tmp_path)
    assert not str(at.session_state[S.DATASET]).startswith("upload-")


def test_the_cli_prints_both_problems_on_one_line(capsys, tmp_path):
    from mmn_core.cli import main
    (tmp_path / "d.csv").write_bytes(two_problem_csv())
    (tmp_path / "spec.yaml").write_bytes(SPEC)
    assert main(["describe", "--data", str(tmp_path / "d.csv"), "--spec", str(tmp_path / "spec.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'sodium'" in err and "'outcome'" in err and "; " in err


def test_a_spec_with_two_problems_names_both_in_the_users_spec_name(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path / "cache")
    spec = (b"name: two_problems\nid_column: id\nmodalities:\n- name: labs\n  columns: [a]\n  kind: tabulr\n"
            b"tasks:\n- name: y\n  column: outcome\n  type: binaryy\n")
    with pytest.raises(SpecError) as info:
        U.register_upload(("clinic spec.yaml", spec), [(USER_CSV, two_problem_csv())])
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert all(p.startswith("clinic spec.yaml: ") for p in problems), problems
    assert "tabulr" in problems[0] or "kind" in problems[0]
    assert "type" in problems[1]
    for p in problems:
        no_private_path(p, tmp_path)
