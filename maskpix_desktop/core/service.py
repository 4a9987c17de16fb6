"""The model service: which weights to use (``ModelChoice``) and one lazily loaded instance of each engine.

Qt-free: the CLI uses it directly; the GUI runs one instance on its model-service QThread. A models folder
may hold a ``maskpix-models.json`` manifest naming custom weights (fine-tunes, the tiny test models):
``{"sam": "file.pth", "ip2p": "folder", "clip": {"model_name": ..., "pretrained": ..., "config_path": ...},
"grounding": "folder"}``
with paths relative to the folder.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from maskpix_desktop.core import models
from maskpix_desktop.core.editor_memory import MemorySettings
from maskpix_desktop.core.errors import MaskPixError, MissingWeightsError, WeightsError
from maskpix_desktop.core.sam2_arch import explain_official_sam2, sam2_folder

if TYPE_CHECKING:  # the engines import torch: only their names here
    from maskpix_desktop.core.editor import Editor
    from maskpix_desktop.core.grounding import GroundingDetector
    from maskpix_desktop.core.metrics import ClipScorer
    from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter
    from maskpix_desktop.core.segmenter import Segmenter

#: What :meth:`ModelService.segmenter` returns: SAM 1 or SAM 2.1 (the same set_image / predict interface).
AnySegmenter = Union["Segmenter", "Sam2Segmenter"]

log = logging.getLogger(__name__)

MANIFEST = "maskpix-models.json"
SAM_VARIANTS = ("vit_h", "vit_l", "vit_b")
#: ``ModelChoice.sam`` value for the device's default SAM (``models.default_sam_for``): vit_h on CUDA,
#: SAM 2.1 hiera tiny without CUDA.
SAM_AUTO = "auto"
#: SAM 2.1 registry names (sam2.1_hiera_tiny / _small / _base_plus / _large): Hugging Face folders.
SAM2_VARIANTS = tuple(name for name, spec in models.REGISTRY.items() if spec.kind == "sam2")


#: Where the models folder in effect comes from, strongest first (README "Models").
SOURCE_CLI, SOURCE_ENV = "--models-dir", models.ENV_MODELS_DIR
SOURCE_SAVED, SOURCE_DEFAULT = "saved", "default"


def models_dir_in_effect(cli: str | None, saved: str | None) -> tuple[str | None, str]:
    """(folder, source): ``--models-dir`` > ``$MASKPIX_MODELS`` > the folder saved in Model settings >
    the per-user default (folder None). ``source`` is one of the ``SOURCE_*`` names."""
    if cli and str(cli).strip():
        return str(cli).strip(), SOURCE_CLI
    env = os.environ.get(models.ENV_MODELS_DIR, "").strip()
    if env:
        return env, SOURCE_ENV
    if saved and str(saved).strip():
        return str(saved).strip(), SOURCE_SAVED
    return None, SOURCE_DEFAULT


@dataclass(frozen=True)
class ModelChoice:
    """Which models to load and where. ``sam``: a SAM variant (vit_h/vit_l/vit_b), a SAM 2.1 registry name
    (``SAM2_VARIANTS``), ``SAM_AUTO`` (the device's default: :meth:`sam_name`), a .pth path or a SAM 2
    Hugging Face folder;
    ``ip2p``: None (registry folder), a diffusers folder or a Hugging Face id; ``clip``: kwargs of
    ``ClipScorer.load`` or None for the registry CLIP; ``grounding``: None (registry GroundingDINO folder),
    a transformers folder or a cached Hugging Face id. ``memory``, ``vae_tiling``, ``quantize``: the
    editor's memory settings (core/editor_memory, :meth:`memory_settings`); ``compile``: torch.compile its
    denoiser with a persistent cache (core/editor_compile); ``gguf``: a GGUF file for a flow editor's
    transformer (core/editor_gguf)."""

    models_dir: str | None = None
    sam: str = SAM_AUTO
    ip2p: str | None = None
    clip: dict[str, str] | None = None
    grounding: str | None = None
    device: str = "auto"
    precision: str = "auto"
    memory: str = "auto"
    vae_tiling: bool = False
    quantize: str = "none"
    compile: bool = False
    gguf: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def memory_settings(self) -> MemorySettings:
        """The editor's memory settings (ValueError naming the field when one is not a known value)."""
        return MemorySettings(self.memory, self.vae_tiling, self.quantize)  # type: ignore[arg-type]

    @property
    def root(self) -> Path:
        return models.models_dir(self.models_dir)

    def with_manifest(self) -> ModelChoice:
        """Apply the models folder's manifest to the fields the user left at their defaults."""
        path = self.root / MANIFEST
        if not path.is_file():
            return self
        data = models.read_models_json(path)  # WeightsError naming the file and key when malformed
        changes: dict[str, Any] = {}
        if self.sam in (SAM_AUTO, "vit_h") and "sam" in data:
            changes["sam"] = str(self.root / data["sam"])
        if self.ip2p is None and "ip2p" in data:
            changes["ip2p"] = str(self.root / data["ip2p"])
        if self.clip is None and isinstance(data.get("clip"), dict):
            clip = dict(data["clip"])
            for key in ("pretrained", "config_path"):
                if key in clip and not Path(clip[key]).is_absolute():
                    clip[key] = str(self.root / clip[key])
            changes["clip"] = clip
        if self.grounding is None and "grounding" in data:
            changes["grounding"] = str(self.root / data["grounding"])
        return replace(self, **changes)

    def sam_name(self) -> str:
        """``sam`` with ``SAM_AUTO`` resolved for ``device``: "vit_h" on CUDA, "sam2.1_hiera_tiny" else."""
        if self.sam != SAM_AUTO:
            return self.sam
        name = models.default_sam_for(models.resolve_device(self.device))
        return name.removeprefix("sam_") if name.startswith("sam_vit_") else name

    def sam_checkpoint(self) -> tuple[Path, str | None]:
        """(path, model_type or None to auto-detect); MissingWeightsError with the fetch command."""
        sam = self.sam_name()
        if sam in SAM_VARIANTS:
            return models.require(f"sam_{sam}", self.models_dir), sam
        if sam in SAM2_VARIANTS:
            return models.require(sam, self.models_dir), None
        path = Path(sam).expanduser()
        if not (path.is_file() or path.is_dir()):
            raise MissingWeightsError("sam", path)
        return path, None

    def clip_kwargs(self) -> dict[str, str]:
        if self.clip is not None:
            return dict(self.clip)
        spec = models.get_spec(models.DEFAULT_CLIP)
        path = models.require(models.DEFAULT_CLIP, self.models_dir)
        name = f"{spec.clip_model}-quickgelu" if spec.clip_quick_gelu else str(spec.clip_model)
        return {"model_name": name, "pretrained": str(path)}


def _load_segmenter(path: Path, model_type: str | None, device: str, precision: str) -> AnySegmenter:
    """A SAM 2 folder -> ``Sam2Segmenter``; a file -> SAM 1 ``Segmenter`` (an official SAM 2 .pt is
    explained, not loaded)."""
    if path.is_dir() or sam2_folder(path) is not None:
        from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter, app_precision

        return Sam2Segmenter.from_pretrained(
            path, device=device, encoder_precision=app_precision(precision, device)
        )
    from maskpix_desktop.core.segmenter import Segmenter

    try:
        return Segmenter.from_checkpoint(
            path, model_type=model_type, device=device, encoder_precision=precision
        )
    except WeightsError as exc:
        hint = explain_official_sam2(path)
        if hint is None:
            raise
        raise WeightsError(hint) from exc


class ModelService:
    """Owns every torch model; loads each once, on first use; thread-safe (one job at a time)."""

    def __init__(self, choice: ModelChoice | None = None):
        self.choice = (choice or ModelChoice()).with_manifest()
        self.device = models.resolve_device(self.choice.device)
        self._lock = threading.RLock()
        self._segmenter: AnySegmenter | None = None
        self._editor: Editor | None = None
        self._clip: ClipScorer | None = None
        self._grounding: GroundingDetector | None = None
        self._sam_path: Path | None = None
        self.clip_error: str | None = None

    def check(self, *, sam: bool = True, ip2p: bool = True) -> None:
        """Raise MissingWeightsError before any work if a needed model is absent."""
        if sam:
            self.choice.sam_checkpoint()
        if ip2p:
            models.resolve_ip2p(self.choice.ip2p, self.choice.models_dir)

    def segmenter(self) -> AnySegmenter:
        with self._lock:
            if self._segmenter is None:
                path, model_type = self.choice.sam_checkpoint()
                # --precision fp32 means full float32 everywhere; otherwise SAM's encoder uses TF32 on CUDA
                # (SAM 2: bfloat16 on a CPU that has it natively).
                sam_precision = "fp32" if self.choice.precision == "fp32" else "auto"
                segmenter = _load_segmenter(path, model_type, self.device, sam_precision)
                segmenter.warm_up()  # CUDA / CPU bf16: the first photo then does not pay the set-up
                self._segmenter = segmenter
                self._sam_path = path
            return self._segmenter

    def editor(self) -> Editor:
        with self._lock:
            if self._editor is None:
                from maskpix_desktop.core import editor_loader

                self._editor = editor_loader.load_editor(
                    self.choice.ip2p,
                    models_dir=self.choice.models_dir,
                    device=self.device,
                    precision=self.choice.precision,
                    memory=self.choice.memory_settings(),
                    compile_denoiser=self.choice.compile,
                    gguf=self.choice.gguf or None,
                )
            return self._editor

    def clip(self) -> ClipScorer | None:
        """The CLIP scorer, or None (with ``clip_error`` saying why) when its weights are unusable."""
        with self._lock:
            if self._clip is None and self.clip_error is None:
                from maskpix_desktop.core.metrics import ClipScorer

                try:
                    self._clip = ClipScorer.load(device=self.device, **self.choice.clip_kwargs())
                except MaskPixError as exc:
                    self.clip_error = str(exc)
                    log.warning("CLIP metrics unavailable: %s", exc)
            return self._clip

    def grounding(self) -> GroundingDetector:
        """The GroundingDINO detector (auto mask); MissingWeightsError with the fetch command when absent."""
        with self._lock:
            if self._grounding is None:
                from maskpix_desktop.core.grounding import GroundingDetector

                self._grounding = GroundingDetector.load(
                    self.choice.grounding, self.device, models_dir=self.choice.models_dir
                )
            return self._grounding

    def unload(self) -> None:
        """Drop every model (e.g. after the model settings changed) and free GPU memory."""
        with self._lock:
            self._segmenter = self._editor = self._clip = self._grounding = None
            self._sam_path = None
            self.clip_error = None
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    def model_info(self) -> dict[str, str]:
        info = {"device": self.device}
        if self._segmenter is not None:
            info["sam"] = getattr(self._segmenter, "model_type", "")
            # The Segmenter does not know its file: sha256 of the checkpoint (cached per path/mtime/size).
            info["sam_fingerprint"] = models.file_fingerprint(self._sam_path) if self._sam_path else ""
        if self._clip is not None:
            info["clip"] = self._clip.name
        if self._grounding is not None:
            info["grounding"] = self._grounding.model_id
        return info
