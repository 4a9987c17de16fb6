"""Project save and load off the GUI thread (issue 22.3): Ctrl+S of a ~20 MB project and File > Open project
keep the event loop ticking (no gap of 100 ms or more), the status bar shows the work, quitting waits for a
save in flight and says so, and a failed background save is reported like a failed save in place."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFileDialog

from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import ImageSaveError
from maskpix_desktop.core.jobs import EditParams
from maskpix_desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MAX_STALL_S = 0.100


@pytest.fixture(scope="module")
def big_session() -> sessions.Session:
    """A 3000x2000 noise photo (incompressible: ~18 MB of PNG) with a brushed mask and prompts."""
    rng = np.random.default_rng(22)
    image = rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    mask = np.zeros((2000, 3000), np.uint8)
    mask[300:1500, 400:2200] = 255
    mask[1500, 400:2200] = 77
    return sessions.Session(
        image=image, image_name="big.png", points=[(500.0, 400.0)], labels=[1], mask=mask,
        params=EditParams("make it gold", seed=5),
    )  # fmt: skip


class StallMeter:
    """Ticks every 3 ms on the GUI thread (a precise timer: a fast machine opens the project in under 0.1 s);
    ``max_gap()`` is the longest wait between two ticks that both saw ``working()`` true (the event loop's
    worst stall while the file thread works)."""

    def __init__(self, working):
        self.working = working
        self.ticks: list[tuple[float, bool]] = []
        self.timer = QTimer(interval=3, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(lambda: self.ticks.append((time.perf_counter(), bool(self.working()))))
        self.timer.start()

    def max_gap(self, start: float | None = None, end: float | None = None) -> float:
        """Between ``start`` and ``end`` (perf_counter) if given: every gap overlapping that span."""
        self.timer.stop()
        pairs = list(zip(self.ticks, self.ticks[1:], strict=False))
        if start is not None and end is not None:
            gaps = [b[0] - a[0] for a, b in pairs if b[0] > start and a[0] < end]
        else:
            gaps = [b[0] - a[0] for a, b in pairs if a[1] and b[1]]
        assert len(gaps) >= 10, "the work was too short to measure"
        return max(gaps)


def _running(win: MainWindow):
    jobs = win.file_jobs
    return lambda: jobs._current is not None or bool(jobs._queue)


def test_saving_a_20_mb_project_keeps_the_window_responsive(window, qtbot, tmp_path, big_session):
    win = window
    win.restore_session(big_session)
    target = tmp_path / "big.maskpix"
    win.project_path = target
    win.modified = True
    qtbot.wait(500)  # the first paint of the 6 MP photo is not part of the save
    meter = StallMeter(_running(win))
    qtbot.wait(100)
    start = time.perf_counter()
    win.save_project_action.trigger()  # Ctrl+S
    assert win.file_progress.isVisible() and "Saving big.maskpix" in win.file_label.text()
    win.edit_panel.instruction.setText("changed while saving")  # the window answers during the save
    qtbot.waitUntil(lambda: not win.file_jobs.busy(), timeout=120_000)
    stall = meter.max_gap(start, time.perf_counter())
    assert stall < MAX_STALL_S, f"the event loop stalled {stall * 1000:.0f} ms during the save"
    assert target.stat().st_size > 15_000_000
    assert not win.file_progress.isVisible() and win.file_label.text() == ""
    assert win.project_path == target
    assert win.modified and "big.maskpix *" in win.windowTitle()  # the change made during the save
    saved = sessions.load_project(target)
    assert saved.params.instruction == "make it gold"  # the snapshot taken when Ctrl+S was pressed
    np.testing.assert_array_equal(saved.image, big_session.image)
    np.testing.assert_array_equal(saved.mask, big_session.mask)


def test_opening_a_20_mb_project_reads_it_off_the_gui_thread(
    window, qtbot, tmp_path, big_session, monkeypatch
):
    win = window
    path = sessions.save_project(tmp_path / "big.maskpix", big_session, compress_level=1)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    meter = StallMeter(_running(win))
    win.open_project_dialog()
    assert win.file_progress.isVisible() and "Opening big.maskpix" in win.file_label.text()
    qtbot.waitUntil(lambda: not win.file_jobs.busy(), timeout=120_000)
    stall = meter.max_gap()
    # Reading and decoding run on the file thread; showing the photo (canvas pixmap) stays on the GUI one.
    assert stall < MAX_STALL_S, f"the event loop stalled {stall * 1000:.0f} ms while reading"
    assert win.project_path == path and not win.modified
    assert sessions.sessions_equal(win.session(), big_session)


def test_quitting_waits_for_a_save_in_flight_and_says_so(window, qtbot, tmp_path, big_session):
    win = window
    win.restore_session(big_session)
    target = tmp_path / "quit.maskpix"
    win.project_path = target
    win.save_project_action.trigger()
    win.close()
    assert win.isVisible(), "closed while the project was being written"
    assert "quit as soon as it is finished" in win.banner.label.text()
    assert "Saving quit.maskpix" in win.banner.label.text()
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=120_000)
    np.testing.assert_array_equal(sessions.load_project(target).image, big_session.image)


def test_a_failed_background_save_is_reported_and_keeps_the_star(window, qtbot, tmp_path, monkeypatch):
    win = window
    win.restore_session(sessions.Session(image=np.zeros((8, 8, 3), np.uint8), image_name="x.png"))
    target = tmp_path / "x.maskpix"
    win.project_path, win.modified = target, True

    def full(path: Path, s):
        raise ImageSaveError(f"Could not save '{path}': the disk is full.")

    monkeypatch.setattr(sessions, "save_project", full)
    win.save_project_action.trigger()
    qtbot.waitUntil(lambda: not win.file_jobs.busy(), timeout=10_000)
    text = win.banner.label.text()
    assert "The project was not saved" in text and "the disk is full" in text
    assert win.modified and not target.exists()


def test_repeated_ctrl_s_during_a_save_writes_the_newest_state(window, qtbot, tmp_path, big_session):
    win = window
    win.restore_session(big_session)
    target = tmp_path / "many.maskpix"
    win.project_path = target
    for i in range(5):
        win.edit_panel.seed.setValue(100 + i)
        win.save_project_action.trigger()
    qtbot.waitUntil(lambda: not win.file_jobs.busy(), timeout=120_000)
    assert sessions.load_project(target).params.seed == 104 and not win.modified
