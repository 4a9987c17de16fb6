"""A click while the models still load waits for them: the canvas shows a busy cursor until the load ends."""

from __future__ import annotations

import numpy as np
from fakes import FakeService
from PySide6.QtCore import QSettings, Qt
from test_canvas import click

from maskpix_desktop.ui.main_window import MainWindow
from maskpix_desktop.ui.worker import MessageKind, Task


def test_a_click_during_the_load_shows_a_busy_cursor_until_the_models_are_ready(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    service = FakeService(load_delay=0.4)  # each of the three models takes 0.4 s
    win = MainWindow(settings=settings, service_factory=lambda: service, load_models=True, autosave=False)
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    qtbot.waitUntil(lambda: win.models.load_job != 0, timeout=5_000)
    viewport = win.canvas.viewport()
    seen: list[tuple[str, str, Qt.CursorShape]] = []  # the cursor once the window handled each message
    win.client.message.connect(lambda m: seen.append((m.task, m.kind, viewport.cursor().shape())))
    win.opener.show_image(np.full((60, 80, 3), 90, np.uint8), None, name="waiting")
    assert viewport.cursor().shape() == Qt.CursorShape.CrossCursor  # no prompt yet: nothing waits
    seen.clear()
    click(qtbot, win.canvas, 30, 20)
    assert not win.models.ready and viewport.cursor().shape() == Qt.CursorShape.BusyCursor

    qtbot.waitUntil(lambda: (Task.SEGMENT, MessageKind.FINISHED) in [s[:2] for s in seen], timeout=60_000)
    load = [s for s in seen if s[0] == Task.LOAD]
    busy = Qt.CursorShape.BusyCursor
    assert [s[2] for s in load[:-1]] == [busy] * (len(load) - 1)  # busy while it still loads
    assert load[-1] == (Task.LOAD, MessageKind.FINISHED, Qt.CursorShape.CrossCursor) and win.models.ready
    assert len(load) >= 2  # at least one model was still loading after the click
    assert win.canvas.mask()[20, 30] == 255  # the click was answered after the load

    click(qtbot, win.canvas, 60, 40)  # the models are ready: no wait, no busy cursor
    assert viewport.cursor().shape() == Qt.CursorShape.CrossCursor
    win.close()
