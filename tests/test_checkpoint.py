"""Checkpoints: identical outputs after a round-trip, clear refusals of tampered / mismatched files, atomic
saves, and no pickle anywhere in the engine."""
import ast
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from mmn_core import CheckpointError, ModelConfig, TrainConfig, load, predict, save, train_model
from mmn_core.spec import spec_from_dict

ENGINE = Path(__file__).resolve().parent.parent / "mmn_core"


@pytest.fixture(scope="module")
def trained(synthetic_small):
    """One tiny trained model of each kind (shared: training is the slow part)."""
    ds = synthetic_small.subset(range(400))
    cfg = TrainConfig(epochs=1, seed=0)
    return ds, {kind: train_model(ds, kind, ModelConfig(state_size=8, hidden=16), cfg)
                for kind in ("multimodn", "pfusion")}


@pytest.fixture
def saved(trained, tmp_path):
    ds, models = trained
    return ds, models["multimodn"], save(models["multimodn"], tmp_path / "ck")


def _one_line(err) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("kind", ["multimodn", "pfusion"])
def test_round_trip_gives_identical_outputs(trained, tmp_path, kind):
    ds, models = trained
    original = models[kind]
    path = save(original, tmp_path / kind)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    back = load(path, ds.spec)
    assert back.kind == kind and back.model.config == original.model.config
    assert back.prep == original.prep and back.spec.to_json() == ds.spec.to_json()
    assert back.history == original.history and back.info == original.info
    assert json.dumps(back.metrics) == json.dumps(original.metrics)       # NaN-safe comparison
    data = back.prep.transform(ds)
    assert back.prep.transform(ds).x.keys() == original.prep.transform(ds).x.keys()
    a, b = predict(original.model, data), predict(back.model, data)
    for t in a.logits:
        assert torch.equal(a.logits[t], b.logits[t]), t
    if kind == "multimodn":
        assert torch.equal(a.states, b.states)
    sa, sb = original.model.state_dict(), back.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_overwriting_a_checkpoint_replaces_it(trained, tmp_path):
    ds, models = trained
    path = save(models["multimodn"], tmp_path / "ck")
    save(models["pfusion"], path)
    assert load(path).kind == "pfusion"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]       # no temp or .old folders left


def test_flipped_byte_in_weights_is_refused(saved):
    _, _, path = saved
    w = path / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    w.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as err:
        load(path)
    msg = _one_line(err)
    assert "model.safetensors" in msg and "modified" in msg


def test_truncated_weights_are_refused(saved):
    _, _, path = saved
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "truncated" in _one_line(err)


def test_truncated_config_is_refused(saved):
    _, _, path = saved
    c = path / "config.json"
    c.write_bytes(c.read_bytes()[:200])
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "config.json" in _one_line(err)


def _edit_config(path, edit, rehash=False):
    c = path / "config.json"
    cfg = json.loads(c.read_text())
    edit(cfg)
    if rehash:          # a consistent checksum over an inconsistent config: the structure checks must hold
        from mmn_core.checkpoint import _config_sha256
        cfg["config_sha256"] = _config_sha256(cfg)
    c.write_text(json.dumps(cfg))


@pytest.mark.parametrize("edit", [
    pytest.param(lambda c: c["preprocessing"]["numeric"]["vitals"]["heart_rate"].__setitem__(0, 0.0),
                 id="preprocessing-statistic"),
    pytest.param(lambda c: c["preprocessing"]["classes"]["outcome"].reverse(), id="class-order"),
    pytest.param(lambda c: c["model_config"].__setitem__("dropout", 0.5), id="model-config"),
    pytest.param(lambda c: c["spec"]["tasks"][0].__setitem__("column", "score"), id="spec-target"),
    pytest.param(lambda c: c.__setitem__("kind", "pfusion"), id="kind"),
    pytest.param(lambda c: c.__setitem__("kind", "transformer"), id="unknown-kind"),
    pytest.param(lambda c: c.pop("preprocessing"), id="missing-key"),
    pytest.param(lambda c: c["model_config"].__setitem__("state_size", -3), id="negative-size"),
    pytest.param(lambda c: c["model_config"].__setitem__("hidden", "wide"), id="wrong-type"),
    pytest.param(lambda c: c.__setitem__("format", "something-else"), id="format"),
])
def test_edited_config_is_refused(saved, edit):
    """Any edit of config.json after saving is refused with one line, never loaded silently or a traceback:
    an edited statistic or class order would quietly change every prediction."""
    _, _, path = saved
    _edit_config(path, edit)
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "config.json" in _one_line(err)


