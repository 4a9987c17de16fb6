"""Widget helpers of the Models dialog: rows of widgets, combo boxes, file pickers, the model table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from maskpix_desktop.core import models
from maskpix_desktop.core.model_setup import format_size, registry_size
from maskpix_desktop.core.service import MANIFEST
from maskpix_desktop.ui.model_files import MISSING, NOT_NEEDED, PRESENT

__all__ = ["PICKERS", "combo", "fill_table", "hbox", "picker", "row"]

#: File pickers: (title, file filter or None for a folder). A SAM checkpoint is a SAM 1 .pth file, or a
#: SAM 2 folder's model.safetensors (the service takes either).
PICKERS = {
    "folder": ("Models folder", None),
    "sam": ("SAM checkpoint", "SAM checkpoints (*.pth *.pt model.safetensors);;All (*)"),
    "ip2p": ("Editor folder (diffusers, any family)", None),
    "clip_weights": ("CLIP weights", "Weights (*.safetensors *.bin *.pt *.pth);;All (*)"),
    "clip_config": ("CLIP model config", "JSON (*.json);;All (*)"),
    "gguf": ("GGUF transformer file (Kontext / Qwen-Image-Edit)", "GGUF (*.gguf);;All (*)"),
}
_COLOURS = {PRESENT: Qt.GlobalColor.darkGreen, MISSING: Qt.GlobalColor.red, NOT_NEEDED: Qt.GlobalColor.gray}


def combo(values: tuple[str, ...], current: str) -> QComboBox:
    """A combo box of ``values`` showing ``current`` (added when it is not one of them)."""
    box = QComboBox()
    box.addItems(list(values))
    if current and current not in values:
        box.addItem(current)
    box.setCurrentText(current or values[0])
    return box


def hbox(*widgets: QWidget) -> QHBoxLayout:
    """The widgets side by side; line edits and progress bars take the spare width."""
    box = QHBoxLayout()
    for w in widgets:
        box.addWidget(w, 1 if isinstance(w, (QLineEdit, QProgressBar)) else 0)
    return box


def row(*widgets: QWidget) -> QWidget:
    """:func:`hbox` as a widget without margins (a form row)."""
    widget = QWidget()
    box = hbox(*widgets)
    box.setContentsMargins(0, 0, 0, 0)
    widget.setLayout(box)
    return widget


def picker(parent: QWidget, kind: str, edit: QLineEdit, start: Callable[[], Path]) -> QPushButton:
    """A Browse… button that puts the chosen file or folder (``PICKERS[kind]``) into ``edit``."""

    def browse() -> None:
        title, file_filter = PICKERS[kind]
        if file_filter is None:
            chosen = QFileDialog.getExistingDirectory(parent, title, str(start()))
        else:
            chosen, _ = QFileDialog.getOpenFileName(parent, title, str(start()), file_filter)
        if chosen:
            edit.setText(chosen)

    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    return button


def fill_table(table: QTableWidget, rows: list[dict[str, object]], selected: str | None) -> None:
    """One row per model (name, description, size, status); the ``selected`` model stays selected."""
    table.setRowCount(len(rows))
    for r, model in enumerate(rows):
        size = model["size"]
        size_text = format_size(size) if size is not None or model["name"] not in models.REGISTRY else ""
        size_text = size_text or registry_size(str(model["name"]))
        cells = (model["label"], model["description"], size_text, model["status"])
        for c, text in enumerate(cells):
            item = QTableWidgetItem(str(text))
            item.setData(Qt.ItemDataRole.UserRole, model["name"])
            item.setToolTip(str(model["path"]))
            if c == 3:
                item.setForeground(_COLOURS[str(model["status"])])
                item.setData(Qt.ItemDataRole.UserRole + 1, bool(model["present"]))
                if model["status"] == NOT_NEEDED:
                    item.setToolTip(f"{MANIFEST} in this folder names the model used instead")
            table.setItem(r, c, item)
        if model["name"] == selected:
            table.selectRow(r)
