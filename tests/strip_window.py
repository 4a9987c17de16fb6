"""A shown main window of a given size with copies of one photo open in the filmstrip (no models), for the
layout tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSettings
from PySide6.QtWidgets import QApplication, QWidget

from maskpix_desktop.ui.main_window import MainWindow


def strip_window(qtbot, tmp_path: Path, photo: Path, size: tuple[int, int], count: int) -> MainWindow:
    """``photo`` and ``count - 1`` copies open (the filmstrip shows ``count`` thumbnails)."""
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, load_models=False, autosave=False)
    qtbot.addWidget(win)
    win.resize(*size)
    win.show()
    qtbot.waitExposed(win)
    copies = [tmp_path / f"copy{i}.png" for i in range(1, count)]
    for path in copies:
        shutil.copy(photo, path)
    assert win.open_images([photo, *copies])
    QApplication.processEvents()
    return win


def rect_in(widget: QWidget, window: QWidget) -> QRect:
    """``widget``'s rectangle in ``window``'s coordinates."""
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
