"""Browse a finished ``maskpix-cli eval`` folder: items sorted by a chosen metric, any item side by side.

The list shows one row per item with the chosen metric for every mode; selecting an item shows
Original | Mask | each mode's output (| Target for MagicBrush) in synced views (:class:`ViewSync`, as in
the results panel) with the item's metrics of every mode below. The *Study* tab shows a human-study
report (:class:`StudyReportView`): the one made from this folder when it sits beside or inside it, or
any report opened there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import evaluation, images, metric_catalog
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.export import mask_overlay
from maskpix_desktop.core.study import StudyError, find_study_report
from maskpix_desktop.ui.results_metrics import format_metric, metric_direction
from maskpix_desktop.ui.study_report_view import StudyReportView
from maskpix_desktop.ui.synced_view import SyncedImageView, ViewSync


def metric_label(key: str) -> str:
    """The metric's compact name from the metric catalogue (the report's column name without unit marks)."""
    return metric_catalog.name(key)


def _present_keys(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The catalogue's evaluation metrics that some row has, in the report's order."""
    rows = list(rows)
    return [k for k in metric_catalog.EVAL_KEYS if any(k in (r.get("metrics") or {}) for r in rows)]


def retrieval_text(retrieval: dict[str, Any]) -> str:
    """One line of the summary's instruction retrieval accuracy per mode ("" when there is none)."""
    if retrieval.get("missing"):
        return f"Instruction retrieval: missing ({retrieval['missing']})"
    parts = []
    for mode, e in (retrieval.get("modes") or {}).items():
        clip = e.get("clip") or {}
        if "top1" in clip and "top5" in clip:
            label = evaluation.MODE_LABELS.get(mode, mode)
            parts.append(f"{label} {100 * clip['top1']:.0f}% / {100 * clip['top5']:.0f}%")
    return "Instruction retrieval, CLIP top-1 / top-5: " + " · ".join(parts) if parts else ""


