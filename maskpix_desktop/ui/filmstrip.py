"""The filmstrip: one thumbnail per open image (click to switch), and thumbnails in the results history.

Widgets only: which document a thumbnail stands for is the :mod:`~maskpix_desktop.ui.strip_controller`'s
business. Thumbnails are strided samples of the arrays (a result on disk reads only the rows it needs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImageReader, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QMenu, QWidget

from maskpix_desktop.ui.qimage import to_pixmap

__all__ = ["HISTORY_ICON", "STRIP_ICON", "Filmstrip", "file_icon", "thumbnail", "thumbnail_icon"]

STRIP_ICON = QSize(72, 48)
HISTORY_ICON = QSize(48, 32)


def thumbnail(image: np.ndarray, size: QSize) -> np.ndarray:
    """A strided sample of ``image`` no larger than about ``size`` (keeps the aspect ratio)."""
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(max(w / size.width(), h / size.height()))))
    return np.ascontiguousarray(image[::step, ::step])


def thumbnail_icon(image: np.ndarray | None, size: QSize) -> QIcon:
    """An icon of ``image`` (an empty icon for None or an empty array)."""
    if image is None or image.size == 0:
        return QIcon()
    pix = to_pixmap(thumbnail(np.asarray(image), size))
    return QIcon(
        pix.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    )


def file_icon(path: Path, size: QSize) -> QIcon:
    """An icon of an image file not decoded yet (Qt reads it scaled down; an empty icon if it cannot)."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    full = reader.size()
    if full.isValid() and not full.isEmpty():
        reader.setScaledSize(full.scaled(size, Qt.AspectRatioMode.KeepAspectRatio))
    img = reader.read()
    return QIcon() if img.isNull() else QIcon(QPixmap.fromImage(img))


class Filmstrip(QListWidget):
    """A row of thumbnails, hidden until two images are open. ``chosen(index)`` on a click,
    ``closeRequested(index)`` from an item's context menu (Close image)."""

    chosen = Signal(int)
    closeRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setIconSize(STRIP_ICON)
        self.setGridSize(QSize(STRIP_ICON.width() + 40, STRIP_ICON.height() + 22))
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(STRIP_ICON.height() + 22 + self.horizontalScrollBar().sizeHint().height() + 6)
        self.setToolTip(
            "Open images: click one to switch (each keeps its own mask, undo, prompts and results);"
            " right-click to close one (Ctrl+W closes the image on show)"
        )
        self.itemClicked.connect(lambda item: self.chosen.emit(self.row(item)))
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.hide()

    def item_menu(self, row: int) -> QMenu:
        """The context menu of item ``row``: Close image."""
        menu = QMenu(self)
        menu.addAction("Close image", lambda: self.closeRequested.emit(row))
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is not None:
            menu = self.item_menu(self.row(item))
            menu.exec(self.viewport().mapToGlobal(pos))
            menu.deleteLater()

    def set_entries(self, entries: list[tuple[str, str, QIcon]], current: int) -> None:
        """Show ``(label, tooltip, icon)`` rows with ``current`` selected; visible from two rows on."""
        self.blockSignals(True)
        self.clear()
        for label, tip, icon in entries:
            item = QListWidgetItem(icon, label)
            item.setToolTip(tip)
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.addItem(item)
        self.setCurrentRow(current)
        self.blockSignals(False)
        self.setVisible(len(entries) > 1)


def set_history_icons(history_list: QListWidget, results: list) -> None:
    """Give each results-history row without an icon a thumbnail of its blended image."""
    history_list.setIconSize(HISTORY_ICON)
    for i in range(min(history_list.count(), len(results))):
        item = history_list.item(i)
        if item.icon().isNull():
            item.setIcon(thumbnail_icon(getattr(results[i], "blended", None), HISTORY_ICON))