@pytest.mark.parametrize("edit", [
    pytest.param(lambda c: c.__setitem__("kind", "pfusion"), id="kind"),
    pytest.param(lambda c: c.__setitem__("kind", "transformer"), id="unknown-kind"),
    pytest.param(lambda c: c.pop("preprocessing"), id="missing-key"),
    pytest.param(lambda c: c["preprocessing"].__setitem__("numeric", []), id="wrong-structure"),
    pytest.param(lambda c: c["model_config"].__setitem__("state_size", -3), id="negative-size"),
    pytest.param(lambda c: c["model_config"].__setitem__("hidden", "wide"), id="wrong-type"),
    pytest.param(lambda c: c["model_config"].__setitem__("state_size", 16), id="state-size"),
    pytest.param(lambda c: c["spec"].__setitem__("modalities", "labs"), id="spec-invalid"),
    pytest.param(lambda c: c.pop("weights_sha256"), id="no-weights-hash"),
])
def test_inconsistent_config_is_refused_even_with_a_valid_checksum(saved, edit):
    _, _, path = saved
    _edit_config(path, edit, rehash=True)
    with pytest.raises(CheckpointError) as err:
        load(path)
    _one_line(err)


def test_config_without_its_checksum_is_refused(saved):
    """Removing the checksum must not be a way around it (every shipped checkpoint carries one)."""
    _, _, path = saved
    _edit_config(path, lambda c: c.pop("config_sha256"))
    with pytest.raises(CheckpointError) as err:
        load(path)
    _one_line(err)
    assert "checksum" in str(err.value)


def test_every_shipped_checkpoint_loads_and_matches_its_bundled_dataset():
    from mmn_core import load_dataset
    folders = sorted((ENGINE.parent / "data" / "checkpoints").iterdir())
    assert len(folders) == 8
    for folder in folders:
        trained = load(folder)
        name = trained.info["dataset"]
        ds = load_dataset(name) if name != "synthetic" else load_dataset(name, n=3000, seed=0)
        assert ds.spec.to_json() == trained.spec.to_json(), folder.name


def test_changed_shapes_are_refused(saved):
    """A config whose architecture no longer fits the weights (state size changed, a feature added)."""
    ds, trained_model, path = saved

    def bigger(c):
        c["model_config"]["state_size"] = 16
    _edit_config(path, bigger)
    with pytest.raises(CheckpointError) as err:
        load(path)
    _one_line(err)
    # weights of another architecture under an intact config: the shapes do not fit
    from safetensors.torch import save_file
    save(trained_model, path)
    other = {k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in trained_model.model.state_dict().items()}
    save_file(other, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load(path)
    _one_line(err)


def test_checkpoint_with_another_spec_is_refused(saved):
    ds, _, path = saved
    raw = ds.spec.to_json()
    raw["name"] = "other_cohort"
    raw["modalities"] = [m for m in raw["modalities"] if m["name"] != "notes"]
    other = spec_from_dict(raw, "other")
    with pytest.raises(CheckpointError) as err:
        load(path, other)
    msg = _one_line(err)
    assert "other_cohort" in msg and "synthetic" in msg
    assert load(path, ds.spec).spec.name == "synthetic"


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "nowhere")
    assert "not a checkpoint" in _one_line(err)


@pytest.mark.parametrize("fail_on_call", [1, 2])
def test_interrupted_save_keeps_previous_checkpoint(trained, tmp_path, monkeypatch, fail_on_call):
    """os.replace fails on the first rename (old aside) or the second (new in): the old checkpoint must still
    load from its own path, with its own outputs."""
    ds, models = trained
    path = save(models["multimodn"], tmp_path / "ck")
    before = predict(load(path).model, models["multimodn"].prep.transform(ds))
    real = os.replace
    calls = {"n": 0}

    def flaky(src, dst):
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            raise OSError("simulated crash during the swap")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(CheckpointError) as err:          # an OSError, reported in one line
        save(models["pfusion"], path)
    assert "simulated crash" in _one_line(err)
    monkeypatch.setattr(os, "replace", real)
    assert calls["n"] >= fail_on_call
    back = load(path)
    assert back.kind == "multimodn"
    after = predict(back.model, back.prep.transform(ds))
    assert torch.equal(before.logits["outcome"], after.logits["outcome"])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ck"]
    assert leftovers == [], leftovers


def test_crash_between_renames_is_recovered_on_load(trained, tmp_path):
    """A process killed after moving the old folder aside but before moving the new one in leaves only
    `.ck.old`: loading `ck` still finds the previous checkpoint."""
    ds, models = trained
    path = save(models["multimodn"], tmp_path / "ck")
    os.replace(path, tmp_path / ".ck.old")
    assert load(path).kind == "multimodn"


