"""SAM checkpoints: the architecture read from a state dict, safe loading, building from a config.

Checkpoints are read with ``torch.load(weights_only=True)`` only; the architecture (vit_h / vit_l / vit_b
or a custom size such as the tiny test model) is inferred from the state dict's shapes and built with
``segment_anything.modeling`` exactly as ``segment_anything.build_sam._build_sam`` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from maskpix_desktop.core.errors import MissingWeightsError, WeightsError

__all__ = [
    "CUSTOM",
    "OFFICIAL_CONFIGS",
    "SamConfig",
    "build_sam_from_config",
    "detect_model_type",
    "infer_config",
    "load_sam",
]

_PIXEL_MEAN = (123.675, 116.28, 103.53)
_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamConfig:
    """Every hyperparameter of a SAM model; defaults are the official values shared by vit_h/l/b.

    ``decoder_num_heads`` cannot be read from a state dict (head count changes no shape), so inferred
    configs always use the official 8. The low-res mask size is ``4 * image_size / patch_size`` (256 for
    the official 1024 input).
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    image_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    encoder_mlp_ratio: float = 4.0
    qkv_bias: bool = True
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    decoder_attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the low-res mask logits and of ``mask_input`` (256 for the official models)."""
        return 4 * self.embedding_size


OFFICIAL_CONFIGS: dict[str, SamConfig] = {
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
}
_ALIASES = {"default": "vit_h"}
CUSTOM = "custom"


def build_sam_from_config(cfg: SamConfig, device: str | torch.device | None = None) -> Sam:
    """Build an (untrained) SAM from ``cfg``; mirrors ``segment_anything.build_sam._build_sam``.

    ``device="meta"`` builds the structure without allocating or initialising weights.
    """
    grid = cfg.embedding_size
    with torch.device(device) if device is not None else nullcontext():
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=cfg.encoder_depth,
                embed_dim=cfg.encoder_embed_dim,
                img_size=cfg.image_size,
                mlp_ratio=cfg.encoder_mlp_ratio,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=cfg.encoder_num_heads,
                patch_size=cfg.patch_size,
                in_chans=cfg.in_chans,
                qkv_bias=cfg.qkv_bias,
                use_rel_pos=True,
                global_attn_indexes=list(cfg.encoder_global_attn_indexes),
                window_size=cfg.window_size,
                out_chans=cfg.prompt_embed_dim,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=cfg.prompt_embed_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(cfg.image_size, cfg.image_size),
                mask_in_chans=cfg.mask_in_chans,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=cfg.num_multimask_outputs,
                transformer=TwoWayTransformer(
                    depth=cfg.decoder_depth,
                    embedding_dim=cfg.prompt_embed_dim,
                    mlp_dim=cfg.decoder_mlp_dim,
                    num_heads=cfg.decoder_num_heads,
                    attention_downsample_rate=cfg.decoder_attention_downsample_rate,
                ),
                transformer_dim=cfg.prompt_embed_dim,
                iou_head_depth=cfg.iou_head_depth,
                iou_head_hidden_dim=cfg.iou_head_hidden_dim,
            ),
            pixel_mean=list(_PIXEL_MEAN),
            pixel_std=list(_PIXEL_STD),
        )
    sam.eval()
    return sam


def _indices(sd: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _count(sd: Mapping[str, torch.Tensor], pattern: str, what: str) -> int:
    found = _indices(sd, pattern)
    if not found or found != list(range(len(found))):
        raise WeightsError(f"Not a usable SAM checkpoint: cannot count the {what}.")
    return len(found)


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> SamConfig:
    """Read the architecture of a SAM state dict from its tensor shapes.

    Works on meta-device tensors too. Raises WeightsError when the dict is not a SAM state dict.
    """
    sd = state_dict

    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise WeightsError(f"Not a SAM checkpoint: the weights lack '{key}'.")
        return tuple(sd[key].shape)

    enc = "image_encoder."
    embed_dim, in_chans, patch, _ = shape(enc + "patch_embed.proj.weight")
    grid = shape(enc + "pos_embed")[1]
    depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.", "image encoder blocks")
    rel_len, head_dim = shape(enc + "blocks.0.attn.rel_pos_h")
    if head_dim == 0 or embed_dim % head_dim:
        raise WeightsError("Not a usable SAM checkpoint: the attention head size does not divide the width.")
    global_idx: list[int] = []
    windows: set[int] = set()
    for i in range(depth):
        rel_len = shape(f"{enc}blocks.{i}.attn.rel_pos_h")[0]
        if rel_len == 2 * grid - 1:
            global_idx.append(i)
        else:
            windows.add((rel_len + 1) // 2)
    if len(windows) > 1:
        raise WeightsError(f"Not a usable SAM checkpoint: mixed attention window sizes {sorted(windows)}.")
    dec = "mask_decoder."
    prompt_dim = shape(dec + "iou_token.weight")[1]
    downsampled = shape(dec + "transformer.final_attn_token_to_image.q_proj.weight")[0]
    return SamConfig(
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=embed_dim // head_dim,
        encoder_global_attn_indexes=tuple(global_idx),
        window_size=windows.pop() if windows else 0,
        image_size=grid * patch,
        patch_size=patch,
        in_chans=in_chans,
        encoder_mlp_ratio=shape(enc + "blocks.0.mlp.lin1.weight")[0] / embed_dim,
        qkv_bias=enc + "blocks.0.attn.qkv.bias" in sd,
        prompt_embed_dim=shape(enc + "neck.0.weight")[0],
        mask_in_chans=shape("prompt_encoder.mask_downscaling.3.weight")[0],
        decoder_depth=_count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\.", "mask decoder layers"),
        decoder_mlp_dim=shape(dec + "transformer.layers.0.mlp.lin1.weight")[0],
        decoder_attention_downsample_rate=max(1, prompt_dim // max(1, downsampled)),
        num_multimask_outputs=shape(dec + "mask_tokens.weight")[0] - 1,
        iou_head_depth=_count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.weight", "IoU layers"),
        iou_head_hidden_dim=shape(dec + "iou_prediction_head.layers.0.weight")[0],
    )


def detect_model_type(cfg: SamConfig) -> str:
    """'vit_h' / 'vit_l' / 'vit_b' from encoder width and depth, else 'custom'."""
    for name, official in OFFICIAL_CONFIGS.items():
        if (cfg.encoder_embed_dim, cfg.encoder_depth) == (official.encoder_embed_dim, official.encoder_depth):
            return name
    return CUSTOM


def _describe(model_type: str, cfg: SamConfig) -> str:
    if model_type == CUSTOM:
        return f"custom SAM (width {cfg.encoder_embed_dim}, depth {cfg.encoder_depth})"
    return model_type


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True; every failure becomes a WeightsError naming the file."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure means the file is unusable
        # torch says "weights only load failed" for any pickle stream it refuses, text files included:
        # only a file that is a pickle (protocol byte 0x80) or a torch zip holds refused objects.
        try:
            with open(path, "rb") as fh:
                head = fh.read(2)
        except OSError:
            head = b""
        pickled = head in (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
        if pickled and "weights only load failed" in str(exc).lower():
            reason = "it holds pickled code or objects other than tensors, which are refused for safety"
        else:
            reason = f"it is corrupt, truncated or not a PyTorch weights file ({type(exc).__name__})"
        raise WeightsError(f"Cannot load SAM weights from '{path}': {reason}.") from exc
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise WeightsError(f"Cannot load SAM weights from '{path}': it holds no state dict of tensors.")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_sam(
    path: str | Path, model_type: str | None = None, device: str | torch.device = "cpu"
) -> tuple[Sam, str]:
    """Load a SAM checkpoint safely; return the model (eval mode, on ``device``) and its detected type.

    ``model_type`` ('vit_h' / 'vit_l' / 'vit_b' / 'custom', or None to accept whatever the file holds)
    must match the file. Raises MissingWeightsError if the file is absent, WeightsError if it is
    unusable (corrupt, unsafe pickle, not SAM, wrong architecture).
    """
    p = Path(path)
    model_type = _ALIASES.get(model_type, model_type) if model_type is not None else None
    if not p.exists():
        raise MissingWeightsError(f"sam_{model_type or 'vit_h'}", p)
    sd = _read_state_dict(p)
    try:
        cfg = infer_config(sd)
    except WeightsError as exc:
        raise WeightsError(f"'{p.name}': {exc}") from exc
    except (ValueError, IndexError, ZeroDivisionError) as exc:  # tensors of unexpected rank
        raise WeightsError(f"'{p.name}' is not a usable SAM checkpoint: {exc}") from exc
    detected = detect_model_type(cfg)
    if model_type is not None and model_type != detected:
        hint = f"pick a {model_type} file"
        if detected != CUSTOM:
            hint = f"choose {detected} or {hint}"
        raise WeightsError(
            f"'{p.name}' holds {_describe(detected, cfg)} weights but {model_type} was chosen; {hint}."
        )
    # Keep float32 (the model's dtype) whatever the file stores, then assign the tensors into a
    # structure built on the meta device: no random init, no second copy of the weights.
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    try:
        sam = build_sam_from_config(cfg, device="meta")
        sam.load_state_dict(sd, strict=True, assign=True)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise WeightsError(f"'{p.name}' does not match the SAM architecture it appears to be: {exc}") from exc
    leftover = [n for n, t in [*sam.named_parameters(), *sam.named_buffers()] if t.is_meta]
    if leftover:
        raise WeightsError(f"'{p.name}' is missing weights for: {', '.join(leftover[:5])}.")
    sam.to(device)
    sam.eval()
    return sam, detected
