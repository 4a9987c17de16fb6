"""Issue 19: closing an image of the filmstrip (its context menu, File > Close image / Ctrl+W)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_rng_image

from maskpix_desktop.core import images


def _pngs(tmp_path: Path, n: int = 3) -> list[Path]:
    out = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        images.save_image(path, make_rng_image(40, 60, seed=70 + i))
        out.append(path)
    return out


def _mask(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((40, 60)) > 0.7).astype(np.uint8) * 255


def _answer(win, *answers: str) -> list[tuple[Path, str]]:
    """Replies to Save / Discard / Cancel in turn (then Discard: the fixture's quit); returns (image on
    show, action) of every question."""
    asked: list[tuple[Path, str]] = []
    replies = [*answers, *["discard"] * 4]
    win.ask_save_changes = lambda parent, action: asked.append((win.image_path, action)) or replies.pop(0)
    return asked


def _labels(win) -> list[str]:
    return [win.filmstrip.item(i).text() for i in range(win.filmstrip.count())]


def test_closing_another_image_from_its_menu_keeps_the_one_on_show(window, tmp_path):
    win = window
    paths = _pngs(tmp_path)
    assert win.open_images(paths)
    mask = _mask(1)
    win.canvas.set_mask(mask)
    asked = _answer(win)
    closed: list[int] = []
    win.filmstrip.closeRequested.connect(closed.append)
    (action,) = win.filmstrip.item_menu(2).actions()
    assert action.text() == "Close image"
    action.trigger()
    assert closed == [2] and asked == []  # a queued file holds no work: nothing asked
    assert _labels(win) == ["img0.png *", "img1.png"] and win.filmstrip.currentRow() == 0
    assert win.image_path == paths[0] and np.array_equal(win.canvas.mask(), mask)
    assert win.undo_action.isEnabled()


def test_closing_an_image_with_unsaved_work_asks_while_it_is_shown(window, tmp_path):
    win = window
    paths = _pngs(tmp_path)
    assert win.open_images(paths)
    win.canvas.set_mask(_mask(2))
    assert win.switch_image(2)
    asked = _answer(win, "discard")
    assert win.strip.close(0)
    assert asked == [(paths[0], "closing img0.png")]
    assert _labels(win) == ["img1.png", "img2.png"] and win.filmstrip.currentRow() == 1
    assert win.image_path == paths[2] and not win.canvas.mask().any()


def test_closing_the_image_on_show_shows_its_neighbour_with_its_mask(window, tmp_path):
    win = window
    paths = _pngs(tmp_path)
    assert win.open_images(paths)
    assert win.switch_image(1)
    kept = _mask(3)
    win.canvas.set_mask(kept)
    assert win.switch_image(2)
    win.canvas.set_mask(_mask(4))
    asked = _answer(win, "discard")
    win.close_image_action.trigger()  # the last one: its previous neighbour takes its place
    assert asked == [(paths[2], "closing img2.png")]
    assert win.image_path == paths[1] and np.array_equal(win.canvas.mask(), kept)
    assert _labels(win) == ["img0.png", "img1.png *"] and win.filmstrip.currentRow() == 1
    win.undo_action.trigger()  # its own history came with it
    assert not win.canvas.mask().any()

    assert win.switch_image(0)
    assert win.close_image()  # nothing to lose: the next neighbour, without a question
    assert len(asked) == 1 and win.image_path == paths[1] and win.filmstrip.count() == 1
    assert not win.filmstrip.isVisible()


def test_closing_the_last_image_returns_to_the_start_screen(window, tmp_path):
    win = window
    (path,) = _pngs(tmp_path, 1)
    assert win.open_image(path)
    win.canvas.set_mask(_mask(5))
    asked = _answer(win, "discard")
    assert win.close_image()
    assert asked == [(path, "closing img0.png")]
    assert win.start_screen.isVisible() and not win.canvas.has_image()
    assert win.image_path is None and win.windowTitle() == "MaskPix Desktop"
    assert not win.has_unsaved_work() and win.strip.workspace.current == -1 and win.filmstrip.count() == 0
    assert not win.undo_action.isEnabled() and not win.close_image()
    assert win.open_image(path)  # and the strip starts again from the next image
    assert not win.start_screen.isVisible() and win.strip.workspace.current == 0


def test_cancel_closes_nothing_and_goes_back_to_the_image_on_show(window, tmp_path):
    win = window
    paths = _pngs(tmp_path, 2)
    assert win.open_images(paths)
    mask = _mask(6)
    win.canvas.set_mask(mask)
    assert win.switch_image(1)
    asked = _answer(win, "cancel", "cancel")
    assert not win.strip.close(0)
    assert asked == [(paths[0], "closing img0.png")]
    assert win.image_path == paths[1] and _labels(win) == ["img0.png *", "img1.png"]
    assert win.switch_image(0)
    assert not win.close_image()  # Cancel on the image on show
    assert win.image_path == paths[0] and np.array_equal(win.canvas.mask(), mask)
    assert win.filmstrip.count() == 2 and win.undo_action.isEnabled()
