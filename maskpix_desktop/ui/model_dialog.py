"""Model settings dialog: models folder, SAM / IP2P / CLIP choice, device and precision, and downloads.

The folder row says where the folder in effect comes from (``--models-dir`` > ``MASKPIX_MODELS`` > the
folder chosen here > the default; the first two lock the field). One line lists every model the choice
still lacks with its size and a copyable command; Download with no missing row selected fetches them all,
one after the other. A ``maskpix-models.json`` in the folder shows as rows of its own, and registry models
of a kind it supplies read "Not needed".

Downloads run ``core.models.download`` on a QThread through a small worker; Cancel (or closing the dialog)
sets a ``threading.Event`` that the downloader checks between chunks, then the thread is waited for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QCloseEvent, QGuiApplication
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
from maskpix_desktop.core.errors import DownloadError, WeightsError
from maskpix_desktop.core.model_setup import format_size, missing_message, missing_models, registry_size
from maskpix_desktop.core.service import (
    MANIFEST,
    SAM2_VARIANTS,
    SAM_VARIANTS,
    SOURCE_CLI,
    SOURCE_DEFAULT,
    SOURCE_ENV,
    SOURCE_SAVED,
    ModelChoice,
)

log = logging.getLogger(__name__)

CUSTOM = "custom"
DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
SAM_LABELS = {
    "vit_h": "ViT-H (vit_h, best)",
    "vit_l": "ViT-L (vit_l)",
    "vit_b": "ViT-B (vit_b)",
    "sam2.1_hiera_tiny": "SAM 2.1 tiny (fastest encoder, good on a CPU)",
    "sam2.1_hiera_small": "SAM 2.1 small",
    "sam2.1_hiera_base_plus": "SAM 2.1 base+",
    "sam2.1_hiera_large": "SAM 2.1 large",
}
ALL_SAM = (*SAM_VARIANTS, *SAM2_VARIANTS)
COLUMNS = ("Name", "Description", "Size", "Status")
PRESENT, MISSING, NOT_NEEDED = "Present", "Missing", "Not needed"
#: Manifest key -> the registry kinds it replaces.
MANIFEST_KINDS = {"sam": ("sam", "sam2"), "ip2p": ("ip2p",), "clip": ("clip",), "grounding": ("grounding",)}
MANIFEST_ROW = "manifest:"  # user-role prefix of the manifest's rows
SOURCE_TEXT = {
    SOURCE_CLI: "set by --models-dir on the command line (the field is locked)",
    SOURCE_ENV: f"set by the environment variable {models.ENV_MODELS_DIR}, which comes before a folder "
    "chosen here (the field is locked; unset the variable to choose here)",
    SOURCE_SAVED: "chosen here",
    SOURCE_DEFAULT: "the default per-user folder",
}
PROGRESS_INTERVAL_S = 0.05
#: Milliseconds to wait for a download thread when the dialog closes (the downloader's stall timeout + 5 s).
STOP_WAIT_MS = int((models.DOWNLOAD_TIMEOUT_S + 5) * 1000)

# (thread, worker) pairs that did not stop within STOP_WAIT_MS: kept alive (never terminated) and pruned
# once finished, so Qt never destroys a running thread or the worker it is executing.
_ORPHANS: list[tuple[QThread, QObject]] = []


def disk_size(path: Path) -> int | None:
    """Bytes of a file, or of every file under a folder; None when absent."""
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        pass
    return None


def manifest_rows(folder: Path) -> list[dict[str, object]]:
    """One table row per model a ``maskpix-models.json`` in ``folder`` names (WeightsError when malformed)."""
    path = folder / MANIFEST
    if not path.is_file():
        return []
    data = models.read_models_json(path)
    rows = []
    for key, value in data.items():
        target = value.get("pretrained", "") if isinstance(value, dict) else value
        where = Path(target).expanduser() if target else folder
        if target and not where.is_absolute():
            where = folder / where
        present = where.exists() if target else True
        label = value.get("model_name", "") if isinstance(value, dict) else ""
        rows.append(
            {
                "name": f"{MANIFEST_ROW}{key}",
                "label": f"{key} ({MANIFEST})",
                "description": f"{label} {target}".strip() + " (named by the manifest)",
                "size": disk_size(where) if target else None,
                "present": present,
                "path": str(where),
                "status": PRESENT if present else MISSING,
            }
        )
    return rows


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
    """Edit a :class:`ModelChoice`; lists the registry models of the chosen folder and downloads them.

    ``source``: where ``choice.models_dir`` comes from (``SOURCE_*`` of ``core.service``); derived from the
    choice and the environment when None. ``--models-dir`` and ``MASKPIX_MODELS`` lock the folder field.
    """

    def __init__(self, choice: ModelChoice, parent: QWidget | None = None, *, source: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self._initial = choice
        if source is None:
            env = bool(os.environ.get(models.ENV_MODELS_DIR, "").strip())
            source = SOURCE_SAVED if choice.models_dir else SOURCE_ENV if env else SOURCE_DEFAULT
        self.source = source
        self._queue: list[str] = []  # models still to fetch after the current download ("Download missing")
        self._missing: list[str] = []  # registry names of the needed models that are missing
        self._thread: QThread | None = None
        self._worker: DownloadWorker | None = None
        self._cancel: threading.Event | None = None
        self._downloading: str | None = None
        self._network_failed: str | None = None  # model whose download failed for want of a network

        # models folder -----------------------------------------------------------------------------
        self.locked = source in (SOURCE_CLI, SOURCE_ENV)
        shown = str(models.models_dir(choice.models_dir)) if self.locked else choice.models_dir or ""
        self.folder_edit = QLineEdit(shown)
        self.folder_edit.setReadOnly(self.locked)
        self.folder_edit.setPlaceholderText(str(models.models_dir()))
        self.folder_edit.textChanged.connect(self.refresh_models)
        self.folder_browse = QPushButton("Browse…")
        self.folder_browse.clicked.connect(self._browse_folder)
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_edit.textChanged.connect(self._update_source)

        # SAM ---------------------------------------------------------------------------------------
        self.sam_combo = QComboBox()
        for variant in ALL_SAM:
            self.sam_combo.addItem(SAM_LABELS.get(variant, variant), variant)
        self.sam_combo.addItem("Custom file…", CUSTOM)
        self.sam_path_edit = QLineEdit()
        self.sam_path_edit.setPlaceholderText("SAM checkpoint (.pth) or SAM 2 Hugging Face folder")
        self.sam_browse = QPushButton("Browse…")
        self.sam_browse.clicked.connect(self._browse_sam)
        if choice.sam in ALL_SAM:
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
        form.addRow("", self.source_label)
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

        self.missing_label = QLabel()
        self.missing_label.setWordWrap(True)
        self.missing_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command = ""
        self.copy_button = QPushButton("Copy command")
        self.copy_button.setToolTip("Copy the command that fetches every missing model")
        self.copy_button.clicked.connect(self.copy_command)
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip(
            "The selected missing model, or every missing model the choice above needs when none is selected"
        )
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
        missing_row = QHBoxLayout()
        missing_row.addWidget(self.missing_label, 1)
        missing_row.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        box_layout.addLayout(missing_row)
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
        self.resize(820, 660)
        self.refresh_models()
        self._update_source()

    # public ----------------------------------------------------------------------------------------
    def choice(self) -> ModelChoice:
        """The edited choice (fields the dialog does not show are kept from the one given)."""
        sam = self._initial.sam if self._initial.sam not in ALL_SAM else "vit_h"
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
        """Re-read the rows (Present / Missing / Not needed) for the current folder and its manifest."""
        selected = self.selected_model()
        folder = self.models_folder()
        problem = ""
        try:
            extra = manifest_rows(folder)
        except WeightsError as exc:  # a malformed manifest: say so, list the registry as it is
            extra, problem = [], str(exc)
        try:
            rows = models.list_models(self.folder_edit.text().strip() or None)
        except Exception as exc:  # a bad path must not break the dialog
            log.warning("cannot list models: %s", exc)
            rows, problem = [], f"Cannot read the models folder: {exc}"
        supplied = {k for row in extra for k in MANIFEST_KINDS.get(str(row["name"])[len(MANIFEST_ROW) :], ())}
        for row in rows:
            row["label"] = row["name"]
            if row["present"]:
                row["status"] = PRESENT
            else:
                row["status"] = NOT_NEEDED if row["kind"] in supplied else MISSING
        self.table.setRowCount(len(extra) + len(rows))
        colours = {
            PRESENT: Qt.GlobalColor.darkGreen,
            MISSING: Qt.GlobalColor.red,
            NOT_NEEDED: Qt.GlobalColor.gray,
        }
        for r, row in enumerate([*extra, *rows]):
            size = row["size"]
            size_text = format_size(size) if size is not None or row["name"] not in models.REGISTRY else ""
            size_text = size_text or registry_size(str(row["name"]))
            cells = (row["label"], row["description"], size_text, row["status"])
            for c, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(Qt.ItemDataRole.UserRole, row["name"])
                item.setToolTip(str(row["path"]))
                if c == 3:
                    item.setForeground(colours[str(row["status"])])
                    item.setData(Qt.ItemDataRole.UserRole + 1, bool(row["present"]))
                    if row["status"] == NOT_NEEDED:
                        item.setToolTip(f"{MANIFEST} in this folder names the model used instead")
                self.table.setItem(r, c, item)
            if row["name"] == selected:
                self.table.selectRow(r)
        if problem:
            self.status_label.setText(problem)
        self._update_offline()
        self._update_enabled()

    def missing_text(self) -> str:
        """The line above the table: every missing model the current choice needs, with sizes."""
        return self.missing_label.text()

    def copy_command(self) -> None:
        """Put the command that fetches every missing model on the clipboard."""
        if self.command:
            QGuiApplication.clipboard().setText(self.command)
            self.status_label.setText("Command copied to the clipboard.")

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

    def download_targets(self) -> list[str]:
        """What Download fetches: the selected row when it is missing, else every missing needed model."""
        name = self.selected_model()
        if name is not None and name in models.REGISTRY and self.model_status(name) == MISSING:
            return [name]
        return list(self._missing)

    def start_download(self) -> None:
        """Download the selected missing model, or every missing one (one after the other), on a thread."""
        if self._thread is not None:
            return
        targets = self.download_targets()
        if not targets:
            return
        if models.offline_mode():
            self._update_offline(targets[0], force=True)
            return
        self._queue = targets[1:]
        self._start_one(targets[0])

    def _start_one(self, name: str) -> None:
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
        """Ask the running download to stop (it stops at its next chunk); the queued ones are dropped."""
        self._queue.clear()
        if self._cancel is not None:
            self._cancel.set()
            self.status_label.setText("Cancelling…")

    def stop_download(self, timeout_ms: int = STOP_WAIT_MS) -> bool:
        """Cancel and wait for the download thread; True when no thread is left running."""
        _ORPHANS[:] = [(t, w) for t, w in _ORPHANS if not t.isFinished()]
        self._queue.clear()
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
        self._queue.clear()  # a failure stops the rest: the message stays readable
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
            if self._queue:
                self._start_one(self._queue.pop(0))

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
        self._update_missing()
        targets = self.download_targets()
        if name is not None and targets == [name] and self.model_status(name) == MISSING:
            self.download_button.setText(f"Download {name}")
        else:
            self.download_button.setText(f"Download missing ({len(targets)})" if targets else "Download")
        self.download_button.setEnabled(not busy and bool(targets) and not models.offline_mode())
        self.cancel_button.setEnabled(busy)
        self.folder_edit.setEnabled(not busy)
        self.folder_browse.setEnabled(not busy and not self.locked)
        if models.offline_mode() and name is not None:
            self._update_offline(name)
        problems = self._problems()
        self.problem_label.setText(" ".join(problems))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problems)

    def _update_missing(self) -> None:
        """The line listing every model the edited choice needs and lacks, and its fetch command."""
        try:
            missing = missing_models(self.choice())
        except (WeightsError, ValueError) as exc:
            missing, text = [], str(exc)
        else:
            text = ""
        self._missing = [m.name for m in missing if m.registry and m.name in models.REGISTRY]
        message, self.command = missing_message(missing, self.choice().models_dir)
        self.missing_label.setText(text or message or "Every model this choice needs is here.")
        self.missing_label.setStyleSheet("color: #c0392b;" if message or text else "color: #1e8449;")
        self.copy_button.setEnabled(bool(self.command))

    def _update_source(self) -> None:
        """Say which folder is in effect and where it comes from."""
        source = self.source
        if not self.locked:
            source = SOURCE_SAVED if self.folder_edit.text().strip() else SOURCE_DEFAULT
            if source == SOURCE_DEFAULT and os.environ.get(models.ENV_MODELS_DIR, "").strip():
                source = SOURCE_ENV
        self.source_label.setText(f"In effect: {self.models_folder()} — {SOURCE_TEXT[source]}.")
        self.folder_browse.setEnabled(not self.locked and self._thread is None)

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
        """A SAM 1 .pth file, or a SAM 2 folder's model.safetensors (the service takes either)."""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "SAM checkpoint",
            str(self.models_folder()),
            "SAM checkpoints (*.pth *.pt model.safetensors);;All (*)",
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
