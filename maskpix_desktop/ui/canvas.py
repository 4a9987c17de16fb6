"""The main editing canvas: image, tinted mask overlay, SAM prompts, brush/eraser, zoom and pan.

Scene coordinates are image pixel coordinates: pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``.
The mask is a uint8 ``HxW`` array (0..255); the overlay shows it through an RGBA buffer whose colour
channels are constant, so a brush segment only rewrites the alpha of the rectangle it touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFocusEvent,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QResizeEvent,
    QTransform,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

from maskpix_desktop.core import masks
from maskpix_desktop.ui.mask_commands import MaskPatchCommand, StrokeRecorder, diff_patch
from maskpix_desktop.ui.qimage import overlay_rgba, to_pixmap

__all__ = ["ImageCanvas", "Prompts", "dropped_paths", "stamp_segment"]

TOOLS = ("prompt", "brush", "eraser")
MASK_OPS = ("dilate", "erode", "feather", "invert", "clear")
ZOOM_MIN, ZOOM_MAX = 0.02, 40.0
WHEEL_STEP = 1.25
DRAG_THRESHOLD_PX = 4.0  # screen px a left drag must travel before it becomes a box
PICK_RADIUS_PX = 8.0  # screen px around a point that Ctrl+click removes
POINT_RADIUS_PX = 6.0
BRUSH_MIN, BRUSH_MAX = 1, 1000
UNDO_LIMIT = 200

_BACKGROUND = QColor(30, 30, 34)
_POSITIVE = QColor(40, 200, 80)
_NEGATIVE = QColor(20, 20, 24)  # near black with a white ring: distinct from any overlay colour
_BOX = QColor(255, 210, 0)

Box = tuple[int, int, int, int]
XY = tuple[float, float]


@dataclass(frozen=True)
class Prompts:
    """SAM prompts in image pixel coordinates."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()  # 1 keep, 0 exclude
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} points but {len(self.labels)} labels")

    def is_empty(self) -> bool:
        """True when there is no point and no box."""
        return not self.points and self.box is None


