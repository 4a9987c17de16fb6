"""What SAM shows on the canvas besides the mask: the "Preparing mask model…" badge and the candidate strip.

Both are small children of the canvas viewport, kept in its corners (they never change the window's
layout): the badge top-left while the open image's SAM encode runs, the strip bottom-left after a click,
one thumbnail per candidate (the mask's outline over a downscaled image); a click on one chooses it.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from maskpix_desktop.ui.canvas_overlay import mask_edges
from maskpix_desktop.ui.qimage import to_pixmap

__all__ = ["THUMB_SIDE", "CandidateStrip", "PreparingBadge", "candidate_thumbnail", "downscale"]

THUMB_SIDE = 84  # long side of a candidate thumbnail, pixels
_MARGIN = 8
_OUTLINE = (255, 214, 0)
_HALO = (20, 20, 20)
_PILL = (
    "background: rgba(24, 24, 28, 200); color: #f0f0f0; border: 1px solid #5a5a62;"
    " border-radius: 6px; padding: 4px 10px;"
)


def downscale(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """``image`` (H, W, 3 uint8) with its long side ``side`` (block means; never enlarged)."""
    h, w = image.shape[:2]
    f = min(1.0, side / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return image.copy() if f == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def candidate_thumbnail(small: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``small`` with the outline of ``mask`` (full-size bool) drawn in yellow on a dark halo, the
    outside dimmed to half."""
    h, w = small.shape[:2]
    inside = cv2.resize(mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_AREA) >= 128
    out = np.where(inside[..., None], small, small // 2)
    edges = mask_edges(np.where(inside, 255, 0).astype(np.uint8)) > 0
    halo = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    out[halo] = _HALO
    out[edges] = _OUTLINE
    return out


class _Corner(QObject):
    """Keeps a widget in a corner of its parent (the canvas viewport) whenever either is resized."""

    def __init__(self, widget: QWidget, bottom: bool):
        super().__init__(widget)
        self.widget, self.bottom = widget, bottom
        widget.parentWidget().installEventFilter(self)

    def place(self) -> None:
        w = self.widget
        w.adjustSize()
        y = w.parentWidget().height() - w.height() - _MARGIN if self.bottom else _MARGIN
        w.move(_MARGIN, max(0, y))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Resize:
            self.place()
        return False


class PreparingBadge(QLabel):
    """The "Preparing mask model…" pill in the canvas's top-left corner while the image's SAM encode runs."""

    def __init__(self, parent: QWidget):
        super().__init__("Preparing mask model…", parent)
        self.setStyleSheet(_PILL)
        self.setToolTip("SAM is reading this image; your first click is answered as soon as it is done")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._corner = _Corner(self, bottom=False)
        self.hide()

    def set_preparing(self, on: bool) -> None:
        self._corner.place()
        self.setVisible(on)
        if on:
            self.raise_()


class CandidateStrip(QWidget):
    """One clickable thumbnail per SAM candidate, in the list's order; ``chosen(row)`` on a click."""

    chosen = Signal(int)

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setStyleSheet(
            "QToolButton { border: 2px solid transparent; border-radius: 4px; }"
            "QToolButton:checked { border-color: #ffd600; }"
        )
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(4, 4, 4, 4)
        self._row.setSpacing(4)
        self.buttons: list[QToolButton] = []
        self._corner = _Corner(self, bottom=True)
        self.hide()

    def set_thumbnails(self, thumbs: list[np.ndarray], tips: list[str], current: int = 0) -> None:
        """Show ``thumbs`` (RGB uint8), ``tips`` as their tooltips, ``current`` marked."""
        self.clear()
        for row, (thumb, tip) in enumerate(zip(thumbs, tips, strict=True)):
            button = QToolButton(self)
            button.setIcon(QIcon(to_pixmap(thumb)))
            button.setIconSize(QSize(thumb.shape[1], thumb.shape[0]))
            button.setCheckable(True)
            button.setChecked(row == current)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, r=row: self._clicked(r))
            self._row.addWidget(button)
            self.buttons.append(button)
        if self.buttons:
            self._corner.place()
            self.show()
            self.raise_()

    def set_current(self, row: int) -> None:
        for i, button in enumerate(self.buttons):
            button.setChecked(i == row)

    def clear(self) -> None:
        for button in self.buttons:
            self._row.removeWidget(button)
            button.deleteLater()
        self.buttons = []
        self.hide()

    def _clicked(self, row: int) -> None:
        self.set_current(row)
        self.chosen.emit(row)
