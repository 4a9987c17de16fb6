"""Hardening through the main window: a bad-input corpus, bad weights, out-of-memory, cancel, closing mid-run,
disk full on export and save, and reproducible runs (same inputs -> same bytes; re-run from an export)."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import FakeEditor, FakeService
from PIL import Image
from PySide6.QtCore import QSettings, Qt

from maskpix_desktop.core import export, images, masks
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import OutOfMemoryError
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.ui.canvas import Prompts
from maskpix_desktop.ui.main_window import MainWindow
from maskpix_desktop.ui.worker import _LIVE

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

H, W = 48, 64


# ----------------------------------------------------------------------------------------- fakes


# --------------------------------------------------------------------------------------- helpers


@pytest.fixture
def make_window(qtbot, tmp_path) -> Callable[..., MainWindow]:
    """``make_window(service=None, **kwargs)``: a shown window (fake service unless ``service`` is False)."""
    made: list[MainWindow] = []

    def make(service: Any = None, **kwargs: Any) -> MainWindow:
        kwargs.setdefault("settings", QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
        kwargs.setdefault("device", "cpu")
        kwargs.setdefault("autosave_dir", tmp_path / f"autosave{len(made)}")
        if service is not False:
            svc = service or FakeService()
            kwargs.setdefault("service_factory", lambda: svc)
            kwargs.setdefault("load_models", False)
        win = MainWindow(**kwargs)
        qtbot.addWidget(win)
        win.resize(1000, 700)
        win.show()
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()


def _photo(tmp_path: Path, rng_image, name: str = "photo.png", seed: int = 3) -> Path:
    path = tmp_path / name
    images.save_image(path, rng_image(H, W, seed=seed))
    return path


def _run_edit(qtbot, win: MainWindow, instruction: str = "make it red", steps: int = 2) -> Any:
    done: list[Any] = []
    win.client.message.connect(lambda m: m.task == "edit" and m.final and done.append(m))
    win.edit_panel.instruction.setText(instruction)
    win.edit_panel.steps.setValue(steps)
    qtbot.mouseClick(win.edit_panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(done), timeout=20_000)
    return done[0]


def _busy_session(qtbot, win: MainWindow, photo: Path) -> None:
    """An image, SAM prompts, a brushed mask, parameters and one result."""
    assert win.open_image(photo)
    win.canvas.set_prompts(Prompts(((20.0, 15.0),), (1,), (5.0, 5.0, 40.0, 30.0)))
    qtbot.waitUntil(lambda: win.canvas.mask().any(), timeout=10_000)
    mask = win.canvas.mask()
    mask[30:40, 10:50] = 128
    win.canvas.set_mask(mask)
    assert _run_edit(qtbot, win, "make it gold").kind == "finished"
    win.edit_panel.set_params(EditParams("now make it silver", steps=9, seed=4321, text_scale=6.5))


# ------------------------------------------------------------------------------------ bad inputs


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w x h`` (a decompression bomb as far as any reader can tell)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _jpeg(img: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


@pytest.fixture
def corpus(tmp_path, rng_image) -> dict[str, tuple[Path, Any]]:
    """name -> (file, expected): a message fragment (refused) or a check(array) (loads)."""
    d = tmp_path / "corpus"
    d.mkdir()
    cases: dict[str, tuple[Path, Any]] = {}

    def add(name: str, data: bytes, expected: Any) -> None:
        (d / name).write_bytes(data)
        cases[name] = (d / name, expected)

    rgb = Image.fromarray(rng_image(40, 60, seed=9))
    add("empty.jpg", b"", "the file is empty (0 bytes)")
    full = _jpeg(rgb)
    add("truncated.jpg", full[: len(full) // 2], "damaged or truncated")
    add("notes.png", b"These are my notes, not a picture.\n" * 20, "not an image file")
    add("bomb.png", _png_header_only(30000, 30000), "too large")

    cmyk = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # pure red in CMYK
    add(
        "cmyk.jpg",
        _jpeg(cmyk),
        lambda a: a.shape == (24, 32, 3) and a[..., 0].min() > 200 and a[..., 1].max() < 60,
    )

    ramp = (np.arange(64, dtype=np.uint16)[None, :] * 1040).repeat(8, axis=0)  # 0..65520
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    want16 = ((ramp.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    add("gray16.png", buf.getvalue(), lambda a: a.shape == (8, 64, 3) and np.array_equal(a[..., 0], want16))

    pal = Image.new("P", (20, 10), 0)
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    pal.paste(1, (10, 0, 20, 10))
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    add(
        "palette_alpha.png",
        buf.getvalue(),
        lambda a: a.shape == (10, 20, 3) and (a[:, :10] == 255).all() and (a[:, 10:] == (200, 30, 30)).all(),
    )

    frames = [Image.new("RGB", (16, 12), c) for c in ((0, 0, 255), (0, 255, 0), (255, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated.gif", buf.getvalue(), lambda a: a.shape == (12, 16, 3) and (a[..., 2] > 200).all())

    rot = np.zeros((20, 40, 3), np.uint8)
    rot[:, :20] = (220, 20, 20)  # left half red, right half blue; orientation 6 = rotate 90° clockwise
    rot[:, 20:] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    add(
        "exif_rotated.jpg",
        _jpeg(Image.fromarray(rot), exif=exif.tobytes()),
        lambda a: a.shape == (40, 20, 3) and a[5, 10, 0] > 150 and a[35, 10, 2] > 150,
    )
    add(
        "one_pixel.png",
        _png_bytes(np.array([[[10, 200, 30]]], np.uint8)),
        lambda a: a.tolist() == [[[10, 200, 30]]],
    )
    thin = rng_image(16, 4000, seed=2)
    add("thin.png", _png_bytes(thin), lambda a: np.array_equal(a, thin))
    return cases


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_input_corpus_through_the_window(make_window, qtbot, tmp_path, rng_image, corpus):
    win = make_window()
    _busy_session(qtbot, win, _photo(tmp_path, rng_image))
    before, title = win.session(), win.windowTitle()
    refused = {k: v for k, v in corpus.items() if isinstance(v[1], str)}
    assert len(refused) == 4
    for name, (path, fragment) in refused.items():
        win.banner.hide()
        assert not win.open_image(path), name
        text = win.banner.label.text()
        assert win.banner.isVisible() and fragment in text and name in text, (name, text)
        assert sessions.sessions_equal(before, win.session()), name  # image, mask, prompts, results
        assert win.windowTitle() == title
    for name, (path, check) in corpus.items():
        if name in refused:
            continue
        assert win.open_image(path), (name, win.banner.label.text())
        assert not win.banner.isVisible()
        image = win.canvas.image()
        assert image.dtype == np.uint8 and check(image), name
        assert win.canvas.mask().shape == image.shape[:2] and not win.canvas.mask().any()
    assert win.results.history() == []  # the history is per image: another image starts without results


def test_tiny_and_thin_images_run_sam(make_window, qtbot, corpus, tiny_models_dir):
    win = make_window(service=False, models_dir=str(tiny_models_dir), load_models=False)
    for name, point in (("one_pixel.png", (0.2, 0.4)), ("thin.png", (2000.0, 8.0))):
        done: list[Any] = []
        win.client.message.connect(lambda m, d=done: m.task == "segment" and m.final and d.append(m))
        assert win.open_image(corpus[name][0])
        win.canvas.set_prompts(Prompts((point,), (1,)))
        qtbot.waitUntil(
            lambda d=done: any(m.kind != "finished" or m.result is not None for m in d), timeout=30_000
        )
        final = [m for m in done if m.kind != "finished" or m.result is not None][-1]
        assert final.kind == "finished", final.error
        assert win.candidate_list.count() == 3
        assert win.canvas.mask().shape == win.canvas.image().shape[:2]
        assert not win.banner.isVisible()


# ------------------------------------------------------------------------------------ bad weights


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _vit_b_shaped(path: Path) -> Path:
    """A checkpoint with every vit_b tensor shape (and no real data: each tensor is a stride-0 view)."""
    import torch
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        sd = sam_model_registry["vit_b"]().state_dict()
    one = torch.zeros(1)
    torch.save({k: one.expand(v.shape) if v.dim() else one[0] for k, v in sd.items()}, path)
    return path


@pytest.mark.parametrize("case", ["vit_b_as_vit_h", "truncated", "not_a_pickle", "evil_pickle"])
def test_bad_weights_are_explained(make_window, qtbot, tmp_path, tiny_models_dir, monkeypatch, case):
    import torch

    from maskpix_desktop.core import models
    from maskpix_desktop.core.service import ModelChoice

    marker = tmp_path / "pwned"
    weights = tmp_path / "weights"
    weights.mkdir()
    choice: dict[str, Any] = {"models_dir": str(weights), "ip2p": str(tiny_models_dir / "tiny-ip2p")}
    if case == "vit_b_as_vit_h":
        # The file at vit_h's place holds vit_b weights (the size check is told it looks complete).
        _vit_b_shaped(models.local_path("sam_vit_h", weights))
        monkeypatch.setattr(models.local, "_file_matches_size", lambda p, size: p.is_file())
        choice["sam"] = "vit_h"
        expected = ["vit_b", "vit_h was chosen"]
    else:
        bad = weights / f"{case}.pth"
        if case == "truncated":
            data = (tiny_models_dir / "tiny-sam.pth").read_bytes()
            bad.write_bytes(data[: len(data) // 3])
            expected = ["corrupt, truncated"]
        elif case == "not_a_pickle":
            bad.write_text("<html>404 Not Found</html>\n")
            expected = ["corrupt, truncated"]
        else:
            torch.save({"image_encoder.pos_embed": _Evil(marker)}, bad)
            expected = ["refused for safety"]
        choice["sam"] = str(bad)
        expected.append(bad.name)
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("models/choice", json.dumps(choice))
    assert ModelChoice(**choice)  # the settings hold a valid choice
    win = make_window(service=False, settings=settings, load_models=True)
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=60_000)
    text = win.banner.label.text()
    assert all(e in text for e in expected), text
    assert win.model_label.text() == "models: failed to load"
    assert not marker.exists()
    assert not win.cancel_load_action.isEnabled()
    # Still usable: an image opens (SAM fails again with the same explanation, nothing crashes).
    assert win.open_image(_photo(tmp_path, lambda h, w, seed: np.full((h, w, 3), 90, np.uint8)))
    assert win.canvas.image() is not None


def test_pickle_marker_control(tmp_path):
    """The evil pickle does run code when loaded unsafely (so the test above proves something)."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Evil(marker)))
    assert marker.exists()


