"""Load an editor (IP2P, SDXL-IP2P, a mask checkpoint, Kontext, Qwen-Image-Edit) from a folder or hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maskpix_desktop.core import editor_families, models, vram_estimate
from maskpix_desktop.core.editor import Editor, _is_oom
from maskpix_desktop.core.editor_memory import (
    AUTO,
    MemorySettings,
    next_lighter,
    place_pipeline,
    quantization_config,
)
from maskpix_desktop.core.errors import MissingWeightsError, OutOfMemoryError, WeightsError


def _diffusers_takes_dtype() -> bool:
    """Newer diffusers renamed ``torch_dtype`` to ``dtype`` (the old name warns); detect, don't guess."""
    from diffusers.pipelines import pipeline_utils

    return hasattr(pipeline_utils, "_resolve_dtype")


def resolve_auto(
    settings: MemorySettings, family: str | None, folder: Path, device: str, precision: str
) -> tuple[MemorySettings, str]:
    """``settings`` with ``memory = "auto"`` made concrete, and why (appended to the editor's ``memory``
    text in metadata and the status bar): on CUDA the fastest rung of ``vram_estimate.LADDER`` whose
    estimate at the family's usual working size fits the free VRAM now (``torch.cuda.mem_get_info``);
    elsewhere ``full``."""
    if settings.memory != AUTO:
        return settings, ""
    if not str(device).startswith("cuda"):
        return MemorySettings("full", settings.vae_tiling, settings.quantize), "auto, no CUDA"
    import torch

    fam = family or "ip2p"
    try:
        sizes = vram_estimate.sizes_of_folder(folder) if folder.is_dir() else vram_estimate.PUBLISHED[fam]
    except WeightsError:
        sizes = vram_estimate.PUBLISHED[fam]
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    side = vram_estimate.USUAL_SIZE[fam]
    choice = vram_estimate.choose_memory(
        sizes, (side, side), float(free), precision=precision, quantize=settings.quantize
    )
    tiling = choice.vae_tiling or settings.vae_tiling
    return MemorySettings(choice.memory, tiling, settings.quantize), choice.describe()  # type: ignore[arg-type]


