"""A tiny random-weight FLUX.1 Kontext pipeline saved in diffusers folder format (offline, ~1 s runs).

The transformer, CLIP text encoder and scheduler follow diffusers' own test components
(tests/pipelines/flux/test_pipeline_flux_kontext.py); the VAE has four blocks like the real one (latents 8x
smaller, so images must be multiples of 16), and the CLIP and T5 tokenizers are written locally (CLIP: the
byte-level vocabulary of tiny_ip2p; T5: a Unigram vocabulary of printable ASCII), so nothing is downloaded.
"""

from __future__ import annotations

import string
from pathlib import Path

from maskpix_desktop.testing.tiny_ip2p import write_clip_tokenizer

#: Latent channels of the tiny VAE; the transformer sees them packed 2x2 (``in_channels = 4 * this``).
LATENT_CHANNELS = 4


def write_t5_tokenizer(folder: Path) -> Path:
    """Write a minimal T5 (Unigram) tokenizer into ``folder``: pad 0, eos 1, unk 2, then one piece per
    printable ASCII character and its word-initial ``▁`` form."""
    from transformers import T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if not c.isspace()]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + c, -1.0) for c in chars] + [(c, -1.5) for c in chars]
    T5Tokenizer(vocab=pieces, extra_ids=0).save_pretrained(folder)
    return folder


def build_tiny_kontext(seed: int = 0):
    """Return a tiny random-weight ``FluxKontextPipeline`` on CPU (float32)."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        T5Config,
        T5EncoderModel,
        T5Tokenizer,
    )

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,  # FLUX.1 Kontext [dev] is guidance-distilled: guidance_scale is an input
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
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
    )
    torch.manual_seed(seed)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=256,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "clip"))
        tokenizer_2 = T5Tokenizer.from_pretrained(write_t5_tokenizer(Path(tmp) / "t5"))
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
        image_encoder=None,
        feature_extractor=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_kontext(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny Kontext pipeline and save it as a diffusers folder (safetensors); return the folder."""
    folder = Path(folder)
    build_tiny_kontext(seed).save_pretrained(folder, safe_serialization=True)
    return folder
