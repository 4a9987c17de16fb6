"""Segment Anything engine: safe checkpoint loading, per-image embedding cache, click-to-mask prediction.

Checkpoints are read with ``torch.load(weights_only=True)`` only; the architecture (vit_h / vit_l / vit_b
or a custom size such as the tiny test model) is inferred from the state dict's shapes and built with
``segment_anything.modeling`` exactly as ``segment_anything.build_sam._build_sam`` does. Predictions go
through the same steps as ``SamPredictor.predict`` and are bit-for-bit equal to it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from maskpix_desktop.core.errors import MissingWeightsError, OutOfMemoryError, WeightsError
from maskpix_desktop.core.images import image_hash

__all__ = [
    "OFFICIAL_CONFIGS",
    "SamConfig",
    "SegmentResult",
    "Segmenter",
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
        if "weights only load failed" in str(exc).lower():
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


@dataclass(frozen=True, eq=False)
class SegmentResult:
    """Candidate masks for one prompt set.

    masks: (K, H, W) bool at image size; scores: (K,) float32 predicted IoU;
    logits: (K, L, L) float32 low-res logits (L = 256 for official SAM) to feed back as ``mask_input``.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray

    @property
    def best(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.scores))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def mask(self, i: int | None = None) -> np.ndarray:
        """(H, W) bool mask of candidate ``i`` (default: best)."""
        return self.masks[self.best if i is None else i]

    def mask_input(self, i: int | None = None) -> np.ndarray:
        """(1, L, L) low-res logits of candidate ``i`` (default: best), ready for ``predict(mask_input=)``."""
        return self.logits[self.best if i is None else i][None]


