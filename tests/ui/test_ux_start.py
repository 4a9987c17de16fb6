"""Issue 19.2: the start screen on the empty canvas: readable, Open…, Samples, Recent, models' state."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog

from maskpix_desktop.ui.canvas_view import BACKGROUND
from maskpix_desktop.ui.main_window import MainWindow
from maskpix_desktop.ui.start_screen import models_state


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB uint8 colours (..., 3)."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def _rendered(widget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3)


def test_start_screen_shows_on_the_empty_canvas_with_readable_text(tiny_window):
    win = tiny_window
    screen = win.start_screen
    assert screen.isVisible() and screen.width() == win.canvas.viewport().width()
    pixels = _rendered(screen)  # what the user sees: the canvas background with the start text on it
    bg = _luminance(np.array([BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue()]))
    title = pixels[screen.title.geometry().top() : screen.title.geometry().bottom()]
    brightest = _luminance(title.reshape(-1, 3)).max()
    assert (brightest + 0.05) / (bg + 0.05) >= 7.0  # WCAG AAA for the title's glyphs
    assert screen.open_button.isVisible() and screen.samples_button.isEnabled()


def test_start_screen_hides_when_an_image_opens(tiny_window, photo):
    win = tiny_window
    assert win.open_image(photo)
    assert not win.start_screen.isVisible()


def test_open_button_opens_the_chosen_file(tiny_window, photo, monkeypatch):
    win = tiny_window
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(photo)], ""))
    win.start_screen.open_button.click()
    assert win.image_path == photo and win.canvas.has_image()


def test_samples_button_opens_a_sample(tiny_window):
    win = tiny_window
    actions = win.start_screen.samples_menu.actions()
    assert [a.text() for a in actions] == ["car", "dog", "person"]
    actions[1].trigger()
    assert win.image_path is not None and win.image_path.name == "dog.jpg" and win.canvas.has_image()


def test_recent_button_lists_files_opened_before(qtbot, tmp_path, photo):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    first = MainWindow(settings=settings, load_models=False, autosave=False)
    qtbot.addWidget(first)
    assert not first.start_screen.recent_button.isEnabled()  # nothing opened yet
    assert first.open_image(photo)
    first.close()
    again = MainWindow(settings=settings, load_models=False, autosave=False)
    qtbot.addWidget(again)
    assert again.start_screen.recent_button.isEnabled()
    (action,) = again.start_screen.recent_menu.actions()
    assert action.text() == str(photo)
    action.trigger()
    assert again.image_path == photo
    again.close()


def test_start_screen_shows_the_models_state_and_sets_them_up(tiny_window, monkeypatch):
    win = tiny_window
    assert win.start_screen.models_label.text().startswith("Models: ready")
    opened = []
    from maskpix_desktop.ui import model_dialog

    monkeypatch.setattr(model_dialog.ModelDialog, "exec", lambda self: opened.append(self) or 0)
    win.start_screen.models_button.click()
    assert len(opened) == 1


def test_models_state_reads_the_status_line():
    assert models_state("models: missing") == ("Models: missing", "missing")
    assert models_state("models: loading sam (1/3)")[1] == "loading"
    assert models_state("models: failed to load")[1] == "missing"
    assert models_state("models: load on first use") == ("Models: load on first use", "info")
