"""Default folders for exports (the user's Pictures) and projects (Documents), or the last one used.

The last folders are kept in QSettings (``export/dir``, ``project/dir``); one that no longer exists falls
back to the default. Never the app's own resources folder (where the samples live).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, QUrl
from PySide6.QtGui import QDesktopServices

EXPORT_KEY = "export/dir"
PROJECT_KEY = "project/dir"
EXPORT_SUBFOLDER = "MaskPix"


def _standard(location: QStandardPaths.StandardLocation) -> Path:
    found = QStandardPaths.writableLocation(location)
    return Path(found) if found else Path.home()


def _last(settings: QSettings, key: str) -> Path | None:
    value = settings.value(key)
    if not value:
        return None
    path = Path(str(value)).expanduser()
    # an export folder is created on export: its parent existing is enough
    return path if path.is_dir() or path.parent.is_dir() else None


def export_dir(settings: QSettings) -> Path:
    """The last export folder, else ``<Pictures>/MaskPix``."""
    last = _last(settings, EXPORT_KEY)
    if last is not None:
        return last
    return _standard(QStandardPaths.StandardLocation.PicturesLocation) / EXPORT_SUBFOLDER


def project_dir(settings: QSettings) -> Path:
    """The last folder a project was saved to or opened from, else Documents."""
    last = _last(settings, PROJECT_KEY)
    if last is not None and last.is_dir():
        return last
    return _standard(QStandardPaths.StandardLocation.DocumentsLocation)


def remember(settings: QSettings, key: str, folder: str | Path) -> None:
    """Keep ``folder`` as the last one used for ``key`` (``EXPORT_KEY`` or ``PROJECT_KEY``)."""
    settings.setValue(key, str(Path(folder)))


def open_folder(folder: str | Path) -> bool:
    """Show ``folder`` in the desktop's file manager; False when there is none to ask."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
