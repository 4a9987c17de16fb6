"""Project files (.maskpix), autosave slots and crash markers, re-run from an export's metadata (no Qt)."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image
from project_files import rewrite_member, sample_result

from maskpix_desktop.core import export, images
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import ImageSaveError, ProjectError
from maskpix_desktop.core.jobs import EditParams
from maskpix_desktop.core.session import Session, load_project, save_project, sessions_equal

H, W = 40, 56


@pytest.fixture
def session(rng_image) -> Session:
    image = rng_image(H, W, seed=5)
    mask = np.zeros((H, W), np.uint8)
    mask[5:25, 10:40] = 255
    mask[25, 10:40] = 97  # a soft brush edge
    soft = mask.astype(np.float32) / 255.0  # what the window sends: exact in an 8-bit PNG
    feathered = np.clip(np.random.default_rng(1).random((H, W), np.float32), 0, 1)  # not exact: .npy
    other_image = rng_image(H, W, seed=6)
    return Session(
        image=image,
        image_name="photo.png",
        image_path="/photos/photo.png",
        points=[(12.5, 7.25), (30.0, 20.0)],
        labels=[1, 0],
        box=(4.0, 3.5, 50.0, 33.0),
        mask=mask,
        params=EditParams("turn it blue", steps=12, seed=77, feather=0.5, latent_dilate=3),
        history=[
            sample_result(image, seed=1, mask=soft, mask_used=feathered),
            sample_result(other_image, seed=2, mask=None, mask_used=np.ones((H, W), bool)),
        ],
        current=0,
    )


def test_round_trip_is_exact(tmp_path, session):
    path = save_project(tmp_path / "work.maskpix", session)
    loaded = load_project(path)
    assert sessions_equal(session, loaded)
    # Spelled out for the record: every array bit for bit, params and metrics equal.
    np.testing.assert_array_equal(loaded.image, session.image)
    np.testing.assert_array_equal(loaded.mask, session.mask)
    assert loaded.mask.dtype == np.uint8
    assert loaded.points == session.points and loaded.labels == session.labels and loaded.box == session.box
    assert loaded.params == session.params
    for a, b in zip(session.history, loaded.history, strict=True):
        for name in ("baseline", "blended", "edit", "mask_used"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name
        assert a.request.params == b.request.params
        assert b.metrics["blended"]["bg_psnr"] == math.inf and math.isnan(b.metrics["blended"]["bg_ssim"])
        assert b.metrics["baseline"] == a.metrics["baseline"]
        assert (b.nsfw, b.timings, b.model, b.working_size) == (a.nsfw, a.timings, a.model, a.working_size)
    assert loaded.history[0].request.mask.dtype == np.float32
    np.testing.assert_array_equal(loaded.history[0].request.mask, session.history[0].request.mask)
    assert loaded.history[1].request.mask is None
    assert loaded.current == 0


def test_layout_is_readable_and_deduplicated(tmp_path, session):
    path = save_project(tmp_path / "work.maskpix", session)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        record = json.loads(zf.read("history/000/metadata.json"))
        png = zf.read("image.png")
    assert manifest["format"] == "maskpix-project" and manifest["version"] == 1
    assert manifest["image"]["file"] == "image.png" and manifest["image"]["name"] == "photo.png"
    assert manifest["layers"][0]["file"] == "layers/mask.png"
    assert {"prompts.json", "params.json", "history/000/baseline.png", "history/000/blended.png"} <= names
    # The first result's original is the session image: stored once and referenced.
    assert record["arrays"]["original"]["file"] == "image.png"
    assert "history/000/edit.png" not in names  # edit == baseline in this result
    assert record["arrays"]["mask_used"]["file"].endswith(".npz")  # arbitrary floats stay exact
    assert record["arrays"]["request_mask"]["file"].endswith(".png")  # k/255 floats fit a PNG
    assert (
        record["params"]["instruction"] == "make it gold" and record["metrics"]["blended"]["bg_psnr"] == "inf"
    )
    with Image.open(__import__("io").BytesIO(png)) as img:
        assert img.format == "PNG" and np.array_equal(np.asarray(img), session.image)


def test_empty_and_minimal_sessions(tmp_path):
    empty = load_project(save_project(tmp_path / "empty.maskpix", Session()))
    assert empty.image is None and empty.mask is None and empty.history == [] and empty.is_empty()
    one = Session(image=np.zeros((1, 1, 3), np.uint8), mask=np.full((1, 1), 255, np.uint8))
    assert sessions_equal(one, load_project(save_project(tmp_path / "one.maskpix", one)))


def test_newer_format_is_refused_with_a_clear_message(tmp_path, session):
    path = save_project(tmp_path / "new.maskpix", session)
    rewrite_member(path, "manifest.json", lambda raw: json.dumps({**json.loads(raw), "version": 2}).encode())
    with pytest.raises(ProjectError) as info:
        load_project(path)
    msg = str(info.value)
    assert "made by a newer MaskPix (format 2); this version reads format 1" in msg
    assert "new.maskpix" in msg


@pytest.mark.parametrize(
    "damage",
    [
        "garbage",
        "truncated",
        "empty",
        "no_manifest",
        "no_mask",
        "bad_json",
        "not_ours",
        "bad_png",
        "bad_params",
    ],
)
def test_damaged_projects_raise_project_error(tmp_path, session, damage):
    path = save_project(tmp_path / "p.maskpix", session)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(2000))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "no_manifest":
        rewrite_member(path, "manifest.json", lambda raw: None)
    elif damage == "no_mask":
        rewrite_member(path, "layers/mask.png", lambda raw: None)
    elif damage == "bad_json":
        rewrite_member(path, "params.json", lambda raw: raw[:10])
    elif damage == "not_ours":
        rewrite_member(path, "manifest.json", lambda raw: b'{"format": "something-else", "version": 1}')
    elif damage == "bad_png":
        rewrite_member(path, "history/001/blended.png", lambda raw: raw[:40])
    else:
        rewrite_member(path, "params.json", lambda raw: b'{"instruction": "x", "steps": 0}')
    with pytest.raises(ProjectError) as info:
        load_project(path)
    assert "p.maskpix" in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ProjectError, match="does not exist"):
        load_project(tmp_path / "nope.maskpix")
    with pytest.raises(ProjectError, match="folder"):
        load_project(tmp_path)


@pytest.mark.parametrize(("code", "text"), [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, session, monkeypatch, code, text):
    path = save_project(tmp_path / "p.maskpix", session)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    changed = Session(image=session.image, mask=np.zeros((H, W), np.uint8))
    with pytest.raises(ImageSaveError, match=text):
        save_project(path, changed)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.maskpix"]
    assert path.read_bytes() == before


def test_cache_skips_unchanged_arrays(tmp_path, session, monkeypatch):
    cache = sessions.SaveCache()
    save_project(tmp_path / "a.maskpix", session, cache=cache)
    encoded, hashed = [], []
    real_save, real_hash = Image.Image.save, images.image_hash
    monkeypatch.setattr(
        Image.Image, "save", lambda self, *a, **k: (encoded.append(1), real_save(self, *a, **k))[1]
    )
    monkeypatch.setattr(images, "image_hash", lambda a: (hashed.append(a), real_hash(a))[1])
    session.mask[0, 0] = 255  # changed in place: a writable array is hashed again
    session.image.flags.writeable = False
    save_project(tmp_path / "b.maskpix", session, cache=cache)
    assert len(encoded) == 1  # only the mask was encoded again
    hashed.clear()  # the image is read-only now: from here on its hash is remembered
    save_project(tmp_path / "b.maskpix", session, cache=cache)
    assert not any(a is session.image for a in hashed) and any(a is session.mask for a in hashed)
    assert sessions_equal(session, load_project(tmp_path / "b.maskpix"))
    save_project(tmp_path / "c.maskpix", Session(image=session.image), cache=cache)
    assert len(cache) == 1  # what the last save did not use is dropped


# ------------------------------------------------------------------------------ autosave and recovery


def _crash(saver: sessions.Autosaver) -> None:
    """What a kill does to a saver: its lock goes away with the process, its files stay."""
    saver.flush()
    os.close(saver._fd)
    saver._fd = None


def test_autosaver_writes_holds_the_marker_and_cleans_up(tmp_path, session):
    errors, saved = [], []
    saver = sessions.Autosaver(tmp_path, on_error=errors.append, on_saved=saved.append)
    saver.save(session)
    assert saver.flush(10)
    assert saver.path == tmp_path / "session.maskpix" and saver.path.is_file()
    assert json.loads((tmp_path / "session.lock").read_text())["pid"] == os.getpid()
    assert sessions_equal(session, load_project(saver.path))
    assert sessions.find_recoverable(tmp_path) == []  # a live session is not offered
    other = sessions.Autosaver(tmp_path)
    other.save_now(Session(image=session.image))
    assert other.path == tmp_path / "session-2.maskpix"  # a second window gets its own slot
    other.close()
    saver.close()
    assert not (tmp_path / "session.lock").exists() and saver.path.is_file()
    assert errors == [] and saved == [saver.path]
    assert sessions.find_recoverable(tmp_path) == []
    saver.save(session)  # after close: ignored, no thread, no error
    assert saver.flush(1)


def test_autosave_writes_each_array_once(tmp_path, session):
    saver = sessions.Autosaver(tmp_path)
    saver.save_now(session)
    blobs = tmp_path / "session.blobs"
    first = {p.name: p.stat().st_mtime_ns for p in blobs.iterdir()}
    with zipfile.ZipFile(saver.path) as zf:
        assert not [n for n in zf.namelist() if n.endswith((".png", ".npz"))]  # the zip holds JSON only
    assert len(first) == 10  # image, mask, 4 + 4 distinct arrays of the two results
    session.mask = session.mask.copy()
    session.mask[0, :] = 255
    saver.save_now(session)
    second = {p.name: p.stat().st_mtime_ns for p in blobs.iterdir()}
    assert len(second) == len(first) and len(set(second) - set(first)) == 1  # the new mask; old one pruned
    assert all(second[n] == first[n] for n in set(first) & set(second))  # the rest untouched
    assert sessions_equal(session, load_project(saver.path))
    # A blob gone missing is explained.
    next(blobs.glob("*.npz")).unlink()
    with pytest.raises(ProjectError, match="incomplete"):
        load_project(saver.path)
    saver.close()


def test_bad_blob_reference_is_refused(tmp_path, session):
    saver = sessions.Autosaver(tmp_path)
    saver.save_now(session)
    saver.close()

    def escape(raw: bytes) -> bytes:
        manifest = json.loads(raw)
        manifest["image"]["blob"] = "../../etc/passwd"
        return json.dumps(manifest).encode()

    rewrite_member(saver.path, "manifest.json", escape)
    with pytest.raises(ProjectError, match="bad image reference"):
        load_project(saver.path)


def test_newest_request_wins(tmp_path, session):
    saver = sessions.Autosaver(tmp_path)
    for seed in range(5):
        session.params = EditParams(f"edit {seed}")
        saver.save(Session(image=session.image, params=session.params))
    saver.flush(10)
    assert load_project(saver.path).params.instruction == "edit 4"
    assert saver.saves <= 5
    saver.close()


def test_a_crashed_session_is_offered_then_resolved(tmp_path, session):
    saver = sessions.Autosaver(tmp_path)
    saver.save_now(session)
    _crash(saver)
    (found,) = sessions.find_recoverable(tmp_path)
    assert found.path == tmp_path / "session.maskpix" and found.marker["pid"] == os.getpid()
    assert "photo.png, 2 results, autosaved" in found.describe()
    # Until the user answers, a new window must not overwrite it: it takes the next slot.
    fresh = sessions.Autosaver(tmp_path)
    fresh.save_now(Session(image=session.image))
    assert fresh.path == tmp_path / "session-2.maskpix"
    fresh.close()
    sessions.discard_recoverable(found)
    assert sessions.find_recoverable(tmp_path) == []
    assert not (tmp_path / "session.maskpix").exists() and not (tmp_path / "session.blobs").exists()
    with zipfile.ZipFile(tmp_path / "previous.maskpix") as zf:
        assert "image.png" in zf.namelist()  # kept self-contained
    assert sessions_equal(session, load_project(tmp_path / "previous.maskpix"))
    # Answered: the slot is free again.
    again = sessions.Autosaver(tmp_path)
    again.save_now(Session(image=session.image))
    assert again.path == tmp_path / "session.maskpix"
    again.close()


def test_stale_marker_without_autosave_is_dropped(tmp_path):
    (tmp_path / "session.lock").write_text("{}")
    assert sessions.find_recoverable(tmp_path) == []
    assert not (tmp_path / "session.lock").exists()
    assert sessions.find_recoverable(tmp_path / "missing") == []


def test_autosave_failure_is_reported_not_raised(tmp_path, session):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    errors = []
    saver = sessions.Autosaver(blocker / "autosave", on_error=errors.append)
    assert not saver.save_now(session)
    saver.save(session)
    saver.flush(10)
    assert len(errors) == 2 and saver.last_error and str(blocker) in errors[0]
    saver.close()


def test_data_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(tmp_path / "d"))
    assert sessions.autosave_dir() == tmp_path / "d" / "autosave"
    monkeypatch.delenv("MASKPIX_DATA_DIR")
    assert sessions.data_dir().name == "maskpix"


# ------------------------------------------------------------------------------ re-run from an export


def test_rerun_request_from_sidecar_and_png(tmp_path, session):
    result = session.history[0]
    paths = export.export_result(result, tmp_path / "out", stem="photo")
    for source in (paths["json"], paths["blended"], paths["baseline"], paths["grid"]):
        req = sessions.rerun_from_sidecar(source)
        np.testing.assert_array_equal(req.image, result.request.image)
        np.testing.assert_array_equal(req.mask, result.request.mask > 0.5)
        assert req.params == result.request.params


def test_rerun_refusals(tmp_path, session):
    result = session.history[0]
    out = tmp_path / "out"
    paths = export.export_result(result, out, items=["blended", "json"])
    with pytest.raises(ProjectError, match="did not include the original image"):
        sessions.rerun_from_sidecar(paths["json"])
    full = export.export_result(result, tmp_path / "full")
    full["mask"].unlink()
    with pytest.raises(ProjectError, match="'mask.png' is not beside it"):
        sessions.rerun_from_sidecar(full["json"])
    plain = tmp_path / "plain.png"
    images.save_image(plain, result.blended)
    with pytest.raises(ProjectError, match="no MaskPix metadata"):
        sessions.rerun_from_sidecar(plain)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProjectError, match="not MaskPix metadata"):
        sessions.rerun_from_sidecar(bad)
    with pytest.raises(ProjectError, match="does not exist"):
        sessions.rerun_from_sidecar(tmp_path / "missing.json")


def test_session_module_is_light():
    probe = (
        "import sys, maskpix_desktop.core.session\n"
        "heavy = ('torch', 'PySide6', 'diffusers', 'segment_anything')\n"
        "print([m for m in sys.modules if m.split('.')[0] in heavy])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
