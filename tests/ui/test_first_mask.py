"""Issue 20 (open-to-first-mask) and 19 (SAM candidates as thumbnails): what the canvas shows while SAM
prepares, a click during the encode, and the candidate thumbnails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import FakeSegmenter, FakeService
from test_canvas import click

from maskpix_desktop.ui.main_window import MainWindow
from maskpix_desktop.ui.worker import MessageKind, Task


def _window(qtbot, tmp_path: Path, segmenter: FakeSegmenter) -> MainWindow:
    from PySide6.QtCore import QSettings

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    service = FakeService(segmenter=segmenter)
    win = MainWindow(settings=settings, service_factory=lambda: service, load_models=False, autosave=False)
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    qtbot.waitExposed(win)
    return win


def _image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_a_click_during_the_encode_waits_for_it_and_the_badge_shows_then_clears(qtbot, tmp_path):
    seg = FakeSegmenter(delay=0.6, cache=True)  # a slow encoder with SAM's embedding cache
    win = _window(qtbot, tmp_path, seg)
    events: list[str] = []
    badge = win.segments.badge
    win.segments.preparingChanged.connect(
        lambda on: events.append(f"preparing:{on}:{'shown' if badge.isVisible() else 'hidden'}")
    )
    finished = []  # connected after the window's own handler: a message lands here after it was handled
    win.client.message.connect(lambda m: finished.append(m) if m.kind is MessageKind.FINISHED else None)
    win.client.message.connect(
        lambda m: events.append(f"{m.task}:{m.kind}") if m.task is Task.SEGMENT else None
    )
    win.canvas.maskEdited.connect(lambda: events.append("mask"))

    win.opener.show_image(_image(), None, name="slow")
    assert win.segments.preparing() and badge.isVisible()
    click(qtbot, win.canvas, 50, 40)  # during the encode (0.6 s)
    qtbot.waitUntil(lambda: "segment:finished" in events, timeout=60_000)  # the first job imports torch

    # Cleared when the embedding was ready, before the click's job ran; the click's mask came after.
    assert events == [
        "preparing:True:shown",
        "preparing:False:hidden",
        "segment:started",
        "mask",
        "segment:finished",
    ]
    assert [(m.task, m.result is None) for m in finished] == [(Task.ENCODE, True), (Task.SEGMENT, False)]
    assert seg.encodes == 1 and seg.images == 2  # the click's job reused the encode's embedding
    x, y = (int(v) for v in win.canvas.prompts().points[0])
    assert abs(x - 50) <= 1 and abs(y - 40) <= 1
    expected = np.zeros((120, 160), bool)
    expected[y - 5 : y + 5, x - 5 : x + 5] = True  # the fake's 10x10 square around the click
    np.testing.assert_array_equal(win.canvas.mask() > 0, expected)
    assert not win.segments.preparing() and not badge.isVisible()
    win.close()


def test_a_new_image_clears_the_badge_of_the_old_encode_and_shows_its_own(qtbot, tmp_path):
    seg = FakeSegmenter(delay=0.4, cache=True)
    win = _window(qtbot, tmp_path, seg)
    states: list[bool] = []
    win.segments.preparingChanged.connect(states.append)
    win.opener.show_image(_image(), None, name="a")
    win.opener.show_image(_image()[::-1].copy(), None, name="b")
    qtbot.waitUntil(lambda: not win.segments.preparing(), timeout=60_000)
    assert states == [True, False, True, False]
    win.close()


def test_a_failed_encode_clears_the_badge(qtbot, tmp_path):
    class Broken(FakeSegmenter):
        def set_image(self, image: np.ndarray) -> bool:
            raise RuntimeError("no encoder")

    win = _window(qtbot, tmp_path, Broken())
    states: list[bool] = []
    win.segments.preparingChanged.connect(states.append)
    win.opener.show_image(_image(), None, name="x")
    qtbot.waitUntil(lambda: not win.segments.preparing(), timeout=60_000)
    assert states == [True, False] and not win.segments.badge.isVisible()
    assert "could not read this image" in win.statusBar().currentMessage()
    win.close()


@pytest.fixture
def three_candidates() -> list[np.ndarray]:
    cands = [np.zeros((120, 160), bool) for _ in range(3)]
    cands[0][10:30, 10:30] = True
    cands[1][20:100, 40:140] = True
    cands[2][:, :80] = True
    return cands


def test_three_thumbnails_appear_and_the_second_chooses_candidate_two(qtbot, tmp_path, three_candidates):
    seg = FakeSegmenter(candidates=three_candidates, scores=[0.9, 0.8, 0.7], cache=True)
    win = _window(qtbot, tmp_path, seg)
    strip = win.segments.strip
    win.opener.show_image(_image(), None, name="cands")
    assert not strip.isVisible()
    click(qtbot, win.canvas, 50, 40)
    qtbot.waitUntil(lambda: len(strip.buttons) == 3 and strip.isVisible(), timeout=60_000)
    np.testing.assert_array_equal(win.canvas.mask() > 0, three_candidates[0])  # the best shown first
    assert [b.isChecked() for b in strip.buttons] == [True, False, False]
    icon = strip.buttons[1].icon().pixmap(strip.buttons[1].iconSize()).toImage()
    assert max(icon.width(), icon.height()) == 84

    strip.buttons[1].click()
    np.testing.assert_array_equal(win.canvas.mask() > 0, three_candidates[1])
    np.testing.assert_array_equal(win.document.session().mask > 0, three_candidates[1])
    assert win.candidate_list.currentRow() == 1
    assert [b.isChecked() for b in strip.buttons] == [False, True, False]
    win.canvas.clear_prompts()  # no prompts: no candidates, no thumbnails
    qtbot.waitUntil(lambda: not strip.isVisible(), timeout=5_000)
    assert strip.buttons == []
    win.close()
