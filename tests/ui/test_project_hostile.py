"""Hostile project, sidecar, autosave and models-folder files: each is refused with a message naming the
file and the field (never a raw exception, never a half-valid Session), within a memory budget, and the
app always starts."""

from __future__ import annotations

import io
import json
import os
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeService
from PIL import Image
from project_files import rewrite_member, sample_result
from PySide6.QtCore import QSettings

from maskpix_desktop.core import export
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import ProjectError, WeightsError
from maskpix_desktop.core.jobs import EditParams
from maskpix_desktop.core.service import MANIFEST, ModelChoice, ModelService
from maskpix_desktop.core.session import Session, load_project, save_project, sessions_equal
from maskpix_desktop.core.session import reader as project_reader
from maskpix_desktop.ui import app as app_module

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

H, W = 40, 56


@pytest.fixture
def session(rng_image) -> Session:
    """A session with one result (so history records can be damaged too)."""
    image = rng_image(H, W, seed=5)
    mask = np.zeros((H, W), np.uint8)
    mask[5:25, 10:40] = 255
    return Session(
        image=image,
        image_name="photo.png",
        image_path="/photos/photo.png",
        points=[(12.5, 7.25)],
        labels=[1],
        box=(4.0, 3.5, 50.0, 33.0),
        mask=mask,
        params=EditParams("turn it blue", steps=12, seed=77),
        history=[sample_result(image, seed=1, mask=mask.astype(np.float32) / 255.0, mask_used=mask > 0)],
        current=0,
    )


@pytest.fixture
def project(tmp_path, session) -> Path:
    return save_project(tmp_path / "work.maskpix", session)


