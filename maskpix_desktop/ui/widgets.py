"""Small reusable widgets: a collapsible section and a slider that shows its value."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget


class CollapsibleSection(QWidget):
    """A header button (▸/▾ title) that shows or hides ``body``; ``toggled(expanded)`` on every change."""

    toggled = Signal(bool)

    def __init__(self, title: str, body: QWidget, *, expanded: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.body = body
        self.header = QToolButton(text=title, checkable=True, checked=expanded)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setAutoRaise(True)
        self.header.setStyleSheet("QToolButton { border: none; font-weight: 600; }")
        self.header.toggled.connect(self.set_expanded)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.header)
        lay.addWidget(body)
        self.set_expanded(expanded)

    def is_expanded(self) -> bool:
        return self.header.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        self.header.blockSignals(True)
        self.header.setChecked(expanded)
        self.header.blockSignals(False)
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)
        self.toggled.emit(expanded)


class ValueSlider(QWidget):
    """A slider with its value written beside it (``fmt`` turns the value into the text)."""

    def __init__(self, slider: QSlider, fmt: Callable[[int], str] = str, parent: QWidget | None = None):
        super().__init__(parent)
        self.slider = slider
        self.fmt = fmt
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(52)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(slider, 1)
        lay.addWidget(self.value_label)
        slider.valueChanged.connect(self._show)
        self._show(slider.value())

    def _show(self, value: int) -> None:
        self.value_label.setText(self.fmt(value))
