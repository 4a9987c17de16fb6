"""Command-line options shared by several ``maskpix-cli`` subcommands (no imports of the commands)."""

from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model options every model-running subcommand shares (run, eval-automask)."""
    p.add_argument("--models-dir", help="models folder (default: $MASKPIX_MODELS or the user data folder)")
    p.add_argument("--sam", default="vit_h", help="SAM variant vit_h|vit_l|vit_b or a .pth file")
    p.add_argument("--ip2p", default=None, help="InstructPix2Pix diffusers folder or Hugging Face id")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu | mps")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto | fp16 | bf16 | fp32 (IP2P weights; fp32 also keeps SAM's encoder out of TF32 on CUDA)",
    )
