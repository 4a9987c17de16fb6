"""A run's progress as a thin bar with its text in a label above it: readable at any fill.

The text is never painted over the bar, so the fill edge never crosses a glyph. ``format()`` and
``text()`` keep the :class:`QProgressBar` meaning; ``label`` shows the text (also while busy).
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

__all__ = ["BAR_HEIGHT", "StepProgressBar", "progress_box"]

#: The bar's height in pixels (the label above it holds the text).
BAR_HEIGHT = 6


class StepProgressBar(QProgressBar):
    """A text-less bar whose ``label`` mirrors its text (``format()`` while busy: Qt's text is empty)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        super().setTextVisible(False)
        self.setFixedHeight(BAR_HEIGHT)
        self.label = QLabel()
        self.label.setObjectName("progress_text")
        self.valueChanged.connect(self._sync)
        self._sync()

    def shown_text(self) -> str:
        """The text the label shows: the formatted progress, or the format itself while busy."""
        busy = self.minimum() == self.maximum() == 0
        return self.format() if busy else self.text()

    def setTextVisible(self, visible: bool) -> None:  # noqa: N802 (Qt override)
        """The bar never paints text; ``visible`` shows or hides the label instead."""
        self.label.setVisible(visible)

    def setFormat(self, fmt: str) -> None:  # noqa: N802 (Qt override)
        super().setFormat(fmt)
        self._sync()

    def setRange(self, minimum: int, maximum: int) -> None:  # noqa: N802 (Qt override)
        super().setRange(minimum, maximum)
        self._sync()

    def setValue(self, value: int) -> None:  # noqa: N802 (Qt override)
        super().setValue(value)
        self._sync()

    def reset(self) -> None:
        super().reset()
        self._sync()

    def _sync(self) -> None:
        text = self.shown_text()
        self.label.setText(text)
        self.label.setToolTip(text)


def progress_box(bar: StepProgressBar, width: int) -> QWidget:
    """``bar``'s label over ``bar``, ``width`` pixels wide (for the prompt bar's row)."""
    box = QWidget()
    box.setObjectName("progress_box")
    box.setFixedWidth(width)
    col = QVBoxLayout(box)
    col.setContentsMargins(0, 0, 0, 0)
    col.setSpacing(2)
    col.addWidget(bar.label)
    col.addWidget(bar)
    return box
