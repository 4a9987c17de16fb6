"""Command-line options shared by several ``maskpix-cli`` subcommands (no imports of the commands)."""

from __future__ import annotations

import argparse
import re

#: ``--precision`` values (the long names are aliases, kept as typed).
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "float32", "float16", "bfloat16")


def device_arg(text: str) -> str:
    """``--device``: auto, cpu, cuda, cuda:N or mps (case-insensitive); an argparse error otherwise."""
    value = text.strip().lower()
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d{1,3}", value):
        return value
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N or mps")


def add_model_args(p: argparse.ArgumentParser, *, sam: bool = True, device_note: str = "") -> None:
    """The model options of every model-running subcommand (run, eval, eval-automask); ``sam``: also
    ``--sam``; ``device_note``: appended to ``--device``'s help."""
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
        help="InstructPix2Pix diffusers folder or Hugging Face id, or a MaskPix mask checkpoint folder "
        "(mask mode trained; docs/TRAINING.md)",
    )
    p.add_argument(
        "--device", type=device_arg, default="auto", help=f"auto | cuda | cuda:N | cpu | mps{device_note}"
    )
    p.add_argument(
        "--precision",
        type=str.lower,
        default="auto",
        choices=PRECISIONS,
        help="auto | fp16 | bf16 | fp32 (IP2P weights; fp32 also keeps SAM's encoder out of TF32 on CUDA)",
    )
