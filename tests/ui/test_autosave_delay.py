"""Autosave has a maximum delay (issue 22.2): while the user keeps painting, the debounce restarts at every
stroke, yet an autosave still runs at least every ``AUTOSAVE_MAX_DELAY_MS``. A real process paints strokes
continuously and is killed; the autosave it leaves holds every stroke older than that bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from test_recovery import _isolated_env

from maskpix_desktop.core import images
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import ProjectError
from maskpix_desktop.ui import autosave_controller

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STROKE_EVERY_MS = 150  # far below the debounce: without a maximum delay no autosave would ever run
DEBOUNCE_MS = 3000
MAX_DELAY_MS = 1000
SLACK_S = 1.5  # time for the autosave write itself on a busy machine

# The real start-up with a photo on the command line; then brush strokes with real mouse events on the
# canvas, one row each, every STROKE_EVERY_MS, logging each finished stroke's row and wall time.
DRIVER = textwrap.dedent(
    """
    import json, sys, time
    from PySide6.QtCore import QPoint, Qt, QTimer
    from PySide6.QtTest import QTest
    from maskpix_desktop.ui.app import create_app, run_app
    from maskpix_desktop.ui.main_window import MainWindow

    spec = json.loads(sys.argv[1])
    app = create_app()
    log = open(spec["log"], "a", buffering=1)
    state = {"i": 0}

    def window():
        return next(w for w in app.topLevelWidgets() if isinstance(w, MainWindow))

    def start():
        win = window()
        win.set_tool("brush")
        win.brush_slider.setValue(3)
        win.hardness_slider.setValue(100)
        timer = QTimer(win, interval=spec["every_ms"])
        timer.timeout.connect(stroke)
        timer.start()
        win._stroke_timer = timer

    def stroke():
        win = window()
        c = win.canvas
        y = 2 + 3 * (state["i"] % 30)
        vp = c.viewport()
        a, b = c.image_to_viewport(4.5, y + 0.5), c.image_to_viewport(120.5, y + 0.5)
        QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        for k in range(1, 9):
            p = QPoint(a.x() + (b.x() - a.x()) * k // 8, a.y())
            QTest.mouseMove(vp, p)
        QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
        log.write(json.dumps({"i": state["i"], "y": y, "t": time.time()}) + "\\n")
        state["i"] += 1

    QTimer.singleShot(300, start)
    sys.exit(run_app(spec["argv"]))
    """
)


def test_default_maximum_delay_is_documented_and_overridable(monkeypatch):
    assert autosave_controller.AUTOSAVE_MAX_DELAY_MS == 10_000 > autosave_controller.AUTOSAVE_DELAY_MS
    monkeypatch.setenv(autosave_controller.ENV_AUTOSAVE_MAX_MS, "1234")
    assert autosave_controller.autosave_max_delay_ms() == 1234
    monkeypatch.setenv(autosave_controller.ENV_AUTOSAVE_MAX_MS, "soon")
    assert autosave_controller.autosave_max_delay_ms() == autosave_controller.AUTOSAVE_MAX_DELAY_MS


def test_killed_during_continuous_painting_keeps_strokes_older_than_the_max_delay(tmp_path, rng_image):
    data = tmp_path / "data"
    photo = tmp_path / "photo.png"
    images.save_image(photo, rng_image(96, 128, seed=4))  # 30 stroke rows: 2, 5, ..., 89
    log = tmp_path / "strokes.jsonl"
    spec = {
        "argv": [str(photo), "--device", "cpu", "--no-models"],
        "log": str(log),
        "every_ms": STROKE_EVERY_MS,
    }
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = _isolated_env(tmp_path, data)
    env.update(MASKPIX_AUTOSAVE_MS=str(DEBOUNCE_MS), MASKPIX_AUTOSAVE_MAX_MS=str(MAX_DELAY_MS))
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def strokes() -> list[dict]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]

    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the driver never painted long enough"
            done = strokes()
            # 25 strokes (~3.75 s of painting): longer than the max delay + slack, shorter than the
            # 30 distinct rows, and the debounce never fired (every gap is far below it).
            if len(done) >= 25:
                break
            time.sleep(0.05)
        killed_at = time.time()
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    done = strokes()
    gaps = np.diff([s["t"] for s in done])
    assert gaps.max() < DEBOUNCE_MS / 1000 / 2, gaps  # painting was continuous: the debounce never ran out

    try:
        saved = sessions.load_project(data / "autosave" / "session.maskpix")
    except ProjectError as exc:
        pytest.fail(f"no autosave while painting continuously: {exc}")
    old = [s for s in done if s["t"] < killed_at - MAX_DELAY_MS / 1000 - SLACK_S]
    assert len(old) >= 5, (len(old), len(done))
    missing = [s["i"] for s in old if not saved.mask[s["y"], 60]]
    assert not missing, f"strokes older than the max delay missing from the autosave: {missing}"
    assert os.path.exists(data / "autosave" / "session.lock")
