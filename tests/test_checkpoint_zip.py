"""The checkpoint .zip the Model page downloads loads back (checkpoint.to_zip / extract_zip / load_zip), and
nothing else does: no path traversal, no links, no extra files, size caps, every load check."""
from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from app import state as S
from app import uploads as U
from mmn_core import checkpoint as CK
from mmn_core import load

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
SHIPPED = ROOT / "data" / "checkpoints" / "synthetic-multimodn"
SUPPORT2 = ROOT / "data" / "checkpoints" / "support2-multimodn"


def _same_weights(a, b) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert set(sa) == set(sb) and len(sa) > 0
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, blob)
    return buf.getvalue()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {f: (SHIPPED / f).read_bytes() for f in CK.FILES}


@pytest.mark.parametrize("folder", ["synthetic-multimodn", ""])
def test_downloaded_zip_loads_back_with_the_same_weights(tmp_path, folder):
    blob = CK.to_zip(SHIPPED, folder)
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert sorted(names) == sorted(f"{folder}/{f}" if folder else f for f in CK.FILES)
    back = CK.load_zip(blob, tmp_path / "ck")
    original = load(SHIPPED)
    _same_weights(back, original)
    assert back.spec.to_json() == original.spec.to_json() and back.metrics == original.metrics
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == sorted(CK.FILES)
    _same_weights(CK.load_zip(blob, tmp_path / "ck"), original)        # the same bytes again: reused


@pytest.mark.parametrize("name", ["../config.json", "/config.json", "a/../../config.json", "..\\config.json",
                                  "C:/config.json", "a/b/config.json"])
def test_unsafe_or_nested_paths_are_refused(tmp_path, files, name):
    entries = {name: files["config.json"], "model.safetensors": files["model.safetensors"]}
    with pytest.raises(CK.CheckpointError):
        CK.extract_zip(_zip(entries), tmp_path / "ck")
    assert not (tmp_path / "ck").exists() and not (tmp_path.parent / "config.json").exists()


def test_extra_missing_duplicate_linked_or_split_files_are_refused(tmp_path, files):
    cases = {
        "extra": {**files, "evil.py": b"print(1)"},
        "missing": {"config.json": files["config.json"]},
        "split": {"a/config.json": files["config.json"], "b/model.safetensors": files["model.safetensors"]},
        "pickle": {"config.json": files["config.json"], "model.pt": b"\x80\x04"},
    }
    for why, entries in cases.items():
        with pytest.raises(CK.CheckpointError):
            CK.extract_zip(_zip(entries), tmp_path / why)
        assert not (tmp_path / why).exists(), why
    with pytest.raises(CK.CheckpointError, match="link"):
        CK.extract_zip(_zip(files, links=("config.json",)), tmp_path / "link")
    with pytest.raises(CK.CheckpointError, match="not a .zip"):
        CK.extract_zip(b"PK\x03\x04 not really", tmp_path / "bad")


def test_size_caps_stop_a_zip_bomb_while_unpacking(tmp_path, files, monkeypatch):
    bomb = _zip({"config.json": b"{" + b" " * 5_000_000, "model.safetensors": files["model.safetensors"]})
    cfg = zipfile.ZipFile(io.BytesIO(bomb)).getinfo("config.json")
    assert cfg.compress_size < 50_000 < 5_000_000 < cfg.file_size      # small on the wire, large unpacked
    monkeypatch.setattr(CK, "MAX_CONFIG_BYTES", 1_000_000)
    with pytest.raises(CK.CheckpointError, match="larger than"):
        CK.extract_zip(bomb, tmp_path / "bomb")
    assert not (tmp_path / "bomb").exists()                            # nothing half-written stays
    monkeypatch.setattr(CK, "MAX_ZIP_BYTES", len(bomb) - 1)
    with pytest.raises(CK.CheckpointError, match="more than"):
        CK.extract_zip(bomb, tmp_path / "bomb2")


def test_a_tampered_zip_fails_the_load_checks_and_leaves_nothing(tmp_path, files):
    w = bytearray(files["model.safetensors"])
    w[-1] ^= 0xFF
    with pytest.raises(CK.CheckpointError, match="weights do not match"):
        CK.load_zip(_zip({"config.json": files["config.json"], "model.safetensors": bytes(w)}), tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(CK.CheckpointError, match="not an empty folder"):
        CK.extract_zip(_zip(files), tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.mark.skipif(not (SUPPORT2 / "config.json").is_file(), reason="shipped checkpoints missing")
def test_model_page_download_then_upload_makes_the_same_model_active(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CACHE_DIR", tmp_path)
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("views/model.py").run()
    assert at.download_button(key=S.MD_DOWNLOAD) is not None
    blob = CK.to_zip(SUPPORT2, "support2-multimodn")                   # the page's download (_zip)
    at.radio(key=S.MD_SOURCE).set_value("Load a checkpoint folder").run()
    at.file_uploader(key=S.MD_UPLOAD_CKPT).set_value(("support2-multimodn.zip", blob, "application/zip"))
    at.run()
    at.button(key=S.MD_LOAD_ZIP).click().run()
    assert not at.exception and not at.error, [e.value for e in list(at.exception) + list(at.error)]
    folder = Path(at.session_state[S.MODELS]["support2"]["multimodn"])
    assert folder.parent == tmp_path / "checkpoints"                   # the private cache, by content hash
    _same_weights(load(folder), load(SUPPORT2))
    # a damaged upload: one clear error, the active model unchanged
    at.file_uploader(key=S.MD_UPLOAD_CKPT).set_value(("x.zip", _zip({"evil.py": b"1"}), "application/zip"))
    at.run()
    at.button(key=S.MD_LOAD_ZIP).click().run()
    assert not at.exception and len(at.error) == 1 and "Cannot load the checkpoint" in at.error[0].value
    assert Path(at.session_state[S.MODELS]["support2"]["multimodn"]) == folder
