"""Mask editing on the canvas: the round soft-edged brush (a stroke swept over a uint8 mask one clipped
box at a time), its cursor ring, and the whole-mask operations."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsScene

from maskpix_desktop.core import masks
from maskpix_desktop.ui.mask_commands import Patch, StrokeRecorder

__all__ = [
    "MASK_OPS",
    "Box",
    "Stroke",
    "XY",
    "make_cursor_item",
    "mask_op",
    "paint_segment",
    "segment_chunks",
    "shape_cursor_item",
    "stamp_segment",
]

Box = tuple[int, int, int, int]
XY = tuple[float, float]


def segment_chunks(
    a: QPointF, b: QPointF, radius: float, width: int, height: int
) -> Iterator[tuple[Box, XY, XY]]:
    """Split a stroke segment into pieces ~4 radii long, each with its pixel box clipped to the image.

    Short pieces keep each box close to the painted capsule (a long diagonal would otherwise cost its
    whole bounding square). Yields ``(box, (ax, ay), (bx, by))``.
    """
    ax, ay, bx, by = a.x(), a.y(), b.x(), b.y()
    n = max(1, math.ceil(math.hypot(bx - ax, by - ay) / max(4.0 * radius, 16.0)))
    pad = radius + 1.0
    for i in range(n):
        px, py = ax + (bx - ax) * i / n, ay + (by - ay) * i / n
        qx, qy = ax + (bx - ax) * (i + 1) / n, ay + (by - ay) * (i + 1) / n
        x0 = max(0, math.floor(min(px, qx) - pad))
        y0 = max(0, math.floor(min(py, qy) - pad))
        x1 = min(width, math.ceil(max(px, qx) + pad) + 1)
        y1 = min(height, math.ceil(max(py, qy) + pad) + 1)
        if x1 > x0 and y1 > y0:
            yield (x0, y0, x1, y1), (px, py), (qx, qy)


def stamp_segment(
    mask: np.ndarray,
    box: Box,
    a: XY,
    b: XY,
    radius: float,
    hardness: float,
    *,
    erase: bool = False,
) -> None:
    """Sweep a round brush from ``a`` to ``b`` over ``mask[box]`` in place (uint8, max/min compositing).

    Equivalent to stamps at zero spacing, so fast drags leave no gaps. Pixel centres within
    ``radius * hardness`` of the segment get full strength, falling smoothly to 0 at ``radius``; with
    ``hardness >= 1`` the edge is hard. The brush raises pixels towards 255, the eraser lowers them to 0.
    """
    x0, y0, x1, y1 = box
    radius = max(float(radius), 0.71)  # a 1 px brush must cover a pixel wherever the cursor is
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5 - a[0])
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5 - a[1])
    dx, dy = np.float32(b[0] - a[0]), np.float32(b[1] - a[1])
    length2 = float(dx * dx + dy * dy)
    if length2 > 1e-9:
        t = np.clip((xs * dx + ys * dy) * np.float32(1.0 / length2), 0.0, 1.0)
        ex, ey = xs - t * dx, ys - t * dy
    else:
        ex, ey = xs, ys
    d2 = ex * ex + ey * ey
    inner = radius * min(max(float(hardness), 0.0), 1.0)
    if radius - inner < 1e-3:
        value = np.where(d2 <= np.float32(radius * radius), np.uint8(255), np.uint8(0))
    else:
        ramp = np.clip((np.float32(radius) - np.sqrt(d2)) * np.float32(1.0 / (radius - inner)), 0.0, 1.0)
        value = np.rint(ramp * ramp * (3.0 - 2.0 * ramp) * 255.0).astype(np.uint8)  # smoothstep
    region = mask[y0:y1, x0:x1]
    if erase:
        np.minimum(region, 255 - value, out=region)
    else:
        np.maximum(region, value, out=region)


def paint_segment(
    mask: np.ndarray,
    a: QPointF,
    b: QPointF,
    radius: float,
    hardness: float,
    *,
    erase: bool = False,
    touch: Callable[[int, int, int, int], None] | None = None,
) -> Box | None:
    """Sweep the brush from ``a`` to ``b`` over ``mask`` in place; the box it changed, or None.

    ``touch(x0, y0, x1, y1)`` is called with each piece's box before it is painted (the stroke recorder
    keeps the "before" pixels from it).
    """
    h, w = mask.shape
    dirty: Box | None = None
    for box, p, q in segment_chunks(a, b, radius, w, h):
        if touch is not None:
            touch(*box)
        stamp_segment(mask, box, p, q, radius, hardness, erase=erase)
        if dirty is None:
            dirty = box
        else:
            dirty = (
                min(dirty[0], box[0]),
                min(dirty[1], box[1]),
                max(dirty[2], box[2]),
                max(dirty[3], box[3]),
            )
    return dirty


MASK_OPS = ("dilate", "erode", "feather", "invert", "clear")


def mask_op(mask: np.ndarray, name: str, radius: int, sigma: float) -> np.ndarray:
    """A uint8 mask after ``dilate``/``erode`` (``radius`` px), ``feather`` (``sigma``), ``invert`` or
    ``clear``; ValueError for any other name."""
    if name not in MASK_OPS:
        raise ValueError(f"unknown mask op {name!r}; use one of {MASK_OPS}")
    unit = mask.astype(np.float32) * np.float32(1.0 / 255.0)
    if name == "dilate":
        result = masks.dilate(unit, int(radius))
    elif name == "erode":
        result = masks.erode(unit, int(radius))
    elif name == "feather":
        result = masks.feather(unit, float(sigma))
    elif name == "invert":
        result = masks.invert(unit)
    else:
        return np.zeros_like(mask)
    return np.rint(masks.as_float(result) * np.float32(255.0)).astype(np.uint8)


class Stroke:
    """One brush or eraser stroke in progress over ``mask``: painted segment by segment, and recorded so
    that ``finish`` gives the changed box before and after (one undo step)."""

    def __init__(self, mask: np.ndarray, radius: float, hardness: float, *, erase: bool) -> None:
        self._mask = mask
        self._recorder = StrokeRecorder(mask)
        self._radius, self._hardness, self.erase = radius, hardness, erase
        self._last: QPointF | None = None

    def extend(self, pos: QPointF) -> Box | None:
        """Paint from the last position (the first call: a dab at ``pos``); the box it changed."""
        a, self._last = self._last or pos, QPointF(pos)
        return paint_segment(
            self._mask, a, pos, self._radius, self._hardness, erase=self.erase, touch=self._recorder.touch
        )

    def finish(self) -> Patch | None:
        return self._recorder.finish()


def make_cursor_item(scene: QGraphicsScene) -> QGraphicsEllipseItem:
    """The brush outline that follows the mouse (hidden until a brush tool moves over the image)."""
    item = QGraphicsEllipseItem()
    pen = QPen(QColor(255, 255, 255, 220), 1.0)
    pen.setCosmetic(True)
    item.setPen(pen)
    item.setZValue(10)
    item.setVisible(False)
    item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
    scene.addItem(item)
    return item


def shape_cursor_item(item: QGraphicsEllipseItem, diameter: float, *, erase: bool) -> None:
    """Size the brush outline; dashed for the eraser."""
    r = diameter / 2.0
    item.setRect(QRectF(-r, -r, 2 * r, 2 * r))
    pen = item.pen()
    pen.setStyle(Qt.PenStyle.DashLine if erase else Qt.PenStyle.SolidLine)
    item.setPen(pen)
