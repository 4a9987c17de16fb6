"""Issue 19.5: redo keys, [ and ] move the slider, values beside sliders, zoom readout, shortcut list."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest

from maskpix_desktop.ui.help_dialogs import SHORTCUTS


def _masked(win, photo) -> np.ndarray:
    assert win.open_image(photo)
    mask = np.zeros((96, 128), np.uint8)
    mask[5:50, 5:70] = 255
    win.canvas.set_mask(mask)
    return mask


def test_redo_by_ctrl_shift_z_and_ctrl_y(tiny_window, photo, qtbot):
    win = tiny_window
    mask = _masked(win, photo)
    win.activateWindow()
    qtbot.waitActive(win)
    win.canvas.setFocus()
    for key, mods in (
        (Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier),
        (Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier),
    ):
        QTest.keyClick(win.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert not win.canvas.mask().any()
        QTest.keyClick(win.canvas, key, mods)
        np.testing.assert_array_equal(win.canvas.mask(), mask)
    keys = [k.toString() for k in win.redo_action.shortcuts()]
    assert sorted(keys) == ["Ctrl+Shift+Z", "Ctrl+Y"] and len(set(keys)) == len(keys)


def test_brackets_move_the_brush_slider_and_its_value(tiny_window, photo):
    win = tiny_window
    assert win.open_image(photo)
    win.set_tool("brush")
    before = win.brush_slider.value()
    QTest.keyClick(win.canvas, Qt.Key.Key_BracketRight)
    assert win.brush_slider.value() == win.canvas.brush_size > before
    label = win.brush_slider.parentWidget().value_label
    assert label.text() == f"{win.canvas.brush_size} px"
    QTest.keyClick(win.canvas, Qt.Key.Key_BracketLeft)
    QTest.keyClick(win.canvas, Qt.Key.Key_BracketLeft)
    assert win.brush_slider.value() == win.canvas.brush_size < before
    win.hardness_slider.setValue(35)
    assert win.hardness_slider.parentWidget().value_label.text() == "35%"


def test_zoom_readout_follows_the_canvas(tiny_window, photo):
    win = tiny_window
    assert win.open_image(photo)
    win.canvas.zoom_1to1()
    assert win.zoom_label.text() == "100%"
    win.canvas.zoom_by(2.0)
    assert win.zoom_label.text() == "200%"


def test_help_lists_the_shortcuts_including_mouse_gestures(tiny_window):
    win = tiny_window
    win.shortcuts_action.trigger()
    rows = win.shortcuts_dialog.rows()
    text = "\n".join(" | ".join(r) for r in rows)
    for needle in ("Ctrl+click", "Alt+click", "Delete", "Ctrl+Shift+Z or Ctrl+Y", "[ / ]", "Ctrl+M"):
        assert needle in text
    assert len(rows) == len(SHORTCUTS)
    assert win.shortcuts_action.shortcut().toString() == "F1"
    win.shortcuts_dialog.close()


def test_tooltips_name_the_shortcuts(tiny_window):
    win = tiny_window
    assert "Ctrl+Y" in win.redo_action.toolTip() and "Ctrl+Z" in win.undo_action.toolTip()
    assert "Enter" in win.edit_panel.run_button.toolTip()
    assert "[" in win.brush_slider.toolTip()
    assert "Ctrl+M" in win.automask_button.toolTip()
    for name, key in (("prompt", "(P)"), ("brush", "(B)"), ("eraser", "(E)")):
        assert key in win.tool_buttons[name].toolTip()


def test_log_folder_shows_its_path_with_copy(tiny_window):
    from maskpix_desktop.paths import log_dir

    win = tiny_window
    win._open_log_folder()
    dlg = win.log_dialog
    assert dlg.path_field.text() == str(log_dir())
    dlg.copy_button.click()
    assert QGuiApplication.clipboard().text() == str(log_dir())
    dlg.close()
