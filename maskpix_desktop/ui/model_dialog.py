"""Model settings dialog: models folder, SAM / IP2P / CLIP choice, device and precision, and downloads.

Downloads run ``core.models.download`` on a QThread through a small worker; Cancel (or closing the dialog)
sets a ``threading.Event`` that the downloader checks between chunks, then the thread is waited for.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import DownloadError
from maskpix_desktop.core.service import SAM_VARIANTS, ModelChoice

log = logging.getLogger(__name__)

CUSTOM = "custom"
DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
SAM_LABELS = {"vit_h": "ViT-H (vit_h, best)", "vit_l": "ViT-L (vit_l)", "vit_b": "ViT-B (vit_b, fastest)"}
COLUMNS = ("Name", "Description", "Size", "Status")
PROGRESS_INTERVAL_S = 0.05
#: Milliseconds to wait for a download thread when the dialog closes (the downloader's stall timeout + 5 s).
STOP_WAIT_MS = int((models.DOWNLOAD_TIMEOUT_S + 5) * 1000)

# (thread, worker) pairs that did not stop within STOP_WAIT_MS: kept alive (never terminated) and pruned
# once finished, so Qt never destroys a running thread or the worker it is executing.
_ORPHANS: list[tuple[QThread, QObject]] = []


def format_size(size: int | None) -> str:
    """Bytes as "2.4 GB" / "358 MB" (binary units, like the registry's descriptions); None -> "?"."""
    if size is None:
        return "?"
    value, units = float(size), ("B", "KB", "MB", "GB", "TB")
    i = 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.1f} {units[i]}" if i >= 3 else f"{value:.0f} {units[i]}"


def offline_message(folder: Path | str, name: str = "NAME") -> str:
    """What to do when this machine cannot download."""
    return (
        f"This machine is offline: copy the files to {folder} (see README 'Models') or run "
        f"`maskpix-cli models download {name}` on a connected machine."
    )


def is_network_error(message: str) -> bool:
    """True for DownloadError messages about an unreachable network or offline mode."""
    text = message.lower()
    return "offline" in text or "could not download" in text or "connection" in text


