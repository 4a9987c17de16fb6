"""A tiny random-weight SDXL InstructPix2Pix pipeline saved in diffusers folder format (offline, ~1 s runs).

The UNet, scheduler and text encoders follow diffusers' own test components
(tests/pipelines/stable_diffusion_xl/test_stable_diffusion_xl_instruction_pix2pix.py); the VAE has four
blocks like the real one (latents 8x smaller) and both CLIP tokenizers are written locally, so nothing is
downloaded.
"""

from __future__ import annotations

from pathlib import Path

from maskpix_desktop.testing.tiny_ip2p import write_clip_tokenizer


def build_tiny_ip2p_xl(seed: int = 0, width_2: int = 32):
    """Return a tiny random-weight ``StableDiffusionXLInstructPix2PixPipeline`` on CPU (float32).

    ``width_2``: the second text encoder's width (32 like the first by default; a single-file checkpoint
    needs another width, since diffusers tells the two encoders apart by it)."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=48 + width_2,  # 6 time ids * 8 + pooled text
        cross_attention_dim=32 + width_2,  # both encoders' hidden states, concatenated
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[8, 16, 16, 16],
        layers_per_block=1,
        norm_num_groups=8,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        sample_size=128,
    )
    torch.manual_seed(seed)
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        pad_token_id=2,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=32,
    )
    text_encoder = CLIPTextModel(text_config)
    text_config_2 = (
        text_config
        if width_2 == 32
        else CLIPTextConfig(**{**text_config.to_dict(), "hidden_size": width_2, "projection_dim": width_2})
    )
    text_encoder_2 = CLIPTextModelWithProjection(text_config_2)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "t1"))
        tokenizer_2 = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "t2"))
    pipe = StableDiffusionXLInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_ip2p_xl(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny SDXL pipeline and save it as a diffusers folder (safetensors); return the folder."""
    folder = Path(folder)
    build_tiny_ip2p_xl(seed).save_pretrained(folder, safe_serialization=True)
    return folder
