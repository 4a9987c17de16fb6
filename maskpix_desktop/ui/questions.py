"""The window's default questions (modal). Tests replace them through ``MainWindow``'s hook attributes."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def ask_save_changes(parent: QWidget, action: str) -> str:
    """Save / Discard / Cancel before ``action`` (e.g. "quitting") replaces a modified document."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Unsaved changes")
    box.setText(f"Save your work before {action}?")
    box.setInformativeText(
        "The mask, prompts or results have changes that are not saved in a project file. Discard loses them."
    )
    buttons = QMessageBox.StandardButton
    box.setStandardButtons(buttons.Save | buttons.Discard | buttons.Cancel)
    box.setDefaultButton(buttons.Save)
    box.setEscapeButton(buttons.Cancel)
    answer = box.exec()
    return {buttons.Save: SAVE, buttons.Discard: DISCARD}.get(buttons(answer), CANCEL)


def ask_run_without_mask(parent: QWidget) -> bool:
    """Asked when Run is pressed with an empty mask: edit the whole image? (Yes = run.)"""
    buttons = QMessageBox.StandardButton
    answer = QMessageBox.question(
        parent,
        "No mask",
        "The mask is empty, so the edit changes the whole image.\n\n"
        "Click the object to edit (or paint with B) to limit it. Edit the whole image?",
        buttons.Yes | buttons.Cancel,
        buttons.Cancel,
    )
    return answer == buttons.Yes