@pytest.mark.parametrize("layout", ["user-files", "checkpoint-plus-a-file", "foreign-config", "a-file"])
def test_save_never_replaces_what_is_not_a_checkpoint(trained, tmp_path, layout):
    """A folder holding anything but this tool's own two files is refused, and every byte of it stays."""
    _, models = trained
    target = tmp_path / "target"
    if layout == "a-file":
        target.write_bytes(b"my notes")
    else:
        target.mkdir()
        if layout == "user-files":
            (target / "analysis.ipynb").write_text('{"cells": []}')
            (target / "photos").mkdir()
            (target / "photos" / "ward.jpg").write_bytes(b"\xff\xd8" * 1000)
        elif layout == "checkpoint-plus-a-file":
            save(models["multimodn"], tmp_path / "ck")
            for f in ("config.json", "model.safetensors"):
                shutil.copy(tmp_path / "ck" / f, target / f)
            (target / "README.txt").write_text("keep me")
        else:
            (target / "config.json").write_text('{"format": "someone-elses/1"}')
            (target / "model.safetensors").write_bytes(b"x")
    before = {p.relative_to(tmp_path): (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    with pytest.raises(CheckpointError) as err:
        save(models["pfusion"], target)
    assert "is not a MultiModN Lens checkpoint" in _one_line(err) and "choose another folder" in str(err.value)
    after = {p.relative_to(tmp_path): (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    assert after == before


def test_save_into_the_current_folder_is_refused(trained, tmp_path, monkeypatch):
    """`train --out .` used to wipe the working folder."""
    _, models = trained
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError):
        save(models["multimodn"], ".")
    assert (tmp_path / "data.csv").read_text() == "a,b\n1,2\n"


def test_cli_train_refuses_a_non_checkpoint_out_folder_before_training(tmp_path, capsys):
    from mmn_core import cli
    (tmp_path / "notes.txt").write_text("keep")
    code = cli.main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not a MultiModN Lens checkpoint" in err
    assert (tmp_path / "notes.txt").read_text() == "keep" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_save_into_an_empty_folder_works(trained, tmp_path):
    _, models = trained
    (tmp_path / "empty").mkdir()
    path = save(models["multimodn"], tmp_path / "empty")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert load(path).kind == "multimodn"


def test_concurrent_saves_to_one_folder_queue_and_leave_one_valid_checkpoint(trained, tmp_path):
    import threading
    _, models = trained
    target, errors, barrier = tmp_path / "ck", [], threading.Barrier(4)

    def work(kind):
        try:
            barrier.wait()
            for _ in range(3):
                save(models[kind], target)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in ("multimodn", "pfusion") * 2]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert errors == []
    assert load(target).kind in ("multimodn", "pfusion")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_killed_save_leaves_no_temp_folder_after_the_next_save(trained, tmp_path):
    """A save killed with SIGKILL mid-write cannot clean up; the next save to the same place removes its temp."""
    import signal

    import mmn_core.checkpoint as C
    _, models = trained
    path = save(models["multimodn"], tmp_path / "ck")
    for _ in range(3):
        pid = os.fork()
        if pid == 0:                                       # child: die right after writing the weights
            real = C.save_file

            def dying(tensors, filename):
                real(tensors, filename)
                os.kill(os.getpid(), signal.SIGKILL)
            C.save_file = dying
            try:
                save(models["pfusion"], path)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    stale = [p.name for p in tmp_path.iterdir() if p.name != "ck"]
    # each killed save removed its predecessor's temp on the way in: kills never accumulate temps
    assert len(stale) == 1 and stale[0].startswith(".ck.tmp-")
    assert load(path).kind == "multimodn"                  # the killed saves never touched it
    save(models["pfusion"], path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"] and load(path).kind == "pfusion"


def test_symlinked_or_huge_files_are_refused(saved, tmp_path, monkeypatch):
    import mmn_core.checkpoint as C
    _, _, path = saved
    monkeypatch.setattr(C, "MAX_WEIGHTS_BYTES", 100)
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "more than the 100" in _one_line(err)
    monkeypatch.undo()
    real = tmp_path / "elsewhere.safetensors"
    os.replace(path / "model.safetensors", real)
    os.symlink(real, path / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "not a regular file" in _one_line(err)


@pytest.mark.parametrize("edit", [
    pytest.param(lambda c: c["preprocessing"]["numeric"]["vitals"]["heart_rate"].__setitem__(1, 0.0), id="zero-sd"),
    pytest.param(lambda c: c["preprocessing"]["numeric"]["vitals"]["heart_rate"].__setitem__(0, float("nan")),
                 id="nan-mean"),
    pytest.param(lambda c: c["preprocessing"]["numeric"]["vitals"]["heart_rate"].__setitem__(1, -2.0), id="neg-sd"),
    pytest.param(lambda c: c["model_config"].__setitem__("state_size", 10**9), id="huge-state"),
    pytest.param(lambda c: c["model_config"].__setitem__("hidden", True), id="bool-size"),
])
def test_invalid_statistics_or_sizes_are_refused_before_building(saved, edit, monkeypatch):
    """With a recomputed (valid) checksum: the unkeyed hash is no defence, the validation of values is."""
    import mmn_core.checkpoint as C
    _, _, path = saved
    _edit_config(path, edit, rehash=True)
    monkeypatch.setattr(C, "build_model", lambda *a: pytest.fail("built a model from an invalid config"))
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "config.json" in _one_line(err)


def test_engine_never_uses_pickle():
    """No module of mmn_core imports pickle-like serializers or calls torch.load / torch.save / read_pickle."""
    banned_modules = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
    banned_attrs = {("torch", "load"), ("torch", "save"), ("pd", "read_pickle"), ("pandas", "read_pickle")}
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) >= 8
    for f in files:
        text = f.read_text()
        assert "torch.load" not in text and "torch.save" not in text and "allow_pickle=True" not in text, f
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & banned_modules, f
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in banned_modules, f
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in banned_attrs, (f, node.attr)
                assert node.attr not in ("read_pickle", "to_pickle"), f
