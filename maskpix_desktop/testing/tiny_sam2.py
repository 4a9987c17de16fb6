"""A tiny random-weight SAM 2 (transformers ``Sam2Model``) and its processor, for tests.

The sizes follow transformers' own SAM 2 tests (tests/models/sam2/test_modeling_sam2.py): a 128 px input,
hiera widths 12..96, a 32-wide prompt encoder and decoder; the low-res logits / mask_input are 32 x 32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SIDE = 128


def tiny_sam2_config() -> Any:
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    backbone = Sam2HieraDetConfig(
        hidden_size=12,
        image_size=SIDE,
        blocks_per_stage=[1, 2, 7, 2],
        embed_dim_per_stage=[12, 24, 48, 96],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
        fpn_hidden_size=32,
    )
    return Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(
            hidden_size=32, image_size=SIDE, patch_size=16, mask_input_channels=8
        ),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=32, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32
        ),
    )


def build_tiny_sam2(seed: int = 0) -> tuple[Any, Any]:
    """(Sam2Model, Sam2Processor) with seeded random weights (the global torch RNG is left untouched)."""
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2Model(tiny_sam2_config()).eval()
        with torch.no_grad():  # zero-initialised parts get values so they are exercised too
            model.no_memory_embedding.normal_(0.0, 0.1)
    low = 4 * SIDE // 16
    image_processor = Sam2ImageProcessor(
        size={"height": SIDE, "width": SIDE}, mask_size={"height": low, "width": low}
    )
    return model, Sam2Processor(image_processor=image_processor)


def save_tiny_sam2(folder: str | Path, seed: int = 0) -> Path:
    """Save the tiny SAM 2 as a Hugging Face folder (config.json, model.safetensors, processor files)."""
    folder = Path(folder)
    model, processor = build_tiny_sam2(seed)
    model.save_pretrained(str(folder), safe_serialization=True)
    processor.save_pretrained(str(folder))
    return folder
