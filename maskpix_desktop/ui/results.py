"""Results panel: Original | Mask | Baseline | Blended in synced views, a metrics table and a run history.

Views share zoom and pan through a :class:`ViewSync`; the Mask view can be swapped for a change-map heatmap
(change against the original, mask outline in white) so edits leaking outside the mask stand out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QObject, QPoint, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QPainter,
    QPixmap,
    QResizeEvent,
    QShowEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import masks, metric_catalog
from maskpix_desktop.core.jobs import EditResult
from maskpix_desktop.core.metrics import change_map
from maskpix_desktop.core.result_store import ResultStore
from maskpix_desktop.ui.display_levels import Pyramid, choose_level, overlay_pyramid, reduce_max
from maskpix_desktop.ui.qimage import to_pixmap

#: Zoom factor per wheel notch (120 units of angle delta).
ZOOM_STEP = 1.25
MIN_SCALE, MAX_SCALE = 0.02, 64.0
#: Screen size (device pixels) assumed when a view has no screen yet.
SCREEN_FALLBACK = (1920, 1080)

VARIANTS = ("baseline", "blended")


def format_metric(value: object) -> str:
    """Table text for a metric value: inf -> "∞", nan/None -> "—", floats to 4 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "—"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        return f"{v:.1f}" if abs(v) >= 10_000 else f"{v:.4g}"
    return str(value)


def metric_direction(key: str) -> int:
    """+1 (higher is better), -1 (lower is better) or 0 (informational / not in the metric catalogue)."""
    return metric_catalog.direction(key)


def better_variant(key: str, values: dict[str, object]) -> str | None:
    """Which of ``values`` (variant -> value) is better for ``key``; None on a tie or when unknown."""
    sign = metric_direction(key)
    nums = {}
    for variant, v in values.items():
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            if not math.isnan(float(v)):
                nums[variant] = float(v) * sign
    if sign == 0 or len(nums) < 2 or len(set(nums.values())) == 1:
        return None
    return max(nums, key=lambda k: nums[k])


