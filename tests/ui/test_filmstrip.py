"""Issue 19: several files open the first and queue the rest in a filmstrip; each image keeps its own
document (mask, prompts, results); switching drops the jobs of the image put away."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import make_rng_image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog
from test_ux_drop import drop_files

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import Cancelled
from maskpix_desktop.core.result_store import is_spilled
from maskpix_desktop.ui.canvas import Prompts


def _pngs(tmp_path: Path, n: int = 3) -> list[Path]:
    out = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        images.save_image(path, make_rng_image(40 + 4 * i, 60, seed=30 + i))
        out.append(path)
    return out


def _run_edit(win, qtbot) -> None:
    n = len(win.results.history())
    win.edit_panel.instruction.setText("make it blue")
    win.edit_panel.steps.setValue(2)
    win.run_edit()
    qtbot.waitUntil(lambda: len(win.results.history()) == n + 1, timeout=30_000)


def test_dropping_three_files_shows_the_first_and_three_thumbnails(window, tmp_path):
    win = window
    paths = _pngs(tmp_path)
    assert drop_files(win.canvas.viewport(), paths)
    assert win.image_path == paths[0]
    np.testing.assert_array_equal(win.canvas.image(), images.load_image(paths[0]))
    strip = win.filmstrip
    assert strip.isVisible() and strip.count() == 3 and strip.currentRow() == 0
    assert [strip.item(i).toolTip() for i in range(3)] == [str(p) for p in paths]
    assert all(not strip.item(i).icon().isNull() for i in range(3))


def test_open_dialog_with_several_files_queues_the_rest(window, tmp_path, monkeypatch):
    win = window
    paths = _pngs(tmp_path)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(p) for p in paths], ""))
    win.open_dialog()
    assert win.image_path == paths[0] and win.filmstrip.count() == 3


def test_each_image_keeps_its_own_mask_and_prompts(window, qtbot, tmp_path):
    win = window
    paths = _pngs(tmp_path)
    assert win.open_images(paths)
    mask1 = np.zeros((40, 60), np.uint8)
    mask1[5:20, 10:33] = 255
    mask1[25, 40] = 77  # a soft brush edge value survives too
    win.canvas.set_mask(mask1)
    win.canvas.set_prompts(Prompts(((12.0, 9.0),), (1,), None))
    win.segments.timer.stop()

    second = win.filmstrip.visualItemRect(win.filmstrip.item(1)).center()
    qtbot.mouseClick(win.filmstrip.viewport(), Qt.MouseButton.LeftButton, pos=second)
    assert win.image_path == paths[1]
    np.testing.assert_array_equal(win.canvas.image(), images.load_image(paths[1]))
    np.testing.assert_array_equal(win.canvas.mask(), np.zeros((44, 60), np.uint8))
    assert win.canvas.prompts().is_empty()
    assert win.filmstrip.item(0).text() == "img0.png *"  # unsaved work kept, and shown as such

    assert win.switch_image(0)
    assert win.image_path == paths[0]
    assert np.array_equal(win.canvas.mask(), mask1)
    assert win.canvas.prompts().points == ((12.0, 9.0),) and win.canvas.prompts().labels == (1,)
    assert win.filmstrip.count() == 3 and win.filmstrip.currentRow() == 0


def test_a_result_stays_in_its_image_history_and_moves_to_disk(window, qtbot, tmp_path):
    win = window
    paths = _pngs(tmp_path)
    assert win.open_images(paths)
    mask = np.zeros((40, 60), np.uint8)
    mask[:, :30] = 255
    win.canvas.set_mask(mask)
    _run_edit(win, qtbot)
    result = win.results.history()[0]
    assert not win.results.history_list.item(0).icon().isNull()  # the history shows a thumbnail

    assert win.switch_image(2)
    assert win.results.history() == []
    win.strip.store.flush()
    assert is_spilled(result)  # put away: its arrays are memory maps of files, not process memory

    assert win.switch_image(0)
    history = win.results.history()
    assert len(history) == 1 and history[0] is result
    np.testing.assert_array_equal(history[0].blended[:, :30], 255 - win.canvas.image()[:, :30])
    assert win.results.current_index() == 0
    assert not win.results.history_list.item(0).icon().isNull()


def test_a_job_of_the_image_put_away_never_changes_the_one_on_show(window, qtbot, tmp_path, monkeypatch):
    win = window
    paths = _pngs(tmp_path, 2)
    assert win.open_images(paths)
    qtbot.waitUntil(lambda: win.client._worker._service is not None, timeout=10_000)  # built on first use
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
    win.edit_panel.instruction.setText("make it blue")
    win.run_edit()
    assert entered.wait(30)
    assert win.switch_image(1)
    release.set()
    qtbot.waitUntil(lambda: not win.client._table._jobs, timeout=30_000)
    qtbot.wait(100)
    assert win.image_path == paths[1]
    assert win.results.history() == []
    np.testing.assert_array_equal(win.canvas.image(), images.load_image(paths[1]))
    assert win.edit_panel.run_button.isEnabled()
    assert win.switch_image(0)
    assert win.results.history() == []  # cancelled with its image, as when another image is opened


def test_a_queued_file_that_cannot_be_read_changes_nothing(window, tmp_path):
    win = window
    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    images.save_image(good, make_rng_image(30, 40, seed=1))
    broken.write_bytes(b"not a png")
    assert win.open_images([good, broken])
    mask = np.zeros((30, 40), np.uint8)
    mask[3:9, 4:20] = 255
    win.canvas.set_mask(mask)
    assert not win.switch_image(1)
    assert win.image_path == good and np.array_equal(win.canvas.mask(), mask)
    assert win.filmstrip.currentRow() == 0 and "broken.png" in win.banner.label.text()


@pytest.mark.parametrize("n", [1, 2])
def test_the_strip_shows_only_from_two_images_on(window, tmp_path, n):
    win = window
    assert win.open_images(_pngs(tmp_path, n))
    assert win.filmstrip.isVisible() == (n > 1) and win.filmstrip.count() == n


def test_quitting_asks_for_every_image_with_unsaved_work(window, tmp_path):
    win = window
    paths = _pngs(tmp_path, 3)
    assert win.open_images(paths)
    mask = np.zeros((40, 60), np.uint8)
    mask[1:5, 1:5] = 255
    win.canvas.set_mask(mask)
    assert win.switch_image(1)  # image 2 has nothing to lose; image 1 is in the strip with its mask
    asked: list[tuple[Path, str]] = []
    answers = ["cancel", "discard"]
    win.ask_save_changes = lambda parent, action: asked.append((win.image_path, action)) or answers.pop(0)
    assert not win.close() and win.isVisible()  # Cancel: nothing closed, the mask still there
    assert asked == [(paths[0], "quitting")]
    assert win.image_path == paths[0] and np.array_equal(win.canvas.mask(), mask)
    assert win.close()  # Discard: asked once more for that image only
    assert asked == [(paths[0], "quitting")] * 2


def test_each_image_keeps_its_own_project(window, tmp_path):
    win = window
    paths = _pngs(tmp_path, 2)
    assert win.open_images(paths)
    project = tmp_path / "first.maskpix"
    assert win.write_project(project)
    assert win.switch_image(1)
    assert win.project_path is None  # Ctrl+S here must not overwrite the first image's project
    assert win.switch_image(0)
    assert win.project_path == project and "first.maskpix" in win.windowTitle()
