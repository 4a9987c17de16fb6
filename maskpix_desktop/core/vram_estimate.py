"""VRAM estimate of an editor before it loads (issue 17): weights from the folder, activations per size.

Qt-free and torch-free: parameter counts come from the safetensors headers (8-byte length, then JSON
with each tensor's dtype and shape), so a 40 GB folder is sized in milliseconds. Arithmetic, not a
measurement; what it counts is in docs/MODELS.md ("VRAM"):

- weights: parameters x bytes of the run's dtype (the denoiser at its quantised width when quantised);
- activations: the denoiser's ``tokens x width x batch x DENOISER_ACT`` and the VAE decoder's
  ``H x W x channels x VAE_ACT`` (at most one tile with VAE tiling), never both at once;
- ``full``: every weight + the larger activation; ``model_offload``: the largest of (text encoders,
  denoiser + its activations, VAE + its activations); ``sequential_offload``: the largest single layer
  + the larger activation. CUDA context and allocator slack are not included.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from maskpix_desktop.core.editor_families import folder_family
from maskpix_desktop.core.errors import WeightsError

#: Bytes per element of safetensors dtypes.
DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
#: Bytes per weight of the run's precision and of the denoiser's quantisation (NF4: 4 bits plus one
#: float32 absmax per 64 weights).
PRECISION_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0}
QUANT_BYTES = {"int8": 1.0, "fp8": 1.0, "nf4": 0.5 + 4 / 64}
#: Live activation tensors per token x width in one denoiser forward (q, k, v, attention output, the 4x
#: MLP and residuals); and per pixel x channel at the VAE decoder's full-resolution stage.
DENOISER_ACT = 16
VAE_ACT = 6
#: The VAE tile (pixels) diffusers decodes at a time with tiling on.
VAE_TILE = 512
#: Batch of one denoiser forward: IP2P's three guidance branches; Kontext is guidance-distilled; Qwen's
#: true CFG runs its two branches one after the other.
BATCH = {"ip2p": 3, "ip2p_xl": 3, "kontext": 1, "qwen_edit": 1}
#: Text tokens the flow families attend to beside the image (T5's 512; Qwen's prompt template).
TEXT_TOKENS = {"kontext": 512, "qwen_edit": 512}
DENOISERS = ("unet", "transformer")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
GIB = 1024**3


def read_header(path: str | Path) -> dict[str, dict]:
    """The tensor entries of a safetensors file's header (``__metadata__`` dropped)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100_000_000:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    header.pop("__metadata__", None)
    return header


def _weight_files(component: Path) -> list[Path]:
    files = sorted(component.glob("*.safetensors"))
    plain = [p for p in files if ".fp16." not in p.name]
    return plain or files  # the fp16 variant when it is all the folder holds


def tensor_counts(folder: str | Path) -> dict[str, dict[str, int]]:
    """component -> {tensor name: elements}, from every safetensors header of a diffusers folder."""
    out: dict[str, dict[str, int]] = {}
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        tensors: dict[str, int] = {}
        for f in _weight_files(sub):
            for name, entry in read_header(f).items():
                tensors[name] = math.prod(entry.get("shape", []))
        if tensors:
            out[sub.name] = tensors
    return out


def largest_layer(tensors: dict[str, int]) -> int:
    """Elements of the largest module (tensors grouped by name without its last part: weight, bias)."""
    layers: dict[str, int] = {}
    for name, n in tensors.items():
        layer = name.rsplit(".", 1)[0]
        layers[layer] = layers.get(layer, 0) + n
    return max(layers.values(), default=0)


@dataclass(frozen=True)
class ModelSizes:
    """What the estimate needs of a model: parameters per component, its largest single layer, the
    denoiser's token width and the VAE decoder's full-resolution channels."""

    family: str
    params: dict[str, int]
    largest_layer: int
    width: int
    vae_channels: int
    #: Latent pixels per image pixel side (8 for every family MaskPix runs; 16 for the tiny Qwen VAE).
    vae_scale: int = 8
    #: Latent pixels per token side (2 for the packed flow transformers, 1 for a UNet).
    patch: int = 1


