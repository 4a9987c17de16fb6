"""The main editing canvas: image, tinted mask overlay, SAM prompts, brush/eraser, zoom and pan.

Scene coordinates are image pixel coordinates: pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``.
The mask is a uint8 ``HxW`` array (0..255); the overlay shows it through an RGBA buffer whose colour
channels are constant, so a brush segment only rewrites the alpha of the rectangle it touched.
The pieces live beside it: ``canvas_view`` (zoom, pan), ``canvas_overlay`` (the tinted mask),
``canvas_prompts`` (points and box), ``canvas_brush`` (the stroke maths).
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QEvent, QMimeData, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QUndoGroup,
    QUndoStack,
)
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsPixmapItem, QGraphicsRectItem, QWidget

from maskpix_desktop.ui.canvas_brush import (
    MASK_OPS,
    Stroke,
    make_cursor_item,
    mask_op,
    shape_cursor_item,
    stamp_segment,
)
from maskpix_desktop.ui.canvas_overlay import (
    DEFAULT_OVERLAY_COLOR,
    OverlayItem,
    contrast_color,
    mask_edges,
    to_u8,
)
from maskpix_desktop.ui.canvas_prompts import (
    DRAG_THRESHOLD_PX,
    PromptLayer,
    PromptPress,
    Prompts,
    make_box_item,
)
from maskpix_desktop.ui.canvas_view import ZoomPanView
from maskpix_desktop.ui.mask_commands import MaskPatchCommand, diff_patch
from maskpix_desktop.ui.qimage import to_pixmap

__all__ = [
    "ImageCanvas",
    "Prompts",
    "contrast_color",
    "dropped_paths",
    "mask_edges",
    "stamp_segment",
]

TOOLS = ("prompt", "brush", "eraser")
BRUSH_MIN, BRUSH_MAX = 1, 1000
UNDO_LIMIT = 200


def dropped_paths(mime: QMimeData) -> list[str]:
    """The local files in a drag's data, in order (URLs that are not local files are left out)."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


