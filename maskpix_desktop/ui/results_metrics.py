"""The results' metrics: a one-line headline (leakage, baseline -> masked result) above a table of every
metric for both variants, plain names with units, the better value in bold. Labels, units, directions
and order come from the one metric catalogue (``core/metric_catalog.py``)."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import metric_catalog

VARIANTS = ("baseline", "blended")
#: The table's column titles, one per variant.
COLUMN_TITLES = ("Baseline", "Blended")
NO_MASK_NOTE = "No mask was used: the whole image was edited, there is no leakage."
#: Rows the table always shows in full (leakage, mIoU, the background kept), however small the window.
MIN_VISIBLE_ROWS = 6


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


def _headline_number(value: object) -> str:
    """One decimal for a finite number (the headline is read at a glance); format_metric otherwise."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if math.isfinite(float(value)):
            return f"{float(value):.1f}"
    return format_metric(value)


def headline(metrics: dict[str, dict[str, object]], *, masked: bool = True) -> str:
    """The one line above the table, e.g. "Leakage outside the mask 48.5 → 1.3" (baseline → blended).

    ``masked=False`` (a run without a mask) reads "—": nothing lies outside a mask that does not exist.
    "" when the result has no value of the headline metric (a run without metrics).
    """
    key = metric_catalog.HEADLINE_KEY
    spec = metric_catalog.spec(key)
    phrase = spec.headline or spec.label
    values = [metrics.get(v, {}).get(key) for v in VARIANTS]
    if all(v is None for v in values):
        return ""
    if not masked:
        return f"{phrase} — (no mask: the whole image was edited)"
    before, after = (_headline_number(v) for v in values)
    return f"{phrase} {before} → {after}"


def headline_tooltip() -> str:
    spec = metric_catalog.spec(metric_catalog.HEADLINE_KEY)
    return f"Baseline (the edit without the mask) → blended (the masked result).\n{spec.tooltip}"


class MetricsView(QWidget):
    """The headline label over the metrics table (rows: metrics, columns: baseline, blended)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.headline = QLabel()
        font = QFont(self.headline.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.headline.setFont(font)
        self.headline.setToolTip(headline_tooltip())
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableWidget(0, len(VARIANTS))
        self.table.setHorizontalHeaderLabels(list(COLUMN_TITLES))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        # compact rows: a laptop screen shows more metrics without scrolling
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setMinimumHeight(self.rows_height(MIN_VISIBLE_ROWS))

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.headline)
        layout.addWidget(self.table, 1)
        self.clear()

    def rows_height(self, rows: int) -> int:
        """The table height that shows its column titles and ``rows`` rows in full."""
        t = self.table
        rows_px = rows * t.verticalHeader().defaultSectionSize()
        return rows_px + t.horizontalHeader().sizeHint().height() + 2 * t.frameWidth()

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.headline.setText("")
        self.headline.hide()

    def fill(self, metrics: dict[str, dict[str, object]], *, masked: bool = True) -> None:
        """Show ``metrics`` (variant -> key -> value); ``masked=False``: leakage shows "—", not a 0."""
        line = headline(metrics, masked=masked)
        self.headline.setText(line)
        self.headline.setVisible(bool(line))
        table = self.table
        keys = metric_catalog.ordered(k for v in VARIANTS for k in metrics.get(v, {}))
        table.setRowCount(len(keys))
        bold = QFont(table.font())
        bold.setBold(True)
        for row, key in enumerate(keys):
            spec = metric_catalog.get(key)
            tip = metric_catalog.tooltip(key)
            header = QTableWidgetItem(spec.display if spec is not None else key)
            header.setToolTip(tip)
            header.setData(Qt.ItemDataRole.UserRole, key)
            table.setVerticalHeaderItem(row, header)
            values = {v: metrics.get(v, {}).get(key) for v in VARIANTS}
            if not masked and key.startswith("leakage"):
                values = dict.fromkeys(VARIANTS)  # nothing lies outside a mask that does not exist
                tip = f"{tip}\n{NO_MASK_NOTE}"
            best = better_variant(key, values)
            for col, variant in enumerate(VARIANTS):
                item = QTableWidgetItem(format_metric(values[variant]))
                item.setData(Qt.ItemDataRole.UserRole, values[variant])
                item.setToolTip(tip)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if variant == best:
                    item.setFont(bold)
                table.setItem(row, col, item)


__all__ = [
    "COLUMN_TITLES",
    "MIN_VISIBLE_ROWS",
    "MetricsView",
    "VARIANTS",
    "better_variant",
    "format_metric",
    "headline",
    "metric_direction",
]
