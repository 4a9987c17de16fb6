"""The fixed prompt bar under the image: instruction, Run, Cancel and progress, always in view."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from maskpix_desktop.ui.step_progress import StepProgressBar, progress_box

PROGRESS_WIDTH = 300


class PromptBar(QWidget):
    """Lays out the edit panel's instruction, Run, Cancel and progress (its text above a thin bar) in one
    row (it owns none)."""

    def __init__(
        self,
        instruction: QLineEdit,
        run_button: QPushButton,
        cancel_button: QPushButton,
        progress: StepProgressBar,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("prompt_bar")
        label = QLabel("<b>Instruction</b>")
        label.setBuddy(instruction)
        instruction.setMinimumWidth(200)
        run_button.setMinimumWidth(90)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 6, 8, 6)
        row.addWidget(label)
        row.addWidget(instruction, 1)
        row.addWidget(run_button)
        row.addWidget(cancel_button)
        row.addWidget(progress_box(progress, PROGRESS_WIDTH))