def load_editor(
    source: str | Path | None = None,
    *,
    models_dir: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    memory: MemorySettings | None = None,
    compile_denoiser: bool = False,
    gguf: str | Path | None = None,
) -> Editor:
    """Load an editor from a diffusers folder, a registry editor name or a Hugging Face id (offline-safe).

    The editor family comes from ``model_index.json`` (core/editor_families); a family this version
    does not run raises :class:`WeightsError` before diffusers is asked. A MaskPix mask checkpoint
    folder (``maskpix_conditioning.json``) loads as a mask pipeline. ``memory`` (core/editor_memory):
    quantisation at load time, then CPU offload or every weight on the device, and VAE tiling.
    ``compile_denoiser``: ``torch.compile`` the UNet / transformer with a persistent cache
    (core/editor_compile; the first run compiles, later starts reuse the cache). ``gguf``: a GGUF file
    whose (quantised) weights replace a flow editor's transformer (core/editor_gguf).
    """
    import diffusers
    import torch

    from maskpix_desktop.core.maskcond.model import is_mask_checkpoint, load_mask_pipeline

    path_or_id, local_only = models.resolve_ip2p(None if source is None else str(source), models_dir)
    family = editor_families.detect_family(str(path_or_id), local_only)
    if family is not None:
        editor_families.require_supported(family, path_or_id)
    if gguf is not None:
        from maskpix_desktop.core.editor_gguf import require_family

        family = require_family(family, path_or_id)
    dev = models.resolve_device(device)
    dtype = models.default_dtype(dev, precision)
    if family in ("kontext", "qwen_edit") and dtype == torch.float16 and precision in ("auto", "", None):
        dtype = torch.bfloat16  # their text encoders overflow in float16; bf16 is what they ship in
    local = Path(str(path_or_id))
    if local.is_dir() and is_mask_checkpoint(local):
        try:
            pipe = load_mask_pipeline(local, device=dev, dtype=dtype)
        except Exception as exc:
            if _is_oom(exc):
                raise OutOfMemoryError(f"Not enough {dev} memory to load the mask checkpoint.") from exc
            raise
        return Editor(pipe, model_id=str(local), fingerprint=models.file_fingerprint(local))
    # The registry folder holds fp16 weights only and no safety checker (a research tool; the
    # checker would black out whole results). A hub id gets the fp16 variant on fp16 devices.
    if local.is_dir():
        variants = [models.detect_variant(local)]
    else:
        variants = ["fp16", None] if dtype == torch.float16 else [None]
    dtype_key = "dtype" if _diffusers_takes_dtype() else "torch_dtype"
    kwargs: dict[str, Any] = {dtype_key: dtype, "local_files_only": local_only}
    precision_name = {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, "fp16")
    settings, auto_note = resolve_auto(memory or MemorySettings(), family, local, dev, precision_name)
    if gguf is not None and settings.quantize != "none":
        raise WeightsError(
            f"A GGUF file is already quantised; choose quantize none or no GGUF file, not both "
            f"(quantize {settings.quantize})."
        )
    quant = quantization_config(family, settings.quantize, dtype, dev)
    if quant is not None:
        kwargs["quantization_config"] = quant
    gguf_note = ""
    if gguf is not None:
        from maskpix_desktop.core import editor_gguf

        kwargs["transformer"] = editor_gguf.load_gguf_transformer(gguf, family, path_or_id, dtype, local_only)
        gguf_note = " + " + editor_gguf.describe(kwargs["transformer"])
    # diffusers' lazy module imports only the pipeline asked for (the XL one is a large import).
    editor_cls: type[Editor] = Editor
    if family in ("kontext", "qwen_edit"):
        from maskpix_desktop.core.editor_flow import LABELS, FlowEditor, pipeline_class

        pipe_cls, label, editor_cls = pipeline_class(family, local), LABELS[family], FlowEditor
        if not local.is_dir():
            variants = [None]  # these repositories publish one (bf16) set of weights, no fp16 variant
    elif family == "ip2p_xl":
        pipe_cls: Any = diffusers.StableDiffusionXLInstructPix2PixPipeline
        label = "SDXL InstructPix2Pix"
    else:
        pipe_cls, label = diffusers.StableDiffusionInstructPix2PixPipeline, "InstructPix2Pix"
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    pipe = None
    for i, variant in enumerate(variants):
        try:
            pipe = pipe_cls.from_pretrained(path_or_id, variant=variant, **kwargs)
            break
        except (OSError, ValueError) as exc:
            if i + 1 < len(variants):
                continue
            if local_only and not local.exists():
                raise MissingWeightsError("ip2p", path_or_id, "maskpix-cli models download ip2p") from exc
            raise WeightsError(f"Could not load {label} from {path_or_id}: {exc}") from exc
        except Exception as exc:  # diffusers raises many types for broken folders
            raise WeightsError(f"Could not load {label} from {path_or_id}: {exc}") from exc
    assert pipe is not None
    try:
        placed = place_pipeline(pipe, settings, dev, family)
    except Exception as exc:
        if _is_oom(exc):
            lighter = next_lighter(settings)
            hint = f" Try the memory setting {lighter.label()}." if lighter else ""
            raise OutOfMemoryError(
                f"Not enough {dev} memory to load {label} ({settings.label()}).{hint}"
            ) from exc
        raise
    placed += gguf_note
    if compile_denoiser:
        from maskpix_desktop import paths
        from maskpix_desktop.core.editor_compile import compile_denoiser as compile_it

        placed += " + " + compile_it(pipe, family, paths.compile_cache_dir(), dev)
    fingerprint = models.file_fingerprint(local) if local.exists() else str(path_or_id)
    editor = editor_cls(pipe, model_id=str(path_or_id), fingerprint=fingerprint)
    editor.memory = f"{placed} ({auto_note})" if auto_note else placed
    editor.memory_settings = settings
    return editor
