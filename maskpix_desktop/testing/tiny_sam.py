"""A tiny random-weight SAM (milliseconds on CPU) built through the same builder as real checkpoints.

With the defaults the input is 64 px, the image embedding is 4 x 4 and the low-res logits / mask_input
are 16 x 16 (always 4 x the embedding grid), not SAM's 256 x 256.
"""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything.modeling import Sam

from maskpix_desktop.core.segmenter import SamConfig, build_sam_from_config


def tiny_config(
    img_size: int = 64,
    embed_dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    window: int = 2,
    global_attn: tuple[int, ...] = (1,),
    prompt_dim: int = 32,
    decoder_mlp_dim: int = 64,
) -> SamConfig:
    """SamConfig of the tiny model; the decoder keeps SAM's 8 heads (a state dict cannot tell heads)."""
    return SamConfig(
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=num_heads,
        encoder_global_attn_indexes=tuple(global_attn),
        window_size=window,
        image_size=img_size,
        patch_size=16,
        prompt_embed_dim=prompt_dim,
        mask_in_chans=4,
        decoder_depth=2,
        decoder_mlp_dim=decoder_mlp_dim,
        iou_head_hidden_dim=prompt_dim,
    )


def build_tiny_sam(seed: int = 0, **kw: object) -> Sam:
    """Tiny SAM with seeded random weights (the global torch RNG is left untouched).

    Keyword arguments go to :func:`tiny_config` (img_size, embed_dim, depth, num_heads, window,
    global_attn, prompt_dim, decoder_mlp_dim).
    """
    cfg = tiny_config(**kw)  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam_from_config(cfg)
        # SAM zero-initialises relative positions; give them values so they are exercised too.
        with torch.no_grad():
            for name, param in sam.named_parameters():
                if "rel_pos" in name:
                    param.normal_(0.0, 0.02)
    return sam.eval()


def save_tiny_sam(path: str | Path, seed: int = 0, **kw: object) -> Path:
    """Write a tiny SAM state dict with ``torch.save``; return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_tiny_sam(seed, **kw).state_dict(), p)
    return p
