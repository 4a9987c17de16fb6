"""Every open image of the filmstrip with unsaved work has its own autosave: a crash loses none of them,
the next launch offers them back together (the newest on show, the others in the strip), a declined one is
kept, and closing an image ends its autosave cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from test_filmstrip_keep import _box, _pngs
from test_recovery import _launch

from maskpix_desktop.core import session as sessions
from maskpix_desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPE = (40, 60)


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("MASKPIX_DATA_DIR", str(folder))
    monkeypatch.delenv("MASKPIX_RESTORE", raising=False)
    return folder


def _first_launch(qtbot, tmp_path: Path) -> MainWindow:
    from fakes import FakeService

    settings = QSettings(str(tmp_path / "first.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, service_factory=FakeService, load_models=False)
    qtbot.addWidget(win)
    win.show()
    return win


def _three_edited_images(win: MainWindow, tmp_path: Path) -> list[np.ndarray]:
    """img0 and img1 put away with a mask each, img2 on show with its own; returns the three masks."""
    masks = [_box(SHAPE, 2, 12, 3, 20), _box(SHAPE, 5, 30, 10, 50, 128), _box(SHAPE, 20, 38, 30, 58)]
    assert win.open_images(_pngs(tmp_path, 3))
    for i, mask in enumerate(masks):
        assert win.switch_image(i)
        win.canvas.set_mask(mask)
    for saver in win.autosaves.away.values():
        assert saver.flush(10)  # the images put away are written before the one on show: it is the newest
    win.autosave_now(wait=True)
    return masks


def _crash(win: MainWindow) -> None:
    """What a kill does to every autosave: the OS drops the locks, the marker files and autosaves stay."""
    savers = [win.autosaver, *win.autosaves.away.values()]
    for saver in savers:
        assert saver.flush(10)
        os.close(saver._fd)
        saver._fd = None
        saver.close()  # its thread ends; without the lock's fd it cannot remove the marker
    assert all(saver._thread is None for saver in savers)  # no writer thread left behind
    win.autosaves.enabled = False  # the dead process writes nothing more
    win.close()


def test_each_image_put_away_keeps_its_own_autosave(qtbot, tmp_path, data):
    win = _first_launch(qtbot, tmp_path)
    masks = _three_edited_images(win, tmp_path)
    away = win.autosaves.away
    assert len(away) == 2 and win.autosaver not in away.values()
    slots = {saver.path for saver in [win.autosaver, *away.values()]}
    assert len(slots) == 3  # three slots: session, session-2, session-3
    for saver in away.values():
        assert saver.flush(10) and saver.lock_path.exists()
    saved = sorted(
        (sessions.load_project(p) for p in slots), key=lambda s: s.image_name
    )  # each autosave holds its own image's mask
    for s, mask in zip(saved, masks, strict=True):
        np.testing.assert_array_equal(s.mask, mask)

    saver0 = next(s for s in away.values() if _name(s) == "img0.png")
    assert win.switch_image(0)  # its autosave comes back with it and keeps writing it
    assert win.autosaver is saver0 and len(away) == 2
    win.canvas.apply_mask_op("invert")
    win.autosave_now(wait=True)
    np.testing.assert_array_equal(sessions.load_project(saver0.path).mask, 255 - masks[0])

    key, saver1 = next((k, s) for k, s in away.items() if _name(s) == "img1.png")
    assert win.strip.close(1)  # img1 closed (its work discarded): its autosave ends cleanly
    assert key not in away and saver1.closed and not saver1.lock_path.exists()
    win.close()
    assert not any(Path(p).with_suffix(".lock").exists() for p in slots)  # a clean exit: nothing offered


def _name(saver: sessions.Autosaver) -> str:
    return sessions.load_project(saver.path).image_name


def test_a_crash_loses_no_open_image_and_all_come_back(qtbot, tmp_path, data):
    win = _first_launch(qtbot, tmp_path)
    masks = _three_edited_images(win, tmp_path)
    _crash(win)

    asked = []
    again = _launch(qtbot, tmp_path, ask=lambda w, text: asked.append(text) or True)
    assert len(asked) == 1 and all(f"img{i}.png" in asked[0] for i in range(3))
    labels = [again.filmstrip.item(i).text() for i in range(again.filmstrip.count())]
    assert sorted(labels) == ["img0.png *", "img1.png *", "img2.png *"]
    shown = again.document.image_name  # the newest autosave is on show
    assert shown == "img2.png" and again.document.recovered
    for i in range(3):
        name = again.filmstrip.item(i).text().removesuffix(" *")
        assert again.switch_image(i)
        assert again.document.image_name == name and again.document.recovered
        np.testing.assert_array_equal(again.canvas.mask(), masks[int(name[3])])
    autosaves = data / "autosave"
    assert len(again.autosaves.away) == 2  # the recovered images not on show keep autosaving
    again.close()
    assert not list(autosaves.glob("*.lock")) and not list(autosaves.glob("previous*.maskpix"))


def test_declined_autosaves_are_each_kept(qtbot, tmp_path, data):
    win = _first_launch(qtbot, tmp_path)
    masks = _three_edited_images(win, tmp_path)
    _crash(win)
    again = _launch(qtbot, tmp_path, ask=lambda w, text: False)
    assert again.canvas.image() is None and again.filmstrip.count() == 0
    kept = sorted((data / "autosave").glob("previous*.maskpix"))
    assert [p.name for p in kept] == ["previous-2.maskpix", "previous-3.maskpix", "previous.maskpix"]
    got = sorted(((s := sessions.load_project(p)).image_name, s.mask) for p in kept)
    for (name, mask), i in zip(got, range(3), strict=True):
        assert name == f"img{i}.png"
        np.testing.assert_array_equal(mask, masks[i])
    again.close()
    third = _launch(qtbot, tmp_path, ask=lambda w, text: pytest.fail("asked twice"))
    third.close()
