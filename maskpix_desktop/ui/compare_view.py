"""Before/after split view: the original left of a divider, the result right of it, in one view.

Both images are shown through their display pyramids (the same level for both, chosen by the zoom), so a
fitted 24 MP pair converts two screen-sized copies, never a full-size image. Drag with the left button
(or press Left/Right, Shift for bigger steps, Home/End) to move the divider; the wheel zooms and the
scroll bars pan as in the other result views. The divider is kept as a fraction of the width, so it
stays where it was when a new result (even of another size) arrives.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsView,
    QLabel,
)

from maskpix_desktop.ui.display_levels import Pyramid
from maskpix_desktop.ui.synced_view import SyncedImageView, show_level

#: Divider steps of the arrow keys, as fractions of the image width (with Shift: the big step).
KEY_STEP, KEY_BIG_STEP = 0.01, 0.1


class CompareView(SyncedImageView):
    """The original left of a draggable divider, the result right of it (scene x >= divider)."""

    dividerMoved = Signal(float)  # the new fraction (0..1)

    def __init__(self, before_title: str = "Original", after_title: str = "Blended", parent=None):
        super().__init__(before_title, parent)
        self._fraction = 0.5
        self._after: Pyramid | None = None
        self._dragging = False
        # the result sits above the original, clipped to the right of the divider
        self.clip_item = QGraphicsRectItem()
        self.clip_item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, True)
        self.clip_item.setPen(Qt.PenStyle.NoPen)
        self.after_item = QGraphicsPixmapItem(self.clip_item)
        self.after_item.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self.scene().addItem(self.clip_item)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.viewport().setCursor(Qt.CursorShape.SplitHCursor)
        self.setToolTip("Drag (or press ← →, Shift for bigger steps) to move the divider; wheel zooms")
        self.after_label = QLabel(after_title, self)
        self.after_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.after_label.setStyleSheet(self.title_label.styleSheet())
        self.after_label.adjustSize()
        self._place_after_label()

    # content ---------------------------------------------------------------------------------------
    def set_pair(self, before: Pyramid, after: Pyramid, after_title: str | None = None) -> None:
        """Show ``before`` left of the divider and ``after`` right of it (both the same full size)."""
        if before.size != after.size:
            raise ValueError(f"before {before.size} and after {after.size} differ in size")
        self._after = after
        if after_title is not None:
            self.after_label.setText(after_title)
            self.after_label.adjustSize()
            self._place_after_label()
        self.set_pyramid(before)  # resets the level: _show_level fills both items
        self._update_clip()

    def clear(self) -> None:
        super().clear()
        self._after = None
        self.after_item.setPixmap(QPixmap())
        self._update_clip()

    def after_pyramid(self) -> Pyramid | None:
        return self._after

    def _show_level(self, k: int) -> None:
        super()._show_level(k)
        if self._after is not None:
            show_level(self.after_item, self._after, k)

    # divider ---------------------------------------------------------------------------------------
    def divider_fraction(self) -> float:
        return self._fraction

    def divider_x(self) -> int:
        """The divider in full-size image pixels: columns ``< x`` show the original, ``>= x`` the result."""
        size = self.image_size()
        return 0 if size is None else round(self._fraction * size[1])

    def set_divider_fraction(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if fraction == self._fraction:
            return
        self._fraction = fraction
        self._update_clip()
        self.dividerMoved.emit(fraction)

    def set_divider_x(self, x: float) -> None:
        """Put the divider at image column ``x`` (clamped to the image)."""
        size = self.image_size()
        if size is not None:
            self.set_divider_fraction(x / size[1])

    def _update_clip(self) -> None:
        size = self.image_size()
        if size is None:
            self.clip_item.setRect(QRectF())
        else:
            h, w = size
            x = self.divider_x()
            self.clip_item.setRect(QRectF(x, 0, w - x, h))
        self.viewport().update()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt override)
        """The divider: a line over the full view height and a round grip in the middle (viewport space)."""
        if not self.has_image():
            return
        vx = self.mapFromScene(QPointF(self.divider_x(), 0)).x()
        vh = self.viewport().height()
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(0, 0, 0, 140), 4))
        painter.drawLine(vx, 0, vx, vh)
        painter.setPen(QPen(QColor(255, 255, 255), 2))
        painter.drawLine(vx, 0, vx, vh)
        cy, r = vh / 2, 14
        painter.setBrush(QColor(255, 255, 255))
        painter.setPen(QPen(QColor(0, 0, 0, 160), 1))
        painter.drawEllipse(QPointF(vx, cy), r, r)
        arrows = QPainterPath()
        for sign in (-1, 1):  # a small triangle each side: "drag me sideways"
            tip = vx + sign * 9
            arrows.moveTo(tip, cy)
            arrows.lineTo(tip - sign * 5, cy - 5)
            arrows.lineTo(tip - sign * 5, cy + 5)
            arrows.closeSubpath()
        painter.fillPath(arrows, QColor(40, 40, 44))
        painter.restore()

    # events ----------------------------------------------------------------------------------------
    def _divider_to(self, viewport_x: float) -> None:
        size = self.image_size()
        if size is not None:
            self.set_divider_fraction(self.mapToScene(int(viewport_x), 0).x() / size[1])

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.button() == Qt.MouseButton.LeftButton and self.has_image():
            self._dragging = True
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            self._divider_to(event.position().x())
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if self._dragging:
            self._divider_to(event.position().x())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if self._dragging and event.button() == Qt.MouseButton.LeftButton:
            self._dragging = False
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.fit()
        self.fitRequested.emit()
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        step = KEY_BIG_STEP if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else KEY_STEP
        moves = {
            Qt.Key.Key_Left: self._fraction - step,
            Qt.Key.Key_Right: self._fraction + step,
            Qt.Key.Key_Home: 0.0,
            Qt.Key.Key_End: 1.0,
        }
        if event.key() in moves and self.has_image():
            self.set_divider_fraction(moves[event.key()])
            event.accept()
            return
        super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._place_after_label()

    def _place_after_label(self) -> None:
        bar = self.verticalScrollBar()
        right = self.width() - (bar.width() if bar.isVisible() else 0) - 6
        self.after_label.move(max(right - self.after_label.width(), 6), 6)


__all__ = ["KEY_BIG_STEP", "KEY_STEP", "CompareView"]