def dropped_paths(mime: QMimeData) -> list[str]:
    """The local files in a drag's data, in order (URLs that are not local files are left out)."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


# ---------------------------------------------------------------------------------------------- brush


def _segment_chunks(
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


def _to_u8(mask: np.ndarray) -> np.ndarray:
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
        return QColor(255, 40, 90)
    mean = math.atan2(float((weight * np.sin(angle)).sum()), float((weight * np.cos(angle)).sum()))
    opposite = (math.degrees(mean) + 180.0) % 360.0
    return QColor.fromHsvF(opposite / 360.0, 0.9, 1.0)


# ---------------------------------------------------------------------------------------------- items


class _OverlayItem(QGraphicsItem):
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


@dataclass
class _Point:
    x: float
    y: float
    label: int
    serial: int


@dataclass
class _Press:
    """A prompt-tool press waiting to become a click or a box drag."""

    button: Qt.MouseButton
    view_pos: QPointF
    scene_pos: QPointF
    negative: bool
    can_box: bool
    dragging: bool = False


# --------------------------------------------------------------------------------------------- canvas


class ImageCanvas(QGraphicsView):
    """Image view with a mask overlay, SAM point/box prompts, brush/eraser painting, zoom and pan."""

    promptsChanged = Signal()
    maskEdited = Signal()
    zoomChanged = Signal(float)
    cursorMoved = Signal(int, int)
    filesDropped = Signal(list)  # local file paths (str) dropped on the view, in drop order
    brushSizeChanged = Signal(int)  # the brush diameter changed ([ and ] or the setter)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(_BACKGROUND)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)

        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)

        self._image: np.ndarray | None = None
        self._mask = np.zeros((0, 0), np.uint8)
        self._overlay_color = QColor(255, 40, 90)
        self._auto_color = True  # pick a colour contrasting with the masked region until the user picks
        self._tool = "prompt"
        self._brush_size = 40
        self._brush_hardness = 0.8
        self.op_radius = 5
        self.feather_sigma = 3.0

        self._image_item = QGraphicsPixmapItem()
        self._image_item.setZValue(0)
        self._image_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._scene.addItem(self._image_item)
        # Optional heatmap (e.g. the auto mask's relevance map) between the image and the mask overlay.
        self.heatmap_item = QGraphicsPixmapItem()
        self.heatmap_item.setZValue(0.5)
        self.heatmap_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.heatmap_item.setVisible(False)
        self._scene.addItem(self.heatmap_item)
        self.overlay_item = _OverlayItem()
        self.overlay_item.setZValue(1)
        self.overlay_item.setOpacity(0.5)
        self._scene.addItem(self.overlay_item)

        self._points: list[_Point] = []
        self._box: tuple[tuple[float, float, float, float], int] | None = None
        self._serial = 0
        self._prompts_visible = True
        self._point_items: list[QGraphicsEllipseItem] = []
        self._box_item = self._make_rect_item(z=2)
        self._preview_item = self._make_rect_item(z=2)
        self._cursor_item = QGraphicsEllipseItem()
        cursor_pen = QPen(QColor(255, 255, 255, 220), 1.0)
        cursor_pen.setCosmetic(True)
        self._cursor_item.setPen(cursor_pen)
        self._cursor_item.setZValue(10)
        self._cursor_item.setVisible(False)
        self._cursor_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._scene.addItem(self._cursor_item)
        self._update_cursor_shape()

        self._user_zoomed = False
        self._press: _Press | None = None
        self._stroke: StrokeRecorder | None = None
        self._last_paint: QPointF | None = None
        self._pan_last: QPointF | None = None
        self._space_held = False
        self._last_pixel: tuple[int, int] | None = None

        self.fit_action = self._add_action("Fit to Window", "Ctrl+0", self.fit)
        self.actual_size_action = self._add_action("Actual Size (1:1)", "Ctrl+1", self.zoom_1to1)
        self.viewport().setCursor(Qt.CursorShape.CrossCursor)

    # ---------------------------------------------------------------------------------- image and mask

    def set_image(self, image: np.ndarray) -> None:
        """Show an ``HxWx3`` uint8 image; resets the mask to zeros, the prompts and the undo stack; fits."""
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got {arr.dtype} {arr.shape}")
        self._cancel_interaction()
        self._image = np.array(arr, copy=True, order="C")
        self._image.flags.writeable = False
        h, w = arr.shape[:2]
        self._mask = np.zeros((h, w), np.uint8)
        self._image_item.setPixmap(to_pixmap(self._image))
        self.set_heatmap(None)
        self.overlay_item.rebuild(self._mask, self._overlay_color)
        self._scene.setSceneRect(0, 0, w, h)
        self.undo_stack.clear()
        had_prompts = not self.prompts().is_empty()
        self._points.clear()
        self._box = None
        self._sync_prompt_items()
        self._user_zoomed = False
        self.fit()
        if had_prompts:
            self.promptsChanged.emit()

    def clear_image(self) -> None:
        """Back to the empty canvas (no image, mask, prompts or undo history), e.g. to undo a failed open."""
        self._cancel_interaction()
        had_prompts = not self.prompts().is_empty()
        self._image = None
        self._mask = np.zeros((0, 0), np.uint8)
        self._image_item.setPixmap(QPixmap())
        self.set_heatmap(None)
        self.overlay_item.rebuild(self._mask, self._overlay_color)
        self.undo_stack.clear()
        self._points.clear()
        self._box = None
        self._sync_prompt_items()
        if had_prompts:
            self.promptsChanged.emit()

    def image(self) -> np.ndarray | None:
        """The current image (read-only array, not a copy), or None."""
        return self._image

    def has_image(self) -> bool:
        return self._image is not None

    def mask(self) -> np.ndarray:
        """A uint8 ``HxW`` copy of the mask (0..255; brush edges are soft)."""
        return self._mask.copy()

    def set_mask(self, mask: np.ndarray, *, text: str = "Set mask", undoable: bool = True) -> None:
        """Replace the mask (bool, 0..1 / 0..255 integers or float 0..1, image-sized).

        Undoable by default (one command storing the changed box). An unchanged mask is a no-op.
        """
        if self._image is None:
            raise RuntimeError("set_mask needs an image: call set_image first")
        new = _to_u8(mask)
        if new.shape != self._mask.shape:
            raise ValueError(f"mask shape {new.shape} does not match the image {self._mask.shape}")
        self._finish_stroke()
        if self._auto_color and new.any():
            self._set_color(contrast_color(self._image, new))
        self._replace_mask(new, text, undoable)

    def apply_mask_op(self, name: str) -> None:
        """Apply ``dilate``/``erode`` (``op_radius`` px), ``feather`` (``feather_sigma``), ``invert`` or
        ``clear`` as one undo step."""
        if name not in MASK_OPS:
            raise ValueError(f"unknown mask op {name!r}; use one of {MASK_OPS}")
        if self._image is None:
            return
        self._finish_stroke()
        unit = self._mask.astype(np.float32) * np.float32(1.0 / 255.0)
        if name == "dilate":
            result = masks.dilate(unit, int(self.op_radius))
        elif name == "erode":
            result = masks.erode(unit, int(self.op_radius))
        elif name == "feather":
            result = masks.feather(unit, float(self.feather_sigma))
        elif name == "invert":
            result = masks.invert(unit)
        else:
            result = np.zeros_like(self._mask)
        self._replace_mask(_to_u8(result), f"{name.capitalize()} mask", True)

    def _replace_mask(self, new: np.ndarray, text: str, undoable: bool) -> None:
        patch = diff_patch(self._mask, new)
        if patch is None:
            return
        x, y, before, after = patch
        if undoable:
            self.undo_stack.push(MaskPatchCommand(self, x, y, before, after, text))
        else:
            self._write_mask_patch(x, y, after)

    def _write_mask_patch(self, x: int, y: int, patch: np.ndarray) -> None:
        """Write a uint8 patch at ``(x, y)``, refresh that overlay rectangle, emit ``maskEdited``."""
        h, w = patch.shape
        self._mask[y : y + h, x : x + w] = patch
        self.overlay_item.update_region(self._mask, (x, y, x + w, y + h))
        self.maskEdited.emit()

    # --------------------------------------------------------------------------------------- overlay

    def set_heatmap(self, rgba: np.ndarray | None) -> None:
        """Show an image-sized ``HxWx4`` uint8 RGBA heatmap under the mask overlay; None hides it.

        Not part of the document (no undo, no autosave); a new image removes it.
        """
        if rgba is None:
            self.heatmap_item.setPixmap(QPixmap())
            self.heatmap_item.setVisible(False)
            return
        arr = np.asarray(rgba)
        if self._image is None:
            raise RuntimeError("set_heatmap needs an image: call set_image first")
        if arr.ndim != 3 or arr.shape[2] != 4 or arr.dtype != np.uint8:
            raise ValueError(f"expected an HxWx4 uint8 RGBA heatmap, got {arr.dtype} {arr.shape}")
        if arr.shape[:2] != self._image.shape[:2]:
            raise ValueError(f"heatmap {arr.shape[:2]} does not match the image {self._image.shape[:2]}")
        self.heatmap_item.setPixmap(to_pixmap(arr))
        self.heatmap_item.setVisible(True)

    def has_heatmap(self) -> bool:
        return self.heatmap_item.isVisible()

    def set_overlay_color(self, color: QColor) -> None:
        """The user's overlay colour (it then stays: no automatic contrast colour any more)."""
        self._auto_color = False
        self._set_color(QColor(color))

    def _set_color(self, color: QColor) -> None:
        self._overlay_color = color
        if self._image is not None:
            self.overlay_item.rebuild(self._mask, self._overlay_color)

    def set_overlay_outline(self, outline: bool) -> None:
        """Draw only the mask's outline (True) or the tinted fill (False)."""
        self.overlay_item.outline = bool(outline)
        if self._image is not None:
            self.overlay_item.rebuild(self._mask, self._overlay_color)

    def overlay_outline(self) -> bool:
        return self.overlay_item.outline

    def overlay_color(self) -> QColor:
        return QColor(self._overlay_color)

    def set_overlay_opacity(self, value: float) -> None:
        self.overlay_item.setOpacity(min(max(float(value), 0.0), 1.0))

    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay_item.setVisible(bool(visible))

    def set_prompts_visible(self, visible: bool) -> None:
        self._prompts_visible = bool(visible)
        for item in self._point_items:
            item.setVisible(self._prompts_visible)
        self._box_item.setVisible(self._prompts_visible and self._box is not None)

    # --------------------------------------------------------------------------------------- prompts

    def prompts(self) -> Prompts:
        return Prompts(
            points=tuple((p.x, p.y) for p in self._points),
            labels=tuple(p.label for p in self._points),
            box=self._box[0] if self._box is not None else None,
        )

    def set_prompts(self, prompts: Prompts) -> None:
        """Replace all prompts (the box counts as added last); emits ``promptsChanged``."""
        self._points = []
        for (x, y), label in zip(prompts.points, prompts.labels, strict=True):
            self._points.append(_Point(float(x), float(y), 1 if label else 0, self._next_serial()))
        if prompts.box is not None:
            box = tuple(float(v) for v in prompts.box)
            self._box = ((box[0], box[1], box[2], box[3]), self._next_serial())
        else:
            self._box = None
        self._sync_prompt_items()
        self.promptsChanged.emit()

    def clear_prompts(self) -> None:
        """Remove every point and the box (emits ``promptsChanged`` only if there was any)."""
        if not self._points and self._box is None:
            return
        self._points.clear()
        self._box = None
        self._sync_prompt_items()
        self.promptsChanged.emit()

    def remove_last_prompt(self) -> None:
        """Remove the most recently added point or box."""
        last_point = self._points[-1].serial if self._points else -1
        if self._box is not None and self._box[1] > last_point:
            self._box = None
        elif self._points:
            self._points.pop()
        else:
            return
        self._sync_prompt_items()
        self.promptsChanged.emit()

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _add_point(self, pos: QPointF, label: int) -> None:
        x, y = self._clamp(pos)
        self._points.append(_Point(x, y, label, self._next_serial()))
        self._sync_prompt_items()
        self.promptsChanged.emit()

    def _set_box(self, box: tuple[float, float, float, float]) -> None:
        self._box = (box, self._next_serial())
        self._sync_prompt_items()
        self.promptsChanged.emit()

    def _point_near(self, view_pos: QPointF) -> int | None:
        """Index of the point nearest to ``view_pos`` within PICK_RADIUS_PX screen pixels."""
        vt = self.viewportTransform()
        best, best_d = None, PICK_RADIUS_PX
        for i, p in enumerate(self._points):
            q = vt.map(QPointF(p.x, p.y))
            d = math.hypot(q.x() - view_pos.x(), q.y() - view_pos.y())
            if d <= best_d:
                best, best_d = i, d
        return best

    def _make_rect_item(self, z: float) -> QGraphicsRectItem:
        item = QGraphicsRectItem()
        pen = QPen(_BOX, 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)  # same on-screen width at every zoom
        item.setPen(pen)
        item.setZValue(z)
        item.setVisible(False)
        item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._scene.addItem(item)
        return item

    def _sync_prompt_items(self) -> None:
        for item in self._point_items:
            self._scene.removeItem(item)
        self._point_items = []
        r = POINT_RADIUS_PX
        outline = QPen(QColor(255, 255, 255), 1.5)
        for p in self._points:
            item = QGraphicsEllipseItem(-r, -r, 2 * r, 2 * r)
            item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
            item.setPen(outline)
            item.setBrush(_POSITIVE if p.label else _NEGATIVE)
            item.setPos(p.x, p.y)
            item.setZValue(3)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            item.setVisible(self._prompts_visible)
            self._scene.addItem(item)
            self._point_items.append(item)
        if self._box is not None:
            x0, y0, x1, y1 = self._box[0]
            self._box_item.setRect(QRectF(QPointF(x0, y0), QPointF(x1, y1)))
        self._box_item.setVisible(self._box is not None and self._prompts_visible)

    @property
    def point_items(self) -> list[QGraphicsEllipseItem]:
        """The scene items of the points, in prompt order (read-only; for tests and the compare view)."""
        return list(self._point_items)

    @property
    def box_item(self) -> QGraphicsRectItem:
        return self._box_item

    # ---------------------------------------------------------------------------------- tools, brush

    def set_tool(self, tool: str) -> None:
        """``"prompt"``, ``"brush"`` or ``"eraser"``."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; use one of {TOOLS}")
        self._finish_stroke()
        self._cancel_press()
        self._tool = tool
        self._update_cursor_shape()
        if tool == "prompt":
            self._cursor_item.setVisible(False)

    def tool(self) -> str:
        return self._tool

    @property
    def brush_size(self) -> int:
        """Brush diameter in image pixels (1..1000)."""
        return self._brush_size

    @brush_size.setter
    def brush_size(self, value: int) -> None:
        size = int(min(max(round(value), BRUSH_MIN), BRUSH_MAX))
        changed = size != self._brush_size
        self._brush_size = size
        self._update_cursor_shape()
        if changed:
            self.brushSizeChanged.emit(size)

    @property
    def brush_hardness(self) -> float:
        """Edge hardness 0..1 (1 = hard edge; 0 = soft from the centre)."""
        return self._brush_hardness

    @brush_hardness.setter
    def brush_hardness(self, value: float) -> None:
        self._brush_hardness = min(max(float(value), 0.0), 1.0)

    def _update_cursor_shape(self) -> None:
        r = self._brush_size / 2.0
        self._cursor_item.setRect(QRectF(-r, -r, 2 * r, 2 * r))
        pen = self._cursor_item.pen()
        pen.setStyle(Qt.PenStyle.DashLine if self._tool == "eraser" else Qt.PenStyle.SolidLine)
        self._cursor_item.setPen(pen)

    def _begin_stroke(self, pos: QPointF) -> None:
        self._stroke = StrokeRecorder(self._mask)
        self._last_paint = pos
        self._paint_segment(pos, pos)

    def _paint_segment(self, a: QPointF, b: QPointF) -> None:
        """Paint one stroke segment and refresh only the overlay rectangle it touched."""
        if self._stroke is None:
            return
        h, w = self._mask.shape
        erase = self._tool == "eraser"
        radius = self._brush_size / 2.0
        dirty: list[int] | None = None
        for box, p, q in _segment_chunks(a, b, radius, w, h):
            self._stroke.touch(*box)
            stamp_segment(self._mask, box, p, q, radius, self._brush_hardness, erase=erase)
            if dirty is None:
                dirty = list(box)
            else:
                dirty = [
                    min(dirty[0], box[0]),
                    min(dirty[1], box[1]),
                    max(dirty[2], box[2]),
                    max(dirty[3], box[3]),
                ]
        if dirty is not None:
            self.overlay_item.update_region(self._mask, (dirty[0], dirty[1], dirty[2], dirty[3]))

    def _finish_stroke(self) -> None:
        """End the stroke in progress: one undo command holding only its changed box."""
        recorder, self._stroke, self._last_paint = self._stroke, None, None
        if recorder is None:
            return
        result = recorder.finish()
        if result is None:
            return
        x, y, before, after = result
        text = "Erase" if self._tool == "eraser" else "Brush stroke"
        self.undo_stack.push(MaskPatchCommand(self, x, y, before, after, text, applied=True))
        self.maskEdited.emit()

    # ------------------------------------------------------------------------------------------ zoom

    def scale_factor(self) -> float:
        """Current zoom (1.0 = one image pixel per screen pixel)."""
        return float(self.transform().m11())

    def fit(self) -> None:
        """Fit the whole image in the view; the view then refits on resize until the user zooms."""
        if self._image is None:
            return
        self.fitInView(self._image_item.boundingRect(), Qt.AspectRatioMode.KeepAspectRatio)
        s = self.scale_factor()
        if not ZOOM_MIN <= s <= ZOOM_MAX:
            self._set_scale(min(max(s, ZOOM_MIN), ZOOM_MAX), None)
        self._user_zoomed = False
        self._on_zoom_changed()

    def zoom_1to1(self) -> None:
        self._zoom_to(1.0, None)

    def zoom_by(self, factor: float) -> None:
        """Multiply the zoom by ``factor`` around the view centre (clamped to 0.02..40)."""
        self._zoom_to(self.scale_factor() * float(factor), None)

    def image_to_viewport(self, x: float, y: float) -> QPoint:
        """Viewport position of image point ``(x, y)`` (where to click in tests)."""
        return self.mapFromScene(QPointF(x, y))

    def _zoom_to(self, scale: float, anchor: QPointF | None) -> None:
        if self._image is None:
            return
        self._set_scale(min(max(scale, ZOOM_MIN), ZOOM_MAX), anchor)
        self._user_zoomed = True
        self._on_zoom_changed()

    def _set_scale(self, scale: float, anchor: QPointF | None) -> None:
        """Set the zoom keeping the scene point under ``anchor`` (viewport pos; default the centre) fixed."""
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        scene_pt = self._to_scene(anchor)
        self.setTransform(QTransform.fromScale(scale, scale))
        moved = self.viewportTransform().map(scene_pt)
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setValue(hbar.value() + round(moved.x() - anchor.x()))
        vbar.setValue(vbar.value() + round(moved.y() - anchor.y()))

    def _on_zoom_changed(self) -> None:
        s = self.scale_factor()
        mode = (
            Qt.TransformationMode.SmoothTransformation
            if s < 1.0
            else Qt.TransformationMode.FastTransformation
        )
        self._image_item.setTransformationMode(mode)
        self.zoomChanged.emit(s)

    def _to_scene(self, view_pos: QPointF) -> QPointF:
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(QPointF(view_pos))

    def _add_action(self, text: str, shortcut: str, slot: Callable[[], None]) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    # --------------------------------------------------------------------------------------- helpers

    def _inside(self, pos: QPointF) -> bool:
        h, w = self._mask.shape
        return 0.0 <= pos.x() < w and 0.0 <= pos.y() < h

    def _clamp(self, pos: QPointF) -> tuple[float, float]:
        h, w = self._mask.shape
        return min(max(pos.x(), 0.0), float(w)), min(max(pos.y(), 0.0), float(h))

    def _cancel_press(self) -> None:
        self._press = None
        self._preview_item.setVisible(False)

    def _cancel_interaction(self) -> None:
        """Drop any stroke, press or pan in progress (used when the image changes)."""
        self._stroke, self._last_paint, self._pan_last = None, None, None
        self._cancel_press()
        self._cursor_item.setVisible(False)

    def _scroll_by(self, dx: float, dy: float) -> None:
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setValue(hbar.value() - round(dx))
        vbar.setValue(vbar.value() - round(dy))

    def _rest_cursor(self) -> Qt.CursorShape:
        return Qt.CursorShape.OpenHandCursor if self._space_held else Qt.CursorShape.CrossCursor

    # ----------------------------------------------------------------------------------------- events

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        event.accept()
        if self._image is None or self._stroke is not None or self._pan_last is not None:
            return
        button, pos = event.button(), event.position()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space_held
        ):
            self._pan_last = pos
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        scene_pos = self._to_scene(pos)
        if self._tool != "prompt":
            if button == Qt.MouseButton.LeftButton:
                self._begin_stroke(scene_pos)
            return
        mods = event.modifiers()
        if button == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.ControlModifier:
            index = self._point_near(pos)
            if index is not None:
                del self._points[index]
                self._sync_prompt_items()
                self.promptsChanged.emit()
            return
        if button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            alt = bool(mods & Qt.KeyboardModifier.AltModifier)
            negative = button == Qt.MouseButton.RightButton or alt
            can_box = button == Qt.MouseButton.LeftButton and not alt
            self._press = _Press(button, QPointF(pos), scene_pos, negative, can_box)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.mousePressEvent(event)  # quick successive clicks are still separate points / strokes

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        event.accept()
        pos = event.position()
        if self._pan_last is not None:
            self._scroll_by(pos.x() - self._pan_last.x(), pos.y() - self._pan_last.y())
            self._pan_last = QPointF(pos)
            return
        if self._image is None:
            return
        scene_pos = self._to_scene(pos)
        if self._tool != "prompt":
            self._cursor_item.setPos(scene_pos)
            self._cursor_item.setVisible(True)
        if self._inside(scene_pos):
            pixel = (int(scene_pos.x()), int(scene_pos.y()))
            if pixel != self._last_pixel:
                self._last_pixel = pixel
                self.cursorMoved.emit(*pixel)
        if self._stroke is not None and self._last_paint is not None:
            self._paint_segment(self._last_paint, scene_pos)
            self._last_paint = scene_pos
            return
        press = self._press
        if press is None or not press.can_box:
            return
        if not press.dragging:
            travel = math.hypot(pos.x() - press.view_pos.x(), pos.y() - press.view_pos.y())
            press.dragging = travel > DRAG_THRESHOLD_PX
        if press.dragging:
            x0, y0 = self._clamp(press.scene_pos)
            x1, y1 = self._clamp(scene_pos)
            self._preview_item.setRect(QRectF(QPointF(x0, y0), QPointF(x1, y1)).normalized())
            self._preview_item.setVisible(True)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        event.accept()
        button = event.button()
        if self._pan_last is not None:
            if button in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
                self._pan_last = None
                self.viewport().setCursor(self._rest_cursor())
            return
        if self._stroke is not None:
            if button == Qt.MouseButton.LeftButton:
                self._finish_stroke()
            return
        press = self._press
        if press is None or button != press.button:
            return
        self._cancel_press()
        if press.dragging:
            x0, y0 = self._clamp(press.scene_pos)
            x1, y1 = self._clamp(self._to_scene(event.position()))
            if abs(x1 - x0) > 0 and abs(y1 - y0) > 0:
                self._set_box((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        elif self._inside(press.scene_pos):
            self._add_point(press.scene_pos, 0 if press.negative else 1)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.filesDropped.emit(paths)

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.accept()
        steps = event.angleDelta().y() / 120.0
        if steps == 0 or self._image is None:
            return
        self._zoom_to(self.scale_factor() * WHEEL_STEP**steps, event.position())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        mods = event.modifiers()
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.MetaModifier):
            super().keyPressEvent(event)
            return
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = True
                if self._pan_last is None:
                    self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif key == Qt.Key.Key_BracketLeft:
            self.brush_size = min(self._brush_size - 1, round(self._brush_size * 0.8))
        elif key == Qt.Key.Key_BracketRight:
            self.brush_size = max(self._brush_size + 1, round(self._brush_size * 1.25))
        elif key == Qt.Key.Key_P:
            self.set_tool("prompt")
        elif key == Qt.Key.Key_B:
            self.set_tool("brush")
        elif key == Qt.Key.Key_E:
            self.set_tool("eraser")
        elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.remove_last_prompt()
        elif key == Qt.Key.Key_Escape:
            self._cancel_press()
            self.clear_prompts()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            if self._pan_last is None:
                self.viewport().setCursor(self._rest_cursor())
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self._space_held = False
        if self._pan_last is None:
            self.viewport().setCursor(self._rest_cursor())
        super().focusOutEvent(event)

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._cursor_item.setVisible(False)
        return super().viewportEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._image is not None and not self._user_zoomed:
            self.fit()
