"""Memory settings of an editor (issue 17): where the weights live during a run, VAE tiling, quantisation.

Qt-free; torch and diffusers are imported inside the functions. ``load_editor`` applies them:
quantisation at load time (diffusers' ``quantization_config``), then :func:`place_pipeline` instead of
``pipe.to(device)``. Offload and quantisation need CUDA; on other devices the weights stay where the
device puts them and the chosen offload is reported as not applied (docs/MODELS.md).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Literal

from maskpix_desktop.core.errors import WeightsError

log = logging.getLogger(__name__)

Memory = Literal["auto", "full", "model_offload", "sequential_offload"]
Quantize = Literal["none", "int8", "fp8", "nf4"]

#: Lightest VRAM last: every model on the GPU; one component at a time; one layer at a time.
MEMORY_MODES: tuple[str, ...] = ("full", "model_offload", "sequential_offload")
#: ``auto``: the fastest setting whose VRAM estimate fits the free VRAM, chosen when the editor loads
#: (core/vram_estimate.choose_memory; without CUDA: ``full``).
AUTO = "auto"
MEMORY_CHOICES: tuple[str, ...] = (AUTO, *MEMORY_MODES)
#: Weight quantisation of the denoiser: torchao int8 / fp8 weight-only, bitsandbytes 4-bit NF4.
QUANTIZE_MODES: tuple[str, ...] = ("none", "int8", "fp8", "nf4")
#: The package each quantisation needs (installed separately; CUDA only).
QUANT_PACKAGE = {"int8": "torchao", "fp8": "torchao", "nf4": "bitsandbytes"}
#: The component a family's quantisation applies to (its denoiser: most of the weights).
DENOISER = {"ip2p": "unet", "ip2p_xl": "unet", "kontext": "transformer", "qwen_edit": "transformer"}


@dataclass(frozen=True)
class MemorySettings:
    """How an editor is kept in GPU memory: ``memory`` (``MEMORY_CHOICES``: ``auto`` is resolved at load),
    ``vae_tiling`` (decode and encode in tiles: large images at a bounded VAE cost), ``quantize``
    (``QUANTIZE_MODES``)."""

    memory: Memory = "full"
    vae_tiling: bool = False
    quantize: Quantize = "none"

    def __post_init__(self) -> None:
        if self.memory not in MEMORY_CHOICES:
            raise ValueError(f"memory {self.memory!r}: use one of {', '.join(MEMORY_CHOICES)}")
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize {self.quantize!r}: use one of {', '.join(QUANTIZE_MODES)}")
        if not isinstance(self.vae_tiling, bool):
            raise ValueError(f"vae_tiling must be true or false, not {self.vae_tiling!r}")

    def label(self) -> str:
        """Short text for metadata and the dialog, e.g. ``model_offload + VAE tiling + int8``."""
        parts = [self.memory]
        if self.vae_tiling:
            parts.append("VAE tiling")
        if self.quantize != "none":
            parts.append(self.quantize)
        return " + ".join(parts)


def installed(package: str) -> bool:
    """True when ``package`` can be imported (checked without importing it)."""
    return importlib.util.find_spec(package) is not None


def quantization_config(family: str | None, quantize: str, dtype: Any, device: str) -> Any | None:
    """diffusers' ``PipelineQuantizationConfig`` quantising the family's denoiser, or None for "none".

    :class:`WeightsError` when the device is not CUDA or the backend package is not installed.
    """
    if quantize == "none":
        return None
    if quantize not in QUANT_PACKAGE:
        raise ValueError(f"quantize {quantize!r}: use one of {', '.join(QUANTIZE_MODES)}")
    if not str(device).startswith("cuda"):
        raise WeightsError(f"Quantisation {quantize} needs a CUDA GPU; this run uses {device}. Choose none.")
    package = QUANT_PACKAGE[quantize]
    if not installed(package):
        raise WeightsError(
            f"Quantisation {quantize} needs the package '{package}' (pip install {package}); "
            "choose none or install it."
        )
    import diffusers

    component = DENOISER.get(family or "ip2p", "unet")
    if quantize == "nf4":
        config: Any = diffusers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    else:
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

        kind = Int8WeightOnlyConfig() if quantize == "int8" else Float8WeightOnlyConfig()
        config = diffusers.TorchAoConfig(kind)
    return diffusers.PipelineQuantizationConfig(quant_mapping={component: config})


def place_pipeline(pipe: Any, settings: MemorySettings, device: str, family: str | None = None) -> str:
    """Put ``pipe`` on ``device`` the way ``settings`` asks; return what was done (for the log/metadata).

    CUDA: ``full`` -> ``pipe.to(device)``; ``model_offload`` -> ``enable_model_cpu_offload(device=...)``
    (each component moves to the GPU while it runs); ``sequential_offload`` ->
    ``enable_sequential_cpu_offload(device=...)`` (layer by layer: least VRAM, slowest). Other devices:
    ``pipe.to(device)`` and the offload is not applied (said in the result). VAE tiling on any device.
    """
    cuda = str(device).startswith("cuda")
    done = settings.memory
    if settings.memory == "full" or not cuda:
        if settings.quantize == "none":
            pipe.to(device)  # a quantised pipeline is placed by its loader (bitsandbytes refuses .to)
        if settings.memory != "full":
            log.info("%s needs CUDA; running with every weight on %s", settings.memory, device)
            done = f"full ({settings.memory} needs CUDA)"
    elif settings.memory == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    if settings.vae_tiling:
        vae = pipe.vae
        if hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
            done += " + VAE tiling"
        else:
            done += " (this VAE has no tiling)"
    if settings.quantize != "none":
        done += f" + {settings.quantize} {DENOISER.get(family or 'ip2p', 'unet')}"
    return done


def next_lighter(settings: MemorySettings) -> MemorySettings | None:
    """The next setting to try after running out of memory (None when already the lightest)."""
    memory = "full" if settings.memory == AUTO else settings.memory
    if not settings.vae_tiling:
        return MemorySettings(memory, True, settings.quantize)  # type: ignore[arg-type]
    i = MEMORY_MODES.index(memory)
    if i + 1 < len(MEMORY_MODES):
        return MemorySettings(MEMORY_MODES[i + 1], True, settings.quantize)  # type: ignore[arg-type]
    return None