class ImageCanvas(ZoomPanView):
    """Image view with a mask overlay, SAM point/box prompts, brush/eraser painting, zoom and pan."""

    promptsChanged = Signal()
    maskEdited = Signal()
    cursorMoved = Signal(int, int)
    filesDropped = Signal(list)  # local file paths (str) dropped on the view, in drop order
    brushSizeChanged = Signal(int)  # the brush diameter changed ([ and ] or the setter)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewportUpdateMode(ZoomPanView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)

        #: Every mask undo history of this canvas; actions made from it follow the active one.
        self.undo_group = QUndoGroup(self)
        self.undo_stack = self._new_undo_stack()
        self.undo_group.setActiveStack(self.undo_stack)

        self._image: np.ndarray | None = None
        self._mask = np.zeros((0, 0), np.uint8)
        self._overlay_color = QColor(DEFAULT_OVERLAY_COLOR)
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
        self.overlay_item = OverlayItem()
        self.overlay_item.setZValue(1)
        self.overlay_item.setOpacity(0.5)
        self._scene.addItem(self.overlay_item)

        self._prompts = PromptLayer(self._scene)
        self._preview_item = make_box_item(self._scene, z=2)
        self._cursor_item = make_cursor_item(self._scene)
        self._update_cursor_shape()

        self._press: PromptPress | None = None
        self._stroke: Stroke | None = None
        self._last_pixel: tuple[int, int] | None = None
        self.viewport().setCursor(Qt.CursorShape.CrossCursor)

    def _new_undo_stack(self) -> QUndoStack:
        stack = QUndoStack(self)
        stack.setUndoLimit(UNDO_LIMIT)
        self.undo_group.addStack(stack)
        return stack

    def swap_undo_stack(self, stack: QUndoStack | None = None) -> QUndoStack:
        """Take ``stack`` (None: a new empty one) as the mask's undo history and return the previous one.

        Its commands write into this canvas: give a stack back only with the mask it was taken from.
        """
        self._finish_stroke()
        old = self.undo_stack
        self.undo_stack = stack if stack is not None else self._new_undo_stack()
        self.undo_group.addStack(self.undo_stack)
        self.undo_group.setActiveStack(self.undo_stack)
        return old

    def content_rect(self) -> QRectF | None:
        return None if self._image is None else self._image_item.boundingRect()

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
        had_prompts = self._prompts.clear()
        self._user_zoomed = False
        self.fit()
        if had_prompts:
            self.promptsChanged.emit()

    def clear_image(self) -> None:
        """Back to the empty canvas (no image, mask, prompts or undo history), e.g. to undo a failed open."""
        self._cancel_interaction()
        self._image = None
        self._mask = np.zeros((0, 0), np.uint8)
        self._image_item.setPixmap(QPixmap())
        self.set_heatmap(None)
        self.overlay_item.rebuild(self._mask, self._overlay_color)
        self.undo_stack.clear()
        if self._prompts.clear():
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
        new = to_u8(mask)
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
        result = mask_op(self._mask, name, self.op_radius, self.feather_sigma)
        self._replace_mask(result, f"{name.capitalize()} mask", True)

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
        self._prompts.set_visible(visible)

    # --------------------------------------------------------------------------------------- prompts

    def prompts(self) -> Prompts:
        return self._prompts.prompts()

    def set_prompts(self, prompts: Prompts) -> None:
        """Replace all prompts (the box counts as added last); emits ``promptsChanged``."""
        self._prompts.set(prompts)
        self.promptsChanged.emit()

    def clear_prompts(self) -> None:
        """Remove every point and the box (emits ``promptsChanged`` only if there was any)."""
        if self._prompts.clear():
            self.promptsChanged.emit()

    def remove_last_prompt(self) -> None:
        """Remove the most recently added point or box."""
        if self._prompts.remove_last():
            self.promptsChanged.emit()

    @property
    def point_items(self) -> list[QGraphicsEllipseItem]:
        """The scene items of the points, in prompt order (read-only; for tests and the compare view)."""
        return self._prompts.point_items

    @property
    def box_item(self) -> QGraphicsRectItem:
        return self._prompts.box_item

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
        shape_cursor_item(self._cursor_item, self._brush_size, erase=self._tool == "eraser")

    def _begin_stroke(self, pos: QPointF) -> None:
        erase = self._tool == "eraser"
        self._stroke = Stroke(self._mask, self._brush_size / 2.0, self._brush_hardness, erase=erase)
        self._paint_to(pos)

    def _paint_to(self, pos: QPointF) -> None:
        """Extend the stroke to ``pos`` and refresh only the overlay rectangle it touched."""
        dirty = self._stroke.extend(pos) if self._stroke is not None else None
        if dirty is not None:
            self.overlay_item.update_region(self._mask, dirty)

    def _finish_stroke(self) -> None:
        """End the stroke in progress: one undo command holding only its changed box."""
        recorder, self._stroke = self._stroke, None
        if recorder is None:
            return
        result = recorder.finish()
        if result is None:
            return
        x, y, before, after = result
        text = "Erase" if recorder.erase else "Brush stroke"
        self.undo_stack.push(MaskPatchCommand(self, x, y, before, after, text, applied=True))
        self.maskEdited.emit()

    def _on_zoom_changed(self) -> None:
        mode = (
            Qt.TransformationMode.SmoothTransformation
            if self.scale_factor() < 1.0
            else Qt.TransformationMode.FastTransformation
        )
        self._image_item.setTransformationMode(mode)
        super()._on_zoom_changed()

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
        self._stroke, self._pan_last = None, None
        self._cancel_press()
        self._cursor_item.setVisible(False)

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
            self._start_pan(pos)
            return
        scene_pos = self._to_scene(pos)
        if self._tool != "prompt":
            if button == Qt.MouseButton.LeftButton:
                self._begin_stroke(scene_pos)
            return
        mods = event.modifiers()
        if button == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.ControlModifier:
            index = self._prompts.point_near(self.viewportTransform(), pos)
            if index is not None:
                self._prompts.remove_point(index)
                self.promptsChanged.emit()
            return
        if button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            alt = bool(mods & Qt.KeyboardModifier.AltModifier)
            negative = button == Qt.MouseButton.RightButton or alt
            can_box = button == Qt.MouseButton.LeftButton and not alt
            self._press = PromptPress(button, QPointF(pos), scene_pos, negative, can_box)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.mousePressEvent(event)  # quick successive clicks are still separate points / strokes

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        event.accept()
        pos = event.position()
        if self._pan_last is not None:
            self._pan_to(pos)
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
        if self._stroke is not None:
            self._paint_to(scene_pos)
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
                self._end_pan()
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
                self._prompts.set_box((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
                self.promptsChanged.emit()
        elif self._inside(press.scene_pos):
            x, y = self._clamp(press.scene_pos)
            self._prompts.add_point(x, y, 0 if press.negative else 1)
            self.promptsChanged.emit()

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

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        mods = event.modifiers()
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.MetaModifier):
            super().keyPressEvent(event)
            return
        if key == Qt.Key.Key_Space:
            self._press_space(event)
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

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._cursor_item.setVisible(False)
        return super().viewportEvent(event)
