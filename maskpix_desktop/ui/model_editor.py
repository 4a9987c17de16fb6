"""The Models dialog's editor rows: which editor (registry name, folder or hub id) with its family, the
memory setting, VAE tiling, quantisation, and the VRAM estimate for that setting.

Widgets only: the family comes from ``core/editor_families``, the estimate from ``core/vram_estimate``
(safetensors headers of a local folder, or the published parameter counts when the weights are absent).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QLineEdit, QWidget

from maskpix_desktop import paths
from maskpix_desktop.core import editor_families, models, vram_estimate
from maskpix_desktop.core.editor_memory import AUTO, MEMORY_CHOICES, QUANTIZE_MODES
from maskpix_desktop.core.errors import MaskPixError

__all__ = ["CUSTOM_EDITOR", "EditorRows", "editor_choices"]

#: The editor combo's entry for a folder or hub id typed into the line edit.
CUSTOM_EDITOR = "custom"
MEMORY_LABELS = {
    AUTO: "automatic: the fastest setting that fits the free VRAM (chosen at load)",
    "full": "full: every weight on the GPU (fastest)",
    "model_offload": "model offload: one component on the GPU at a time",
    "sequential_offload": "sequential offload: layer by layer (least VRAM, slowest)",
}


def editor_choices() -> list[tuple[str, str]]:
    """(label, registry name) of every registry editor, the default first; the label names the family."""
    names = [models.DEFAULT_IP2P, *models.EDITORS]
    out = []
    for name in names:
        spec = models.REGISTRY.get(name)
        if spec is None:  # a registry narrowed by a test or a build
            continue
        family = spec.family or "ip2p"
        out.append((f"{name} — {family}: {editor_families.FAMILIES[family].split(' (')[0]}", name))
    return out


class EditorRows:
    """The editor's widgets; ``ip2p_edit`` holds the value (empty = the registry default)."""

    def __init__(
        self,
        ip2p_edit: QLineEdit,
        folder: Callable[[], Path],
        memory: str,
        vae_tiling: bool,
        quantize: str,
        compile_denoiser: bool = False,
    ):
        self.ip2p_edit = ip2p_edit
        self._folder = folder  # () -> the models folder in effect
        self.combo = QComboBox()
        for label, name in editor_choices():
            self.combo.addItem(label, name)
        self.combo.addItem("Folder or Hugging Face id (below)…", CUSTOM_EDITOR)
        current = ip2p_edit.text().strip()
        index = self.combo.findData(current or models.DEFAULT_IP2P)
        self.combo.setCurrentIndex(index if index >= 0 else self.combo.findData(CUSTOM_EDITOR))
        self.family_label = QLabel()
        self.family_label.setWordWrap(True)
        self.memory_combo = QComboBox()
        for mode in MEMORY_CHOICES:
            self.memory_combo.addItem(MEMORY_LABELS[mode], mode)
        self.memory_combo.setCurrentIndex(max(self.memory_combo.findData(memory), 0))
        self.tiling_check = QCheckBox("VAE tiling")
        self.tiling_check.setChecked(bool(vae_tiling))
        self.quant_combo = QComboBox()
        self.quant_combo.addItems(list(QUANTIZE_MODES))
        self.quant_combo.setCurrentText(quantize if quantize in QUANTIZE_MODES else "none")
        self.quant_combo.setToolTip(
            "Quantise the denoiser on CUDA: int8 / fp8 need torchao, nf4 bitsandbytes"
        )
        self.compile_check = QCheckBox("Compile the denoiser (torch.compile; the first edit compiles)")
        self.compile_check.setChecked(bool(compile_denoiser))
        self.compile_check.setToolTip(
            f"Faster steps after the first run: the compiled kernels are kept in {paths.compile_cache_dir()} "
            "and reused by later starts of the same model and sizes."
        )
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.combo.currentIndexChanged.connect(self._combo_changed)
        ip2p_edit.textChanged.connect(self.refresh)
        for signal in (
            self.memory_combo.currentIndexChanged,
            self.quant_combo.currentIndexChanged,
            self.tiling_check.toggled,
        ):
            signal.connect(self.refresh)

    def widgets(self) -> list[QWidget]:
        return [
            self.combo,
            self.family_label,
            self.memory_combo,
            self.tiling_check,
            self.quant_combo,
            self.compile_check,
        ]

    def settings(self) -> dict[str, object]:
        """The ``ModelChoice`` fields these rows edit (besides ``ip2p``)."""
        return {
            "memory": self.memory_combo.currentData(),
            "vae_tiling": self.tiling_check.isChecked(),
            "quantize": self.quant_combo.currentText(),
            "compile": self.compile_check.isChecked(),
        }

    def _combo_changed(self) -> None:
        name = self.combo.currentData()
        if name != CUSTOM_EDITOR:
            self.ip2p_edit.setText("" if name == models.DEFAULT_IP2P else name)
        self.refresh()

    def _local_folder(self, value: str) -> Path | None:
        if value in models.REGISTRY:
            path = models.local_path(value, self._folder())
            return path if models.is_present(value, self._folder()) else None
        path = Path(value).expanduser()
        return path if path.is_dir() else None

    def family(self) -> tuple[str | None, str]:
        """(family or None, text for the family label) of the current editor value."""
        value = self.ip2p_edit.text().strip() or models.DEFAULT_IP2P
        spec = models.REGISTRY.get(value)
        if spec is not None and spec.kind in ("ip2p", "editor"):
            fam = spec.family or "ip2p"
            here = "present" if models.is_present(value, self._folder()) else "not downloaded"
            return fam, f"Family: {fam} (registry {spec.hf_repo}, {here})"
        folder = self._local_folder(value)
        try:
            fam = editor_families.detect_family(str(folder or value), local_only=True)
        except MaskPixError as exc:
            return None, f"Not an editor MaskPix runs: {exc}"
        if fam is None:
            return None, "Family: unknown until the model is downloaded (read from its model_index.json)"
        return (
            fam,
            f"Family: {fam} (detected from {folder / editor_families.MODEL_INDEX if folder else value})",
        )

    def refresh(self) -> None:
        """Family and estimate for the current editor and memory setting."""
        fam, text = self.family()
        self.family_label.setText(text)
        if fam is None:
            self.estimate_label.setText("VRAM estimate: needs the model's family.")
            return
        folder = self._local_folder(self.ip2p_edit.text().strip() or models.DEFAULT_IP2P)
        try:
            sizes = vram_estimate.sizes_of_folder(folder) if folder else vram_estimate.PUBLISHED[fam]
        except MaskPixError as exc:
            self.estimate_label.setText(f"VRAM estimate unavailable: {exc}")
            return
        side = vram_estimate.USUAL_SIZE[fam]
        s = self.settings()
        est = vram_estimate.estimate(
            sizes, (side, side), quantize=str(s["quantize"]), vae_tiling=bool(s["vae_tiling"])
        )
        source = "this folder's weights" if folder else "published parameter counts"
        if s["memory"] == AUTO:
            peaks = ", ".join(f"{m} ~{est.gib(m):.1f}" for m in est.peak)
            text = f"VRAM at {side}x{side}: {peaks} GiB; automatic: the fastest that fits."
            self.estimate_label.setText(text)
            self.estimate_label.setToolTip(f"An estimate from {source}; without CUDA automatic is full.")
            return
        self.estimate_label.setText(
            f"VRAM at {side}x{side}: {vram_estimate.describe(est, str(s['memory']))}; from {source}."
        )
        self.estimate_label.setToolTip("")