# ------------------------------------------------------------------------------- out of memory


def test_out_of_memory_is_explained_and_the_ui_recovers(make_window, qtbot, tmp_path, rng_image):
    import torch

    editor = FakeEditor(
        errors=[
            OutOfMemoryError("The GPU ran out of memory editing a 64x48 image at working size 512."),
            torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ]
    )
    win = make_window(FakeService(editor))
    assert win.open_image(_photo(tmp_path, rng_image))
    for fragment in ("GPU ran out of memory", "device ran out of memory"):
        msg = _run_edit(qtbot, win)
        assert msg.kind == "failed"
        text = win.banner.label.text()
        assert win.banner.isVisible() and fragment in text and "Unexpected" not in text, text
        assert win.edit_panel.run_button.isEnabled() and not win.edit_panel.cancel_button.isEnabled()
    assert _run_edit(qtbot, win).kind == "finished"
    assert len(win.results.history()) == 1


# ------------------------------------------------------------------------------------- cancel


def test_cancel_model_loading_then_models_load_on_use(make_window, qtbot, tmp_path, rng_image):
    service = FakeService(load_delay=0.3)
    win = make_window(service, load_models=True)
    qtbot.waitUntil(lambda: "loading sam" in win.model_label.text(), timeout=20_000)
    assert win.cancel_load_action.isEnabled()
    win.cancel_load_action.trigger()
    qtbot.waitUntil(lambda: win.model_label.text() == "models: load on first use", timeout=10_000)
    assert not win.cancel_load_action.isEnabled() and not win.banner.isVisible()
    assert win.open_image(_photo(tmp_path, rng_image))
    assert _run_edit(qtbot, win).kind == "finished"


