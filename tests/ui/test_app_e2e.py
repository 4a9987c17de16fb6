"""End to end through the real main window with the tiny models: prompts, brush, run, cancel, export."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from test_canvas import click, drag

from maskpix_desktop.core import images
from maskpix_desktop.core.segmenter import Segmenter
from maskpix_desktop.ui.main_window import MainWindow

H, W = 96, 128


@pytest.fixture
def window(tiny_window):
    return tiny_window


def _messages(win):
    seen = []
    win.client.message.connect(lambda m: seen.append(m))
    return seen


def _run(win, qtbot, instruction="make it red", **fields):
    p = win.edit_panel
    p.instruction.setText(instruction)
    p.steps.setValue(fields.get("steps", 3))
    p.feather.setValue(fields.get("feather", 0.0))
    p.set_params(p.params().__class__(**{**p.params().to_dict(), **fields, "instruction": instruction}))
    qtbot.mouseClick(p.run_button, Qt.MouseButton.LeftButton)


def test_full_session(window, qtbot, photo, tiny_models_dir, tmp_path):
    win = window
    seen = _messages(win)
    assert win.open_image(photo)
    image = win.canvas.image()
    assert image.shape == (H, W, 3)

    # One positive click: SAM gives three candidates; the canvas shows the best one.
    click(qtbot, win.canvas, 40, 50)
    qtbot.waitUntil(lambda: win.candidate_list.count() == 3, timeout=10_000)
    (pt,) = win.canvas.prompts().points  # a screen pixel maps to a sub-pixel image position
    assert pt == pytest.approx((40, 50), abs=1.0)
    ref = Segmenter.from_checkpoint(tiny_models_dir / "tiny-sam.pth")
    ref.set_image(image)
    expected = ref.predict(points=np.array([pt], np.float32), labels=np.array([1]))
    np.testing.assert_array_equal(win.canvas.mask() > 0, expected.mask(expected.best))

    # A negative click and a box: one refined mask from SAM, prompts recorded in image pixels.
    n_seg = sum(m.task == "segment" and m.kind == "finished" for m in seen)
    click(qtbot, win.canvas, 100, 20, button=Qt.MouseButton.RightButton)
    a, b = win.canvas.image_to_viewport(10, 10), win.canvas.image_to_viewport(90, 80)
    drag(win.canvas, [a, (a + b) / 2, b])
    qtbot.waitUntil(
        lambda: (
            sum(m.task == "segment" and m.kind == "finished" for m in seen) > n_seg
            and win.candidate_list.count() == 1
        ),
        timeout=10_000,
    )
    pr = win.canvas.prompts()
    assert pr.labels == (1, 0)
    assert pr.box == pytest.approx((10, 10, 90, 80), abs=1.0)
    last = [m for m in seen if m.task == "segment" and m.kind == "finished"][-1].result
    np.testing.assert_array_equal(win.canvas.mask() > 0, last.masks[0])

    # Brush a stroke, then undo it exactly.
    before = win.canvas.mask()
    win.set_tool("brush")
    win.canvas.brush_size = 9
    win.canvas.brush_hardness = 1.0
    drag(win.canvas, [win.canvas.image_to_viewport(20, 85), win.canvas.image_to_viewport(110, 85)])
    painted = win.canvas.mask()
    assert painted[85, 30] == 255 and painted[85, 100] == 255
    win.undo_action.trigger()
    np.testing.assert_array_equal(win.canvas.mask(), before)
    win.redo_action.trigger()
    np.testing.assert_array_equal(win.canvas.mask(), painted)

    # Run an edit: progress in order, then the four views and metrics; outside the mask == original.
    start = len(seen)
    _run(win, qtbot, steps=3, long_side=256, feather=0.0, mask_mode="pixel")
    qtbot.waitUntil(
        lambda: any(m.task == "edit" and m.kind == "finished" for m in seen[start:]), timeout=60_000
    )
    edit_msgs = [m for m in seen[start:] if m.task == "edit"]
    kinds = [m.kind for m in edit_msgs]
    assert kinds[0] == "started" and kinds[-1] == "finished" and "progress" in kinds
    steps = [m.done for m in edit_msgs if m.kind == "progress"]
    assert steps == sorted(steps) and steps[-1] == 3
    assert win.tabs.currentWidget() is win.results
    for name in ("original", "mask", "baseline", "blended"):
        assert win.results.views[name].has_image()
    result = win.results.current_result()
    outside = painted == 0
    np.testing.assert_array_equal(result.blended[outside], image[outside])
    assert set(result.metrics) == {"baseline", "blended"}
    assert win.results.metrics_table.rowCount() > 5
    assert not win.edit_panel.cancel_button.isEnabled()

    # Cancel a long run from its first progress message: no result is added.
    start = len(seen)

    def cancel_on_progress(m):
        if m.task == "edit" and m.kind == "progress" and win.edit_panel.cancel_button.isEnabled():
            qtbot.mouseClick(win.edit_panel.cancel_button, Qt.MouseButton.LeftButton)

    win.client.message.connect(cancel_on_progress)
    _run(win, qtbot, steps=60, long_side=256)
    qtbot.waitUntil(
        lambda: any(m.task == "edit" and m.kind == "cancelled" for m in seen[start:]), timeout=60_000
    )
    win.client.message.disconnect(cancel_on_progress)
    assert not any(m.task == "edit" and m.kind == "finished" for m in seen[start:])
    assert len(win.results.history()) == 1
    assert win.edit_panel.run_button.isEnabled()

    # Export through the window's own action (the dialog's exec replaced by an immediate export).
    from maskpix_desktop.ui import export_dialog

    out = tmp_path / "exports"
    win.settings.setValue("export/dir", str(out))

    def fake_exec(dlg):
        return 1 if dlg.do_export() else 0

    original_exec = export_dialog.ExportDialog.exec
    export_dialog.ExportDialog.exec = fake_exec
    try:
        win.export_current()
    finally:
        export_dialog.ExportDialog.exec = original_exec
    blended = out / "photo_blended.png"
    assert blended.is_file()
    meta = json.loads(images.read_png_text(blended)["maskpix"])
    assert meta["params"]["instruction"] == "make it red"
    assert meta["params"]["steps"] == 3
    sidecar = json.loads((out / "photo_metadata.json").read_text())
    assert sidecar["params"] == meta["params"]
    np.testing.assert_array_equal(images.load_image(blended), result.blended)


def test_event_loop_never_stalls_during_a_run(window, qtbot, photo):
    win = window
    win.open_image(photo)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer(interval=10)
    timer.timeout.connect(tick)
    done = []
    win.client.message.connect(lambda m: m.task == "edit" and m.final and done.append(m))
    timer.start()
    _run(win, qtbot, steps=8, long_side=256, mask_mode="latent")
    qtbot.waitUntil(lambda: bool(done), timeout=60_000)
    timer.stop()
    assert done[0].kind == "finished"
    assert len(gaps) > 10
    assert max(gaps[1:]) < 0.100, f"longest stall {max(gaps[1:]) * 1000:.0f} ms"


def test_bad_image_keeps_the_current_one(window, qtbot, photo, tmp_path):
    win = window
    win.open_image(photo)
    before = win.canvas.image().copy()
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert not win.open_image(bad)
    assert win.banner.isVisible()
    assert "notes.png" in win.banner.label.text()
    np.testing.assert_array_equal(win.canvas.image(), before)


def test_missing_models_are_explained(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    empty = tmp_path / "no-models"
    win = MainWindow(models_dir=str(empty), device="cpu", settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=30_000)
    text = win.banner.label.text()
    assert "missing" in text.lower()
    assert "maskpix-cli models download" in text
    assert win.model_label.text() == "models: missing"
    win.close()
