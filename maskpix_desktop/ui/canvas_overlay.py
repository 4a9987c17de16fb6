"""The canvas mask overlay: a tinted RGBA item over the mask, its outline mode and its automatic colour."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from maskpix_desktop.core import masks
from maskpix_desktop.ui.canvas_brush import Box
from maskpix_desktop.ui.qimage import overlay_rgba

__all__ = ["DEFAULT_OVERLAY_COLOR", "OverlayItem", "contrast_color", "mask_edges", "to_u8"]

#: The overlay colour before a mask is set (and for a grey region, where any vivid colour stands out).
DEFAULT_OVERLAY_COLOR = QColor(255, 40, 90)


def to_u8(mask: np.ndarray) -> np.ndarray:
    """Any mask accepted by :mod:`core.masks` (bool, 0..1 or 0..255 ints, float) -> uint8 0..255."""
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    return np.rint(masks.as_float(arr) * np.float32(255.0)).astype(np.uint8)


def mask_edges(mask: np.ndarray) -> np.ndarray:
    """uint8 0/255 outline of ``mask > 127``: inside pixels with a 4-neighbour outside (borders count)."""
    inside = mask > 127
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return ((inside & ~interior) * np.uint8(255)).astype(np.uint8)


def contrast_color(image: np.ndarray, mask: np.ndarray | None = None) -> QColor:
    """A saturated overlay colour whose hue is opposite the (saturation-weighted) mean hue under
    ``mask`` (the whole image when the mask is empty): a red object gets a cyan-ish overlay."""
    rgb = np.asarray(image, np.float32) / 255.0
    if mask is not None and mask.any():
        rgb = rgb[np.asarray(mask) > 127]
    rgb = rgb.reshape(-1, 3)[:: max(1, rgb.size // 3 // 200_000)]  # a sample is plenty
    mx, mn = rgb.max(axis=1), rgb.min(axis=1)
    chroma = mx - mn
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    safe = np.where(chroma > 1e-6, chroma, 1.0)
    hue = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    angle = hue * (np.pi / 3.0)
    weight = chroma
    if float(weight.sum()) < 1e-3:  # grey under the mask: any vivid colour stands out; keep the default
        return QColor(DEFAULT_OVERLAY_COLOR)
    mean = math.atan2(float((weight * np.sin(angle)).sum()), float((weight * np.cos(angle)).sum()))
    opposite = (math.degrees(mean) + 180.0) % 360.0
    return QColor.fromHsvF(opposite / 360.0, 0.9, 1.0)


class OverlayItem(QGraphicsItem):
    """The tinted mask: a QImage over a numpy RGBA buffer (no copy), painted only where exposed."""

    def __init__(self) -> None:
        super().__init__()
        self._rgba = np.zeros((0, 0, 4), np.uint8)
        self._image = QImage()
        self.outline = False  # True: only the mask's edge is drawn (see mask_edges)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def rebuild(self, mask: np.ndarray, color: QColor) -> None:
        """Full rebuild (new image or new colour)."""
        self.prepareGeometryChange()
        self._rgba = np.ascontiguousarray(overlay_rgba(mask_edges(mask) if self.outline else mask, color))
        h, w = mask.shape
        # The QImage reads the numpy buffer directly; self._rgba keeps it alive.
        self._image = QImage(self._rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
        self.update()

    def update_region(self, mask: np.ndarray, box: Box) -> None:
        """Copy ``mask[box]`` into the alpha channel and repaint just that rectangle."""
        x0, y0, x1, y1 = box
        if self.outline:  # an edge depends on the neighbours: recompute one pixel around the box
            h, w = mask.shape
            px0, py0, px1, py1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, w), min(y1 + 1, h)
            edges = mask_edges(mask[py0:py1, px0:px1])
            self._rgba[py0:py1, px0:px1, 3] = edges
            self.update(QRectF(px0, py0, px1 - px0, py1 - py0))
            return
        self._rgba[y0:y1, x0:x1, 3] = mask[y0:y1, x0:x1]
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    def image(self) -> QImage:
        """A detached copy of the overlay (RGBA8888: overlay colour, alpha = mask)."""
        return self._image.copy()

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._image.width(), self._image.height())

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if self._image.isNull():
            return
        rect = option.exposedRect.toAlignedRect().intersected(self._image.rect())
        if not rect.isEmpty():
            painter.drawImage(rect, self._image, rect)
