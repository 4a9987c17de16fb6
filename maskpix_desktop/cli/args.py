"""Command-line options shared by several ``maskpix-cli`` subcommands (no imports of the commands)."""

from __future__ import annotations

import argparse
import re

from maskpix_desktop.core.editor_memory import MEMORY_CHOICES, QUANTIZE_MODES

#: ``--precision`` values (the long names are aliases, kept as typed).
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "float32", "float16", "bfloat16")


def device_arg(text: str) -> str:
    """``--device``: auto, cpu, cuda, cuda:N or mps (case-insensitive); an argparse error otherwise."""
    value = text.strip().lower()
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d{1,3}", value):
        return value
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N or mps")


def add_model_args(
    p: argparse.ArgumentParser, *, sam: bool = True, memory: bool = False, device_note: str = ""
) -> None:
    """The model options of every model-running subcommand (run, eval, eval-automask); ``sam``: also
    ``--sam``; ``memory``: also the editor's memory options; ``device_note``: appended to ``--device``."""
    p.add_argument("--models-dir", help="models folder (default: $MASKPIX_MODELS or the user data folder)")
    if sam:
        p.add_argument(
            "--sam",
            default="auto",
            help="SAM variant vit_h|vit_l|vit_b, SAM 2.1 sam2.1_hiera_tiny|sam2.1_hiera_small|"
            "sam2.1_hiera_base_plus|sam2.1_hiera_large, a SAM .pth file or a SAM 2 Hugging Face folder; "
            "auto (default): vit_h with CUDA, sam2.1_hiera_tiny without",
        )
    p.add_argument(
        "--ip2p",
        default=None,
        help="the editor: a diffusers folder of any family (ip2p, ip2p_xl, kontext, qwen_edit; read from "
        "model_index.json), a registry name (ip2p, sdxl-instructpix2pix, flux-kontext-dev, qwen-image-edit, "
        "qwen-image-edit-2509), a Hugging Face id, or a MaskPix mask checkpoint folder (docs/MODELS.md)",
    )
    if memory:
        add_memory_args(p)
    p.add_argument(
        "--device", type=device_arg, default="auto", help=f"auto | cuda | cuda:N | cpu | mps{device_note}"
    )
    p.add_argument(
        "--precision",
        type=str.lower,
        default="auto",
        choices=PRECISIONS,
        help="auto | fp16 | bf16 | fp32 (editor weights; fp32 also keeps SAM's encoder out of TF32 on CUDA)",
    )


def add_memory_args(p: argparse.ArgumentParser) -> None:
    """``--memory``, ``--vae-tiling``, ``--quantize`` (core/editor_memory)."""
    p.add_argument(
        "--memory",
        default="auto",
        choices=MEMORY_CHOICES,
        help="editor weights on the GPU: auto (default: the fastest setting whose estimate fits the free "
        "VRAM), full (fastest), model_offload (one component at a time), sequential_offload (layer by "
        "layer, least VRAM); offload needs CUDA",
    )
    p.add_argument("--vae-tiling", action="store_true", help="VAE in tiles (large images, less VRAM)")
    p.add_argument(
        "--quantize",
        default="none",
        choices=QUANTIZE_MODES,
        help="quantise the editor's denoiser on CUDA: int8 / fp8 (torchao), nf4 (bitsandbytes)",
    )
    p.add_argument(
        "--gguf",
        default=None,
        metavar="FILE",
        help="a GGUF file whose quantised weights replace the transformer of a Kontext / Qwen-Image-Edit "
        "editor (needs: pip install gguf)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the editor's denoiser (the first run compiles; later runs reuse the cache in "
        "$MASKPIX_COMPILE_CACHE or the user cache folder)",
    )
