"""Issue 19.10: exports default to Pictures, projects to Documents (or the last folder used, never the
app's resources); the export dialog shows the whole path; "Open folder" after an export."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QFileDialog
from test_dialogs import make_result

from maskpix_desktop.paths import resources_dir
from maskpix_desktop.ui.export_dialog import ExportDialog
from maskpix_desktop.ui.main_window import MainWindow

PICTURES = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation))
DOCUMENTS = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation))


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)


def _window(qtbot, settings: QSettings) -> MainWindow:
    win = MainWindow(settings=settings, load_models=False, autosave=False)
    qtbot.addWidget(win)
    return win


def _sample() -> Path:
    return sorted(resources_dir().glob("samples/*.jpg"))[0]


def test_export_defaults_to_pictures_then_the_last_folder_and_offers_open_folder(
    qtbot, settings, tmp_path, monkeypatch
):
    win = _window(qtbot, settings)
    assert win.open_image(_sample())  # an image from the app's own resources folder
    win.results.add_result(make_result())
    shown: list[str] = []
    target = tmp_path / "my exports"

    def export_there(dlg: ExportDialog) -> int:
        shown.append(dlg.folder_edit.text())
        dlg.folder_edit.setText(str(target))
        assert dlg.do_export()
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ExportDialog, "exec", export_there)
    win.export_current()
    assert shown == [str(PICTURES / "MaskPix")]
    assert not Path(shown[0]).is_relative_to(resources_dir())
    assert (target / f"{_sample().stem}_blended.png").is_file()

    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    assert win.banner.isVisibleTo(win) and win.banner.action_button.text() == "Open folder"
    win.banner.action_button.click()
    assert opened == [str(target)]

    monkeypatch.setattr(ExportDialog, "exec", lambda dlg: shown.append(dlg.folder_edit.text()) and 0)
    win.export_current()  # the next export starts where the last one went
    assert shown[1] == str(target)
    win.close()


def test_export_dialog_shows_the_whole_path(qtbot, tmp_path):
    folder = tmp_path / "a rather long folder name for the exports" / "of this lab" / "2024-06 experiments"
    dlg = ExportDialog(make_result(), folder)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    edit = dlg.folder_edit
    needed = edit.fontMetrics().horizontalAdvance(str(folder))
    assert edit.width() >= needed and edit.toolTip() == str(folder)


def test_projects_default_to_documents_then_the_last_folder(qtbot, settings, tmp_path, monkeypatch):
    win = _window(qtbot, settings)
    assert win.open_image(_sample())
    starts: list[str] = []
    chosen = tmp_path / "projects" / "dog.maskpix"
    chosen.parent.mkdir()

    def save_as(parent, title, start, filters):
        starts.append(start)
        return str(chosen), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_as)
    assert win.save_project_as(wait=True)
    assert starts == [str(DOCUMENTS / f"{_sample().stem}.maskpix")]
    assert chosen.is_file()
    win.close()

    again = _window(qtbot, settings)
    opened: list[str] = []
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda p, t, start, f: opened.append(start) or ("", "")
    )
    again.open_project_dialog()
    assert opened == [str(chosen.parent)]
    again.close()