def test_cancel_a_run_then_run_again(make_window, qtbot, tmp_path, rng_image):
    win = make_window(FakeService(FakeEditor(delay=0.01)))
    assert win.open_image(_photo(tmp_path, rng_image))
    done: list[Any] = []
    win.client.message.connect(lambda m: m.task == "edit" and done.append(m))
    win.edit_panel.instruction.setText("slow")
    win.edit_panel.steps.setValue(200)
    win.run_edit()
    qtbot.waitUntil(lambda: any(m.kind == "progress" for m in done), timeout=10_000)
    qtbot.mouseClick(win.edit_panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(m.final for m in done), timeout=10_000)
    assert [m.kind for m in done if m.final] == ["cancelled"]
    assert win.results.history() == [] and win.edit_panel.run_button.isEnabled()
    assert _run_edit(qtbot, win, steps=2).kind == "finished"
    assert len(win.results.history()) == 1


def test_closing_during_a_run_stops_every_thread(make_window, qtbot, qtlog, tmp_path, rng_image):
    win = make_window(FakeService(FakeEditor(delay=0.02)))
    assert win.open_image(_photo(tmp_path, rng_image))
    progress: list[Any] = []
    win.client.message.connect(lambda m: m.kind == "progress" and progress.append(m))
    win.edit_panel.instruction.setText("never finishes")
    win.edit_panel.steps.setValue(200)
    win.run_edit()
    qtbot.waitUntil(lambda: bool(progress), timeout=10_000)
    win.autosave_now()
    thread = win.client._thread
    t0 = time.perf_counter()
    assert win.close()
    assert time.perf_counter() - t0 < 5
    assert thread.isFinished() and win.client._thread is None and id(thread) not in _LIVE
    assert win.autosaver.closed and not (win.autosaver.folder / "session.lock").exists()
    assert not [t for t in threading.enumerate() if t.name == "maskpix-autosave"]
    assert not [r for r in qtlog.records if "QThread" in r.message or "Destroyed" in r.message]


