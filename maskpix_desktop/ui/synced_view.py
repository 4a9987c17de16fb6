"""Image views for results: :class:`SyncedImageView` (one image through its display pyramid, wheel zoom,
drag pan, double-click fit) and :class:`ViewSync`, which links the zoom and pan of several views."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QObject, QPoint, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPixmap, QResizeEvent, QShowEvent, QTransform, QWheelEvent
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QLabel, QWidget

from maskpix_desktop.ui.display_levels import Pyramid, choose_level
from maskpix_desktop.ui.qimage import to_pixmap

#: Zoom factor per wheel notch (120 units of angle delta).
ZOOM_STEP = 1.25
MIN_SCALE, MAX_SCALE = 0.02, 64.0
#: Screen size (device pixels) assumed when a view has no screen yet.
SCREEN_FALLBACK = (1920, 1080)


def show_level(item: QGraphicsPixmapItem, pyramid: Pyramid, k: int) -> None:
    """Give ``item`` level ``k`` of ``pyramid``, scaled so scene coordinates stay full-size pixels."""
    arr = pyramid.level(k)
    item.setPixmap(to_pixmap(arr))
    h, w = pyramid.size
    item.setTransform(QTransform.fromScale(w / arr.shape[1], h / arr.shape[0]))


class SyncedImageView(QGraphicsView):
    """One image with a title overlay; wheel zooms, drag pans, double-click fits (all linked views)."""

    fitRequested = Signal()

    def __init__(self, title: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.sync: ViewSync | None = None
        self._auto_fit = True
        self._pyramid: Pyramid | None = None
        self._level = -1
        self._fitting = False
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.pixmap_item = QGraphicsPixmapItem()
        self.pixmap_item.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self._scene.addItem(self.pixmap_item)
        self.setBackgroundBrush(QBrush(QColor(32, 32, 36)))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setMinimumSize(120, 120)
        self.title_label = QLabel(title, self)
        self.title_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.title_label.setStyleSheet(
            "QLabel { background: rgba(0, 0, 0, 150); color: white; padding: 2px 6px; border-radius: 3px; }"
        )
        self.title_label.move(6, 6)
        self.title_label.adjustSize()

    # image -----------------------------------------------------------------------------------------
    def set_title(self, title: str) -> None:
        self.title_label.setText(title)
        self.title_label.adjustSize()

    def title(self) -> str:
        return self.title_label.text()

    def set_image(self, image: np.ndarray) -> None:
        """Show ``image`` (HxWx3/HxWx4/HxW uint8); a new size re-fits, the same size keeps the zoom."""
        self.set_pyramid(Pyramid.of_image(image))

    def set_pyramid(self, pyramid: Pyramid) -> None:
        """Show an image through its display levels (scene coordinates stay full-size pixels).

        Only the level the current zoom needs is converted to a pixmap (see :func:`choose_level`); zooming
        in converts finer levels on demand, down to the full-size image at 1:1.
        """
        old = self._pyramid.size if self._pyramid is not None else None
        self._pyramid = pyramid
        self._level = -1
        h, w = pyramid.size
        self._scene.setSceneRect(QRectF(0, 0, w, h))
        if pyramid.size != old:
            self._auto_fit = True
        if self._auto_fit:
            self.fit()
        self._update_level()

    def clear(self) -> None:
        self._pyramid = None
        self._level = -1
        self.pixmap_item.setPixmap(QPixmap())
        self._scene.setSceneRect(0, 0, 1, 1)
        self._auto_fit = True

    def has_image(self) -> bool:
        return self._pyramid is not None

    def image_size(self) -> tuple[int, int] | None:
        """``(h, w)`` of the full-size image shown (None when empty)."""
        return None if self._pyramid is None else self._pyramid.size

    def shown_level(self) -> int:
        """The pyramid level the pixmap holds (0 = full size; -1 when empty)."""
        return self._level

    def _wanted_level(self) -> int:
        assert self._pyramid is not None
        scale = abs(self.transform().m11()) * self.devicePixelRatioF()
        if self._auto_fit:  # fitted (or not laid out yet): never finer than the screen needs
            scale = min(scale, self._screen_scale())
        return choose_level(self._pyramid.size, scale)

    def _screen_scale(self) -> float:
        """Scale that fits the full image on this view's screen (device pixels)."""
        assert self._pyramid is not None
        screen = self.screen()
        if screen is not None:
            size = screen.size()
            sw, sh = size.width() * screen.devicePixelRatio(), size.height() * screen.devicePixelRatio()
        else:
            sw, sh = SCREEN_FALLBACK
        h, w = self._pyramid.size
        return min(sw / w, sh / h)

    def _update_level(self) -> None:
        """Give the pixmap item the level the current zoom needs (no work when it already holds it)."""
        if self._pyramid is None:
            return
        k = self._wanted_level()
        if k == self._level:
            return
        self._show_level(k)
        self._level = k

    def _show_level(self, k: int) -> None:
        """Put level ``k`` of the pyramid into the pixmap item (subclasses fill more items)."""
        assert self._pyramid is not None
        show_level(self.pixmap_item, self._pyramid, k)

    # zoom ------------------------------------------------------------------------------------------
    def fit(self) -> None:
        """Scale the image to the viewport (keeps aspect); later resizes re-fit until the user zooms."""
        self._auto_fit = True
        if self.has_image() and self.viewport().width() > 1 and self.viewport().height() > 1:
            # fitInView passes through the identity transform: linked views follow the end state only
            self._fitting = True
            try:
                self.fitInView(self.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
            finally:
                self._fitting = False
            if self.sync is not None:
                self.sync.sync_from(self)
        self._update_level()

    def zoom(self, factor: float, anchor: QPoint | None = None) -> None:
        """Multiply the scale by ``factor`` around ``anchor`` (viewport coordinates; default: centre)."""
        current = self.transform().m11()
        factor = min(max(current * factor, MIN_SCALE), MAX_SCALE) / current if current else factor
        if factor == 1.0:
            return
        self._auto_fit = False
        if anchor is None:
            anchor = self.viewport().rect().center()
        before = self.mapToScene(anchor)
        old = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(factor, factor)
        self.setTransformationAnchor(old)
        self._update_level()
        delta = self.mapFromScene(before) - anchor
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + delta.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + delta.y())
        if self.sync is not None:
            self.sync.sync_from(self)

    def scroll_position(self) -> tuple[int, int]:
        return self.horizontalScrollBar().value(), self.verticalScrollBar().value()

    # events ----------------------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt override)
        steps = event.angleDelta().y() / 120.0
        if not steps or not self.has_image():
            event.ignore()
            return
        self.zoom(ZOOM_STEP**steps, event.position().toPoint())
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self.sync is not None:
            self.sync.fit_all()
        else:
            self.fit()
        self.fitRequested.emit()
        event.accept()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if self._auto_fit:
            self.fit()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if self._auto_fit:
            # Linked views of slightly different sizes must still share one transform.
            if self.sync is not None and not self.sync._busy:
                self.sync.fit_all()
            else:
                self.fit()

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802 (Qt override)
        super().scrollContentsBy(dx, dy)
        if self.sync is not None and not self._fitting:
            self.sync.sync_from(self)