def _config(folder: Path, component: str) -> dict:
    try:
        return json.loads((folder / component / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def sizes_of_folder(folder: str | Path) -> ModelSizes:
    """:class:`ModelSizes` of a local diffusers folder (family from ``model_index.json``)."""
    folder = Path(folder)
    family = folder_family(folder)
    counts = tensor_counts(folder)
    params = {c: sum(t.values()) for c, t in counts.items()}
    transformer, unet, vae = (_config(folder, c) for c in ("transformer", "unet", "vae"))
    if transformer:
        width = int(transformer.get("num_attention_heads", 1)) * int(transformer.get("attention_head_dim", 1))
    else:
        width = int((unet.get("block_out_channels") or [320])[0])
    channels = vae.get("block_out_channels") or [vae.get("base_dim", 128)]
    n_down = len(vae.get("block_out_channels") or vae.get("dim_mult", [1, 1, 1, 1]))
    return ModelSizes(
        family=family,
        params=params,
        largest_layer=max((largest_layer(t) for t in counts.values()), default=0),
        width=width,
        vae_channels=int(channels[0]),
        vae_scale=2 ** (n_down - 1),
        patch=2 if family in ("kontext", "qwen_edit") else 1,
    )


@dataclass(frozen=True)
class VramEstimate:
    """Bytes: weights per component (as loaded), the two activation terms, and the peak per setting."""

    weights: dict[str, float]
    denoiser_act: float
    vae_act: float
    peak: dict[str, float] = field(default_factory=dict)

    def gib(self, memory: str) -> float:
        return self.peak[memory] / GIB


def estimate(
    sizes: ModelSizes,
    size_hw: tuple[int, int],
    *,
    precision: str = "bf16",
    quantize: str = "none",
    vae_tiling: bool = False,
) -> VramEstimate:
    """Peak VRAM (bytes) of one edit at ``size_hw`` for each memory setting (``full``, ``model_offload``,
    ``sequential_offload``)."""
    b = PRECISION_BYTES[precision]
    h, w = size_hw
    weights = {
        c: n * (QUANT_BYTES[quantize] if c in DENOISERS and quantize != "none" else b)
        for c, n in sizes.params.items()
    }
    side = sizes.vae_scale * sizes.patch
    tokens = math.ceil(h / side) * math.ceil(w / side)
    if sizes.family == "kontext":
        tokens *= 2  # the condition image's tokens at the working size
    elif sizes.family == "qwen_edit":
        tokens += (1024 // side) ** 2  # Qwen resizes its condition image to about 1 MP
    tokens += TEXT_TOKENS.get(sizes.family, 0)
    denoiser_act = float(tokens * sizes.width * BATCH.get(sizes.family, 1) * DENOISER_ACT * b)
    vh, vw = (min(h, VAE_TILE), min(w, VAE_TILE)) if vae_tiling else (h, w)
    vae_act = float(vh * vw * sizes.vae_channels * VAE_ACT * b)
    act = max(denoiser_act, vae_act)
    denoiser_w = sum(v for c, v in weights.items() if c in DENOISERS)
    text_w = max((v for c, v in weights.items() if c in TEXT_ENCODERS), default=0.0)
    peak = {
        "full": sum(weights.values()) + act,
        "model_offload": max(text_w, denoiser_w + denoiser_act, weights.get("vae", 0.0) + vae_act),
        "sequential_offload": sizes.largest_layer * b + act,
    }
    return VramEstimate(weights=weights, denoiser_act=denoiser_act, vae_act=vae_act, peak=peak)


def describe(est: VramEstimate, memory: str) -> str:
    """One line for people: ``~12.3 GiB peak (weights 10.1 GiB on the GPU at most, arithmetic)``."""
    total = sum(est.weights.values()) / GIB
    return f"~{est.gib(memory):.1f} GiB peak with {memory} (weights {total:.1f} GiB in all; an estimate)"


#: The settings ``memory = "auto"`` tries, fastest first: (memory, VAE tiling).
LADDER: tuple[tuple[str, bool], ...] = (
    ("full", False),
    ("full", True),
    ("model_offload", True),
    ("sequential_offload", True),
)
#: Share of the free VRAM an estimate may fill: the estimate leaves out the CUDA context, the allocator's
#: slack and the scheduler's buffers.
HEADROOM = 0.85


@dataclass(frozen=True)
class AutoChoice:
    """The setting ``auto`` picked: ``memory`` and ``vae_tiling``, its estimated ``peak`` and the
    ``free`` VRAM it was compared with (bytes); ``fits`` False when even the lightest did not fit."""

    memory: str
    vae_tiling: bool
    peak: float
    free: float
    fits: bool

    def describe(self) -> str:
        """Why, for the text after the setting: ``auto: ~9.8 GiB estimated, 11.0 GiB free``."""
        amounts = f"~{self.peak / GIB:.1f} GiB estimated, {self.free / GIB:.1f} GiB free"
        return f"auto: {amounts}" if self.fits else f"auto: the lightest setting, may not fit: {amounts}"


def choose_memory(
    sizes: ModelSizes,
    size_hw: tuple[int, int],
    free_bytes: float,
    *,
    precision: str = "bf16",
    quantize: str = "none",
    headroom: float = HEADROOM,
) -> AutoChoice:
    """The first rung of :data:`LADDER` whose estimated peak fits ``headroom`` of ``free_bytes`` (the
    fastest that fits), or the last one when none does."""
    plain = estimate(sizes, size_hw, precision=precision, quantize=quantize, vae_tiling=False)
    tiled = estimate(sizes, size_hw, precision=precision, quantize=quantize, vae_tiling=True)
    for memory, tiling in LADDER:
        peak = (tiled if tiling else plain).peak[memory]
        if peak <= headroom * free_bytes:
            return AutoChoice(memory, tiling, peak, float(free_bytes), True)
    memory, tiling = LADDER[-1]
    return AutoChoice(memory, tiling, tiled.peak[memory], float(free_bytes), False)


#: Published parameter counts of the real models (model cards and papers, rounded; not read from weights,
#: none of which are on this machine) and the largest single layer from their configs' shapes: the CLIP
#: token embeddings (49408 x 768 / x 1280), T5-XXL's shared embedding (32128 x 4096), Qwen2.5-VL-7B's
#: token embedding (152064 x 3584). Qwen2.5-VL-7B is counted as its published 7 B (the vision tower adds
#: more). The arithmetic of docs/MODELS.md's VRAM table.
PUBLISHED: dict[str, ModelSizes] = {
    "ip2p": ModelSizes(
        "ip2p", {"unet": 860_000_000, "text_encoder": 123_000_000, "vae": 84_000_000}, 49408 * 768, 320, 128
    ),
    "ip2p_xl": ModelSizes(
        "ip2p_xl",
        {
            "unet": 2_600_000_000,
            "text_encoder": 123_000_000,
            "text_encoder_2": 695_000_000,
            "vae": 84_000_000,
        },
        49408 * 1280,
        320,
        128,
    ),
    "kontext": ModelSizes(
        "kontext",
        {
            "transformer": 12_000_000_000,
            "text_encoder": 123_000_000,
            "text_encoder_2": 4_700_000_000,
            "vae": 84_000_000,
        },
        32128 * 4096,
        3072,
        128,
        patch=2,
    ),
    "qwen_edit": ModelSizes(
        "qwen_edit",
        {"transformer": 20_000_000_000, "text_encoder": 7_000_000_000, "vae": 127_000_000},
        152064 * 3584,
        3072,
        96,
        patch=2,
    ),
}
#: The working size each family is usually run at (long side, square): SD 1.5 IP2P 512, SDXL-IP2P 768.
USUAL_SIZE = {"ip2p": 512, "ip2p_xl": 768, "kontext": 1024, "qwen_edit": 1024}
