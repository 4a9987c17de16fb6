"""The random monkey (issue 22.5), a slow test run before each release: ~300 seeded random events (clicks,
drags, wheel, shortcuts, typing, tab switches, mask operations, opening other images, saving) at the real
window on the tiny models. Nothing may raise, nothing may log a traceback, and the window must still answer.

Replay a failure with the seed it prints:
``MASKPIX_MONKEY_SEED=<seed> pytest -m slow tests/ui/test_monkey.py``
(``MASKPIX_MONKEY_EVENTS`` changes the number of events).
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from maskpix_desktop.core import images

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

SHORTCUTS = [
    (Qt.Key.Key_P, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_B, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_E, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_BracketLeft, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_BracketRight, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_Backspace, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier),
    (Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier),
    (Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier),
    (Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier),
    (Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier),
    (Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier),
    (Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier),
    (Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier),
    (Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier),
    (Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier),
    (Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier),
]
BUTTONS = [Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton]


def _seed() -> int:
    env = os.environ.get("MASKPIX_MONKEY_SEED")
    return int(env) if env else random.SystemRandom().randrange(2**31)


class Monkey:
    def __init__(self, win, qtbot, rng: random.Random, photos: list):
        self.win, self.qtbot, self.rng, self.photos = win, qtbot, rng, photos
        self.trace: list[str] = []

    def _pos(self, widget) -> QPoint:
        return QPoint(self.rng.randrange(max(1, widget.width())), self.rng.randrange(max(1, widget.height())))

    def step(self) -> None:
        r, win = self.rng, self.win
        vp = win.canvas.viewport()
        kind = r.choices(
            ["click", "drag", "wheel", "key", "type", "tab", "op", "tau", "open", "button"],
            weights=[20, 15, 6, 25, 8, 4, 5, 3, 2, 6],
        )[0]
        self.trace.append(kind)
        if kind == "click":
            QTest.mouseClick(vp, r.choice(BUTTONS), Qt.KeyboardModifier.NoModifier, self._pos(vp))
        elif kind == "drag":
            a, b = self._pos(vp), self._pos(vp)
            QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
            for k in range(1, 6):
                QTest.mouseMove(vp, a + (b - a) * k / 5)
            QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
        elif kind == "wheel":
            win.canvas.zoom_by(r.choice([0.5, 0.8, 1.25, 2.0]))
        elif kind == "key":
            key, mods = r.choice(SHORTCUTS)
            target = r.choice([win.canvas, win])
            QTest.keyClick(target, key, mods)
        elif kind == "type":
            text = "".join(r.choice("abc xyz make it red !?") for _ in range(r.randrange(1, 12)))
            if r.random() < 0.2:
                win.edit_panel.instruction.clear()
            QTest.keyClicks(win.edit_panel.instruction, text)  # QTest types Latin-1 only (aborts otherwise)
            if r.random() < 0.2:
                win.edit_panel.instruction.insert(r.choice(["猫", "é", "🙂"]))
        elif kind == "tab":
            win.tabs.setCurrentIndex(r.randrange(win.tabs.count()))
        elif kind == "op":
            win.canvas.apply_mask_op(r.choice(["dilate", "erode", "feather", "invert", "clear"]))
        elif kind == "tau":
            win.tau_slider.setValue(r.randrange(5, 96))
        elif kind == "open":
            win.open_image(r.choice(self.photos))
        else:
            button = r.choice([win.edit_panel.run_button, win.edit_panel.cancel_button, win.automask_button])
            if button.isEnabled():
                QTest.mouseClick(button, Qt.MouseButton.LeftButton)
        self.qtbot.wait(r.randrange(0, 40))


def test_random_monkey_leaves_the_window_working(
    tiny_window, qtbot, tmp_path, rng_image, monkeypatch, caplog, capsys
):
    seed = _seed()
    events = int(os.environ.get("MASKPIX_MONKEY_EVENTS", "300"))
    print(f"monkey seed {seed} ({events} events)")
    rng = random.Random(seed)
    win = tiny_window
    photos = []
    for i, (h, w) in enumerate([(96, 128), (40, 56), (96, 128), (64, 48)]):
        photos.append(tmp_path / f"p{i}.png")
        images.save_image(photos[-1], rng_image(h, w, seed=20 + i))
    # Nothing may block on a modal dialog: answer them the way a hurried user would.
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "monkey.maskpix"), "")
    )
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([], ""))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    from maskpix_desktop.ui import export_dialog

    monkeypatch.setattr(export_dialog.ExportDialog, "exec", lambda dlg: 0)
    escaped: list[str] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, v, tb: escaped.append(f"{t.__name__}: {v}"))
    caplog.set_level(logging.WARNING)

    assert win.open_image(photos[0])
    p = win.edit_panel
    p.long_side.setCurrentIndex(p.long_side.findData(256))
    p.steps.setValue(2)
    p.instruction.setText("make it red")
    monkey = Monkey(win, qtbot, rng, photos)
    try:
        for _ in range(events):
            monkey.step()
        qtbot.waitUntil(lambda: not win.client.is_busy() and not win.file_jobs.busy(), timeout=120_000)
        qtbot.wait(200)
        tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
        assert not escaped, escaped
        assert not tracebacks, "\n".join(r.getMessage() for r in tracebacks)
        # Still responsive: a timer fires, an image opens, an edit runs to the end.
        fired: list[float] = []
        t0 = time.perf_counter()
        QTimer.singleShot(0, lambda: fired.append(time.perf_counter() - t0))
        qtbot.waitUntil(lambda: bool(fired), timeout=1_000)
        assert win.open_image(photos[1]) and win.canvas.image().shape[:2] == (40, 56)
        done: list = []
        win.client.message.connect(lambda m: m.task == "edit" and m.final and done.append(m))
        win.edit_panel.instruction.setText("make it blue")
        win.edit_panel.run_button.setEnabled(True)
        win.run_edit()
        qtbot.waitUntil(lambda: bool(done), timeout=60_000)
        assert done[0].kind == "finished", done[0].error
    except BaseException as exc:
        raise AssertionError(
            f"monkey seed {seed} failed after {len(monkey.trace)} events (last: {monkey.trace[-10:]}); "
            f"replay with MASKPIX_MONKEY_SEED={seed}: {exc}"
        ) from exc