class ViewSync(QObject):
    """Links views: zoom (transform) and pan (scroll positions) of one are copied to all others."""

    def __init__(self, views: Sequence[SyncedImageView] = (), parent: QObject | None = None):
        super().__init__(parent)
        self.views: list[SyncedImageView] = []
        self._busy = False
        for view in views:
            self.add(view)

    def add(self, view: SyncedImageView) -> None:
        if view not in self.views:
            self.views.append(view)
            view.sync = self

    def remove(self, view: SyncedImageView) -> None:
        if view in self.views:
            self.views.remove(view)
            view.sync = None

    def sync_from(self, source: SyncedImageView) -> None:
        """Give every other view the transform and scroll positions of ``source`` (no recursion)."""
        if self._busy:
            return
        self._busy = True
        try:
            transform = QTransform(source.transform())
            h, v = source.scroll_position()
            for view in self.views:
                if view is source:
                    continue
                view._auto_fit = source._auto_fit
                if view.transform() != transform:
                    view.setTransform(transform)
                view._update_level()
                view.horizontalScrollBar().setValue(h)
                view.verticalScrollBar().setValue(v)
        finally:
            self._busy = False

    def fit_all(self) -> None:
        """Fit the views that show an image, then align them to the first one."""
        shown = [v for v in self.views if v.has_image()]
        if not shown:
            return
        self._busy = True
        try:
            for view in shown:
                view.fit()
        finally:
            self._busy = False
        self.sync_from(shown[0])


__all__ = [
    "MAX_SCALE",
    "MIN_SCALE",
    "SCREEN_FALLBACK",
    "ZOOM_STEP",
    "SyncedImageView",
    "ViewSync",
    "show_level",
]
