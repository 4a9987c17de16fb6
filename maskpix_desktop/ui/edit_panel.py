"""The edit panel: instruction, the editor family's parameters, mask mode, Run / Cancel and step progress.

Instruction, Run, Cancel and progress are laid out by :class:`PromptBar` (``panel.prompt_bar``), which the
window keeps in view under the image; the panel itself shows the mask mode and a collapsible Advanced
section (steps, guidance, seed, working size, dilate, feather, seam). The guidance rows shown are the
loaded editor family's (:data:`FAMILY_ROWS`); the others' values are kept and passed, and ignored."""

from __future__ import annotations

import random

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core.blend import MASK_MODES
from maskpix_desktop.core.jobs import PARAM_RANGES, EditParams
from maskpix_desktop.ui.prompt_bar import PromptBar
from maskpix_desktop.ui.step_progress import StepProgressBar
from maskpix_desktop.ui.widgets import CollapsibleSection

#: Offered working sizes (all inside PARAM_RANGES["long_side"]; set_params adds any other valid one).
WORKING_SIZES = (256, 384, 512, 640, 768, 1024)
MODE_TIPS = {
    "pixel": "Edit the whole image, then keep the edit only inside the mask (outside = original, exactly).",
    "latent": "Pin the background latents to the source at every denoising step, then composite.",
    "crop": "Edit only the mask's padded bounding box at full working resolution, then paste back.",
    "trained": "Give the mask to a mask-trained model (a MaskPix mask checkpoint), then composite as pixel.",
}
#: The ``trained`` item's tooltip while the loaded editor does not take a mask (the item is disabled).
#: The family parameters each editor family uses (``EditParams`` fields; core/editor_families).
FAMILY_ROWS: dict[str, tuple[str, ...]] = {
    "ip2p": ("text_scale", "image_scale", "negative_prompt"),
    "ip2p_xl": ("text_scale", "image_scale", "negative_prompt"),
    "kontext": ("guidance",),
    "qwen_edit": ("true_cfg_scale", "negative_prompt"),
}
_FAMILY_FIELDS = ("text_scale", "image_scale", "guidance", "true_cfg_scale", "negative_prompt")
TRAINED_OFF_TIP = (
    "Needs a MaskPix mask checkpoint: choose one as the InstructPix2Pix folder in Models and load it "
    "(docs/TRAINING.md)."
)


def _int_spin(name: str, value: int, **kw) -> QSpinBox:
    """A spin box limited to the parameter's range in core.jobs.PARAM_RANGES (the one copy)."""
    lo, hi = PARAM_RANGES[name]
    return QSpinBox(minimum=int(lo), maximum=int(hi), value=value, **kw)


def _float_spin(name: str, value: float, **kw) -> QDoubleSpinBox:
    """A double spin box limited to the parameter's range in core.jobs.PARAM_RANGES."""
    lo, hi = PARAM_RANGES[name]
    return QDoubleSpinBox(minimum=float(lo), maximum=float(hi), value=value, **kw)