CLOSE_DRIVER = """
import sys, threading, time
import numpy as np
from PySide6.QtCore import QTimer
import maskpix_desktop.ui.main_window as mw
from maskpix_desktop.core.errors import Cancelled
from maskpix_desktop.ui.app import create_app, run_app

class Editor:
    def run(self, req, on_step=None, cancel=None):
        i = 0
        while not cancel.is_set():
            i += 1
            on_step(min(i, 999), 1000, "baseline")
            time.sleep(0.01)
        raise Cancelled("Edit cancelled.")

class Service:
    device = "cpu"
    clip_error = None
    def check(self, **kw): pass
    def segmenter(self): return self
    def set_image(self, image): return True
    def editor(self): return Editor()
    def clip(self): return None
    def unload(self): pass
    def model_info(self): return {}

mw._service_factory = lambda choice: Service
mw.MainWindow.ask_run_without_mask = staticmethod(lambda parent: True)  # the run has no mask on purpose
app = create_app()

def drive():
    win = next(w for w in app.topLevelWidgets() if isinstance(w, mw.MainWindow))
    def on_message(msg):
        if msg.task == "edit" and msg.kind == "progress":
            win.client.message.disconnect(on_message)
            print("CLOSING", flush=True)
            QTimer.singleShot(0, win.close)
    win.client.message.connect(on_message)
    win.edit_panel.instruction.setText("never ends")
    win.run_edit()

QTimer.singleShot(0, drive)
code = run_app(sys.argv[1:])
print("EXIT", code, flush=True)
sys.exit(code)
"""


