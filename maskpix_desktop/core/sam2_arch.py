"""SAM 2 architectures: the official hiera sizes as transformers configs, and detection from the weights.

SAM 2 is used through transformers' ``Sam2Model`` (Hugging Face format: a folder with ``config.json`` and
``model.safetensors``). The size (tiny / small / base+ / large) is read from the weights' shapes, never
from the folder name: the hiera width (patch embedding rows) and the number of hiera blocks. The same
key names tell SAM 1 (segment_anything ``.pth``) from SAM 2, and recognise the official ``sam2``
package's ``.pt`` checkpoints, which MaskPix does not read (see :func:`explain_official_sam2`).
No torch or transformers at import time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import WeightsError

__all__ = [
    "SAM2_SIZES",
    "detect_family",
    "detect_sam2_type",
    "explain_official_sam2",
    "sam2_config",
    "sam2_folder",
]

#: Official hiera sizes (sam2 package configs sam2.1_hiera_{t,s,b+,l}.yaml): width, heads, blocks per
#: stage, global-attention blocks, window sizes per stage, background size of the windowed pos-embedding.
SAM2_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(width=96, heads=1, stages=(1, 2, 7, 2), glob=(5, 7, 9), windows=(8, 4, 14, 7), bkg=7),
    "small": dict(width=96, heads=1, stages=(1, 2, 11, 2), glob=(7, 10, 13), windows=(8, 4, 14, 7), bkg=7),
    "base_plus": dict(
        width=112, heads=2, stages=(2, 3, 16, 3), glob=(12, 16, 20), windows=(8, 4, 14, 7), bkg=14
    ),
    "large": dict(width=144, heads=2, stages=(2, 6, 36, 4), glob=(23, 33, 43), windows=(8, 4, 16, 8), bkg=7),
}
CUSTOM = "custom"
#: config.json model types whose weights Sam2Model reads: a ``sam2_video`` checkpoint (image and memory
#: modules) loads too, Sam2Model takes its image part (checked on a tiny model,
#: tests/core/test_sam2_segmenter.py).
SAM2_MODEL_TYPES = ("sam2", "sam2_video")

_SAM2_PATCH = "vision_encoder.backbone.patch_embed.projection.weight"
_SAM2_BLOCK = "vision_encoder.backbone.blocks."
_OFFICIAL_SAM2_PATCH = "image_encoder.trunk.patch_embed.proj.weight"
_SAM1_PATCH = ("image_encoder.patch_embed.proj.weight", "vision_encoder.patch_embed.projection.weight")


def sam2_config(size: str) -> Any:
    """The transformers ``Sam2Config`` of an official size ('tiny', 'small', 'base_plus', 'large')."""
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2VisionConfig

    s = SAM2_SIZES[size]
    widths = [s["width"] * 2**i for i in range(4)]
    backbone = Sam2HieraDetConfig(
        hidden_size=s["width"],
        num_attention_heads=s["heads"],
        blocks_per_stage=list(s["stages"]),
        embed_dim_per_stage=widths,
        num_attention_heads_per_stage=[s["heads"] * 2**i for i in range(4)],
        window_size_per_stage=list(s["windows"]),
        global_attention_blocks=list(s["glob"]),
        window_positional_embedding_background_size=[s["bkg"], s["bkg"]],
    )
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=widths[::-1])
    return Sam2Config(vision_config=vision)


def detect_family(keys: Iterable[str]) -> str | None:
    """'sam2' (transformers Sam2Model), 'sam2_official' (the sam2 package's .pt), 'sam1', or None."""
    names = set(keys)
    if _SAM2_PATCH in names:
        return "sam2"
    if _OFFICIAL_SAM2_PATCH in names:
        return "sam2_official"
    if any(k in names for k in _SAM1_PATCH):
        return "sam1"
    return None


def detect_sam2_type(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """'sam2_hiera_tiny' / '_small' / '_base_plus' / '_large' from the weights' shapes, else 'custom'.

    ``shapes`` maps state-dict keys of a transformers ``Sam2Model`` to tensor shapes. WeightsError when
    they are not SAM 2 weights.
    """
    if detect_family(shapes) != "sam2":
        raise WeightsError(f"Not SAM 2 weights: they lack '{_SAM2_PATCH}'.")
    width = int(shapes[_SAM2_PATCH][0])
    blocks = {int(k[len(_SAM2_BLOCK) :].split(".", 1)[0]) for k in shapes if k.startswith(_SAM2_BLOCK)}
    for name, s in SAM2_SIZES.items():
        if (width, len(blocks)) == (s["width"], sum(s["stages"])):
            return f"sam2_hiera_{name}"
    return CUSTOM


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a safetensors file, read from its header only (no tensor is loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # any reader failure means the file is unusable
        raise WeightsError(f"Cannot read '{path}': not a valid safetensors file ({exc}).") from exc


def sam2_folder(path: str | Path) -> Path | None:
    """The SAM 2 Hugging Face folder ``path`` names (the folder, or its ``model.safetensors`` /
    ``config.json``), or None when it is not one (its config.json's ``model_type`` is not SAM 2's)."""
    p = Path(path).expanduser()
    folder = p if p.is_dir() else p.parent if p.name in ("model.safetensors", "config.json") else None
    if folder is None:
        return None
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("model_type") in SAM2_MODEL_TYPES
    return folder if ok else None


def explain_official_sam2(path: str | Path) -> str | None:
    """A user message when ``path`` is an official ``sam2`` package checkpoint (.pt), else None.

    Reads the key names only (``torch.load(weights_only=True, mmap=True)``); any failure means "no".
    """
    import torch

    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a readable torch file: the caller's own error stands
        return None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or detect_family(k for k in obj if isinstance(k, str)) != "sam2_official":
        return None
    return (
        f"'{Path(path).name}' is an official SAM 2 checkpoint (the sam2 package's .pt format), which MaskPix "
        "does not read. Use the Hugging Face format instead: 'maskpix-cli models download "
        "sam2.1_hiera_tiny' (or _small, _base_plus, _large), or a folder holding config.json and "
        "model.safetensors from the facebook/sam2.1-hiera-* repositories."
    )