@dataclass(frozen=True)
class _Embedding:
    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class Segmenter:
    """SAM with an LRU cache of image embeddings: encode once per image, decode per click.

    Not thread-safe; it belongs to the single model-service thread.
    """

    def __init__(self, sam: Sam, model_type: str, device: str | torch.device = "cpu", cache_size: int = 4):
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.model = sam.to(device).eval()
        self.model_type = model_type
        self.device = torch.device(device)
        self.cache_size = cache_size
        self.encoder_calls = 0
        self._predictor = SamPredictor(self.model)
        self._cache: OrderedDict[str, _Embedding] = OrderedDict()
        self._current: str | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        model_type: str | None = None,
        device: str | torch.device = "cpu",
        cache_size: int = 4,
    ) -> Segmenter:
        """Load a checkpoint with :func:`load_sam` and wrap it."""
        sam, detected = load_sam(path, model_type, device)
        return cls(sam, detected, device, cache_size)

    @property
    def low_res_size(self) -> int:
        """Side of ``SegmentResult.logits`` / ``mask_input`` (256 for the official models)."""
        return 4 * self.model.prompt_encoder.image_embedding_size[0]

    @property
    def has_image(self) -> bool:
        return self._current is not None

    @property
    def current_key(self) -> str | None:
        """Hash of the image currently set, or None."""
        return self._current

    def cached_keys(self) -> list[str]:
        """Hashes of the cached embeddings, least recently used first."""
        return list(self._cache)

    def clear_cache(self) -> None:
        """Forget every embedding (including the current image)."""
        self._cache.clear()
        self._predictor.reset_image()
        self._current = None

    @contextmanager
    def _oom_guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except torch.cuda.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemoryError(
                f"The GPU ran out of memory while {action} with SAM {self.model_type} on {self.device}. "
                "Close other GPU programs, use a smaller SAM model or switch to the CPU."
            ) from exc

    def set_image(self, image: np.ndarray) -> bool:
        """Make ``image`` (H, W, 3 uint8 RGB) current; True if it was encoded, False if served from cache."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("set_image expects an H x W x 3 uint8 RGB array")
        if image.dtype != np.uint8:
            raise ValueError(f"set_image expects uint8 pixels, got {image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError("set_image got an empty image")
        key = image_hash(image)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self._restore(cached)
            self._current = key
            return False
        self._current = None
        p = self._predictor
        with self._oom_guard("encoding the image"), torch.inference_mode():
            try:
                p.set_image(image)
            except BaseException:
                p.reset_image()
                raise
        self.encoder_calls += 1
        assert p.features is not None
        self._cache[key] = _Embedding(p.features, tuple(p.original_size), tuple(p.input_size))
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self._current = key
        return True

    def _restore(self, emb: _Embedding) -> None:
        p = self._predictor
        p.features = emb.features
        p.original_size = emb.original_size
        p.input_size = emb.input_size
        p.is_image_set = True

    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool | None = None,
    ) -> SegmentResult:
        """Masks for the current image from clicks (N x 2 xy pixels, labels 1/0), a box and/or logits.

        ``multimask=None`` returns 3 candidates for a lone point (no box, no mask_input), else 1.
        Equal bit for bit to ``SamPredictor.predict`` with the same prompts.
        """
        if self._current is None or not self._predictor.is_image_set:
            raise ValueError("No image set: call set_image() before predict().")
        pts, lbl, bx, mi = self._check_prompts(points, labels, box, mask_input)
        if multimask is None:
            multimask = pts is not None and len(pts) == 1 and bx is None and mi is None
        with self._oom_guard("predicting a mask"), torch.inference_mode():
            low_res, iou = self._predict_low_res(pts, lbl, bx, mi, multimask)
            masks = self._upscale(low_res)
            return SegmentResult(
                masks=masks.cpu().numpy(),
                scores=iou.cpu().numpy(),
                logits=low_res.cpu().numpy(),
            )

    def _check_prompts(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        pts = lbl = bx = mi = None
        if points is not None:
            pts = np.asarray(points)
            if pts.size == 0:
                pts = None
            elif pts.ndim != 2 or pts.shape[1] != 2:
                raise ValueError(f"points must be an N x 2 array of (x, y), got shape {pts.shape}")
        if pts is not None:
            if labels is None:
                raise ValueError("labels are required with points (1 = positive, 0 = negative)")
            lbl = np.asarray(labels)
            if lbl.shape != (len(pts),):
                raise ValueError(f"labels must have shape ({len(pts)},), got {lbl.shape}")
        if box is not None:
            bx = np.asarray(box)
            if bx.shape not in ((4,), (1, 4)):
                raise ValueError(f"box must be (x0, y0, x1, y1), got shape {bx.shape}")
            bx = bx.reshape(4)
        if mask_input is not None:
            mi = np.asarray(mask_input)
            side = self.low_res_size
            if mi.shape == (side, side):
                mi = mi[None]
            if mi.shape != (1, side, side):
                raise ValueError(f"mask_input must be 1 x {side} x {side} low-res logits, got {mi.shape}")
        if pts is None and bx is None and mi is None:
            raise ValueError("No prompt: give points, a box or mask_input.")
        return pts, lbl, bx, mi

    def _predict_low_res(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder only: (K, L, L) low-res logits and (K,) IoU scores; same maths as SamPredictor."""
        p, dev = self._predictor, self._predictor.device
        coords_t = labels_t = box_t = mask_t = None
        if points is not None:
            coords = p.transform.apply_coords(points, p.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=dev)[None, :, :]
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=dev)[None, :]
        if box is not None:
            boxes = p.transform.apply_boxes(box, p.original_size)
            box_t = torch.as_tensor(boxes, dtype=torch.float, device=dev)[None, :]
        if mask_input is not None:
            mask_t = torch.as_tensor(mask_input, dtype=torch.float, device=dev)[None, :, :, :]
        sparse, dense = self.model.prompt_encoder(
            points=(coords_t, labels_t) if coords_t is not None else None, boxes=box_t, masks=mask_t
        )
        low_res, iou = self.model.mask_decoder(
            image_embeddings=p.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return low_res[0], iou[0]

    def _upscale(self, low_res: torch.Tensor) -> torch.Tensor:
        """(K, L, L) logits -> (K, H, W) bool masks at the original image size."""
        p = self._predictor
        up = self.model.postprocess_masks(low_res[None], p.input_size, p.original_size)[0]
        return up > self.model.mask_threshold