class EditPanel(QWidget):
    """Collects :class:`EditParams`; emits ``runRequested`` (Run or Enter) and ``cancelRequested``."""

    runRequested = Signal()
    cancelRequested = Signal()
    editorChosen = Signal(str)  # the user picked another editor (a registry name or a folder / hub id)
    paramsChanged = Signal()  # any parameter widget changed (autosave listens)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.instruction = QLineEdit()
        self.instruction.setPlaceholderText("Instruction, e.g. “make the jacket red leather”  (Enter runs)")
        self.instruction.setClearButtonEnabled(True)
        self.instruction.returnPressed.connect(self._on_return)

        self.steps = _int_spin("steps", 20)
        self.steps.setToolTip("Denoising steps: more is slower and usually cleaner.")
        self.text_scale = _float_spin("text_scale", 7.5, singleStep=0.5, decimals=1)
        self.text_scale.setToolTip("Text guidance s_T: how strongly the edit follows the instruction.")
        self.image_scale = _float_spin("image_scale", 1.5, singleStep=0.1, decimals=2)
        self.image_scale.setToolTip("Image guidance s_I: how strongly the result stays close to the photo.")
        self.guidance = _float_spin("guidance", 2.5, singleStep=0.5, decimals=1)
        self.guidance.setToolTip("FLUX.1 Kontext's guidance: how strongly the edit follows the instruction.")
        self.true_cfg_scale = _float_spin("true_cfg_scale", 4.0, singleStep=0.5, decimals=1)
        self.true_cfg_scale.setToolTip(
            "Qwen-Image-Edit's true classifier-free guidance (1 or less: off, faster; "
            "uses the negative prompt)."
        )
        self.negative_prompt = QLineEdit()
        self.negative_prompt.setPlaceholderText("what the edit should avoid (optional)")
        self.negative_prompt.setClearButtonEnabled(True)
        self.negative_prompt.setToolTip("Negative prompt: text the guidance steers away from.")
        self.seed = _int_spin("seed", 1234)
        self.seed_lock = QCheckBox("lock")
        self.seed_lock.setChecked(True)
        self.seed_lock.setToolTip("Locked: every run uses this seed. Unlocked: a new random seed per run.")
        dice = QToolButton(text="Random")
        dice.setToolTip("New random seed")
        dice.clicked.connect(self.randomize_seed)
        seed_row = QHBoxLayout()
        seed_row.setContentsMargins(0, 0, 0, 0)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(dice)
        seed_row.addWidget(self.seed_lock)

        self.long_side = QComboBox()
        for size in WORKING_SIZES:
            self.long_side.addItem(f"{size} px", size)
        self.long_side.setCurrentIndex(WORKING_SIZES.index(512))
        self.long_side.setToolTip("The edit runs at this long side, then is resized back to the photo.")
        self.editor_combo = QComboBox()
        self.editor_combo.setToolTip(
            "The instruction editor (its family's parameters show under Advanced); more in Model settings"
        )
        self.editor_combo.activated.connect(
            lambda i: self.editorChosen.emit(str(self.editor_combo.itemData(i)))
        )
        self.mask_mode = QComboBox()
        for mode in MASK_MODES:
            self.mask_mode.addItem(mode, mode)
            self.mask_mode.setItemData(
                self.mask_mode.count() - 1, MODE_TIPS[mode], Qt.ItemDataRole.ToolTipRole
            )
        self.mask_mode.setToolTip("\n".join(f"{m}: {t}" for m, t in MODE_TIPS.items()))
        self.set_editor_takes_mask(False)  # until a load says the editor is a mask checkpoint
        self.dilate = _int_spin("dilate", 0, suffix=" px")
        self.dilate.setToolTip("Grow the mask before blending.")
        self.feather = _float_spin("feather", 2.0, singleStep=0.5, suffix=" px")
        self.feather.setToolTip("Soften the mask edge (Gaussian sigma). 0 = hard edge.")
        self.poisson = QCheckBox("Poisson seam")
        self.poisson.setToolTip("Blend the seam with Poisson image editing (cv2.seamlessClone).")

        main_form = QFormLayout()
        main_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        main_form.addRow("Editor", self.editor_combo)
        main_form.addRow("Mask mode", self.mask_mode)
        advanced = QWidget()
        form = QFormLayout(advanced)
        form.setContentsMargins(12, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Steps", self.steps)
        form.addRow("Text guidance", self.text_scale)
        form.addRow("Image guidance", self.image_scale)
        form.addRow("Guidance", self.guidance)
        form.addRow("True CFG scale", self.true_cfg_scale)
        form.addRow("Negative prompt", self.negative_prompt)
        self._form = form
        form.addRow("Seed", seed_row)
        form.addRow("Working size", self.long_side)
        form.addRow("Dilate", self.dilate)
        form.addRow("Feather", self.feather)
        form.addRow("Seam", self.poisson)
        self.advanced = CollapsibleSection("Advanced", advanced, expanded=False)

        self.run_button = QPushButton("Run edit")
        self.run_button.setDefault(True)
        self.run_button.setToolTip("Run InstructPix2Pix (Enter in the instruction field, or Ctrl+Enter)")
        self.run_button.clicked.connect(self.runRequested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop the running edit after the current step")
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.progress = StepProgressBar()  # its text sits in a label above the bar, never on the fill
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        # Instruction, Run, Cancel and progress live in the prompt bar (the window keeps it in view);
        # this panel holds the mask mode and the Advanced section.
        self.prompt_bar = PromptBar(self.instruction, self.run_button, self.cancel_button, self.progress)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main_form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.set_editor_family("ip2p")

        # Values set by set_params() that the widgets cannot show exactly (rounding, no widget at all):
        # params() returns them for as long as the user leaves the widget at what set_params() showed.
        self._exact: dict[str, tuple[object, object]] = {}
        self._hidden: dict[str, object] = {}
        self.instruction.textChanged.connect(self.paramsChanged)
        self.negative_prompt.textChanged.connect(self.paramsChanged)
        spins = (self.steps, self.text_scale, self.image_scale, self.guidance, self.true_cfg_scale)
        for spin in (*spins, self.seed, self.dilate, self.feather):
            spin.valueChanged.connect(self.paramsChanged)
        for combo in (self.long_side, self.mask_mode):
            combo.currentIndexChanged.connect(self.paramsChanged)
        self.poisson.toggled.connect(self.paramsChanged)

    def set_editors(self, choices: list[tuple[str, str]], current: str) -> None:
        """The editor choices ``(label, value)``; ``current`` is selected (added as a folder when not
        listed). Emits nothing: only the user's pick emits ``editorChosen``."""
        combo = self.editor_combo
        combo.blockSignals(True)
        combo.clear()
        for label, value in choices:
            combo.addItem(label, value)
        if combo.findData(current) < 0:
            combo.addItem(f"folder: {current}", current)
        combo.setCurrentIndex(combo.findData(current))
        combo.blockSignals(False)

    def set_editor_family(self, family: str) -> None:
        """Show the loaded editor family's parameter rows (:data:`FAMILY_ROWS`; unknown: IP2P's)."""
        shown = FAMILY_ROWS.get(family, FAMILY_ROWS["ip2p"])
        for name in _FAMILY_FIELDS:
            self._form.setRowVisible(getattr(self, name), name in shown)

    def family_rows(self) -> tuple[str, ...]:
        """The family parameters shown now."""
        return tuple(n for n in _FAMILY_FIELDS if self._form.isRowVisible(getattr(self, n)))

    def set_editor_takes_mask(self, takes_mask: bool) -> None:
        """Enable the ``trained`` mask mode only for an editor that takes a mask; tooltip says why not.

        A current ``trained`` choice (e.g. from a project) is kept: the edit then says what to load."""
        idx = self.mask_mode.findData("trained")
        item = self.mask_mode.model().item(idx) if idx >= 0 else None
        if item is None:
            return
        item.setEnabled(takes_mask)
        item.setToolTip(MODE_TIPS["trained"] if takes_mask else TRAINED_OFF_TIP)

    def trained_enabled(self) -> bool:
        """Whether the ``trained`` item can be chosen now."""
        idx = self.mask_mode.findData("trained")
        return idx >= 0 and self.mask_mode.model().item(idx).isEnabled()

    # ------------------------------------------------------------------ params
    def randomize_seed(self) -> None:
        self.seed.setValue(random.randint(self.seed.minimum(), self.seed.maximum()))

    def params(self) -> EditParams:
        """Current settings as EditParams (values loaded by :meth:`set_params` come back exactly)."""
        shown = {
            "instruction": self.instruction.text(),
            "text_scale": self.text_scale.value(),
            "image_scale": self.image_scale.value(),
            "guidance": self.guidance.value(),
            "true_cfg_scale": self.true_cfg_scale.value(),
            "feather": self.feather.value(),
        }
        exact = {k: v for k, (w, v) in self._exact.items() if shown.get(k) == w}
        return EditParams(
            instruction=str(exact.get("instruction", shown["instruction"].strip())),
            steps=self.steps.value(),
            text_scale=float(exact.get("text_scale", shown["text_scale"])),
            image_scale=float(exact.get("image_scale", shown["image_scale"])),
            seed=self.seed.value(),
            mask_mode=self.mask_mode.currentData(),
            long_side=self.long_side.currentData(),
            dilate=self.dilate.value(),
            feather=float(exact.get("feather", shown["feather"])),
            seam="poisson" if self.poisson.isChecked() else "none",
            negative_prompt=self.negative_prompt.text(),
            guidance=float(exact.get("guidance", shown["guidance"])),
            true_cfg_scale=float(exact.get("true_cfg_scale", shown["true_cfg_scale"])),
            **self._hidden,
        )

    def next_params(self) -> EditParams:
        """Params for a new run: an unlocked seed is re-drawn first."""
        if not self.seed_lock.isChecked():
            self.randomize_seed()
        return self.params()

    def set_params(self, p: EditParams) -> None:
        self.instruction.setText(p.instruction)
        self.steps.setValue(p.steps)
        self.text_scale.setValue(p.text_scale)
        self.image_scale.setValue(p.image_scale)
        self.guidance.setValue(p.guidance)
        self.true_cfg_scale.setValue(p.true_cfg_scale)
        self.negative_prompt.setText(p.negative_prompt)
        self.seed.setValue(p.seed)
        self.mask_mode.setCurrentIndex(max(0, self.mask_mode.findData(p.mask_mode)))
        idx = self.long_side.findData(p.long_side)
        if idx < 0:
            self.long_side.addItem(f"{p.long_side} px", p.long_side)
            idx = self.long_side.count() - 1
        self.long_side.setCurrentIndex(idx)
        self.dilate.setValue(p.dilate)
        self.feather.setValue(p.feather)
        self.poisson.setChecked(p.seam == "poisson")
        self._exact = {
            "instruction": (self.instruction.text(), p.instruction),
            "text_scale": (self.text_scale.value(), p.text_scale),
            "image_scale": (self.image_scale.value(), p.image_scale),
            "guidance": (self.guidance.value(), p.guidance),
            "true_cfg_scale": (self.true_cfg_scale.value(), p.true_cfg_scale),
            "feather": (self.feather.value(), p.feather),
        }
        self._hidden = {k: getattr(p, k) for k in ("latent_dilate", "crop_pad")}

    # ------------------------------------------------------------------ run state
    def _on_return(self) -> None:
        if self.run_button.isEnabled():
            self.runRequested.emit()

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress.setFormat("starting…")
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("idle")

    def set_progress(self, done: int, total: int, eta_s: float | None = None, stage: str = "") -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        left = f" · {eta_s:.0f} s left" if eta_s is not None and done < total else ""
        label = f"{stage} · " if stage else ""
        self.progress.setFormat(f"{label}step {done}/{total}{left}")