class DownloadWorker(QObject):
    """Runs one ``models.download`` call; lives on its own QThread."""

    progress = Signal(object, object)  # done bytes, total bytes or None (may exceed 32-bit ints)
    succeeded = Signal(str)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, name: str, models_dir: str | None, cancel: threading.Event):
        super().__init__()
        self.name = name
        self.models_dir = models_dir
        self.cancel = cancel
        self._last_emit = 0.0

    @Slot()
    def run(self) -> None:
        try:
            path = models.download(self.name, self.models_dir, progress=self._report, cancel=self.cancel)
        except DownloadError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # a worker must never die silently
            log.exception("download of %s failed", self.name)
            self.failed.emit(f"Download of '{self.name}' failed: {type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(str(path))
        finally:
            self.finished.emit()

    def _report(self, done: int, total: int | None) -> None:
        # at most ~20 updates a second (huggingface_hub reports tiny steps), plus the final one
        now = time.monotonic()
        if now - self._last_emit >= PROGRESS_INTERVAL_S or (total is not None and done >= total):
            self._last_emit = now
            self.progress.emit(done, total)


class ModelDialog(QDialog):
    """Edit a :class:`ModelChoice`; lists the registry models of the chosen folder and downloads them."""

    def __init__(self, choice: ModelChoice, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self._initial = choice
        self._thread: QThread | None = None
        self._worker: DownloadWorker | None = None
        self._cancel: threading.Event | None = None
        self._downloading: str | None = None
        self._network_failed: str | None = None  # model whose download failed for want of a network

        # models folder -----------------------------------------------------------------------------
        self.folder_edit = QLineEdit(choice.models_dir or "")
        self.folder_edit.setPlaceholderText(str(models.models_dir()))
        self.folder_edit.textChanged.connect(self.refresh_models)
        self.folder_browse = QPushButton("Browse…")
        self.folder_browse.clicked.connect(self._browse_folder)

        # SAM ---------------------------------------------------------------------------------------
        self.sam_combo = QComboBox()
        for variant in SAM_VARIANTS:
            self.sam_combo.addItem(SAM_LABELS.get(variant, variant), variant)
        self.sam_combo.addItem("Custom file…", CUSTOM)
        self.sam_path_edit = QLineEdit()
        self.sam_path_edit.setPlaceholderText("SAM checkpoint (.pth)")
        self.sam_browse = QPushButton("Browse…")
        self.sam_browse.clicked.connect(self._browse_sam)
        if choice.sam in SAM_VARIANTS:
            self.sam_combo.setCurrentIndex(self.sam_combo.findData(choice.sam))
        else:
            self.sam_combo.setCurrentIndex(self.sam_combo.findData(CUSTOM))
            self.sam_path_edit.setText(choice.sam)
        self.sam_combo.currentIndexChanged.connect(self._update_enabled)
        self.sam_path_edit.textChanged.connect(self._update_enabled)

        # IP2P --------------------------------------------------------------------------------------
        self.ip2p_edit = QLineEdit(choice.ip2p or "")
        ip2p_spec = models.REGISTRY.get(models.DEFAULT_IP2P)
        self.ip2p_edit.setPlaceholderText(f"Registry default ({ip2p_spec.hf_repo if ip2p_spec else 'ip2p'})")
        self.ip2p_edit.setToolTip("Empty = the registry model; or a diffusers folder, or a Hugging Face id")
        self.ip2p_browse = QPushButton("Browse…")
        self.ip2p_browse.clicked.connect(self._browse_ip2p)

        # CLIP --------------------------------------------------------------------------------------
        spec = models.REGISTRY.get(models.DEFAULT_CLIP)
        clip_default = f"{spec.clip_model} / {spec.clip_pretrained}" if spec else "registry CLIP"
        self.clip_combo = QComboBox()
        self.clip_combo.addItem(f"Default ({clip_default})", None)
        self.clip_combo.addItem("Custom…", CUSTOM)
        clip = choice.clip or {}
        self.clip_model_edit = QLineEdit(clip.get("model_name", (spec.clip_model if spec else None) or ""))
        self.clip_model_edit.setPlaceholderText("open_clip architecture, e.g. ViT-B-32")
        self.clip_weights_edit = QLineEdit(str(clip.get("pretrained", "")))
        self.clip_weights_edit.setPlaceholderText("weights file, or an open_clip tag (default: openai)")
        self.clip_weights_browse = QPushButton("Browse…")
        self.clip_weights_browse.clicked.connect(self._browse_clip_weights)
        self.clip_config_edit = QLineEdit(str(clip.get("config_path", "")))
        self.clip_config_edit.setPlaceholderText("optional model config (.json)")
        self.clip_config_browse = QPushButton("Browse…")
        self.clip_config_browse.clicked.connect(self._browse_clip_config)
        self.clip_combo.setCurrentIndex(1 if choice.clip is not None else 0)
        self.clip_combo.currentIndexChanged.connect(self._update_enabled)
        self.clip_model_edit.textChanged.connect(self._update_enabled)

        # device ------------------------------------------------------------------------------------
        self.device_combo = self._combo(DEVICES, choice.device)
        self.precision_combo = self._combo(PRECISIONS, choice.precision)
        self.precision_combo.setToolTip(
            "InstructPix2Pix weights: auto = fp16 on CUDA, fp32 elsewhere.\n"
            "SAM's image encoder uses TF32 on CUDA unless fp32 is chosen (then full float32)."
        )

        form = QFormLayout()
        form.addRow("Models folder", self._row(self.folder_edit, self.folder_browse))
        form.addRow("SAM", self._row(self.sam_combo))
        form.addRow("SAM checkpoint", self._row(self.sam_path_edit, self.sam_browse))
        form.addRow("InstructPix2Pix", self._row(self.ip2p_edit, self.ip2p_browse))
        form.addRow("CLIP", self._row(self.clip_combo))
        form.addRow("CLIP model", self._row(self.clip_model_edit))
        form.addRow("CLIP weights", self._row(self.clip_weights_edit, self.clip_weights_browse))
        form.addRow("CLIP config", self._row(self.clip_config_edit, self.clip_config_browse))
        form.addRow("Device", self._row(self.device_combo, QLabel("Precision"), self.precision_combo))

        # registry table and downloads --------------------------------------------------------------
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_enabled)

        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel_download)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.offline_label = QLabel()
        self.offline_label.setWordWrap(True)
        self.offline_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.offline_label.setStyleSheet("color: #b9770e;")
        self.offline_label.hide()

        box = QGroupBox("Model files")
        box_layout = QVBoxLayout(box)
        box_layout.addWidget(self.table)
        box_layout.addLayout(self._hbox(self.download_button, self.progress_bar, self.cancel_button))
        box_layout.addWidget(self.status_label)
        box_layout.addWidget(self.offline_label)

        self.problem_label = QLabel()
        self.problem_label.setStyleSheet("color: #c0392b;")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(box, 1)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.buttons)
        self.resize(760, 620)
        self.refresh_models()

    # public ----------------------------------------------------------------------------------------
    def choice(self) -> ModelChoice:
        """The edited choice (fields the dialog does not show are kept from the one given)."""
        sam = self._initial.sam if self._initial.sam not in SAM_VARIANTS else "vit_h"
        data = self.sam_combo.currentData()
        if data != CUSTOM:
            sam = data
        elif self.sam_path_edit.text().strip():
            sam = self.sam_path_edit.text().strip()
        clip = None
        if self.clip_combo.currentData() == CUSTOM:
            clip = {"model_name": self.clip_model_edit.text().strip()}
            if self.clip_weights_edit.text().strip():
                clip["pretrained"] = self.clip_weights_edit.text().strip()
            if self.clip_config_edit.text().strip():
                clip["config_path"] = self.clip_config_edit.text().strip()
        return replace(
            self._initial,
            models_dir=self.folder_edit.text().strip() or None,
            sam=sam,
            ip2p=self.ip2p_edit.text().strip() or None,
            clip=clip,
            device=self.device_combo.currentText(),
            precision=self.precision_combo.currentText(),
        )

    def models_folder(self) -> Path:
        """The folder the table lists (the default one when the field is empty)."""
        return models.models_dir(self.folder_edit.text().strip() or None)

    def refresh_models(self) -> None:
        """Re-read the registry rows (Present / Missing) for the current folder."""
        selected = self.selected_model()
        try:
            rows = models.list_models(self.folder_edit.text().strip() or None)
        except Exception as exc:  # a bad path must not break the dialog
            log.warning("cannot list models: %s", exc)
            rows = []
            self.status_label.setText(f"Cannot read the models folder: {exc}")
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            status = "Present" if row["present"] else "Missing"
            cells = (row["name"], row["description"], format_size(row["size"]), status)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(Qt.ItemDataRole.UserRole, row["name"])
                item.setToolTip(str(row["path"]))
                if c == 3:
                    item.setForeground(Qt.GlobalColor.darkGreen if row["present"] else Qt.GlobalColor.red)
                    item.setData(Qt.ItemDataRole.UserRole + 1, bool(row["present"]))
                self.table.setItem(r, c, item)
            if row["name"] == selected:
                self.table.selectRow(r)
        self._update_offline()
        self._update_enabled()

    def selected_model(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def select_model(self, name: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
                self.table.selectRow(r)
                return
        raise KeyError(name)

    def model_status(self, name: str) -> str:
        """The status column of ``name``: Present or Missing."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
                return self.table.item(r, 3).text()
        raise KeyError(name)

    def is_downloading(self) -> bool:
        return self._thread is not None

    def start_download(self) -> None:
        """Download the selected missing model on a worker thread."""
        name = self.selected_model()
        if name is None or self._thread is not None:
            return
        if models.offline_mode():
            self._update_offline(name, force=True)
            return
        folder = self.folder_edit.text().strip() or None
        self._cancel = threading.Event()
        self._worker = DownloadWorker(name, folder, self._cancel)
        self._thread = QThread()
        self._thread.setObjectName(f"maskpix-download-{name}")
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.finished.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._worker.progress.connect(self._on_progress)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.failed.connect(self._on_failed)
        self._thread.finished.connect(self._on_thread_finished)
        self._downloading = name
        self._network_failed = None
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(f"{name}: %p%")
        self.status_label.setText(f"Downloading {name} into {self.models_folder()}…")
        self.offline_label.hide()
        self._thread.start()
        self._update_enabled()

    def cancel_download(self) -> None:
        """Ask the running download to stop (it stops at its next chunk)."""
        if self._cancel is not None:
            self._cancel.set()
            self.status_label.setText("Cancelling…")

    def stop_download(self, timeout_ms: int = STOP_WAIT_MS) -> bool:
        """Cancel and wait for the download thread; True when no thread is left running."""
        _ORPHANS[:] = [(t, w) for t, w in _ORPHANS if not t.isFinished()]
        thread = self._thread
        if thread is None:
            return True
        if self._cancel is not None:
            self._cancel.set()
        stopped = thread.wait(timeout_ms)
        if not stopped and self._worker is not None:  # never terminate(): let it notice the cancel
            log.warning("download thread did not stop within %d ms; leaving it to finish", timeout_ms)
            _ORPHANS.append((thread, self._worker))
        self._release_thread()
        return stopped

    # QDialog ---------------------------------------------------------------------------------------
    def accept(self) -> None:
        if self._problems():
            return
        super().accept()

    def done(self, result: int) -> None:
        self.stop_download()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.stop_download()
        super().closeEvent(event)

    # slots -----------------------------------------------------------------------------------------
    @Slot(object, object)
    def _on_progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(min(1000, int(done * 1000 / total)))
        else:
            self.progress_bar.setRange(0, 0)  # busy indicator: total unknown

    @Slot(str)
    def _on_succeeded(self, path: str) -> None:
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(1000)
        self.status_label.setText(f"Downloaded {self._downloading} to {path}")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        cancelled = self._cancel is not None and self._cancel.is_set()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        if cancelled:
            self.status_label.setText("Download cancelled.")
            return
        self.status_label.setText(message)
        if is_network_error(message):
            self._network_failed = self._downloading
            self._update_offline()

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._thread is not None and self._thread.isFinished():
            self._thread.wait()  # returns at once; makes sure Qt is done with the thread before release
            self._release_thread()

    # internals -------------------------------------------------------------------------------------
    def _release_thread(self) -> None:
        self._thread = None
        self._worker = None
        self._downloading = None
        self.refresh_models()

    def _update_offline(self, name: str | None = None, force: bool = False) -> None:
        """Show the offline explanation in offline mode or after a download failed for want of network."""
        if force or models.offline_mode() or self._network_failed:
            name = name or self._network_failed or self.selected_model() or "NAME"
            self.offline_label.setText(offline_message(self.models_folder(), name))
            self.offline_label.show()
        else:
            self.offline_label.hide()

    def _problems(self) -> list[str]:
        problems = []
        if self.sam_combo.currentData() == CUSTOM and not self.sam_path_edit.text().strip():
            problems.append("Choose a SAM checkpoint file.")
        if self.clip_combo.currentData() == CUSTOM and not self.clip_model_edit.text().strip():
            problems.append("Name the CLIP architecture.")
        return problems

    def _update_enabled(self) -> None:
        sam_custom = self.sam_combo.currentData() == CUSTOM
        self.sam_path_edit.setEnabled(sam_custom)
        self.sam_browse.setEnabled(sam_custom)
        clip_custom = self.clip_combo.currentData() == CUSTOM
        for w in (
            self.clip_model_edit,
            self.clip_weights_edit,
            self.clip_weights_browse,
            self.clip_config_edit,
            self.clip_config_browse,
        ):
            w.setEnabled(clip_custom)
        busy = self._thread is not None
        name = self.selected_model()
        missing = name is not None and self.model_status(name) == "Missing"
        self.download_button.setEnabled(not busy and missing and not models.offline_mode())
        self.cancel_button.setEnabled(busy)
        self.folder_edit.setEnabled(not busy)
        self.folder_browse.setEnabled(not busy)
        if models.offline_mode() and name is not None:
            self._update_offline(name)
        problems = self._problems()
        self.problem_label.setText(" ".join(problems))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problems)

    def _combo(self, values: tuple[str, ...], current: str) -> QComboBox:
        combo = QComboBox()
        combo.addItems(list(values))
        if current and current not in values:
            combo.addItem(current)
        combo.setCurrentText(current or values[0])
        return combo

    @staticmethod
    def _hbox(*widgets: QWidget) -> QHBoxLayout:
        box = QHBoxLayout()
        for w in widgets:
            box.addWidget(w, 1 if isinstance(w, (QLineEdit, QProgressBar)) else 0)
        return box

    def _row(self, *widgets: QWidget) -> QWidget:
        row = QWidget()
        box = self._hbox(*widgets)
        box.setContentsMargins(0, 0, 0, 0)
        row.setLayout(box)
        return row

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Models folder", str(self.models_folder()))
        if folder:
            self.folder_edit.setText(folder)

    def _browse_sam(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "SAM checkpoint", str(self.models_folder()), "PyTorch checkpoints (*.pth *.pt);;All (*)"
        )
        if path:
            self.sam_path_edit.setText(path)

    def _browse_ip2p(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "InstructPix2Pix folder", str(self.models_folder()))
        if folder:
            self.ip2p_edit.setText(folder)

    def _browse_clip_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "CLIP weights",
            str(self.models_folder()),
            "Weights (*.safetensors *.bin *.pt *.pth);;All (*)",
        )
        if path:
            self.clip_weights_edit.setText(path)

    def _browse_clip_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "CLIP model config", str(self.models_folder()), "JSON (*.json);;All (*)"
        )
        if path:
            self.clip_config_edit.setText(path)
