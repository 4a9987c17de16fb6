"""Export dialog: choose items, folder, file-name pattern and format; never overwrites without asking.

Opened by the window (its ``file_jobs`` are found on the parent), the Export button writes the files on
the window's file thread (the result's arrays are read-only, so the job shares them): the dialog shows a
busy bar and ignores Cancel/Esc/close until the files are written, quitting the window waits for them,
and errors and renamed files are reported as the synchronous :meth:`ExportDialog.do_export` does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import export
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.jobs import EditResult
from maskpix_desktop.ui.file_jobs import FileJob, FileJobs

log = logging.getLogger(__name__)

#: Checkbox label per export item, in the order they are shown.
ITEM_LABELS: dict[str, str] = {
    "blended": "Blended",
    "baseline": "Baseline",
    "mask": "Mask",
    "original": "Original",
    "grid": "Comparison grid",
    "metrics_csv": "Metrics CSV",
    "json": "JSON sidecar",
}
FORMAT_LABELS = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}
DEFAULT_PATTERN = "{stem}_{item}"
#: Shown when Cancel, Esc or the close button is pressed during an export.
WAIT_TEXT = "Please wait: the dialog closes when the files are written."


#: The folder field grows to show the whole path, up to this width.
MAX_FOLDER_FIELD_PX = 900


def _ask_overwrite(parent: QWidget, names: list[str]) -> bool:
    """Default overwrite question (QMessageBox); True = replace."""
    n = len(names)
    text = f"Replace {n} existing file{'s' if n != 1 else ''}?\n\n" + "\n".join(names)
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    answer = QMessageBox.question(parent, "Replace files?", text, buttons, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def _show_error(parent: QWidget, message: str) -> None:
    """Default error report (QMessageBox.critical)."""
    QMessageBox.critical(parent, "Export failed", message)


def _show_notice(parent: QWidget, message: str) -> None:
    """Default notice after an export whose file names had to change (QMessageBox.information)."""
    QMessageBox.information(parent, "Saved under other names", message)


class ExportDialog(QDialog):
    """Write a result's images, grid, metrics CSV and JSON sidecar; OK exports, errors keep it open."""

    #: Hooks (replaceable in tests, on the class or an instance): overwrite question, error report and
    #: the notice listing names changed to be valid on Windows.
    ask_overwrite: Callable[[QWidget, list[str]], bool] = staticmethod(_ask_overwrite)
    show_error: Callable[[QWidget, str], None] = staticmethod(_show_error)
    show_notice: Callable[[QWidget, str], None] = staticmethod(_show_notice)

    def __init__(
        self,
        result: EditResult,
        default_dir: Path,
        parent: QWidget | None = None,
        *,
        stem: str = "image",
        file_jobs: FileJobs | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Export result")
        self.edit_result = result
        self.stem = stem
        #: Where the Export button's work runs: ``file_jobs``, else the parent window's ``file_jobs``
        #: (the window's file thread, so quitting waits for it); None: on the GUI thread (:meth:`do_export`).
        parent_jobs = getattr(parent, "file_jobs", None)
        self.file_jobs = file_jobs or (parent_jobs if isinstance(parent_jobs, FileJobs) else None)
        self._exporting = False
        self._export_label = ""
        self.exported_paths: dict[str, Path] = {}
        #: After an export: one message per file name changed to be valid on Windows (also shown).
        self.renamed: list[str] = []

        items_box = QGroupBox("Items")
        grid = QGridLayout(items_box)
        self.checks: dict[str, QCheckBox] = {}
        for i, item in enumerate(ITEM_LABELS):
            box = QCheckBox(ITEM_LABELS[item])
            box.setChecked(True)
            box.toggled.connect(self._update_preview)
            self.checks[item] = box
            grid.addWidget(box, i // 2, i % 2)

        self.folder_edit = QLineEdit(str(default_dir))
        self.folder_edit.textChanged.connect(self._update_preview)
        self.folder_edit.textChanged.connect(self.folder_edit.setToolTip)
        self.folder_edit.setToolTip(str(default_dir))
        # wide enough for the whole default path (up to a screen's worth), so the user sees where it goes
        text_width = self.folder_edit.fontMetrics().horizontalAdvance(str(default_dir))
        self.folder_edit.setMinimumWidth(min(text_width + 24, MAX_FOLDER_FIELD_PX))
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)

        self.pattern_edit = QLineEdit(DEFAULT_PATTERN)
        self.pattern_edit.setToolTip("Fields: {stem}, {item}, {seed}, {mode}")
        self.pattern_edit.textChanged.connect(self._update_preview)

        self.format_combo = QComboBox()
        for key, label in FORMAT_LABELS.items():
            self.format_combo.addItem(label, key)
        self.format_combo.currentIndexChanged.connect(self._on_format)
        self.quality_spin = QSpinBox()
        self.quality_spin.setRange(1, 100)
        self.quality_spin.setValue(95)
        self.quality_spin.setToolTip("JPEG/WebP quality (WebP is lossless at 100)")
        format_row = QHBoxLayout()
        format_row.addWidget(self.format_combo)
        format_row.addWidget(QLabel("Quality"))
        format_row.addWidget(self.quality_spin)
        format_row.addStretch(1)

        self.preview_label = QLabel()
        self.preview_label.setWordWrap(True)
        self.preview_label.setTextFormat(Qt.TextFormat.PlainText)

        form = QFormLayout()
        form.addRow("Folder", folder_row)
        form.addRow("File names", self.pattern_edit)
        form.addRow("Format", format_row)
        form.addRow("Will write", self.preview_label)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.export_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.export_button.setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: export_result reports no steps
        self.progress.setTextVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setTextFormat(Qt.TextFormat.PlainText)
        self.progress.hide()
        self.progress_label.hide()

        self.options = QWidget()  # disabled as a whole while exporting
        options = QVBoxLayout(self.options)
        options.setContentsMargins(0, 0, 0, 0)
        options.addWidget(items_box)
        options.addLayout(form)
        layout = QVBoxLayout(self)
        layout.addWidget(self.options)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.buttons)
        self._on_format()

    # state -----------------------------------------------------------------------------------------
    def selected_items(self) -> list[str]:
        """Checked items in core.export.EXPORT_ITEMS order."""
        return [item for item in export.EXPORT_ITEMS if item in self.checks and self.checks[item].isChecked()]

    def folder(self) -> Path:
        return Path(self.folder_edit.text().strip()).expanduser()

    def image_format(self) -> str:
        return str(self.format_combo.currentData())

    def planned(self) -> export.PlannedPaths:
        """Target path per checked item (``.renamed``: names made Windows-safe); ValueError/KeyError/
        IndexError for a bad pattern."""
        p = self.edit_result.request.params
        if not self.pattern_edit.text().strip():
            raise ValueError("the pattern is empty")
        paths = export.planned_paths(
            self.folder(),
            self.selected_items(),
            pattern=self.pattern_edit.text(),
            fmt=self.image_format(),
            stem=self.stem,
            seed=str(p.seed),
            mode=p.mask_mode,
        )
        if len(set(paths.values())) < len(paths):
            raise ValueError("two items would get the same file name; put {item} in the pattern")
        return paths

    # export ----------------------------------------------------------------------------------------
    def exporting(self) -> bool:
        """True while a background export runs (the dialog cannot be closed then)."""
        return self._exporting

    def do_export(self, overwrite: bool = False) -> bool:
        """Export the checked items here (GUI thread); True on success (``exported_paths`` set)."""
        bound = self._bind_export(overwrite)
        if bound is None:
            return False
        planned, run = bound
        try:
            paths, error = run(), None
        except (MaskPixError, OSError) as exc:
            paths, error = None, exc
        outcome = self._export_ended(planned, paths, error, overwrite)
        return self.do_export(overwrite=True) if outcome is None else outcome

    def start_export(self, overwrite: bool = False) -> bool:
        """Export the checked items on the file thread; the dialog accepts itself when they are written.

        False when nothing was started (bad choices, shown; or an export already running).
        """
        if self.file_jobs is None or self._exporting:
            return False
        bound = self._bind_export(overwrite)
        if bound is None:
            return False
        planned, run = bound

        def done(paths: export.PlannedPaths | None, error: BaseException | None) -> None:
            self._set_exporting(False)
            outcome = self._export_ended(planned, paths, error, overwrite)
            if outcome is None:
                self.start_export(overwrite=True)
            elif outcome:
                QDialog.accept(self)

        n = len(planned)
        label = f"Exporting {n} file{'s' if n != 1 else ''} to {self.folder().name or self.folder()}…"
        self._set_exporting(True, label)
        self.file_jobs.submit(FileJob(label, run, done))
        return True

    def accept(self) -> None:
        if self.file_jobs is not None:
            self.start_export()
        elif self.do_export():
            super().accept()

    def reject(self) -> None:
        """Cancel, Esc and the close button: ignored while the files are being written."""
        if self._exporting:
            self.progress_label.setText(f"{self._export_label}\n{WAIT_TEXT}")
            return
        super().reject()

    # internals -------------------------------------------------------------------------------------
    def _bind_export(self, overwrite: bool) -> tuple[export.PlannedPaths, Callable[[], Any]] | None:
        """Check the choices (errors shown) and bind an export to them; None when there is nothing to do.

        The bound call reads nothing from the widgets: it may run on another thread.
        """
        if not self.folder_edit.text().strip():
            self._hook("show_error")(self, "Choose a folder to export to.")
            return None
        if not self.selected_items():
            self._hook("show_error")(self, "Choose at least one item to export.")
            return None
        try:
            planned = self.planned()
        except (KeyError, ValueError, IndexError) as exc:
            self._hook("show_error")(self, f"Invalid file name pattern: {exc}")
            return None
        result, folder = self.edit_result, self.folder()
        kwargs = dict(
            items=self.selected_items(),
            pattern=self.pattern_edit.text(),
            fmt=self.image_format(),
            quality=self.quality_spin.value(),
            overwrite=overwrite,
            stem=self.stem,
        )
        return planned, lambda: export.export_result(result, folder, **kwargs)

    def _export_ended(
        self,
        planned: export.PlannedPaths,
        paths: export.PlannedPaths | None,
        error: BaseException | None,
        overwrite: bool,
    ) -> bool | None:
        """Report an export's end: True = written, False = not (error shown), None = retry, overwriting."""
        if isinstance(error, FileExistsError) and not overwrite:
            existing = [path.name for path in planned.values() if path.exists()]
            return None if self._hook("ask_overwrite")(self, existing) else False
        if isinstance(error, (MaskPixError, OSError)):
            self._hook("show_error")(self, str(error))
            return False
        if error is not None:
            log.error("export failed", exc_info=error)
            self._hook("show_error")(
                self, f"Unexpected error while exporting: {type(error).__name__}: {error}"
            )
            return False
        assert paths is not None
        self.exported_paths = paths
        self.renamed = list(getattr(paths, "renamed", []))
        if self.renamed:
            self._hook("show_notice")(self, "\n".join(self.renamed))
        return True

    def _set_exporting(self, on: bool, label: str = "") -> None:
        """Busy bar on, choices and buttons off (or back)."""
        self._exporting, self._export_label = on, label
        self.options.setEnabled(not on)
        self.buttons.setEnabled(not on)
        self.progress_label.setText(label)
        self.progress_label.setVisible(on)
        self.progress.setVisible(on)
        if not on:
            self._update_preview()  # the folder may hold the new files now

    def _hook(self, name: str) -> Callable:
        """A hook as stored (instance or class), unbound: hooks take the dialog as first argument."""
        hook = inspect.getattr_static(self, name)
        return hook.__func__ if isinstance(hook, staticmethod) else hook

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _on_format(self) -> None:
        self.quality_spin.setEnabled(self.image_format() in ("jpeg", "webp"))
        self._update_preview()

    def _update_preview(self) -> None:
        try:
            planned = self.planned()
        except (KeyError, ValueError, IndexError) as exc:
            self.preview_label.setText(f"Invalid pattern: {exc}")
            self.preview_label.setStyleSheet("color: #c0392b;")
            self.export_button.setEnabled(False)
            return
        self.preview_label.setStyleSheet("")
        names = [path.name + ("  (exists)" if path.exists() else "") for path in planned.values()]
        text = "\n".join(names) if names else "Nothing selected."
        if planned.renamed:
            text += "\n\n" + "\n".join(planned.renamed)
        self.preview_label.setText(text)
        self.export_button.setEnabled(bool(names) and bool(self.folder_edit.text().strip()))
