"""Editor families: which instruction editor a diffusers folder holds, read from its ``model_index.json``.

No torch or diffusers import here: detection only reads JSON, so a wrong folder fails fast with a message
that names the file and the families MaskPix knows (docs/MODELS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from maskpix_desktop.core.errors import WeightsError

MODEL_INDEX = "model_index.json"

#: diffusers pipeline ``_class_name`` -> family; MaskPix2PixPipeline is a mask checkpoint (core/maskcond).
CLASS_FAMILY: dict[str, str] = {
    "StableDiffusionInstructPix2PixPipeline": "ip2p",
    "MaskPix2PixPipeline": "ip2p",
    "StableDiffusionXLInstructPix2PixPipeline": "ip2p_xl",
    "FluxKontextPipeline": "kontext",
    "QwenImageEditPipeline": "qwen_edit",
    "QwenImageEditPlusPipeline": "qwen_edit",
}

#: Every family, with the models it covers (shown in errors and docs).
FAMILIES: dict[str, str] = {
    "ip2p": "InstructPix2Pix, SD 1.5 (timbrooks/instruct-pix2pix, MagicBrush, MaskPix mask checkpoints)",
    "ip2p_xl": "InstructPix2Pix, SDXL (sdxl-instructpix2pix, CosXL-Edit)",
    "kontext": "FLUX.1 Kontext (FluxKontextPipeline)",
    "qwen_edit": "Qwen-Image-Edit (QwenImageEditPipeline, QwenImageEditPlusPipeline)",
}

#: The families this version's :class:`~maskpix_desktop.core.editor.Editor` runs.
SUPPORTED: tuple[str, ...] = ("ip2p", "ip2p_xl", "kontext", "qwen_edit")


def _known() -> str:
    by_family = {fam: [c for c, f in CLASS_FAMILY.items() if f == fam] for fam in FAMILIES}
    return "; ".join(f"{fam}: {', '.join(classes)}" for fam, classes in by_family.items())


def family_of_class(class_name: object, where: str | Path) -> str:
    """The family of a pipeline ``_class_name``; :class:`WeightsError` naming ``where`` when unknown."""
    fam = CLASS_FAMILY.get(class_name) if isinstance(class_name, str) else None
    if fam is None:
        raise WeightsError(
            f"{where}: field '_class_name' is {class_name!r}, not an instruction editor MaskPix knows. "
            f"Supported families (pipeline classes): {_known()}."
        )
    return fam


def read_family(model_index: str | Path) -> str:
    """The family named by a ``model_index.json`` file; :class:`WeightsError` naming the file if unusable."""
    path = Path(model_index)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: missing (not a diffusers model folder)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return family_of_class(data.get("_class_name"), path)


def folder_family(folder: str | Path) -> str:
    """The family of a local diffusers folder (reads ``folder/model_index.json``)."""
    return read_family(Path(folder) / MODEL_INDEX)


def detect_family(path_or_id: str, local_only: bool = True) -> str | None:
    """Family of a local folder or a Hugging Face id; None when a hub id's ``model_index.json`` is not
    available (not cached and offline, or the download failed): the loader then reports its own error."""
    local = Path(str(path_or_id))
    if local.is_dir():
        return folder_family(local)
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(str(path_or_id), MODEL_INDEX)
        if isinstance(cached, str):
            return read_family(cached)
        if local_only:
            return None
        return read_family(hf_hub_download(str(path_or_id), MODEL_INDEX))
    except WeightsError:
        raise
    except Exception:  # network, auth, bad id: from_pretrained reports those with its own message
        return None


def require_supported(family: str, source: str | Path) -> str:
    """``family`` when this version runs it; else :class:`WeightsError` saying so plainly."""
    if family not in SUPPORTED:
        raise WeightsError(
            f"{source}: not supported yet in this version: {family} ({FAMILIES.get(family, family)}). "
            f"Supported now: {', '.join(SUPPORTED)} (see docs/MODELS.md)."
        )
    return family
