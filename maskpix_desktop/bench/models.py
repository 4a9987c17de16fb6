"""Random-weight models of the edit measurements: SD1.5-size IP2P parts, the tiny UNet."""

from __future__ import annotations

from typing import Any


def sd15_unet_config() -> dict[str, Any]:
    """Stable Diffusion 1.5's UNet with InstructPix2Pix's 8 input channels (random weights)."""
    return {
        "sample_size": 64,
        "in_channels": 8,
        "out_channels": 4,
        "layers_per_block": 2,
        "block_out_channels": (320, 640, 1280, 1280),
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


def tiny_unet_config() -> dict[str, Any]:
    """The tiny IP2P UNet (for exercising :func:`unet_speed` without a GPU)."""
    return {
        "sample_size": 32,
        "in_channels": 8,
        "out_channels": 4,
        "layers_per_block": 2,
        "block_out_channels": (32, 64),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 32,
    }


def sd15_vae_config() -> dict[str, Any]:
    """Stable Diffusion's ``AutoencoderKL`` (about 83.7M parameters)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }


def sd15_text_encoder_config() -> dict[str, Any]:
    """SD1.5's CLIP ViT-L/14 text encoder (``CLIPTextConfig`` keywords, about 123M parameters).

    The token ids are those of :func:`maskpix_desktop.testing.tiny_ip2p.write_clip_tokenizer`'s
    vocabulary (start 0, end 1, pad 2), which the 49408-entry embedding covers.
    """
    return {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
    }


def build_sd15_modules(device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """SD1.5-size IP2P ``unet``, ``vae`` and ``text_encoder`` with seeded random fp32 weights.

    Built under ``torch.device(device)``, so the parameters are created (and randomly initialised) on
    that device: on CUDA this takes seconds where a CPU build of ~1.07B parameters takes a minute;
    ``"meta"`` allocates nothing (parameter counts only).
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**sd15_unet_config())
        torch.manual_seed(seed)
        vae = AutoencoderKL(**sd15_vae_config())
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**sd15_text_encoder_config()))
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder.eval()}


def param_count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def build_bench_ip2p(device: str, dtype: Any, *, full_size: bool = True, seed: int = 0) -> Any:
    """A ``StableDiffusionInstructPix2PixPipeline`` on ``device`` in ``dtype`` with random weights.

    ``full_size``: SD1.5 shapes (:func:`build_sd15_modules`), the tiny pipeline's scheduler and
    tokenizer; otherwise the tiny test pipeline (:func:`build_tiny_ip2p`) moved to ``device``/``dtype``.
    """
    import torch
    from diffusers.utils import logging as diffusers_logging

    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    tiny = build_tiny_ip2p(seed=seed)
    if not full_size:
        parts = {name: getattr(tiny, name) for name in ("unet", "vae", "text_encoder")}
    else:
        parts = build_sd15_modules(device, seed=seed)
        vocab = len(tiny.tokenizer)
        if vocab > parts["text_encoder"].config.vocab_size:
            raise ValueError(f"tokenizer has {vocab} tokens, more than the text encoder's vocab_size")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # ModelMixin.to(dtype) warns of "[] modules kept in float32"
    try:
        with torch.no_grad():
            for name, module in parts.items():
                parts[name] = module.to(device=device, dtype=dtype).eval()
    finally:
        diffusers_logging.set_verbosity(verbosity)
    pipe = type(tiny)(
        unet=parts["unet"],
        scheduler=tiny.scheduler,
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=tiny.tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
