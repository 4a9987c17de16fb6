"""A tiny random-weight DINO-style ViT (transformers ``ViTModel`` folder), loadable by ``DinoScorer.load``.

Patch 8 like DINO ViT-B/8 (``dino_vitb8``) at its native 224 px (28 x 28 patches), 2 blocks, 2 heads,
hidden size 16; ``patch_size=16`` gives the ViT-S/16 layout (MagicBrush). 224 px inputs need no position
embedding interpolation, as with the real models.
"""

from __future__ import annotations

from pathlib import Path

TINY_DINO_CONFIG = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "image_size": 224,
    "patch_size": 8,
    "num_channels": 3,
    "qkv_bias": True,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
}


def build_tiny_dino(out_dir: str | Path, seed: int = 0, **overrides: int) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of a random ViT to ``out_dir``; returns the folder.

    Weights come from ``torch.manual_seed(seed)`` in a forked RNG (the global RNG is untouched); biases
    and position embeddings are drawn too, so every parameter matters to the tests.
    """
    import torch
    from transformers import ViTConfig, ViTModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(ViTConfig(**{**TINY_DINO_CONFIG, **overrides}), add_pooling_layer=False)
        with torch.no_grad():
            for name, p in model.named_parameters():
                norm_scale = "layernorm" in name and name.endswith("weight")
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if norm_scale else 0.0))
    model.save_pretrained(str(out), safe_serialization=True)
    return out