def change_heatmap(original: np.ndarray, edited: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """RGB heatmap (inferno) of ``change_map(original, edited)`` with the mask outline drawn in white.

    The change (0..255) is shown on a square-root scale so faint leaks outside the mask stay visible.
    """
    d = change_map(original, edited)
    level = np.clip(np.rint(np.sqrt(d / 255.0) * 255.0), 0, 255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(level, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    if mask is not None:
        m = masks.as_bool(mask).astype(np.uint8)
        contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(min(m.shape) / 256))
        cv2.drawContours(heat, contours, -1, (255, 255, 255), thickness)
    return heat


def heatmap_pyramid(original: np.ndarray, edited: np.ndarray, mask: np.ndarray | None) -> Pyramid:
    """Display levels of :func:`change_heatmap`, max-pooled so one leaking pixel stays visible at fit."""
    full: list[np.ndarray] = []

    def make(k: int) -> np.ndarray:
        if not full:
            full.append(change_heatmap(original, edited, mask))
        return reduce_max(full[0], k)

    return Pyramid(original.shape[:2], make)


def result_mask(result: EditResult) -> np.ndarray:
    """The user's mask of a result (the mask actually used when the request had none)."""
    return result.request.mask if result.request.mask is not None else result.mask_used


# --------------------------------------------------------------------------------------------- views


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
        arr = self._pyramid.level(k)
        self.pixmap_item.setPixmap(to_pixmap(arr))
        h, w = self._pyramid.size
        self.pixmap_item.setTransform(QTransform.fromScale(w / arr.shape[1], h / arr.shape[0]))
        self._level = k

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


# --------------------------------------------------------------------------------------------- panel


class ResultsPanel(QWidget):
    """Original | Mask (or change map) | Baseline | Blended, metrics of both variants and a run history."""

    resultShown = Signal(object)
    exportRequested = Signal()
    rerunRequested = Signal(object)

    TITLES = ("Original", "Mask", "Baseline", "Blended")
    CHANGE_MAP_TITLE = "Change map"

    def __init__(self, parent: QWidget | None = None, store: ResultStore | None = None):
        super().__init__(parent)
        #: Moves all but the newest results' arrays to disk (memory-mapped; same values for every reader).
        self.store = store if store is not None else ResultStore()
        self._history: list[EditResult] = []
        self._current = -1
        self._orig_cache: tuple[np.ndarray, Pyramid] | None = None
        self._overlay_cache: tuple[np.ndarray, np.ndarray, Pyramid] | None = None

        self.views = {t.lower(): SyncedImageView(t) for t in self.TITLES}
        self.sync = ViewSync(list(self.views.values()), self)

        self.change_map_toggle = QCheckBox("Change map")
        self.change_map_toggle.setToolTip(
            "Replace the mask view by a heatmap of |baseline - original| (square-root scale) with the "
            "mask outline in white: bright pixels outside the outline are leaks."
        )
        self.change_map_toggle.toggled.connect(self._refresh_mask_view)
        self.rerun_button = QPushButton("Use these settings")
        self.rerun_button.setToolTip("Load this run's instruction and parameters into the edit panel")
        self.rerun_button.clicked.connect(self._emit_rerun)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.exportRequested)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Fit all views (or double-click a view)")
        self.fit_button.clicked.connect(self.sync.fit_all)

        bar = QHBoxLayout()
        bar.addWidget(self.change_map_toggle)
        bar.addWidget(self.fit_button)
        bar.addStretch(1)
        bar.addWidget(self.rerun_button)
        bar.addWidget(self.export_button)

        row = QWidget()
        self._grid = QGridLayout(row)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid_cols = 0
        self._views_area = row
        self._arrange_views()
        row.installEventFilter(self)

        self.metrics_table = QTableWidget(0, 2)
        self.metrics_table.setHorizontalHeaderLabels(["Baseline", "Blended"])
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

        self.history_list = QListWidget()
        self.history_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.history_list.currentRowChanged.connect(self._on_row_changed)

        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.metrics_table)
        bottom.addWidget(self.history_list)
        bottom.setStretchFactor(0, 1)
        bottom.setStretchFactor(1, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(row)
        split.addWidget(bottom)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        self._update_buttons()

    def _arrange_views(self) -> None:
        """4x1, 2x2 or 1x4: whichever shows the current image largest in the space available."""
        image = self._history[self._current].request.image if self._history else None
        ih, iw = image.shape[:2] if image is not None else (3, 4)
        area_w, area_h = max(self._views_area.width(), 1), max(self._views_area.height(), 1)
        n = len(self.views)
        cols = max((4, 2, 1), key=lambda c: min(area_w / c / iw, area_h / -(-n // c) / ih))
        if cols == self._grid_cols:
            return
        self._grid_cols = cols
        for view in self.views.values():
            self._grid.removeWidget(view)
        for i, view in enumerate(self.views.values()):
            self._grid.addWidget(view, i // cols, i % cols)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt override)
        if obj is self._views_area and event.type() == QEvent.Type.Resize:
            self._arrange_views()
        return super().eventFilter(obj, event)

    # API -------------------------------------------------------------------------------------------
    def add_result(self, result: EditResult) -> int:
        """Append ``result`` to the history and show it; returns its index."""
        self._history.append(result)
        index = len(self._history) - 1
        self.history_list.addItem(self._history_item(index, result))
        self.show_result(index)
        self.store.keep_newest(self._history)
        return index

    def set_history(self, results: Sequence[EditResult]) -> None:
        """Replace the history (e.g. from a loaded project) and show the last result."""
        self.clear()
        self._history = list(results)
        self.history_list.blockSignals(True)
        for i, result in enumerate(self._history):
            self.history_list.addItem(self._history_item(i, result))
        self.history_list.blockSignals(False)
        if self._history:
            self.show_result(len(self._history) - 1)
        self.store.keep_newest(self._history)

    def show_result(self, index: int) -> None:
        """Show history entry ``index`` (negative counts from the end); IndexError when out of range."""
        if not -len(self._history) <= index < len(self._history):
            raise IndexError(f"no result #{index} (history holds {len(self._history)})")
        index %= len(self._history)
        self._current = index
        if self.history_list.currentRow() != index:
            self.history_list.blockSignals(True)
            self.history_list.setCurrentRow(index)
            self.history_list.blockSignals(False)
        result = self._history[index]
        self.views["original"].set_pyramid(self._image_pyramid(result.request.image))
        self._refresh_mask_view()
        self.views["baseline"].set_image(result.baseline)
        self.views["blended"].set_image(result.blended)
        self._arrange_views()
        if all(v._auto_fit for v in self.views.values()):
            self.sync.fit_all()  # grid cells may differ by a pixel: one shared transform
        self._fill_metrics(result.metrics, masked=result.request.mask is not None)
        self._update_buttons()
        self.resultShown.emit(result)

    def current_result(self) -> EditResult | None:
        return self._history[self._current] if 0 <= self._current < len(self._history) else None

    def current_index(self) -> int:
        return self._current

    def history(self) -> list[EditResult]:
        return list(self._history)

    def clear(self) -> None:
        """Forget every result and blank the views and the table."""
        self.store.forget(self._history)
        self._history.clear()
        self._current = -1
        self.history_list.blockSignals(True)
        self.history_list.clear()
        self.history_list.blockSignals(False)
        for view in self.views.values():
            view.clear()
        self._orig_cache = self._overlay_cache = None
        self.metrics_table.setRowCount(0)
        self._update_buttons()

    def set_change_map_visible(self, on: bool) -> None:
        self.change_map_toggle.setChecked(on)

    def change_map_visible(self) -> bool:
        return self.change_map_toggle.isChecked()

    # internals -------------------------------------------------------------------------------------
    def _history_item(self, index: int, result: EditResult) -> QListWidgetItem:
        p = result.request.params
        text = f"#{index + 1}  {p.instruction}  · {p.mask_mode} · seed {p.seed}"
        total = result.timings.get("job_s", result.timings.get("total_s"))  # job_s: the whole job
        if total is not None:
            text += f" · {total:.1f}s"
        item = QListWidgetItem(text)
        lines = [f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in p.to_dict().items()]
        if result.timings:
            lines.append("timings: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
        if result.model:
            lines += [f"model {k}: {v}" for k, v in result.model.items()]
        item.setToolTip("\n".join(lines))
        return item

    def _on_row_changed(self, row: int) -> None:
        if 0 <= row < len(self._history) and row != self._current:
            self.show_result(row)

    def _refresh_mask_view(self) -> None:
        view = self.views["mask"]
        result = self.current_result()
        on = self.change_map_toggle.isChecked()
        view.set_title(self.CHANGE_MAP_TITLE if on else "Mask")
        if result is None:
            view.clear()
            return
        image, mask = result.request.image, result_mask(result)
        if on:
            view.set_pyramid(heatmap_pyramid(image, result.baseline, mask))
            return
        cached = self._overlay_cache
        if cached is None or cached[0] is not image or cached[1] is not mask:
            cached = self._overlay_cache = (image, mask, overlay_pyramid(self._image_pyramid(image), mask))
        view.set_pyramid(cached[2])

    def drop_display_cache(self) -> None:
        """Forget the original's display levels (the next result rebuilds them, as for a new photo)."""
        self._orig_cache = self._overlay_cache = None

    def _image_pyramid(self, image: np.ndarray) -> Pyramid:
        """The original's display levels, kept while results of the same image are shown."""
        if self._orig_cache is None or self._orig_cache[0] is not image:
            self._orig_cache = (image, Pyramid.of_image(image))
            self._overlay_cache = None
        return self._orig_cache[1]

    def _fill_metrics(self, metrics: dict[str, dict[str, object]], *, masked: bool = True) -> None:
        """``masked=False`` (a run without a mask): leakage shows "—", not a perfect-looking 0."""
        table = self.metrics_table
        keys = metric_catalog.ordered(k for v in VARIANTS for k in metrics.get(v, {}))
        table.setRowCount(len(keys))
        bold = QFont(table.font())
        bold.setBold(True)
        for row, key in enumerate(keys):
            label, tip = metric_catalog.label(key), metric_catalog.tooltip(key)
            header = QTableWidgetItem(label)
            header.setToolTip(tip)
            header.setData(Qt.ItemDataRole.UserRole, key)
            table.setVerticalHeaderItem(row, header)
            values = {v: metrics.get(v, {}).get(key) for v in VARIANTS}
            if not masked and key.startswith("leakage"):
                values = dict.fromkeys(VARIANTS)  # nothing lies outside a mask that does not exist
                tip = f"{tip}\nNo mask was used: the whole image was edited, there is no leakage."
            best = better_variant(key, values)
            for col, variant in enumerate(VARIANTS):
                item = QTableWidgetItem(format_metric(values[variant]))
                item.setData(Qt.ItemDataRole.UserRole, values[variant])
                item.setToolTip(tip)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if variant == best:
                    item.setFont(bold)
                table.setItem(row, col, item)

    def _update_buttons(self) -> None:
        has = self.current_result() is not None
        self.export_button.setEnabled(has)
        self.rerun_button.setEnabled(has)

    def _emit_rerun(self) -> None:
        result = self.current_result()
        if result is not None:
            self.rerunRequested.emit(result.request.params)


__all__ = [
    "ResultsPanel",
    "SyncedImageView",
    "ViewSync",
    "better_variant",
    "change_heatmap",
    "heatmap_pyramid",
    "format_metric",
    "metric_direction",
]
