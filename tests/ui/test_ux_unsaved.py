"""Issue 19.3: Save / Discard / Cancel before anything replaces unsaved work (quit, open, drop, project)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_rng_image
from test_ux_drop import drop_files

from maskpix_desktop.core import images
from maskpix_desktop.core import session as sessions


def _answering(win, answer: str) -> list[str]:
    asked: list[str] = []
    win.ask_save_changes = lambda parent, action: asked.append(action) or answer
    return asked


def _with_work(win, photo: Path) -> np.ndarray:
    """Open ``photo`` and paint a mask on it (work that exists nowhere else)."""
    assert win.open_image(photo)
    mask = np.zeros(win.canvas.image().shape[:2], np.uint8)
    mask[10:40, 20:60] = 255
    win.canvas.set_mask(mask)
    assert win.has_unsaved_work()
    return win.canvas.mask()


def _other(tmp_path: Path) -> Path:
    path = tmp_path / "other.png"
    images.save_image(path, make_rng_image(20, 24, seed=9))
    return path


def test_a_photo_just_opened_is_replaced_without_a_question(tiny_window, photo, tmp_path):
    win = tiny_window
    asked = _answering(win, "cancel")
    assert win.open_image(photo)
    assert win.open_image(_other(tmp_path))
    assert asked == [] and win.image_path.name == "other.png"


def test_cancel_keeps_the_work_for_open_drop_project_and_quit(tiny_window, photo, tmp_path):
    win = tiny_window
    mask = _with_work(win, photo)
    project = tmp_path / "saved.maskpix"
    sessions.save_project(project, win.session())
    asked = _answering(win, "cancel")
    assert not win.open_image(_other(tmp_path))
    drop_files(win.canvas.viewport(), [_other(tmp_path)])
    assert not win.open_project(project)
    assert not win.close()  # Ctrl+Q and the close button: the window stays
    assert win.isVisible() and win.image_path == photo
    np.testing.assert_array_equal(win.canvas.mask(), mask)
    assert asked == ["opening other.png", "opening other.png", "opening saved.maskpix", "quitting"]


def test_discard_lets_the_new_image_in(tiny_window, photo, tmp_path):
    win = tiny_window
    _with_work(win, photo)
    asked = _answering(win, "discard")
    assert win.open_image(_other(tmp_path))
    assert asked == ["opening other.png"] and not win.canvas.mask().any()


def test_save_writes_the_project_before_quitting(tiny_window, photo, tmp_path):
    win = tiny_window
    mask = _with_work(win, photo)
    project = tmp_path / "work.maskpix"
    assert win.write_project(project)
    win.canvas.apply_mask_op("invert")  # a change after the save
    asked = _answering(win, "save")
    assert win.close()
    assert asked == ["quitting"]
    saved = sessions.load_project(project)
    np.testing.assert_array_equal(saved.mask, 255 - mask)


def test_rerun_from_file_asks_too(tiny_window, photo, tmp_path):
    win = tiny_window
    _with_work(win, photo)
    asked = _answering(win, "cancel")
    sidecar = tmp_path / "missing-export.json"
    sidecar.write_text("{}")
    win.rerun_from_file(sidecar)  # an invalid sidecar: the error comes first, nothing is asked
    assert asked == []
    assert win.image_path == photo
