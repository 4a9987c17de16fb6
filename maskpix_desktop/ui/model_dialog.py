"""Model settings dialog: models folder, SAM / editor / CLIP choice, device and precision, and downloads.

The folder row says where the folder in effect comes from (``--models-dir`` > ``MASKPIX_MODELS`` > the
folder chosen here > the default; the first two lock the field). One line lists every model the choice
still lacks with its size and a copyable command; Download with no missing row selected fetches them all,
one after the other. A ``maskpix-models.json`` in the folder shows as rows of its own, and registry models
of a kind it supplies read "Not needed".

The rows come from :mod:`~maskpix_desktop.ui.model_files`; downloads (a QThread per model, cancel by
Event) from :mod:`~maskpix_desktop.ui.model_downloads`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.model_setup import format_size, missing_message, missing_models
from maskpix_desktop.core.service import (
    SAM2_VARIANTS,
    SAM_AUTO,
    SAM_VARIANTS,
    SOURCE_CLI,
    SOURCE_DEFAULT,
    SOURCE_ENV,
    SOURCE_SAVED,
    ModelChoice,
)
from maskpix_desktop.ui.model_downloads import DownloadsMixin
from maskpix_desktop.ui.model_editor import EditorRows
from maskpix_desktop.ui.model_files import COLUMNS, MISSING, NOT_NEEDED, PRESENT, table_rows
from maskpix_desktop.ui.model_form import combo, fill_table, hbox, picker, row

__all__ = ["MISSING", "NOT_NEEDED", "PRESENT", "ModelDialog", "format_size"]

log = logging.getLogger(__name__)

CUSTOM = "custom"
DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
SAM_LABELS = {
    SAM_AUTO: "Automatic (ViT-H with CUDA, SAM 2.1 tiny without)",
    "vit_h": "ViT-H (vit_h, best)",
    "vit_l": "ViT-L (vit_l)",
    "vit_b": "ViT-B (vit_b)",
    "sam2.1_hiera_tiny": "SAM 2.1 tiny (fastest encoder, good on a CPU)",
    "sam2.1_hiera_small": "SAM 2.1 small",
    "sam2.1_hiera_base_plus": "SAM 2.1 base+",
    "sam2.1_hiera_large": "SAM 2.1 large",
}
ALL_SAM = (SAM_AUTO, *SAM_VARIANTS, *SAM2_VARIANTS)
SOURCE_TEXT = {
    SOURCE_CLI: "set by --models-dir on the command line (the field is locked)",
    SOURCE_ENV: f"set by the environment variable {models.ENV_MODELS_DIR}, which comes before a folder "
    "chosen here (the field is locked; unset the variable to choose here)",
    SOURCE_SAVED: "chosen here",
    SOURCE_DEFAULT: "the default per-user folder",
}


class ModelDialog(DownloadsMixin, QDialog):
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
        self._init_downloads()

        # models folder -----------------------------------------------------------------------------
        self.locked = source in (SOURCE_CLI, SOURCE_ENV)
        shown = str(models.models_dir(choice.models_dir)) if self.locked else choice.models_dir or ""
        self.folder_edit = QLineEdit(shown)
        self.folder_edit.setReadOnly(self.locked)
        self.folder_edit.setPlaceholderText(str(models.models_dir()))
        self.folder_edit.textChanged.connect(self.refresh_models)
        self.folder_browse = picker(self, "folder", self.folder_edit, self.models_folder)
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
        self.sam_browse = picker(self, "sam", self.sam_path_edit, self.models_folder)
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
        self.ip2p_browse = picker(self, "ip2p", self.ip2p_edit, self.models_folder)
        self.editor_rows = EditorRows(
            self.ip2p_edit,
            self.models_folder,
            choice.memory,
            choice.vae_tiling,
            choice.quantize,
            choice.compile,
        )
        self.gguf_edit = QLineEdit(choice.gguf or "")
        self.gguf_edit.setPlaceholderText("optional: a GGUF file for a Kontext / Qwen-Image-Edit transformer")
        self.gguf_edit.setToolTip(
            "Its quantised weights replace the editor's transformer (needs: pip install gguf)"
        )
        self.gguf_browse = picker(self, "gguf", self.gguf_edit, self.models_folder)
        self.folder_edit.textChanged.connect(self.editor_rows.refresh)

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
        self.clip_weights_browse = picker(self, "clip_weights", self.clip_weights_edit, self.models_folder)
        self.clip_config_edit = QLineEdit(str(clip.get("config_path", "")))
        self.clip_config_edit.setPlaceholderText("optional model config (.json)")
        self.clip_config_browse = picker(self, "clip_config", self.clip_config_edit, self.models_folder)
        self.clip_combo.setCurrentIndex(1 if choice.clip is not None else 0)
        self.clip_combo.currentIndexChanged.connect(self._update_enabled)
        self.clip_model_edit.textChanged.connect(self._update_enabled)

        # device ------------------------------------------------------------------------------------
        self.device_combo = combo(DEVICES, choice.device)
        self.precision_combo = combo(PRECISIONS, choice.precision)
        self.precision_combo.setToolTip(
            "InstructPix2Pix weights: auto = fp16 on CUDA, fp32 elsewhere.\n"
            "SAM's image encoder uses TF32 on CUDA unless fp32 is chosen (then full float32)."
        )

        form = QFormLayout()
        form.addRow("Models folder", row(self.folder_edit, self.folder_browse))
        form.addRow("", self.source_label)
        form.addRow("SAM", row(self.sam_combo))
        form.addRow("SAM checkpoint", row(self.sam_path_edit, self.sam_browse))
        form.addRow("Editor", row(self.editor_rows.combo))
        form.addRow("Editor folder / id", row(self.ip2p_edit, self.ip2p_browse))
        form.addRow("", self.editor_rows.family_label)
        rows = self.editor_rows
        form.addRow(
            "Editor memory", row(rows.memory_combo, rows.tiling_check, QLabel("Quantise"), rows.quant_combo)
        )
        form.addRow("", self.editor_rows.estimate_label)
        form.addRow("", rows.compile_check)
        form.addRow("GGUF transformer", row(self.gguf_edit, self.gguf_browse))
        form.addRow("CLIP", row(self.clip_combo))
        form.addRow("CLIP model", row(self.clip_model_edit))
        form.addRow("CLIP weights", row(self.clip_weights_edit, self.clip_weights_browse))
        form.addRow("CLIP config", row(self.clip_config_edit, self.clip_config_browse))
        form.addRow("Device", row(self.device_combo, QLabel("Precision"), self.precision_combo))

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
        box_layout.addLayout(hbox(self.download_button, self.progress_bar, self.cancel_button))
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
        self.editor_rows.refresh()

    # public ----------------------------------------------------------------------------------------
    def choice(self) -> ModelChoice:
        """The edited choice (fields the dialog does not show are kept from the one given)."""
        sam = self._initial.sam if self._initial.sam not in ALL_SAM else SAM_AUTO
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
            **self.editor_rows.settings(),
            gguf=self.gguf_edit.text().strip() or None,
        )

    def models_folder(self) -> Path:
        """The folder the table lists (the default one when the field is empty)."""
        return models.models_dir(self.folder_edit.text().strip() or None)

    def refresh_models(self) -> None:
        """Re-read the rows (Present / Missing / Not needed) for the current folder and its manifest."""
        selected = self.selected_model()
        folder = self.models_folder()
        all_rows, problem = table_rows(folder, self.folder_edit.text().strip() or None)
        fill_table(self.table, all_rows, selected)
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
