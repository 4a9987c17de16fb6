"""A tiny random-weight Qwen-Image-Edit pipeline (or its Plus variant) saved as a diffusers folder, offline.

The transformer, scheduler and Qwen2.5-VL text encoder follow diffusers' own test components
(tests/pipelines/qwenimage/test_qwenimage_edit.py), changed so a run takes about a second on a CPU: one
transformer layer; a VAE that downsamples 16x with no residual blocks (the pipeline always encodes its
condition image at about 1 MP: ~1000 condition tokens instead of ~16000, no convolution stack at full
resolution); a vision processor capped at 112x112 pixels. The byte-level BPE tokenizer (the CLIP byte
alphabet of tiny_ip2p plus Qwen's chat and vision special tokens) and the Qwen2-VL processor are written
locally, so nothing is downloaded; the text encoder's token ids are set to this tokenizer's.
"""

from __future__ import annotations

import json
from pathlib import Path

from maskpix_desktop.testing.tiny_ip2p import _bytes_to_unicode

#: Qwen's chat and vision tokens, in the order they get ids after the byte alphabet.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
Z_DIM = 4


def write_qwen_tokenizer(folder: Path) -> Path:
    """Write a minimal Qwen2 byte-level BPE tokenizer (vocab.json, merges.txt, config) into ``folder``."""
    from transformers import Qwen2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    pairs = (("t", "h"), ("th", "e"), ("a", "n"), ("i", "n"), ("Ġ", "t"))
    for a, b in pairs:
        vocab.setdefault(a + b, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in pairs) + "\n")
    tok = Qwen2Tokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tok.save_pretrained(folder)
    return folder


def build_tiny_qwen_edit(seed: int = 0, *, plus: bool = False):
    """Return a tiny random-weight ``QwenImageEditPipeline`` (``plus``: ``QwenImageEditPlusPipeline``) on
    CPU (float32)."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * Z_DIM,
        out_channels=Z_DIM,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=Z_DIM,
        dim_mult=[1, 1, 1, 1, 1],
        num_res_blocks=0,  # the encoder runs at ~1 MP (see above): no full-resolution residual blocks
        temperal_downsample=[False, True, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.8, 1.2, 1.0],
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = Qwen2Tokenizer.from_pretrained(write_qwen_tokenizer(Path(tmp) / "tok"))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
            "bos_token_id": None,
            "eos_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        hidden_size=16,
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=ids["<|endoftext|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )
    pipe_cls = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    pipe = pipe_cls(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_qwen_edit(folder: str | Path, seed: int = 0, *, plus: bool = False) -> Path:
    """Build the tiny pipeline and save it as a diffusers folder (safetensors); return the folder."""
    folder = Path(folder)
    build_tiny_qwen_edit(seed, plus=plus).save_pretrained(folder, safe_serialization=True)
    return folder
