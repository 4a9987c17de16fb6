"""The start screen on the empty canvas: what to do first (open, samples, recent) and the models' state."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QPushButton, QVBoxLayout, QWidget

#: Light text on the canvas's dark background (contrast well above WCAG AA's 4.5:1).
TITLE_COLOUR = "#f4f4f6"
TEXT_COLOUR = "#d2d2d8"
MODEL_COLOURS = {"ready": "#8fe3a2", "loading": "#f0d68a", "missing": "#ffb0a8", "info": TEXT_COLOUR}


class StartScreen(QWidget):
    """Shown over the empty canvas. Emits ``openRequested``, ``fileChosen(path)`` (a sample or a recent
    file) and ``setupModelsRequested``; dropped files fall through to the canvas under it."""

    openRequested = Signal()
    fileChosen = Signal(str)
    setupModelsRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("start_screen")
        self.title = QLabel("Open a photo to start")
        self.title.setStyleSheet(f"color:{TITLE_COLOUR}; font-size:22px; font-weight:600;")
        self.text = QLabel(
            "Drop an image here, or open one. Then click the object to edit (Alt-click or right-click "
            "excludes), type an instruction below and press Run."
        )
        self.text.setWordWrap(True)
        self.text.setFixedWidth(520)  # a fixed width gives the wrapped text its full height
        self.text.setStyleSheet(f"color:{TEXT_COLOUR}; font-size:14px;")
        for label in (self.title, self.text):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open an image or a .maskpix project (Ctrl+O)")
        self.open_button.clicked.connect(self.openRequested)
        self.samples_button = QPushButton("Samples")
        self.samples_menu = QMenu(self.samples_button)
        self.samples_button.setMenu(self.samples_menu)
        self.recent_button = QPushButton("Recent")
        self.recent_menu = QMenu(self.recent_button)
        self.recent_button.setMenu(self.recent_menu)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.open_button, self.samples_button, self.recent_button):
            b.setMinimumWidth(110)
            buttons.addWidget(b)
        buttons.addStretch(1)

        self.models_label = QLabel("Models: not loaded")
        self.models_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.models_label.setWordWrap(True)
        self.models_button = QPushButton("Set up models…")
        self.models_button.setToolTip("Choose the models folder, see what is missing, download")
        self.models_button.clicked.connect(self.setupModelsRequested)
        models_row = QHBoxLayout()
        models_row.addStretch(1)
        models_row.addWidget(self.models_label)
        models_row.addWidget(self.models_button)
        models_row.addStretch(1)

        lay = QVBoxLayout(self)
        lay.addStretch(1)
        lay.addWidget(self.title)
        lay.addWidget(self.text, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addSpacing(12)
        lay.addLayout(buttons)
        lay.addSpacing(18)
        lay.addLayout(models_row)
        lay.addStretch(1)
        self.set_samples([])
        self.set_recent([])
        self.set_models_state("Models: not loaded", "info")

    def set_samples(self, paths: list[Path]) -> None:
        self.samples_menu.clear()
        for p in paths:
            self.samples_menu.addAction(Path(p).stem, lambda p=p: self.fileChosen.emit(str(p)))
        self.samples_button.setEnabled(bool(paths))
        self.samples_button.setToolTip("Try a sample photo" if paths else "No sample photos are installed")

    def set_recent(self, paths: list[str]) -> None:
        self.recent_menu.clear()
        for p in paths:
            self.recent_menu.addAction(p, lambda p=p: self.fileChosen.emit(str(p)))
        self.recent_button.setEnabled(bool(paths))
        self.recent_button.setToolTip("Files opened before" if paths else "Nothing opened yet")

    def set_models_state(self, text: str, state: str) -> None:
        """``state``: ready, loading, missing or info (colours the line)."""
        colour = MODEL_COLOURS.get(state, TEXT_COLOUR)
        self.models_label.setText(text)
        self.models_label.setStyleSheet(f"color:{colour}; font-size:13px;")
        self.models_button.setDefault(state == "missing")


def models_state(label_text: str) -> tuple[str, str]:
    """The status bar's ``models: …`` text as the start screen's line and state."""
    body = label_text.split(":", 1)[-1].strip() if ":" in label_text else label_text
    lowered = body.lower()
    if "ready" in lowered:
        state = "ready"
    elif "missing" in lowered or "failed" in lowered:
        state = "missing"
    elif "loading" in lowered or "cancelling" in lowered:
        state = "loading"
    else:
        state = "info"
    return f"Models: {body}", state
