"""Help menu dialogs: the keyboard and mouse shortcuts, and where the log files are (with Copy)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: (section, keys, what it does): the one list the dialog shows.
SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("Files", "Ctrl+O", "Open an image (or drop it on the canvas)"),
    ("Files", "Ctrl+Shift+O", "Open a project"),
    ("Files", "Ctrl+S / Ctrl+Shift+S", "Save the project / save it as"),
    ("Files", "Ctrl+W", "Close the image (asks to save unsaved work; the start screen after the last)"),
    ("Files", "Ctrl+E", "Export the result"),
    ("Files", "Ctrl+Q", "Quit (asks to save unsaved work)"),
    ("Mask", "Click", "Add a point to keep"),
    ("Mask", "Right-click or Alt+click", "Add a point to exclude (negative point)"),
    ("Mask", "Ctrl+click", "Remove the point under the cursor"),
    ("Mask", "Drag", "Draw a box around the object"),
    ("Mask", "Delete / Backspace", "Remove the last point or box"),
    ("Mask", "Esc", "Clear all points and the box"),
    ("Mask", "P / B / E", "Points and box / brush / eraser"),
    ("Mask", "[ / ]", "Smaller / larger brush"),
    ("Mask", "Ctrl+M", "Auto mask from the instruction"),
    ("Edit", "Ctrl+Z", "Undo"),
    ("Edit", "Ctrl+Shift+Z or Ctrl+Y", "Redo"),
    ("Edit", "Enter (in the instruction) or Ctrl+Enter", "Run the edit"),
    ("View", "Wheel", "Zoom around the cursor"),
    ("View", "Space+drag or middle drag", "Pan"),
    ("View", "Ctrl+0 / Ctrl+1", "Fit to window / actual size"),
    ("View", "Ctrl+Shift+1 / Ctrl+Shift+2", "Mask canvas / results"),
    ("Help", "F1", "This list"),
)


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: every key and mouse gesture, grouped."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.table = QTableWidget(len(SHORTCUTS), 3)
        self.table.setHorizontalHeaderLabels(["", "Keys", "Does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        for row, (section, keys, what) in enumerate(SHORTCUTS):
            for col, text in enumerate((section, keys, what)):
                self.table.setItem(row, col, QTableWidgetItem(text))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(buttons)
        self.resize(620, 560)

    def rows(self) -> list[tuple[str, str, str]]:
        """The table as text (what the user reads)."""
        t = self.table
        return [tuple(t.item(r, c).text() for c in range(3)) for r in range(t.rowCount())]  # type: ignore[misc]


class LogFolderDialog(QDialog):
    """Help > Log folder: the full path, selectable, with Copy and Open buttons (Open may do nothing
    on a desktop without a file manager; the path is still there to copy)."""

    def __init__(self, folder: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Log folder")
        self.folder = Path(folder)
        self.path_field = QLineEdit(str(self.folder))
        self.path_field.setReadOnly(True)
        self.path_field.setMinimumWidth(480)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the path to the clipboard")
        self.copy_button.clicked.connect(self.copy)
        self.open_button = QPushButton("Open folder")
        self.open_button.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder)))
        )
        row = QHBoxLayout()
        row.addWidget(self.path_field, 1)
        row.addWidget(self.copy_button)
        row.addWidget(self.open_button)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("MaskPix writes its log files here (attach them to a bug report):"))
        lay.addLayout(row)
        lay.addWidget(buttons)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(str(self.folder))
        self.copy_button.setText("Copied")
