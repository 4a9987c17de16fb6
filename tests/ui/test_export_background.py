"""Export off the GUI thread (issue 22.3): the Export button writes the files on the window's file thread.

Through the real window and its modal dialog: a 3000x2000 result exports with no event-loop gap of 100 ms
or more, the dialog shows a busy bar and cannot be cancelled half-way, quitting waits for the export and
says so, and a full disk is still reported in the dialog. At the dialog level: the files (and the rename
notice, and the overwrite question) are the same as the synchronous export's.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from test_background_io import MAX_STALL_S, StallMeter
from test_reliability import _fail_with, _real_link, _real_replace

from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.ui.export_dialog import WAIT_TEXT, ExportDialog
from maskpix_desktop.ui.file_jobs import FileJobs
from maskpix_desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def make_result(h: int, w: int, seed: int = 3) -> EditResult:
    """A photo-like result (gradients plus noise, so PNG has real work to do) with a mask and metrics."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], axis=-1)
    image = (base + rng.integers(0, 24, (h, w, 3))).clip(0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    baseline = (255 - image).astype(np.uint8)
    blended = np.where(mask[..., None], baseline, image)
    for arr in (image, mask, baseline, blended):
        arr.flags.writeable = False  # as the window keeps results
    return EditResult(
        request=EditRequest(image=image, mask=mask, params=EditParams("invert it", seed=seed)),
        baseline=baseline,
        blended=blended,
        edit=baseline,
        mask_used=mask,
        working_size=(h, w),
        timings={"total_s": 1.0},
        metrics={"baseline": {"leakage_mean": 30.0}, "blended": {"leakage_mean": 0.0}},
    )


@pytest.fixture(scope="module")
def big_result() -> EditResult:
    return make_result(2000, 3000)


def with_result(win: MainWindow, result: EditResult, out: Path, qtbot) -> None:
    """The window shows ``result`` (image photo.png) and exports to ``out`` by default."""
    image = result.request.image
    win.restore_session(
        sessions.Session(image=image, image_name="photo.png", image_path=str(out.parent / "photo.png"),
                         history=[result], current=0)
    )  # fmt: skip
    win.settings.setValue("export/dir", str(out))
    qtbot.wait(300)  # the first paint of the photo is not part of the export


def export_through_window(win: MainWindow, action: Callable[[ExportDialog], None]) -> ExportDialog:
    """``win.export_current()`` with the real modal ``exec``; ``action(dialog)`` runs once it is shown."""
    seen: list[ExportDialog] = []

    def poll() -> None:
        shown = [d for d in win.findChildren(ExportDialog) if d.isVisible()]
        if not shown:
            QTimer.singleShot(10, poll)
            return
        seen.append(shown[0])
        action(shown[0])

    QTimer.singleShot(0, poll)
    win.export_current()  # returns when the dialog closes
    assert seen, "the export dialog never showed"
    return seen[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ----------------------------------------------------------------------------------- through the window


def test_exporting_a_3000x2000_result_keeps_the_window_responsive(window, qtbot, tmp_path, big_result):
    win = window
    out = tmp_path / "exports"
    with_result(win, big_result, out, qtbot)
    meter = StallMeter(lambda: True)
    span: dict[str, float] = {}
    during: dict[str, object] = {}

    def click(dlg: ExportDialog) -> None:
        qtbot.wait(100)  # ticks before the click
        span["start"] = time.perf_counter()
        dlg.export_button.click()
        during.update(
            busy_bar=dlg.progress.isVisible(),
            label=dlg.progress_label.text(),
            options=dlg.options.isEnabled(),
            status=win.file_label.text(),
        )
        win.file_jobs.changed.connect(lambda: span.setdefault("end", time.perf_counter()))

    dlg = export_through_window(win, click)
    assert dlg.file_jobs is win.file_jobs  # the window's file thread: quitting waits for it
    stall = meter.max_gap(span["start"], span["end"])
    assert span["end"] - span["start"] > 0.5, "the export was too quick to show a stall"
    assert stall < MAX_STALL_S, f"the event loop stalled {stall * 1000:.0f} ms during the export"
    assert during["busy_bar"] and not during["options"]
    assert "Exporting 7 files to exports" in str(during["label"]) and "Exporting 7 files" in str(
        during["status"]
    )
    assert len(dlg.exported_paths) == 7 and all(p.is_file() for p in dlg.exported_paths.values())
    assert "Exported 7 files" in win.statusBar().currentMessage()
    assert not win.file_progress.isVisible()


def test_quitting_during_an_export_waits_for_it_and_says_so(window, qtbot, tmp_path):
    win = window
    out = tmp_path / "exports"
    with_result(win, make_result(1000, 1500), out, qtbot)
    during: dict[str, object] = {}

    def click_then_quit(dlg: ExportDialog) -> None:
        dlg.export_button.click()
        dlg.reject()  # Cancel / Esc half-way: ignored
        qtbot.keyClick(dlg, Qt.Key.Key_Escape)
        dlg.close()
        win.close()  # e.g. the session ends
        during.update(
            dialog=dlg.isVisible(), window=win.isVisible(), banner=win.banner.label.text(),
            wait=dlg.progress_label.text(), exporting=dlg.exporting(),
        )  # fmt: skip

    dlg = export_through_window(win, click_then_quit)
    assert during["dialog"] and during["exporting"], "the dialog closed half-way through the export"
    assert WAIT_TEXT in str(during["wait"])
    assert during["window"], "the window closed while the files were being written"
    assert "Exporting 7 files" in str(during["banner"])
    assert "quit as soon as it is finished" in str(during["banner"])
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=120_000)
    assert dlg.result() == ExportDialog.DialogCode.Accepted
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 7 and all(n.startswith("photo_") for n in names), names  # no staging folder left


@pytest.mark.parametrize(("code", "text"), [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_a_failed_background_export_is_reported_in_the_dialog(
    window, qtbot, tmp_path, monkeypatch, code, text
):
    win = window
    out = tmp_path / "exports"
    with_result(win, make_result(200, 300), out, qtbot)
    errors: list[str] = []
    monkeypatch.setattr(ExportDialog, "show_error", staticmethod(lambda dlg, m: errors.append(m)))
    monkeypatch.setattr(os, "replace", _fail_with(code))
    monkeypatch.setattr(os, "link", _fail_with(code))
    after: dict[str, object] = {}

    def click_fail_retry(dlg: ExportDialog) -> None:
        dlg.export_button.click()
        qtbot.waitUntil(lambda: not dlg.exporting(), timeout=60_000)
        after.update(
            visible=dlg.isVisible(), options=dlg.options.isEnabled(), button=dlg.export_button.isEnabled(),
            files=sorted(p.name for p in out.iterdir()) if out.exists() else [], errors=list(errors),
        )  # fmt: skip
        monkeypatch.setattr(os, "replace", _real_replace)  # room again: the same export works
        monkeypatch.setattr(os, "link", _real_link)
        dlg.export_button.click()

    dlg = export_through_window(win, click_fail_retry)
    assert len(after["errors"]) == 1 and text in after["errors"][0], after["errors"]
    assert after["visible"] and after["options"] and after["button"], "the dialog is not usable again"
    assert after["files"] == []  # no partial file, no staging folder
    assert len(errors) == 1 and dlg.result() == ExportDialog.DialogCode.Accepted
    assert (out / "photo_blended.png").is_file()


# -------------------------------------------------------------------------------------- the dialog alone


def test_background_export_writes_the_same_files_as_the_synchronous_one(qtbot, tmp_path, monkeypatch):
    result = make_result(120, 160)
    notices: list[str] = []
    asked: list[list[str]] = []
    monkeypatch.setattr(ExportDialog, "show_notice", staticmethod(lambda dlg, m: notices.append(m)))
    monkeypatch.setattr(ExportDialog, "ask_overwrite", staticmethod(lambda dlg, n: asked.append(n) or True))
    monkeypatch.setattr(ExportDialog, "show_error", staticmethod(lambda dlg, m: pytest.fail(m)))
    sync = ExportDialog(result, tmp_path / "sync", stem="a:b")
    jobs = FileJobs()
    background = ExportDialog(result, tmp_path / "background", stem="a:b", file_jobs=jobs)
    for dlg in (sync, background):
        qtbot.addWidget(dlg)
        dlg.format_combo.setCurrentIndex(dlg.format_combo.findData("webp"))
    assert sync.do_export()
    background.show()
    for _ in range(2):  # the second time every file exists: the overwrite question, then the same files
        with qtbot.waitSignal(background.accepted, timeout=60_000):
            background.export_button.click()
            assert background.exporting() and background.progress.isVisible()
        assert not background.exporting() and not background.progress.isVisible()
        assert snapshot(tmp_path / "background") == snapshot(tmp_path / "sync")
        background.show()
    assert len(snapshot(tmp_path / "sync")) == 7
    assert background.renamed == sync.renamed and any("a_b" in line for line in sync.renamed)
    assert notices == ["\n".join(sync.renamed)] * 3  # once for the synchronous export, twice here
    assert len(asked) == 1 and len(asked[0]) == 7
    assert {k: p.name for k, p in background.exported_paths.items()} == {
        k: p.name for k, p in sync.exported_paths.items()
    }