def test_closing_during_a_run_exits_cleanly_in_a_real_process(tmp_path, rng_image):
    import subprocess
    import sys

    script = tmp_path / "close_driver.py"
    script.write_text(CLOSE_DRIVER)
    home = tmp_path / "home"
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        MASKPIX_DATA_DIR=str(tmp_path / "data"),
        MASKPIX_AUTOSAVE_MS="0",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
    )
    photo = _photo(tmp_path, rng_image)
    proc = subprocess.run(
        [sys.executable, str(script), str(photo), "--no-models"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CLOSING" in proc.stdout and "EXIT 0" in proc.stdout
    for bad in ("Destroyed while thread", "Traceback", "Fatal", "QThread"):
        assert bad not in proc.stderr, proc.stderr
    assert not (tmp_path / "data" / "autosave" / "session.lock").exists()  # a clean exit


# ------------------------------------------------------------------------------- disk full on write


_real_replace, _real_link = os.replace, os.link


def _fail_with(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(("code", "text"), [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_export_to_a_full_or_read_only_disk(make_window, qtbot, tmp_path, rng_image, monkeypatch, code, text):
    from maskpix_desktop.ui import export_dialog

    win = make_window()
    assert win.open_image(_photo(tmp_path, rng_image))
    assert _run_edit(qtbot, win).kind == "finished"
    out = tmp_path / "exports"
    win.settings.setValue("export/dir", str(out))
    errors: list[str] = []
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", lambda dlg: 1 if dlg.do_export() else 0)
    monkeypatch.setattr(
        export_dialog.ExportDialog, "show_error", staticmethod(lambda dlg, m: errors.append(m))
    )
    monkeypatch.setattr(os, "replace", _fail_with(code))
    monkeypatch.setattr(os, "link", _fail_with(code))
    win.export_current()
    assert len(errors) == 1 and text in errors[0], errors
    assert not out.exists() or list(out.iterdir()) == []  # no partial file, no temp file
    monkeypatch.setattr(os, "replace", _real_replace)  # the disk has room again: the same export works
    monkeypatch.setattr(os, "link", _real_link)
    win.export_current()
    assert (out / "photo_blended.png").is_file()


@pytest.mark.parametrize(("code", "text"), [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_project_save_to_a_full_disk(make_window, qtbot, tmp_path, rng_image, monkeypatch, code, text):
    win = make_window()
    _busy_session(qtbot, win, _photo(tmp_path, rng_image))
    target = tmp_path / "work.maskpix"
    assert win.write_project(target)
    old = target.read_bytes()
    win.canvas.apply_mask_op("invert")
    assert win.modified
    monkeypatch.setattr(os, "replace", _fail_with(code))
    assert not win.write_project(target)
    monkeypatch.undo()
    assert "The project was not saved" in win.banner.label.text() and text in win.banner.label.text()
    assert win.modified and target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.glob("*work*")) == ["work.maskpix"]


def test_autosave_failure_warns_once_and_work_goes_on(make_window, qtbot, tmp_path, rng_image):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    win = make_window(autosave_dir=blocker / "autosave")
    assert win.open_image(_photo(tmp_path, rng_image))
    win.autosave_now(wait=True)
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=5_000)
    assert "Autosave failed" in win.banner.label.text() and "Save project" in win.banner.label.text()
    win.banner.hide()
    win.canvas.apply_mask_op("invert")
    win.autosave_now(wait=True)
    qtbot.wait(50)
    assert not win.banner.isVisible()  # the same failure is not repeated
    assert _run_edit(qtbot, win).kind == "finished"


# ------------------------------------------------------------------------------- reproducibility


@pytest.fixture(scope="module")
def tiny_editor(tiny_models_dir):
    from maskpix_desktop.core.editor_loader import load_editor

    return load_editor(str(tiny_models_dir / "tiny-ip2p"), device="cpu")


def _request(rng_image, mode: str) -> EditRequest:
    image = rng_image(H, W, seed=11)
    mask = np.zeros((H, W), np.float32)
    mask[10:35, 15:50] = 1.0
    mask[35, 15:50] = 0.4  # soft edge, as the brush leaves
    params = EditParams(
        "make it blue", steps=3, seed=1234, mask_mode=mode, long_side=64, feather=1.0, dilate=1
    )
    return EditRequest(image=image, mask=mask, params=params)


@pytest.mark.parametrize("mode", ["pixel", "latent", "crop"])
def test_rerun_from_an_export_gives_the_same_bytes(tiny_editor, rng_image, tmp_path, mode):
    """Same image, mask, instruction, seed and parameters -> byte-identical outputs on the same device.

    The second run's request is rebuilt from the export alone (original.png, mask.png, the sidecar), so
    this checks determinism and "re-run from metadata" at once (two runs per mask mode keep it quick).
    """
    req = _request(rng_image, mode)
    first = tiny_editor.run(req)
    paths = export.export_result(first, tmp_path / "out", stem="photo")
    rebuilt = sessions.rerun_from_sidecar(paths["json"])
    from_png = sessions.rerun_from_sidecar(paths["blended"])
    for other in (rebuilt, from_png):
        assert other.params == req.params
        np.testing.assert_array_equal(other.image, req.image)
        np.testing.assert_array_equal(other.mask, req.mask > 0.5)
    again = tiny_editor.run(rebuilt)
    for name in ("baseline", "blended", "edit"):
        assert getattr(again, name).tobytes() == getattr(first, name).tobytes(), name
    assert images.load_image(paths["blended"]).tobytes() == again.blended.tobytes()


def test_rerun_from_exported_file_in_the_window(make_window, qtbot, tmp_path, rng_image):
    editor = FakeEditor()
    win = make_window(FakeService(editor))
    image = rng_image(H, W, seed=12)
    mask = np.zeros((H, W), bool)
    mask[5:20, 8:30] = True
    params = EditParams(
        "add snow", steps=4, text_scale=7.25, image_scale=1.375, seed=987, mask_mode="crop",
        long_side=384, feather=0.125, negative_prompt="blurry", latent_dilate=5, crop_pad=0.3,
    )  # fmt: skip
    result = EditResult(
        EditRequest(image, mask, params), image, image, image, mask.astype(np.float32), (H, W)
    )
    paths = export.export_result(result, tmp_path / "out", stem="snow")
    win.edit_panel.seed_lock.setChecked(False)
    assert win.rerun_from_file(paths["blended"])
    assert "Run edit reproduces it" in win.banner.label.text()
    np.testing.assert_array_equal(win.canvas.image(), image)
    np.testing.assert_array_equal(win.canvas.mask() > 0, mask)
    assert win.edit_panel.params() == params  # exactly, although the spin boxes round what they show
    assert win.edit_panel.seed_lock.isChecked()
    assert _run_edit(qtbot, win, instruction="add snow", steps=4).kind == "finished"
    sent = editor.requests[-1]
    assert sent.params == params
    np.testing.assert_array_equal(sent.image, image)
    np.testing.assert_array_equal(masks.as_bool(sent.mask), mask)
    # A file without MaskPix metadata is explained, and the session stays as it was.
    plain = tmp_path / "plain.png"
    images.save_image(plain, image)
    before = win.session()
    assert not win.rerun_from_file(plain)
    assert "no MaskPix metadata" in win.banner.label.text()
    assert sessions.sessions_equal(before, win.session())
