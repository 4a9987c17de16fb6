"""Job/document identity (issue 22.1) through the real window: nothing computed for one image lands on
another. Run an edit, press Ctrl+M at once (the auto mask queues behind the edit), open another image
before the edit ends: no error, no stale prompts, no stale mask, no stale result."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import Cancelled

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _gate_the_editor(win, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The worker's editor waits (cancellable) until ``release`` is set; ``entered`` tells it started."""
    editor = win.client._worker._service.editor()
    real = editor.run
    entered, release = threading.Event(), threading.Event()

    def gated(request, on_step=None, cancel=None):
        entered.set()
        while not release.wait(0.01):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Edit cancelled.")
        return real(request, on_step, cancel)

    monkeypatch.setattr(editor, "run", gated)
    return entered, release


@pytest.mark.parametrize("size", [(40, 56), (96, 128)], ids=["smaller_image", "same_size_image"])
def test_stale_auto_mask_never_lands_on_a_newly_opened_image(
    tiny_window, qtbot, photo, tmp_path, rng_image, monkeypatch, caplog, size
):
    win = tiny_window
    seen: list = []
    win.client.message.connect(seen.append)
    assert win.open_image(photo)
    win.edit_panel.instruction.setText("turn the dog into a cat")
    win.edit_panel.steps.setValue(2)
    p = win.edit_panel
    p.long_side.setCurrentIndex(p.long_side.findData(256))
    entered, release = _gate_the_editor(win, monkeypatch)

    qtbot.mouseClick(win.edit_panel.run_button, Qt.MouseButton.LeftButton)
    assert entered.wait(30)
    win.activateWindow()
    win.canvas.setFocus()
    qtbot.keyClick(win.canvas, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)  # Ctrl+M: queued
    if not win.automasks.job:  # offscreen platforms may not route the shortcut: the same action
        win.automask_action.trigger()
    assert win.automasks.job and win.automask_button.text() == "Cancel auto mask"

    other = tmp_path / "other.png"
    images.save_image(other, rng_image(*size, seed=11))
    caplog.set_level(logging.ERROR)
    assert win.open_image(other)  # before the edit ends
    release.set()
    qtbot.waitUntil(lambda: not win.client._table._jobs, timeout=60_000)  # every job over and delivered
    qtbot.wait(300)

    assert win.canvas.image().shape[:2] == size
    assert win.canvas.prompts().is_empty() and not win.canvas.point_items
    assert not win.canvas.box_item.isVisible()
    np.testing.assert_array_equal(win.canvas.mask(), np.zeros(size, np.uint8))
    assert win.automask_result is None and win.automask_status.text() == ""
    assert win.automask_button.text() == "Auto mask" and win.edit_panel.run_button.isEnabled()
    assert win.results.history() == []  # the cancelled edit of the old image added nothing
    assert not [m for m in seen if m.task in ("edit", "automask") and m.kind in ("finished", "failed")]
    assert not win.banner.isVisible() or "error" not in win.banner.label.text().lower()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # The new image works as usual: an auto mask for it lands on it.
    win.automask_action.trigger()
    qtbot.waitUntil(lambda: win.automask_result is not None, timeout=60_000)
    assert win.canvas.mask().shape == size
