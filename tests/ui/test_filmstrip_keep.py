"""Issue 19: an image put away in the filmstrip keeps its mask's undo history and its SAM candidates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_rng_image
from fakes import FakeSegmenter
from test_canvas import click
from test_first_mask import _window

from maskpix_desktop.core import images


def _pngs(tmp_path: Path, n: int = 2, h: int = 40, w: int = 60) -> list[Path]:
    out = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        images.save_image(path, make_rng_image(h, w, seed=50 + i))
        out.append(path)
    return out


def _box(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int, value: int = 255) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[y0:y1, x0:x1] = value
    return mask


def test_undo_and_redo_of_an_image_survive_switching_away_and_back(window, tmp_path):
    win = window
    assert win.open_images(_pngs(tmp_path))
    first, second = _box((40, 60), 2, 12, 3, 20), _box((40, 60), 5, 30, 10, 50, 128)
    win.canvas.set_mask(first)
    win.canvas.set_mask(second)
    assert win.undo_action.isEnabled()

    assert win.switch_image(1)
    assert not win.undo_action.isEnabled() and not win.redo_action.isEnabled()  # B's own, empty history
    b_mask = _box((40, 60), 0, 4, 0, 4)
    win.canvas.set_mask(b_mask)
    win.undo_action.trigger()  # B's undo: B's mask only
    assert not win.canvas.mask().any() and win.redo_action.isEnabled()

    assert win.switch_image(0)
    assert np.array_equal(win.canvas.mask(), second)
    assert win.undo_action.isEnabled() and not win.redo_action.isEnabled()
    win.undo_action.trigger()
    assert np.array_equal(win.canvas.mask(), first)
    assert np.array_equal(win.document.session().mask, first)  # the document follows the undo
    win.undo_action.trigger()
    assert not win.canvas.mask().any() and not win.undo_action.isEnabled()
    win.redo_action.trigger()
    win.redo_action.trigger()
    assert np.array_equal(win.canvas.mask(), second) and not win.redo_action.isEnabled()

    assert win.switch_image(1)  # B's redo was kept too
    assert not win.canvas.mask().any()
    win.redo_action.trigger()
    assert np.array_equal(win.canvas.mask(), b_mask)


def test_a_new_image_over_the_one_on_show_starts_a_new_history(window, tmp_path):
    win = window
    a, b, c = _pngs(tmp_path, 3)
    assert win.open_images([a, b])
    win.canvas.set_mask(_box((40, 60), 1, 9, 1, 9))
    assert win.open_image(c, ask=False)  # replaces img0 in the strip
    assert win.filmstrip.count() == 2 and not win.undo_action.isEnabled()


def test_candidates_come_back_with_their_image_as_they_were_left(qtbot, tmp_path):
    cands = [np.zeros((120, 160), bool) for _ in range(3)]
    cands[0][10:30, 10:30] = True
    cands[1][20:100, 40:140] = True
    cands[2][:, :80] = True
    win = _window(qtbot, tmp_path, FakeSegmenter(candidates=cands, scores=[0.9, 0.8, 0.7], cache=True))
    assert win.open_images(_pngs(tmp_path, 2, 120, 160))
    strip = win.segments.strip
    click(qtbot, win.canvas, 50, 40)
    qtbot.waitUntil(lambda: len(strip.buttons) == 3, timeout=60_000)
    strip.buttons[1].click()
    win.canvas.apply_mask_op("invert")  # edited after choosing: the edit, not the candidate, comes back
    edited, logits = win.canvas.mask(), win.document.chosen_logits.copy()
    labels = [win.candidate_list.item(r).text() for r in range(3)]

    assert win.switch_image(1)
    assert win.candidate_list.count() == 0 and win.document.candidates is None
    qtbot.waitUntil(lambda: not strip.isVisible(), timeout=5_000)

    assert win.switch_image(0)
    assert [win.candidate_list.item(r).text() for r in range(3)] == labels
    assert win.candidate_list.currentRow() == 1
    assert np.array_equal(win.canvas.mask(), edited)
    assert np.array_equal(win.document.chosen_logits, logits)
    qtbot.waitUntil(lambda: len(strip.buttons) == 3 and strip.isVisible(), timeout=5_000)
    assert [b.isChecked() for b in strip.buttons] == [False, True, False]
    strip.buttons[2].click()  # the restored candidates still choose
    np.testing.assert_array_equal(win.canvas.mask() > 0, cands[2])
    win.undo_action.trigger()
    assert np.array_equal(win.canvas.mask(), edited)
    win.close()


def _proposal(shape: tuple[int, int], tau: float):
    from maskpix_desktop.core.automask import AutoMaskParams
    from maskpix_desktop.core.automask.parser import parse_instruction
    from maskpix_desktop.core.automask.proposal import AutoMaskResult

    mask = _box(shape, 5, 25, 10, 40) > 0
    return AutoMaskResult(
        mask=mask,
        soft_mask=mask.astype(np.float32),
        parsed=parse_instruction("make the cat red"),
        source="relevance",
        confidence=0.61,
        points=np.array([[20.0, 15.0]]),
        labels=np.array([1]),
        boxes=np.array([[10.0, 5.0, 40.0, 25.0]]),
        sam_logits=np.full((1, 8, 8), 2.5, np.float32),
        params=AutoMaskParams(tau=tau),
    )


def test_an_auto_mask_comes_back_with_its_image(window, tmp_path):
    win = window
    assert win.open_images(_pngs(tmp_path))
    result = _proposal((40, 60), 0.7)
    win.automasks.show(result, "Auto mask")
    status = win.automask_status.text()
    assert "confidence 0.61" in status and win.automask_result is result

    assert win.switch_image(1)  # the other image has no proposal, its status line is empty
    assert win.automask_result is None and win.automask_status.text() == ""
    assert win.document.chosen_logits is None
    win.tau_slider.setValue(30)

    assert win.switch_image(0)
    assert win.automask_result is result and win.automask_status.text() == status
    assert win.tau_slider.value() == 70 and win.tau_label.text() == "τ 0.70"
    assert win.automasks.tau_job == 0 and not win.automasks.tau_timer.isActive()  # nothing re-thresholds
    np.testing.assert_array_equal(win.document.chosen_logits, result.sam_logits)  # refines the next click
    np.testing.assert_array_equal(win.canvas.mask() > 0, result.mask)
