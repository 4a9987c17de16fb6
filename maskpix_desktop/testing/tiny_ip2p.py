"""A tiny random-weight InstructPix2Pix pipeline saved in diffusers folder format (offline, ~1 s runs).

The configuration follows diffusers' own IP2P test components; the CLIP tokenizer vocabulary is written
locally (byte-level alphabet, no merges), so nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def word_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """BPE merges that make each lower-case ASCII word one token (``word</w>``), left to right; longer words'
    merges rank first, so a short word's pair ("r e" of "red") does not split a longer one ("green")."""
    pairs: list[tuple[str, str]] = []
    for word in sorted(set(words), key=lambda w: (-len(w), w)):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            if (left, right) not in pairs:
                pairs.append((left, right))
            left += right
    return pairs


def write_clip_tokenizer(folder: Path, model_max_length: int = 77, words: tuple[str, ...] = ()) -> Path:
    """Write a minimal CLIP BPE tokenizer (vocab.json, merges.txt, configs) into ``folder``.

    ``words``: whole words that become single tokens (as real CLIP's vocabulary has for common words);
    their merges rank first. Without them the vocabulary is the byte alphabet plus five merges."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + chars + [c + "</w>" for c in chars]
    vocab: dict[str, int] = {}
    for tok in tokens:
        vocab.setdefault(tok, len(vocab))
    base = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("r", "e"), ("e", "d</w>")]
    pairs = word_merges(words)
    pairs += [p for p in base if p not in pairs]
    merges = ["#version: 0.2"] + [f"{a} {b}" for a, b in pairs]
    for a, b in pairs:
        vocab.setdefault(a + b, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "!",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}),
        encoding="utf-8",
    )
    return folder


def build_tiny_ip2p(seed: int = 0):
    """Return a tiny random-weight ``StableDiffusionInstructPix2PixPipeline`` on CPU (float32)."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    torch.manual_seed(seed)
    # Four blocks like Stable Diffusion's VAE, so images map to latents 8x smaller (vae_scale_factor 8).
    vae = AutoencoderKL(
        block_out_channels=[8, 16, 16, 16],
        layers_per_block=1,
        norm_num_groups=8,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
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
    )
    text_encoder = CLIPTextModel(text_config)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp)))
    pipe = StableDiffusionInstructPix2PixPipeline(
        unet=unet,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_ip2p(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and save it as a diffusers folder (safetensors); return the folder."""
    folder = Path(folder)
    build_tiny_ip2p(seed).save_pretrained(folder, safe_serialization=True)
    return folder
