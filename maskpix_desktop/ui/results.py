"""Results panel: Original | Mask | Baseline | Blended in synced views beside one before/after split view,
the metrics (headline and table) and a run history.

Views share zoom and pan through a :class:`ViewSync`; the Mask view can be swapped for a change-map heatmap
(change against the original, mask outline in white) so edits leaking outside the mask stand out.
:class:`CompareView` (the original and the blended result split by a divider, through the same display
pyramids as the grid) sits right of the grid in a splitter; "Compare" shows or hides it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import masks
from maskpix_desktop.core.jobs import EditResult
from maskpix_desktop.core.metrics import change_map
from maskpix_desktop.core.result_store import ResultStore
from maskpix_desktop.ui.compare_view import CompareView
from maskpix_desktop.ui.display_levels import Pyramid, overlay_pyramid, reduce_max
from maskpix_desktop.ui.results_metrics import MetricsView
from maskpix_desktop.ui.synced_view import SyncedImageView, ViewSync


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


# --------------------------------------------------------------------------------------------- panel


class ResultsPanel(QWidget):
    """Original | Mask (or change map) | Baseline | Blended beside a before/after split, metrics of both
    variants and a run history."""

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
        self._blended_cache: tuple[np.ndarray, Pyramid] | None = None

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
        self.fit_button.clicked.connect(self._fit)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setCheckable(True)
        self.compare_button.setChecked(True)
        self.compare_button.setToolTip(
            "Show or hide the before/after view beside the grid: the original and the blended result "
            "in one view, split by a divider (drag it, or press ← →)"
        )
        self.compare_button.toggled.connect(self.set_compare_visible)

        bar = QHBoxLayout()
        bar.addWidget(self.compare_button)
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
        self.compare_view = CompareView("Original", "Blended")
        #: The grid left, the before/after view right (hidden by the Compare toggle); halves at first.
        self.view_split = QSplitter(Qt.Orientation.Horizontal)
        self.view_split.setChildrenCollapsible(False)
        self.view_split.addWidget(row)
        self.view_split.addWidget(self.compare_view)
        self.view_split.setSizes([1000, 1000])

        self.metrics = MetricsView()
        self.metrics_table = self.metrics.table
        self.headline_label = self.metrics.headline

        self.history_list = QListWidget()
        self.history_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # long instructions end in "…" (the tooltip holds every parameter), no sideways scrolling
        self.history_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.history_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.history_list.currentRowChanged.connect(self._on_row_changed)

        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.metrics)
        bottom.addWidget(self.history_list)
        bottom.setStretchFactor(0, 3)  # the metrics' plain names need the room more than the history
        bottom.setStretchFactor(1, 2)

        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)  # the metrics keep their minimum rows (MIN_VISIBLE_ROWS)
        split.addWidget(self.view_split)
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
        self.views["blended"].set_pyramid(self._blended_pyramid(result))
        self._arrange_views()
        if all(v._auto_fit for v in self.views.values()):
            self.sync.fit_all()  # grid cells may differ by a pixel: one shared transform
        self._refresh_compare()
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
        self.compare_view.clear()
        self._orig_cache = self._overlay_cache = self._blended_cache = None
        self.metrics.clear()
        self._update_buttons()

    def set_change_map_visible(self, on: bool) -> None:
        self.change_map_toggle.setChecked(on)

    def change_map_visible(self) -> bool:
        return self.change_map_toggle.isChecked()

    def set_compare_visible(self, on: bool) -> None:
        """Show the before/after split view beside the four-view grid, or hide it (the grid stays)."""
        if self.compare_button.isChecked() != on:
            self.compare_button.setChecked(on)  # toggled calls back here
            return
        self.compare_view.setVisible(on)
        self._refresh_compare()
        if on:
            self.compare_view.setFocus(Qt.FocusReason.OtherFocusReason)

    def compare_visible(self) -> bool:
        """Whether the split view is shown (or will be, once the panel is)."""
        return not self.compare_view.isHidden()

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
        self._orig_cache = self._overlay_cache = self._blended_cache = None

    def _blended_pyramid(self, result: EditResult) -> Pyramid:
        """The shown result's blended levels, shared by the Blended view and the compare view."""
        if self._blended_cache is None or self._blended_cache[0] is not result.blended:
            self._blended_cache = (result.blended, Pyramid.of_image(result.blended))
        return self._blended_cache[1]

    def _refresh_compare(self) -> None:
        """Give the split view the shown result; while hidden it holds no pixmaps (no conversion cost)."""
        result = self.current_result()
        if result is None or not self.compare_visible():
            self.compare_view.clear()  # the divider keeps its place
            return
        self.compare_view.set_pair(self._image_pyramid(result.request.image), self._blended_pyramid(result))

    def _fit(self) -> None:
        self.sync.fit_all()
        self.compare_view.fit()

    def _image_pyramid(self, image: np.ndarray) -> Pyramid:
        """The original's display levels, kept while results of the same image are shown."""
        if self._orig_cache is None or self._orig_cache[0] is not image:
            self._orig_cache = (image, Pyramid.of_image(image))
            self._overlay_cache = None
        return self._orig_cache[1]

    def _fill_metrics(self, metrics: dict[str, dict[str, object]], *, masked: bool = True) -> None:
        """``masked=False`` (a run without a mask): leakage shows "—", not a perfect-looking 0."""
        self.metrics.fill(metrics, masked=masked)

    def _update_buttons(self) -> None:
        has = self.current_result() is not None
        self.export_button.setEnabled(has)
        self.rerun_button.setEnabled(has)

    def _emit_rerun(self) -> None:
        result = self.current_result()
        if result is not None:
            self.rerunRequested.emit(result.request.params)


__all__ = ["ResultsPanel", "change_heatmap", "heatmap_pyramid", "result_mask"]