def _sort_value(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    v = float(value)
    return None if math.isnan(v) else v


class _NumberItem(QTableWidgetItem):
    """A table cell holding a metric (shown with ``format_metric``, sorted by value)."""

    def __init__(self, value: Any):
        super().__init__(format_metric(value))
        self.setData(Qt.ItemDataRole.UserRole, value)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


class ResultsBrowser(QWidget):
    """An evaluation folder's items, sorted by a metric of a mode; the selected item in synced views."""

    itemOpened = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder: Path | None = None
        self.summary: dict[str, Any] = {}
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}  # item -> mode -> row
        self._order: list[str] = []
        self._modes: list[str] = []
        self._current: str | None = None
        self.views: dict[str, SyncedImageView] = {}
        self.sync = ViewSync(parent=self)

        self.title = QLabel("No evaluation loaded")
        self.retrieval_label = QLabel("")
        self.retrieval_label.setWordWrap(True)
        self.retrieval_label.setVisible(False)
        self.metric_combo = QComboBox()
        self.metric_combo.setToolTip("Metric to sort the items by")
        self.mode_combo = QComboBox()
        self.mode_combo.setToolTip("Whose value of the metric (baseline or a mask mode)")
        self.order_combo = QComboBox()
        self.order_combo.addItems(["worst first", "best first"])
        for combo in (self.metric_combo, self.mode_combo, self.order_combo):
            combo.currentIndexChanged.connect(self._resort)
        self.fit_button = QPushButton("Fit")
        self.fit_button.clicked.connect(self.sync.fit_all)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Sort by"))
        bar.addWidget(self.metric_combo)
        bar.addWidget(QLabel("of"))
        bar.addWidget(self.mode_combo)
        bar.addWidget(self.order_combo)
        bar.addStretch(1)
        bar.addWidget(self.fit_button)

        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._on_selection)

        self.view_row = QWidget()
        self._view_layout = QHBoxLayout(self.view_row)
        self._view_layout.setContentsMargins(0, 0, 0, 0)
        self.item_label = QLabel("")
        self.item_label.setWordWrap(True)
        self.metrics_table = QTableWidget(0, 0)
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.item_label)
        dl.addWidget(self.view_row, 3)
        dl.addWidget(self.metrics_table, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(detail)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)

        items_page = QWidget()
        il = QVBoxLayout(items_page)
        il.setContentsMargins(0, 0, 0, 0)
        il.addLayout(bar)
        il.addWidget(split, 1)
        self.study_view = StudyReportView()
        self.tabs = QTabWidget()
        self.tabs.addTab(items_page, "Items")
        self.tabs.addTab(self.study_view, "Study")

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.retrieval_label)
        layout.addWidget(self.tabs, 1)

    # ------------------------------------------------------------------------------------------ API
    def load(self, path: str | Path) -> None:
        """Load an evaluation folder (or a file in it); MaskPixError when it holds no results."""
        folder, rows, summary = evaluation.load_results(path)
        self.folder, self.summary = folder, summary
        self._rows = {}
        for row in rows:
            self._rows.setdefault(str(row["item"]), {})[str(row["mode"])] = row
        present = {str(r["mode"]) for r in rows}
        self._modes = [m for m in evaluation.MODES if m in present]
        keys = _present_keys(rows)
        n_items = len(self._rows)
        fmt = summary.get("format", "")
        self.title.setText(f"{folder}  ·  {n_items} items" + (f"  ·  {fmt}" if fmt else ""))
        for combo in (self.metric_combo, self.mode_combo):
            combo.blockSignals(True)
            combo.clear()
        for key in keys:
            self.metric_combo.addItem(metric_label(key), key)
            self.metric_combo.setItemData(
                self.metric_combo.count() - 1, metric_catalog.tooltip(key), Qt.ItemDataRole.ToolTipRole
            )
        self.retrieval_label.setText(retrieval_text(summary.get("retrieval") or {}))
        self.retrieval_label.setVisible(bool(self.retrieval_label.text()))
        for mode in self._modes:
            self.mode_combo.addItem(evaluation.MODE_LABELS[mode], mode)
        default_key = "pie_psnr" if "pie_psnr" in keys else (keys[0] if keys else None)
        if default_key is not None:
            self.metric_combo.setCurrentIndex(keys.index(default_key))
        if "baseline" in self._modes:
            self.mode_combo.setCurrentIndex(self._modes.index("baseline"))
        for combo in (self.metric_combo, self.mode_combo):
            combo.blockSignals(False)
        self._build_views()
        self._current = None
        self._resort()
        if self._order:
            self.table.selectRow(0)
        report = find_study_report(folder)
        if report is not None:
            self.load_study_report(report, show=False)
        elif self.study_view.report and not self._study_belongs(folder):
            self.study_view.clear()

    def load_study_report(self, path: str | Path, *, show: bool = True) -> dict[str, Any]:
        """Show a study report (report.json, its folder or the study folder) in the Study tab, brought to
        the front unless ``show`` is False; StudyError when there is none."""
        report = self.study_view.load(path)
        if show:
            self.tabs.setCurrentWidget(self.study_view)
        return report

    def _study_belongs(self, folder: Path) -> bool:
        eval_dir = (self.study_view.report or {}).get("eval_dir") or ""
        return bool(eval_dir) and Path(eval_dir).resolve() == folder.resolve()

    def set_sort(self, metric: str, mode: str | None = None, *, best_first: bool = False) -> None:
        """Sort by ``metric`` of ``mode`` (default: the current mode); worst first unless ``best_first``."""
        idx = self.metric_combo.findData(metric)
        if idx < 0:
            raise KeyError(f"no metric {metric!r} in these results")
        self.metric_combo.blockSignals(True)
        self.mode_combo.blockSignals(True)
        self.order_combo.blockSignals(True)
        self.metric_combo.setCurrentIndex(idx)
        if mode is not None:
            midx = self.mode_combo.findData(mode)
            if midx < 0:
                raise KeyError(f"no mode {mode!r} in these results")
            self.mode_combo.setCurrentIndex(midx)
        self.order_combo.setCurrentIndex(1 if best_first else 0)
        for combo in (self.metric_combo, self.mode_combo, self.order_combo):
            combo.blockSignals(False)
        self._resort()

    def item_order(self) -> list[str]:
        """Item ids in the order the list shows them."""
        return list(self._order)

    def sort_key(self) -> tuple[str | None, str | None, bool]:
        return (
            self.metric_combo.currentData(),
            self.mode_combo.currentData(),
            self.order_combo.currentIndex() == 1,
        )

    def value(self, item: str, mode: str, metric: str) -> Any:
        return (self._rows.get(item, {}).get(mode, {}).get("metrics") or {}).get(metric)

    def current_item(self) -> str | None:
        return self._current

    def open_item(self, item: str) -> None:
        """Show ``item``'s images and metrics (selects its row); KeyError for an unknown id."""
        if item not in self._rows:
            raise KeyError(f"no item {item!r} in these results")
        self.table.selectRow(self._order.index(item))  # shows it through _on_selection
        if self._current != item:
            self._show(item)

    # ------------------------------------------------------------------------------------ internals
    def _panel_names(self) -> list[str]:
        names = ["original", "mask", *self._modes]
        if any("target" in (r.get("files") or {}) for m in self._rows.values() for r in m.values()):
            names.append("target")
        return names

    def _build_views(self) -> None:
        for view in list(self.views.values()):
            self.sync.remove(view)
            view.setParent(None)
            view.deleteLater()
        self.views = {}
        for name in self._panel_names():
            title = evaluation.MODE_LABELS.get(name, name.capitalize())
            view = SyncedImageView(title)
            self.views[name] = view
            self.sync.add(view)
            self._view_layout.addWidget(view, 1)

    def _resort(self) -> None:
        metric, mode, best_first = self.sort_key()
        sign = metric_direction(metric) if metric else 0
        ids = list(self._rows)

        def key(item: str) -> tuple[int, float, str]:
            v = _sort_value(self.value(item, mode, metric)) if metric and mode else None
            if v is None:
                return (1, 0.0, item)  # missing values always last
            goodness = v * (sign or 1)
            return (0, -goodness if best_first else goodness, item)

        self._order = sorted(ids, key=key)
        self._fill_table(metric)
        if self._current in self._order:
            self.table.blockSignals(True)
            self.table.selectRow(self._order.index(self._current))
            self.table.blockSignals(False)

    def _fill_table(self, metric: str | None) -> None:
        table = self.table
        label = metric_label(metric) if metric else ""
        headers = [
            "Item",
            "Type",
            *(f"{label} · {evaluation.MODE_LABELS[m]}" for m in self._modes),
            "Instruction",
        ]
        table.blockSignals(True)
        table.clear()
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(self._order))
        for r, item in enumerate(self._order):
            modes = self._rows[item]
            any_row = next(iter(modes.values()))
            id_cell = QTableWidgetItem(item)
            errors = [f"{m}: {row.get('error')}" for m, row in modes.items() if row.get("status") != "ok"]
            if errors:
                id_cell.setToolTip("\n".join(errors))
                id_cell.setForeground(Qt.GlobalColor.red)
            table.setItem(r, 0, id_cell)
            table.setItem(r, 1, QTableWidgetItem(str(any_row.get("edit_type", ""))))
            for c, mode in enumerate(self._modes, start=2):
                row = modes.get(mode)
                if row is None or row.get("status") != "ok":
                    cell = QTableWidgetItem("error" if row is not None else "")
                else:
                    cell = _NumberItem(self.value(item, mode, metric) if metric else None)
                table.setItem(r, c, cell)
            table.setItem(r, len(headers) - 1, QTableWidgetItem(str(any_row.get("instruction", ""))))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.blockSignals(False)

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self._show(self._order[rows[0].row()])

    def _file(self, item: str, name: str) -> Path | None:
        """The saved image ``name`` (original, mask, target or a mode) of ``item``, if any."""
        assert self.folder is not None
        rows = self._rows[item]
        if name in evaluation.MODES:
            rel = ((rows.get(name) or {}).get("files") or {}).get("output")
            return self.folder / rel if rel else None
        for row in rows.values():
            files = row.get("files") or {}
            if files.get(name):
                return self.folder / files[name]
            if files.get("output"):  # results.csv knows the outputs only; the rest sit beside them
                return self.folder / Path(files["output"]).parent / f"{name}.png"
        return None

    def _image(self, item: str, name: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
        path = self._file(item, name)
        if path is None or not path.is_file():
            return None
        try:
            if name == "mask":
                return images.load_mask(path, size=size)
            return images.load_image(path)
        except MaskPixError:
            return None

    def _show(self, item: str) -> None:
        self._current = item
        original = self._image(item, "original")
        for name, view in self.views.items():
            if name == "original":
                arr = original
            elif name == "mask":
                m = self._image(item, "mask", original.shape[:2] if original is not None else None)
                arr = mask_overlay(original, m) if m is not None and original is not None else None
            else:
                arr = self._image(item, name)
            if arr is None:
                view.clear()
            else:
                view.set_image(arr)
        any_row = next(iter(self._rows[item].values()))
        text = f"<b>{item}</b> · {any_row.get('instruction', '')}"
        if any_row.get("prompt"):
            text += f" · prompt: <i>{any_row['prompt']}</i>"
        self.item_label.setText(text)
        self._fill_metrics(item)
        self.sync.fit_all()
        self.itemOpened.emit(item)

    def _fill_metrics(self, item: str) -> None:
        rows = self._rows[item]
        keys = _present_keys(rows.values())
        table = self.metrics_table
        table.clear()
        table.setColumnCount(len(self._modes))
        table.setHorizontalHeaderLabels([evaluation.MODE_LABELS[m] for m in self._modes])
        table.setRowCount(len(keys))
        for r, key in enumerate(keys):
            header = QTableWidgetItem(metric_label(key))
            spec = metric_catalog.get(key)
            header.setToolTip(spec.summary if spec else key)
            table.setVerticalHeaderItem(r, header)
            for c, mode in enumerate(self._modes):
                row = rows.get(mode) or {}
                cell = _NumberItem((row.get("metrics") or {}).get(key))
                reason = (row.get("missing") or {}).get(key)
                if reason:
                    cell.setText("missing")
                    cell.setToolTip(reason)
                table.setItem(r, c, cell)


class ResultsBrowserDialog(QDialog):
    """A window around :class:`ResultsBrowser` for one evaluation folder, or for a study folder (its
    report in the Study tab, and the evaluation it was made from when that folder is still there)."""

    def __init__(self, folder: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.browser = ResultsBrowser(self)
        try:
            self.browser.load(folder)
        except MaskPixError as exc:
            try:
                report = self.browser.load_study_report(folder)
            except StudyError:
                raise exc from None
            try:
                self.browser.load(report.get("eval_dir") or "")
            except MaskPixError:
                missing = report.get("eval_dir") or "?"
                self.browser.title.setText(f"Study report only: the evaluation {missing} is not there")
            self.browser.load_study_report(folder)
        self.setWindowTitle(f"Evaluation results — {self.browser.folder or folder}")
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        self.resize(1200, 800)


def open_results_browser(parent: QWidget | None = None, folder: str | Path | None = None) -> QDialog | None:
    """Ask for an evaluation folder (unless given) and show it in a non-modal window; None if cancelled
    or unreadable (a message box says why)."""
    if folder is None:
        folder = QFileDialog.getExistingDirectory(
            parent, "Open evaluation results (the eval --out folder, or a study folder)"
        )
        if not folder:
            return None
    try:
        dialog = ResultsBrowserDialog(folder, parent)
    except MaskPixError as exc:
        QMessageBox.warning(parent, "Open evaluation results", str(exc))
        return None
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog


__all__ = ["ResultsBrowser", "ResultsBrowserDialog", "open_results_browser"]
