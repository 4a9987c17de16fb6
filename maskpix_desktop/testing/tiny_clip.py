"""A tiny random-weight open_clip model written to disk, loadable through ``ClipScorer.load`` offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_CLIP_NAME = "maskpix-tiny-clip"

# Same layout as open_clip's built-in configs; vocab_size matches the default SimpleTokenizer, whose
# BPE vocabulary ships inside the open_clip wheel, so tokenising needs no download.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_clip(out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write ``maskpix-tiny-clip.json`` and ``maskpix-tiny-clip.safetensors`` (about 7 MB) to ``out_dir``.

    Weights are drawn with ``torch.manual_seed(seed)`` inside a forked RNG, so the global torch RNG is
    untouched and the same seed always writes the same file. Returns the keyword arguments for
    ``ClipScorer.load`` (model_name, pretrained, config_path).
    """
    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / f"{TINY_CLIP_NAME}.json"
    weights_path = out / f"{TINY_CLIP_NAME}.safetensors"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2), encoding="utf-8")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**json.loads(json.dumps(TINY_CLIP_CONFIG)))
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path))
    return {"model_name": TINY_CLIP_NAME, "pretrained": str(weights_path), "config_path": str(config_path)}