def _edit_json(path: Path, member: str, change) -> None:
    """Rewrite JSON member ``member``: ``change(obj)`` edits it in place, or returns raw text to store."""

    def apply(raw: bytes) -> bytes:
        obj = json.loads(raw)
        out = change(obj)
        return (out if isinstance(out, str) else json.dumps(obj)).encode()

    rewrite_member(path, member, apply)


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(ProjectError) as info:
        load_project(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------------------ 1. mistyped fields


@pytest.mark.parametrize(
    ("case", "text", "field"),
    [
        ("nan_point", '{"points": [[NaN, 1.0]], "labels": [1], "box": null}', "points[0]"),
        ("inf_point", '{"points": [[1e999, 1.0]], "labels": [1], "box": null}', "points[0]"),
        ("point_as_text", '{"points": [["a", 1.0]], "labels": [1], "box": null}', "points[0]"),
        ("points_not_a_list", '{"points": "abc", "labels": [], "box": null}', "points"),
        ("point_of_three", '{"points": [[1, 2, 3]], "labels": [1], "box": null}', "points[0]"),
        ("label_as_text", '{"points": [[1, 2]], "labels": ["x"], "box": null}', "labels[0]"),
        ("label_out_of_range", '{"points": [[1, 2]], "labels": [7], "box": null}', "labels[0]"),
        ("mismatched_lengths", '{"points": [[1, 2], [3, 4]], "labels": [1], "box": null}', "2 prompt points"),
        ("box_of_three", '{"points": [], "labels": [], "box": [1, 2, 3]}', "box"),
        ("box_nan", '{"points": [], "labels": [], "box": [1, 2, NaN, 4]}', "box"),
        ("box_as_text", '{"points": [], "labels": [], "box": "x"}', "box"),
    ],
)
def test_mistyped_prompts_are_refused(project, case, text, field):
    rewrite_member(project, "prompts.json", lambda raw: text.encode())
    _refused(project, "prompts.json", field)


@pytest.mark.parametrize(
    ("case", "change", "field"),
    [
        ("image_path_number", lambda m: m["image"].__setitem__("path", 123), "image.path"),
        ("image_path_list", lambda m: m["image"].__setitem__("path", ["a"]), "image.path"),
        ("image_name_object", lambda m: m["image"].__setitem__("name", {"a": 1}), "image.name"),
        ("image_not_an_object", lambda m: m.__setitem__("image", "photo.png"), "image"),
        ("shape_as_text", lambda m: m["image"].__setitem__("shape", "40x56"), "image.shape"),
        ("dtype_object", lambda m: m["image"].__setitem__("dtype", "|O"), "image.dtype"),
        ("history_not_a_list", lambda m: m.__setitem__("history", {"a": 1}), "history"),
        ("history_name_number", lambda m: m.__setitem__("history", [5]), "history[0]"),
        ("layers_of_text", lambda m: m.__setitem__("layers", ["mask"]), "layers[0]"),
        ("params_name_number", lambda m: m.__setitem__("params", 5), "params"),
    ],
)
def test_mistyped_manifest_fields_are_refused(project, case, change, field):
    _edit_json(project, "manifest.json", change)
    _refused(project, "manifest.json", f"'{field}'")


@pytest.mark.parametrize(
    ("case", "value", "field"),
    [
        ("instruction_number", 5, "params.instruction"),
        ("seed_text", "abc", "params.seed"),
        ("steps_overflow", "1e999", "params.steps"),
        ("steps_fraction", "2.5", "params.steps"),
        ("feather_nan", "NaN", "params.feather"),
        ("feather_true", "true", "params.feather"),
        ("steps_zero", "0", "params.steps"),  # EditParams' own check, turned into a ProjectError
    ],
)
def test_mistyped_params_are_refused(project, case, value, field):
    name = field.split(".")[1]
    raw = json.dumps(value) if not isinstance(value, str) or value == "abc" else value

    def change(obj):
        text = json.dumps({**obj, name: "@@"})
        return text.replace('"@@"', raw)

    _edit_json(project, "params.json", change)
    _refused(project, "params.json", field)


def test_any_failure_of_edit_params_becomes_a_project_error(project, monkeypatch):
    def boom(self):
        raise RuntimeError("seed is cursed")

    monkeypatch.setattr(EditParams, "__post_init__", boom)
    _refused(project, "invalid edit parameters", "'params.seed'", "seed is cursed")


@pytest.mark.parametrize(
    ("case", "key", "value", "field"),
    [
        ("timings_list", "timings", [1, 2], "timings"),
        ("timing_text", "timings", {"total_s": "fast"}, "timings.total_s"),
        ("model_list", "model", ["ip2p"], "model"),
        ("model_nested", "model", {"ip2p": {"a": 1}}, "model.ip2p"),
        ("working_size_text", "working_size", "abc", "working_size"),
        ("working_size_three", "working_size", [1, 2, 3], "working_size"),
        ("nsfw_text", "nsfw", "yes", "nsfw"),
        ("metrics_text", "metrics", "good", "metrics"),
        ("metric_value_list", "metrics", {"blended": {"bg_psnr": [1]}}, "metrics.blended.bg_psnr"),
        ("job_id_text", "job_id", "1", "job_id"),
        ("arrays_list", "arrays", [], "arrays"),
        ("params_seed_text", "params", {"instruction": "x", "seed": "abc"}, "params.seed"),
    ],
)
def test_mistyped_history_records_are_refused(project, case, key, value, field):
    _edit_json(project, "history/000/metadata.json", lambda m: m.__setitem__(key, value))
    _refused(project, "history/000/metadata.json", f"'{field}'")


def test_history_images_of_another_size_are_refused(tmp_path, session, rng_image):
    result = session.history[0]
    small = rng_image(H // 2, W // 2, seed=9)
    from dataclasses import replace

    session.history = [replace(result, baseline=small)]
    path = save_project(tmp_path / "mixed.maskpix", session)
    _refused(path, "history/000/metadata.json", "'arrays.baseline'")


@pytest.mark.parametrize(
    ("case", "change", "needle"),
    [
        ("seed_text", lambda m: m["params"].__setitem__("seed", "abc"), "params.seed"),
        ("instruction_number", lambda m: m["params"].__setitem__("instruction", 5), "params.instruction"),
        ("feather_nan", lambda m: m["params"].__setitem__("feather", float("nan")), "params.feather"),
        ("files_not_an_object", lambda m: m.__setitem__("files", ["original.png"]), "files"),
        ("original_name_number", lambda m: m["files"].__setitem__("original", 5), "files.original"),
        ("image_size_text", lambda m: m.__setitem__("image_size", "40x56"), "image_size"),
        ("image_size_nested", lambda m: m.__setitem__("image_size", [[40], 56]), "image_size"),
    ],
)
def test_mistyped_sidecar_fields_are_refused(tmp_path, session, case, change, needle):
    paths = export.export_result(session.history[0], tmp_path / "out", stem="photo")
    meta = json.loads(paths["json"].read_text())
    change(meta)
    paths["json"].write_text(json.dumps(meta))  # NaN written as the bare token, as a hostile file would
    with pytest.raises(ProjectError) as info:
        sessions.rerun_from_sidecar(paths["json"])
    assert str(paths["json"]) in str(info.value) and f"'{needle}'" in str(info.value), str(info.value)


def test_duplicated_member_is_refused(project):
    with zipfile.ZipFile(project, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("params.json", json.dumps({"instruction": "the other copy"}))
    _refused(project, "two members named 'params.json'")


def test_deeply_nested_json_is_refused(project):
    rewrite_member(project, "prompts.json", lambda raw: b"[" * 100_000 + b"]" * 100_000)
    _refused(project, "prompts.json", "nested too deeply")


# ------------------------------------------------------------------------------ 3. memory bombs


def test_project_referring_many_times_to_one_image_decodes_it_once(tmp_path, rng_image):
    image = rng_image(600, 800, seed=2)  # 1.4 MB decoded
    mask = np.zeros((600, 800), np.uint8)
    s = Session(image=image, mask=mask, history=[sample_result(image, seed=3, mask=None, mask_used=mask > 0)])
    path = save_project(tmp_path / "many.maskpix", s, compress_level=1)
    # 160 history records (160 members), each referring to the same image files.
    with zipfile.ZipFile(path) as zf:
        record = zf.read("history/000/metadata.json")
    names = [f"history/{i:03d}/metadata.json" for i in range(160)]
    with zipfile.ZipFile(path, "a") as zf:
        for name in names[1:]:
            zf.writestr(name, record)
    _edit_json(path, "manifest.json", lambda m: m.__setitem__("history", names))
    decoded = []
    real = project_reader.ProjectReader._decode_png

    def counted(self, *args):
        decoded.append(args[1])
        return real(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(project_reader.ProjectReader, "_decode_png", counted)
        t0 = time.perf_counter()
        loaded = load_project(path, budget=40 << 20)  # 160 decodes would need ~700 MB
        elapsed = time.perf_counter() - t0
    assert len(loaded.history) == 160 and len(decoded) == len(set(decoded)) == 5  # each member once
    first, last = loaded.history[0], loaded.history[-1]
    assert last is not first and last.baseline is first.baseline  # shared ...
    assert not last.baseline.flags.writeable  # ... and read-only
    assert loaded.image is first.request.image and np.array_equal(loaded.image, image)
    assert elapsed < 20
    # One record listed 160 times is read once: the same result.
    _edit_json(path, "manifest.json", lambda m: m.__setitem__("history", names[:1] * 160))
    again = load_project(path, budget=40 << 20)
    assert len(again.history) == 160 and again.history[-1] is again.history[0]


def test_total_budget_refuses_a_project_that_unpacks_past_it(project, session):
    _refused_budget = pytest.raises(ProjectError, match="too large to open")
    with _refused_budget as info:
        load_project(project, budget=20_000)
    assert str(project) in str(info.value)
    assert sessions_equal(load_project(project), session)  # the default budget takes it
    assert 1 << 30 <= project_reader.default_budget() <= project_reader.MAX_PROJECT_BYTES


def test_json_member_past_the_cap_is_refused(project, monkeypatch):
    monkeypatch.setattr(project_reader, "MAX_JSON_BYTES", 1 << 20)
    # ~2 KB compressed, 2 MiB inflated
    rewrite_member(project, "params.json", lambda raw: b" " * (2 << 20) + raw)
    _refused(project, "params.json", "at most 1,048,576")


def _patch_sizes(path: Path, member: str, size: int) -> None:
    """Make the zip's local and central headers of ``member`` claim ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, off_size, off_name in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        pos = 0
        while (pos := data.find(sig, pos)) >= 0:
            if data[pos + off_name : pos + off_name + len(name)] == name:
                struct.pack_into("<I", data, pos + off_size, size)
            pos += 4
    path.write_bytes(bytes(data))


def test_json_member_that_inflates_past_its_header_is_refused(project):
    rewrite_member(project, "params.json", lambda raw: b" " * (4 << 20) + raw)
    _patch_sizes(project, "params.json", 100)  # claims 100 bytes, inflates to 4 MiB
    _refused(project, "params.json")


def _npz(header_shape: tuple[int, ...], dtype: str, payload: bytes) -> bytes:
    """An .npz whose array.npy has the given header and (possibly short) payload."""
    inner = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        inner, {"descr": dtype, "fortran_order": False, "shape": header_shape}
    )
    inner.write(payload)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("array.npy", inner.getvalue())
    return buf.getvalue()


def _npz_member(project: Path) -> tuple[str, dict]:
    with zipfile.ZipFile(project) as zf:
        record = json.loads(zf.read("history/000/metadata.json"))
    ref = record["arrays"]["request_mask"]
    assert ref["file"].endswith(".npz") or ref["file"].endswith(".png")
    return ref["file"], ref


def test_npz_header_is_checked_before_decompressing(tmp_path, session):
    session.history[0].request.mask[0, 0] = 0.123  # not k/255: stored as .npz
    path = save_project(tmp_path / "npz.maskpix", session)
    member, ref = _npz_member(path)
    assert member.endswith(".npz") and ref["shape"] == [H, W]
    # The header lies about the shape; the data is absent: refused from the header alone.
    rewrite_member(path, member, lambda raw: _npz((4000, 5600), "<f4", b""))
    _refused(path, member, "holds float32 (4000, 5600), expected float32 (40, 56)")
    # Header and reference agree on a 40 GB array: refused by the budget before any allocation.
    _edit_json(
        path,
        "history/000/metadata.json",
        lambda m: m["arrays"]["request_mask"].__setitem__("shape", [100_000, 100_000]),
    )
    rewrite_member(path, member, lambda raw: _npz((100_000, 100_000), "<f4", b"\0" * 64))
    _refused(path, "too large to open", member)


def test_npz_member_larger_than_its_header_is_refused(tmp_path, session):
    session.history[0].request.mask[0, 0] = 0.123
    path = save_project(tmp_path / "npz.maskpix", session)
    member, _ = _npz_member(path)
    rewrite_member(path, member, lambda raw: _npz((H, W), "<f4", b"\0" * (H * W * 4 + (8 << 20))))
    _refused(path, member, "larger than its header says")


def test_png_header_is_checked_before_decoding(project):
    def lie(raw: bytes) -> bytes:
        data = bytearray(raw)
        struct.pack_into(">II", data, 16, 20_000, 20_000)  # IHDR: 400 megapixels
        return bytes(data)

    rewrite_member(project, "history/000/baseline.png", lie)
    _refused(project, "history/000/baseline.png", "8-bit PNG of 20000x20000x3")
    _edit_json(
        project,
        "history/000/metadata.json",
        lambda m: m["arrays"]["baseline"].__setitem__("shape", [20_000, 20_000, 3]),
    )
    _refused(project, "too large to open", "20000x20000")


# ---------------------------------------------------------------------- 2. start-up with a bad autosave


def _crashed_autosave(folder: Path, s: Session) -> Path:
    saver = sessions.Autosaver(folder)
    saver.save_now(s)
    os.close(saver._fd)  # what a kill does: the OS drops the lock, the marker file stays
    saver._fd = None
    return saver.path


def _launch(qtbot, tmp_path, ask, image: str | None = None):
    argv = ["--no-models", "--device", "cpu"] + ([image] if image else [])
    settings = QSettings(str(tmp_path / "launch.ini"), QSettings.Format.IniFormat)
    win = app_module.build_window(
        app_module.parse_args(argv), ask_restore=ask, settings=settings, service_factory=FakeService
    )
    qtbot.addWidget(win)
    return win


def _manifest_text(text: str):
    def change(raw: bytes) -> bytes:
        return raw.replace(b'"current": 0', f'"current": {text}'.encode())

    return "manifest.json", change


def _record_field(key: str, value):
    def change(raw: bytes) -> bytes:
        obj = json.loads(raw)
        obj[key] = value
        return json.dumps(obj).encode()

    return "history/000/metadata.json", change


AUTOSAVE_DAMAGE = {
    "current_text": _manifest_text('"x"'),
    "current_overflow": _manifest_text("1e999"),
    "current_null": _manifest_text("null"),
    "current_nan": _manifest_text("NaN"),
    "timings_list": _record_field("timings", [1.0, 2.0]),
    "model_list": _record_field("model", ["ip2p"]),
    "deeply_nested": ("manifest.json", lambda raw: b'{"format": "maskpix-project", "version": 1, "image": '
                      + b"[" * 100_000 + b"]" * 100_000 + b"}"),
}  # fmt: skip


@pytest.mark.parametrize("answer", [True, False], ids=["restore", "decline"])
@pytest.mark.parametrize("damage", sorted(AUTOSAVE_DAMAGE))
def test_malformed_autosave_never_stops_the_start_up(qtbot, tmp_path, monkeypatch, session, damage, answer):
    data = tmp_path / "data"
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(data))
    monkeypatch.delenv("MASKPIX_RESTORE", raising=False)
    path = _crashed_autosave(data / "autosave", session)
    member, change = AUTOSAVE_DAMAGE[damage]
    rewrite_member(path, member, change)
    damaged = path.read_bytes()
    asked = []
    win = _launch(qtbot, tmp_path, ask=lambda w, text: asked.append(text) or answer)
    try:
        assert len(asked) == 1  # the question itself did not crash
        assert ("damaged" in asked[0]) == (member == "manifest.json"), asked
        assert win.canvas.image() is None and win.results.history() == []
        (kept,) = (data / "autosave").glob("unreadable-*.maskpix")
        assert kept.read_bytes() == damaged  # kept as it was, under a new name
        assert (data / "autosave" / kept.with_suffix(".blobs").name).is_dir()  # with its images
        assert win.banner.isVisible() and str(kept) in win.banner.label.text()
        assert not path.exists() and not path.with_suffix(".lock").exists()
    finally:
        win.close()
    again = _launch(qtbot, tmp_path, ask=lambda w, text: pytest.fail("offered twice"))
    again.close()


@pytest.mark.parametrize("marker", [b"[" * 4096, b"\xff\xfe", b'{"pid": [1, 2]}', b"[]"])
def test_malformed_crash_marker_never_stops_the_start_up(qtbot, tmp_path, monkeypatch, session, marker):
    data = tmp_path / "data"
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(data))
    monkeypatch.setenv("MASKPIX_RESTORE", "yes")
    path = _crashed_autosave(data / "autosave", session)
    path.with_suffix(".lock").write_bytes(marker)
    win = _launch(qtbot, tmp_path, ask=None)
    try:
        assert sessions_equal(win.session(), session)  # the autosave itself is fine: restored
    finally:
        win.close()


def test_bad_autosave_notice_survives_the_command_line_image(qtbot, tmp_path, monkeypatch, session, photo):
    data = tmp_path / "data"
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(data))
    monkeypatch.delenv("MASKPIX_RESTORE", raising=False)
    path = _crashed_autosave(data / "autosave", session)
    rewrite_member(path, *AUTOSAVE_DAMAGE["current_text"])
    win = _launch(qtbot, tmp_path, ask=lambda w, text: True, image=str(photo))
    try:
        assert win.canvas.image() is not None  # the restore failed, so the photo opened
        (kept,) = (data / "autosave").glob("unreadable-*.maskpix")
        assert win.banner.isVisible() and str(kept) in win.banner.label.text()
    finally:
        win.close()


def test_restore_offer_survives_an_unexpected_failure(qtbot, tmp_path, monkeypatch, session):
    data = tmp_path / "data"
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(data))
    _crashed_autosave(data / "autosave", session)

    def broken(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sessions, "find_recoverable", broken)
    win = _launch(qtbot, tmp_path, ask=lambda w, text: pytest.fail("nothing can be offered"))
    try:
        assert win.banner.isVisible() and "could not be checked for recovery" in win.banner.label.text()
    finally:
        win.close()


# ---------------------------------------------------------------------- 11. autosave blobs and temp files


@pytest.mark.parametrize("damage", ["emptied", "same_size"])
def test_damaged_autosave_blob_is_written_again(tmp_path, session, damage):
    saver = sessions.Autosaver(tmp_path)
    try:
        saver.save_now(session)
        blobs = sorted((tmp_path / "session.blobs").iterdir())
        victim = next(b for b in blobs if b.suffix == ".png")
        good = victim.read_bytes()
        if damage == "emptied":
            victim.write_bytes(b"")
        else:
            victim.write_bytes(bytes(len(good)))  # same size, other bytes
            os.utime(victim, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
        saver.save_now(session)  # the same session: every blob would be reused as it is
        assert victim.read_bytes() == good
        assert sessions_equal(load_project(saver.path), session)
    finally:
        saver.close()


def test_intact_autosave_blobs_are_not_rewritten(tmp_path, session):
    saver = sessions.Autosaver(tmp_path)
    try:
        saver.save_now(session)
        before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "session.blobs").iterdir()}
        saver.save_now(session)
        after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "session.blobs").iterdir()}
        assert before == after
    finally:
        saver.close()


def test_stale_temp_files_of_interrupted_autosaves_are_removed(tmp_path, session):
    blobs = tmp_path / "session.blobs"
    blobs.mkdir()
    stale = [tmp_path / ".session.maskpix.abc123.tmp", blobs / f".{'0' * 40}.png.xyz.tmp"]
    other = tmp_path / ".session-2.maskpix.def456.tmp"  # another window's slot: not ours to touch
    for p in [*stale, other]:
        p.write_bytes(b"partial")
    saver = sessions.Autosaver(tmp_path)
    try:
        saver.save_now(session)
        assert not any(p.exists() for p in stale) and other.exists()
    finally:
        saver.close()
    # A crashed slot's temp files go when its autosave is answered for.
    crashed = _crashed_autosave(tmp_path / "b", session)
    leftover = crashed.with_name(f".{crashed.name}.qqq.tmp")
    leftover.write_bytes(b"partial")
    (rec,) = sessions.find_recoverable(tmp_path / "b")
    assert sessions.discard_recoverable(rec).kept == crashed.with_name("previous.maskpix")
    assert not leftover.exists()


# ------------------------------------------------------------------------------ 13. maskpix-models.json


@pytest.mark.parametrize(
    ("case", "content", "needles"),
    [
        ("sam_number", {"sam": 5}, ["'sam' must be a path", "5"]),
        ("ip2p_null", {"ip2p": None}, ["'ip2p' must be a path"]),
        ("json_list", ["tiny-sam.pth"], ["must hold a JSON object", "not a list"]),
        ("json_number", 5, ["must hold a JSON object"]),
        ("clip_text", {"clip": "ViT-B-32"}, ["'clip' must be an object"]),
        ("clip_unknown_key", {"clip": {"model_nam": "x"}}, ["'clip.model_nam'", "did you mean 'model_name'"]),
        ("clip_value_number", {"clip": {"pretrained": 5}}, ["'clip.pretrained' must be text"]),
        ("unknown_key", {"sma": "x.pth"}, ["unknown key 'sma'", "did you mean 'sam'"]),
        ("deeply_nested", "[" * 100_000 + "]" * 100_000, ["is not valid JSON"]),
    ],
)
def test_malformed_models_json_names_the_file_and_key(tmp_path, case, content, needles):
    path = tmp_path / MANIFEST
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    for entry in (
        lambda: ModelChoice(models_dir=str(tmp_path)).with_manifest(),
        lambda: ModelService(ModelChoice(models_dir=str(tmp_path), device="cpu")),
    ):
        with pytest.raises(WeightsError) as info:
            entry()
        msg = str(info.value)
        assert str(path) in msg and all(n in msg for n in needles), msg


# ---------------------------------------------------------------------- issue 22.4: absolute image paths


def test_image_opened_from_a_relative_path_is_stored_absolute(tmp_path, session, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session.image_path = os.path.join("pics", "photo.png")
    session.image_name = ""
    path = save_project(tmp_path / "rel.maskpix", session)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["image"]["path"] == str(tmp_path / "pics" / "photo.png")
    assert manifest["image"]["name"] == "photo.png"  # the name kept for display
    monkeypatch.chdir(tmp_path.parent)  # the working folder no longer matters
    loaded = load_project(path)
    assert loaded.image_path == str(tmp_path / "pics" / "photo.png") and loaded.image_name == "photo.png"


def test_png_of_the_wrong_kind_is_refused(project):
    def paletted(raw: bytes) -> bytes:
        buf = io.BytesIO()
        Image.open(io.BytesIO(raw)).convert("P").save(buf, format="PNG")
        return buf.getvalue()

    rewrite_member(project, "history/000/blended.png", paletted)
    _refused(project, "history/000/blended.png", "not an 8-bit grey, RGB or RGBA PNG")
