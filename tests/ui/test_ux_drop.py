"""Issue 19.1: dropping files on the canvas (empty or loaded) opens the image, through the real window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_rng_image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from maskpix_desktop.core import images


def drop_files(widget, paths: list[str | Path], urls: list[QUrl] | None = None) -> bool:
    """Drag ``paths`` over ``widget`` and drop them in its middle; returns whether the drop was accepted."""
    mime = QMimeData()
    mime.setUrls(urls if urls is not None else [QUrl.fromLocalFile(str(p)) for p in paths])
    centre = QPoint(widget.width() // 2, widget.height() // 2)
    action = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(centre, action, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(
        QPointF(centre), action, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def _png(tmp_path: Path, name: str, h: int, w: int, seed: int) -> Path:
    path = tmp_path / name
    images.save_image(path, make_rng_image(h, w, seed=seed))
    return path


def test_drop_on_empty_canvas_opens_the_image(tiny_window, tmp_path):
    win = tiny_window
    photo = _png(tmp_path, "dropped.png", 40, 60, seed=1)
    assert not win.canvas.has_image()
    assert drop_files(win.canvas.viewport(), [photo])
    assert win.canvas.image().shape == (40, 60, 3)
    assert win.image_path == photo
    np.testing.assert_array_equal(win.canvas.image(), images.load_image(photo))


def test_drop_on_loaded_canvas_replaces_the_image(tiny_window, tmp_path):
    win = tiny_window
    assert win.open_image(_png(tmp_path, "first.png", 30, 50, seed=2))
    second = _png(tmp_path, "second.png", 44, 33, seed=3)
    assert drop_files(win.canvas.viewport(), [second])
    assert win.image_path == second and win.canvas.image().shape == (44, 33, 3)


def test_drop_of_several_files_opens_the_first_and_queues_the_rest(tiny_window, tmp_path):
    win = tiny_window
    paths = [_png(tmp_path, f"p{i}.png", 20 + i, 30, seed=i) for i in range(3)]
    assert drop_files(win.canvas.viewport(), paths)
    assert win.image_path == paths[0]
    assert win.filmstrip.count() == 3 and win.filmstrip.isVisible()  # the others wait in the filmstrip


def test_drop_of_a_web_link_is_refused_and_changes_nothing(tiny_window):
    win = tiny_window
    assert not drop_files(win.canvas.viewport(), [], urls=[QUrl("https://example.com/cat.png")])
    assert not win.canvas.has_image()


def test_drop_of_a_broken_file_names_it_and_keeps_the_image(tiny_window, tmp_path):
    win = tiny_window
    good = _png(tmp_path, "good.png", 30, 40, seed=4)
    assert win.open_image(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    drop_files(win.canvas.viewport(), [broken])
    assert win.image_path == good and win.canvas.image().shape == (30, 40, 3)
    assert win.banner.isVisible() and "broken.png" in win.banner.label.text()
