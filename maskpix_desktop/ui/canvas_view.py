"""A graphics view with the canvas's zoom and pan: fit, 1:1, wheel zoom around the cursor, middle-button
or Space+drag pan. Subclasses say what to fit (``content_rect``) and call the pan helpers from their
mouse events."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFocusEvent,
    QKeyEvent,
    QKeySequence,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

__all__ = ["BACKGROUND", "ZOOM_MAX", "ZOOM_MIN", "ZoomPanView"]

ZOOM_MIN, ZOOM_MAX = 0.02, 40.0
WHEEL_STEP = 1.25
BACKGROUND = QColor(30, 30, 34)


class ZoomPanView(QGraphicsView):
    """Zoom (``scale_factor``, ``fit``, ``zoom_1to1``, ``zoom_by``, wheel) and pan over its own scene."""

    zoomChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(BACKGROUND)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self._user_zoomed = False
        self._pan_last: QPointF | None = None
        self._space_held = False
        self.fit_action = self._add_action("Fit to Window", "Ctrl+0", self.fit)
        self.actual_size_action = self._add_action("Actual Size (1:1)", "Ctrl+1", self.zoom_1to1)

    def content_rect(self) -> QRectF | None:
        """The scene rectangle ``fit`` shows, or None when there is nothing to show."""
        return None

    # ------------------------------------------------------------------------------------------ zoom

    def scale_factor(self) -> float:
        """Current zoom (1.0 = one image pixel per screen pixel)."""
        return float(self.transform().m11())

    def fit(self) -> None:
        """Fit the whole content in the view; the view then refits on resize until the user zooms."""
        rect = self.content_rect()
        if rect is None:
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
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
        if self.content_rect() is None:
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
        self.zoomChanged.emit(self.scale_factor())

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

    # ------------------------------------------------------------------------------------------- pan

    def _start_pan(self, pos: QPointF) -> None:
        self._pan_last = QPointF(pos)
        self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)

    def _pan_to(self, pos: QPointF) -> None:
        if self._pan_last is None:
            return
        hbar, vbar = self.horizontalScrollBar(), self.verticalScrollBar()
        hbar.setValue(hbar.value() - round(pos.x() - self._pan_last.x()))
        vbar.setValue(vbar.value() - round(pos.y() - self._pan_last.y()))
        self._pan_last = QPointF(pos)

    def _end_pan(self) -> None:
        self._pan_last = None
        self.viewport().setCursor(self._rest_cursor())

    def _rest_cursor(self) -> Qt.CursorShape:
        return Qt.CursorShape.OpenHandCursor if self._space_held else Qt.CursorShape.CrossCursor

    # ---------------------------------------------------------------------------------------- events

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.accept()
        steps = event.angleDelta().y() / 120.0
        if steps == 0 or self.content_rect() is None:
            return
        self._zoom_to(self.scale_factor() * WHEEL_STEP**steps, event.position())

    def _press_space(self, event: QKeyEvent) -> None:
        """Space held: the next left drag pans."""
        if not event.isAutoRepeat():
            self._space_held = True
            if self._pan_last is None:
                self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)

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

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.content_rect() is not None and not self._user_zoomed:
            self.fit()
