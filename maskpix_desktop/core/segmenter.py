"""Segment Anything engine: safe checkpoint loading, per-image embedding cache, click-to-mask prediction.

Checkpoints are read with ``torch.load(weights_only=True)`` only; the architecture (vit_h / vit_l / vit_b
or a custom size such as the tiny test model) is inferred from the state dict's shapes and built with
``segment_anything.modeling`` exactly as ``segment_anything.build_sam._build_sam`` does. Predictions go
through the same steps as ``SamPredictor.predict``.

Speed (see docs/PERFORMANCE.md): the mask decoder re-uses, per image, the work that does not depend on
the prompts (the dense positional encoding and the first transformer layer's projections of the image
tokens), and full-size masks are produced lazily: ``predict`` upsamples only the best candidate on the
CPU, the others when asked for. By default the decoder runs re-associated (:mod:`.sam_decoder`: fewer
FLOPs, results equal to float32 rounding); ``decoder="exact"`` runs the same kernels as SamPredictor
and is bit-for-bit equal to it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import FrozenInstanceError, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

from maskpix_desktop.core.errors import MissingWeightsError, OutOfMemoryError, WeightsError
from maskpix_desktop.core.images import image_hash
from maskpix_desktop.core.masks import resize_logits
from maskpix_desktop.core.sam_decoder import FirstLayer, decode_fast, fast_decoder_supported, image_rows

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

log = logging.getLogger(__name__)

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


class _Upscaler:
    """Low-res logits -> full-size bool masks, exactly as ``Sam.postprocess_masks`` + threshold does.

    ``postprocess_masks`` resizes all K candidates to the encoder input size (cheap), crops, then resizes
    to the image size (the cost: K x H x W). Here the first resize runs once for all K candidates, as
    SamPredictor runs it, and the second one per candidate, on demand. On the CPU PyTorch's bilinear
    kernel may pick a different code path (and so round differently) for one channel than for K, so a
    one-candidate resize is used only when :func:`_single_channel_exact` has checked that it gives the
    same bits as the K-channel resize; otherwise the first request resizes all K at once.

    With ``exact=False`` (the fast decoder's results, which are not bit-exact anyway) a candidate is
    resized on its own through both steps: the same arithmetic per pixel, a K-th of the first resize.
    """

    def __init__(
        self,
        model: Sam,
        low_res: torch.Tensor,
        input_size: tuple[int, int],
        size: tuple[int, int],
        *,
        exact: bool = True,
        crop: tuple[int, int] | None = None,
    ):
        # No reference to the model: a result kept by the GUI must not keep unloaded weights alive.
        self._img_size = int(model.image_encoder.img_size)
        self._low_res = low_res  # (K, L, L) on the model's device
        self._input_size = input_size
        self._size = size
        self._threshold = float(model.mask_threshold)
        self._mid: torch.Tensor | None = None
        self._lock = threading.Lock()
        # Decided here, on the thread (and at the thread count) where predict ran, as SamPredictor would.
        h, w = size
        self._exact = exact
        self._crop = None if crop is None or tuple(crop) == tuple(size) else tuple(crop)
        self._single = not exact or (
            low_res.device.type == "cpu"
            and h + w > _SMALL_OUTPUT
            and _single_channel_exact(self.count, torch.get_num_threads())
        )

    @property
    def count(self) -> int:
        return int(self._low_res.shape[0])

    def _first_resize(self, i: int | None = None) -> torch.Tensor:
        """``postprocess_masks``' resize of all K candidates (or of candidate ``i``) to the encoder input,
        then its crop."""
        img = self._img_size
        low = self._low_res if i is None else self._low_res[i : i + 1]
        mid = F.interpolate(low[None], (img, img), mode="bilinear", align_corners=False)
        return mid[..., : self._input_size[0], : self._input_size[1]]

    def all(self) -> np.ndarray:
        """(K, H, W) bool: every candidate in one go, the calls of ``Sam.postprocess_masks`` + threshold."""
        with self._lock, torch.inference_mode():
            mid = self._mid if self._mid is not None else self._first_resize()
            up = F.interpolate(mid, self._size, mode="bilinear", align_corners=False)[0]
            return self._cropped((up > self._threshold).cpu().numpy())

    def _cropped(self, masks: np.ndarray) -> np.ndarray:
        """Masks of a padded thin image (see ``_pad_thin``) cut back to the caller's image size."""
        if self._crop is None:
            return masks
        h, w = self._crop
        return np.ascontiguousarray(masks[..., :h, :w])

    def single_exact(self) -> bool:
        """True when one candidate can be resized on its own (with ``exact``: identical to the K-way resize).

        A one-channel resize always takes PyTorch's generic kernel, whose per-pixel arithmetic does not
        depend on the thread count, so ``one`` may run later on another thread (the GUI's).
        """
        return self._single

    def one(self, i: int) -> np.ndarray:
        """(H, W) bool mask of candidate ``i``; the caller checked :meth:`single_exact`."""
        with self._lock, torch.inference_mode():
            if not self._exact:
                mid = self._first_resize(i)
                if mid.device.type == "cpu":  # OpenCV's bilinear: same maths, ~3x faster at 4000x3000
                    up = resize_logits(mid[0, 0].numpy(), self._size)
                    return self._cropped(up > self._threshold)
            else:
                if self._mid is None:
                    self._mid = self._first_resize()
                mid = self._mid[:, i : i + 1]
            up = F.interpolate(mid, self._size, mode="bilinear", align_corners=False)
            return self._cropped((up[0, 0] > self._threshold).cpu().numpy())


# PyTorch's CPU bilinear kernel takes a vectorised path for small outputs (height + width <= 128); such
# masks are cheap, so they always go through the K-channel resize.
_SMALL_OUTPUT = 160
_SINGLE_EXACT: dict[tuple[int, int], bool] = {}


def _single_channel_exact(k: int, threads: int) -> bool:
    """Does resizing channel j alone give the same bits as resizing all ``k`` channels together?

    Checked once per (k, thread count) on random data shaped like SAM's second resize (a cropped view,
    an output well above the small-output threshold). With one thread and k == 3, PyTorch uses its
    channels-last kernel, which rounds differently from the generic kernel used for one channel.
    """
    key = (k, threads)
    if key not in _SINGLE_EXACT:
        gen = torch.Generator().manual_seed(1234)
        big = torch.randn((1, k, 72, 96), generator=gen) * 4
        mid = big[..., :61, :89]
        with torch.inference_mode():
            ref = F.interpolate(mid, (233, 347), mode="bilinear", align_corners=False)
            same = all(
                torch.equal(
                    F.interpolate(mid[:, j : j + 1], (233, 347), mode="bilinear", align_corners=False)[:, 0],
                    ref[:, j],
                )
                for j in range(k)
            )
        _SINGLE_EXACT[key] = same
    return _SINGLE_EXACT[key]


class SegmentResult:
    """Candidate masks for one prompt set (immutable).

    masks: (K, H, W) bool at image size; scores: (K,) float32 predicted IoU;
    logits: (K, L, L) float32 low-res logits (L = 256 for official SAM) to feed back as ``mask_input``.

    Built by :meth:`Segmenter.predict` the full-size masks are computed lazily: ``mask(i)`` computes
    (and keeps) only candidate ``i``; ``masks`` computes every candidate. Either way the masks are the
    same (with ``decoder="exact"`` bit for bit ``SamPredictor.predict``'s). A result may also be built from
    ready arrays: ``SegmentResult(m, s, l)``.
    """

    __slots__ = ("scores", "logits", "_masks", "_one", "_source", "_lock")

    def __init__(
        self,
        masks: np.ndarray | None,
        scores: np.ndarray,
        logits: np.ndarray,
        *,
        source: _Upscaler | None = None,
    ):
        if masks is None and source is None:
            raise ValueError("SegmentResult needs masks or a source to compute them from")
        setter = object.__setattr__
        setter(self, "scores", scores)
        setter(self, "logits", logits)
        setter(self, "_masks", masks)
        setter(self, "_one", {})
        setter(self, "_source", source)
        setter(self, "_lock", threading.Lock())

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field '{name}'")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field '{name}'")

    def __repr__(self) -> str:
        return f"SegmentResult(candidates={len(self)}, scores={np.asarray(self.scores).tolist()})"

    @property
    def masks(self) -> np.ndarray:
        """(K, H, W) bool masks of every candidate (computed on first access, then kept)."""
        with self._lock:
            if self._masks is None:
                src = self._source
                assert src is not None
                if src.single_exact():
                    parts = [self._one.get(i) for i in range(src.count)]
                    parts = [p if p is not None else src.one(i) for i, p in enumerate(parts)]
                    masks = np.stack(parts)
                else:
                    masks = src.all()
                object.__setattr__(self, "_masks", masks)
                object.__setattr__(self, "_source", None)  # frees the logits' resized copy
                self._one.clear()
            return self._masks

    def computed(self) -> list[int]:
        """Indices of the candidates whose full-size mask exists already (for tests and the benchmark)."""
        if self._masks is not None:
            return list(range(len(self)))
        return sorted(self._one)

    @property
    def best(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.scores))

    def __len__(self) -> int:
        return int(np.asarray(self.scores).shape[0])

    def mask(self, i: int | None = None) -> np.ndarray:
        """(H, W) bool mask of candidate ``i`` (default: best); computes only that candidate if needed."""
        i = self.best if i is None else int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"candidate {i} out of range ({len(self)} candidates)")
        i %= len(self)
        with self._lock:
            if self._masks is not None:
                return self._masks[i]
            hit = self._one.get(i)
            if hit is not None:
                return hit
            src = self._source
            assert src is not None
            if src.single_exact():
                self._one[i] = src.one(i)
                return self._one[i]
        return self.masks[i]  # K-channel resize needed for identical bits: compute all, keep all

    def mask_input(self, i: int | None = None) -> np.ndarray:
        """(1, L, L) low-res logits of candidate ``i`` (default: best), ready for ``predict(mask_input=)``."""
        return self.logits[self.best if i is None else i][None]


@dataclass(frozen=True)
class _Embedding:
    features: torch.Tensor
    original_size: tuple[int, int]  # of the (possibly padded) image SAM encoded
    input_size: tuple[int, int]
    image_size: tuple[int, int]  # of the caller's image: masks are cropped to it


@dataclass(frozen=True)
class _ImageTokens:
    """Prompt-independent tensors of one decode without ``mask_input``, computed once per image.

    ``src`` = embedding + no-mask embedding; in the first transformer layer the image tokens are not yet
    updated, so ``k`` = tokens + positional encoding and its projections by the token-to-image keys,
    values and the image-to-token queries are the same for every click on the image.
    """

    features: torch.Tensor  # the embedding these belong to (identity check)
    threads: int  # BLAS results are only reproducible at the same thread count
    src: torch.Tensor
    k: torch.Tensor
    tti_k: torch.Tensor
    tti_v: torch.Tensor
    itt_q: torch.Tensor


def _attention(
    attn: Attention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    q_proj: torch.Tensor | None = None,
    k_proj: torch.Tensor | None = None,
    v_proj: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Attention.forward`` step for step, with optional precomputed projections."""
    q = attn.q_proj(q) if q_proj is None else q_proj
    k = attn.k_proj(k) if k_proj is None else k_proj
    v = attn.v_proj(v) if v_proj is None else v_proj
    q = attn._separate_heads(q, attn.num_heads)
    k = attn._separate_heads(k, attn.num_heads)
    v = attn._separate_heads(v, attn.num_heads)
    _, _, _, c_per_head = q.shape
    a = q @ k.permute(0, 1, 3, 2)
    a = a / math.sqrt(c_per_head)
    a = torch.softmax(a, dim=-1)
    out = a @ v
    out = attn._recombine_heads(out)
    return attn.out_proj(out)


def _add_pe(keys: torch.Tensor, key_pe: torch.Tensor, key_pe_c: torch.Tensor | None) -> torch.Tensor:
    """``keys + key_pe`` with the same values and memory layout, faster when possible.

    ``key_pe`` is a transposed view; added to contiguous ``keys`` the result is contiguous (it follows the
    first operand), so adding a contiguous copy of ``key_pe`` gives the same tensor without the strided
    reads. ``key_pe_c`` is None where that layout rule was not confirmed (see ``_follows_first``).
    """
    if key_pe_c is not None and keys.is_contiguous():
        return keys + key_pe_c
    return keys + key_pe


def _follows_first(keys_shape: torch.Size, key_pe: torch.Tensor) -> bool:
    """Does contiguous + ``key_pe``-strided give a contiguous result? Asked of PyTorch on the meta device."""
    a = torch.empty(keys_shape, device="meta")
    b = torch.empty_strided(key_pe.shape, key_pe.stride(), device="meta")
    return (a + b).is_contiguous()


def _block(
    layer: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
    pre: _ImageTokens | None,
    key_pe_c: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward`` step for step; ``pre`` holds the first layer's image-only work.

    Exact rewrites: ``keys + key_pe`` is computed once (SAM computes it twice from the same tensors) and
    via :func:`_add_pe`; ``keys + attn_out`` before ``norm4`` is summed as ``attn_out + keys`` (IEEE
    addition commutes), which is contiguous already, so LayerNorm needs no copy: same values, same LN.
    """
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        attn_out = layer.self_attn(q=q, k=q, v=queries)
        queries = queries + attn_out
    queries = layer.norm1(queries)

    q = queries + query_pe
    if pre is None:
        k = _add_pe(keys, key_pe, key_pe_c)
        attn_out = _attention(layer.cross_attn_token_to_image, q, k, keys)
    else:
        attn_out = _attention(
            layer.cross_attn_token_to_image, q, pre.k, keys, k_proj=pre.tti_k, v_proj=pre.tti_v
        )
    queries = queries + attn_out
    queries = layer.norm2(queries)

    mlp_out = layer.mlp(queries)
    queries = queries + mlp_out
    queries = layer.norm3(queries)

    q = queries + query_pe
    if pre is None:
        attn_out = _attention(layer.cross_attn_image_to_token, k, q, queries)  # k: unchanged keys + key_pe
    else:
        attn_out = _attention(layer.cross_attn_image_to_token, pre.k, q, queries, q_proj=pre.itt_q)
    keys = attn_out + keys
    keys = layer.norm4(keys)
    return queries, keys


def _standard_decoder(decoder: torch.nn.Module) -> bool:
    """True when the decoder is segment_anything's own (so its forward can be mirrored step for step)."""
    tr = getattr(decoder, "transformer", None)
    return (
        type(decoder) is MaskDecoder
        and type(tr) is TwoWayTransformer
        and len(tr.layers) > 0
        and all(type(layer) is TwoWayAttentionBlock for layer in tr.layers)
        and type(tr.final_attn_token_to_image) is Attention
    )


def _pad_thin(image: np.ndarray, input_size: int) -> np.ndarray:
    """``image``, or a copy padded at the bottom/right (edge pixels) when it is so thin that SAM's resize
    to its input size would round the short side to 0 px (e.g. 4000x16 with a 64 px model, 5000x2 with
    SAM's 1024). Prompts in image pixels stay valid in the padded frame; masks are cropped back, the
    low-res logits stay in the padded frame (they only go back in as ``mask_input``)."""
    h, w = image.shape[:2]
    need = -(-max(h, w) // input_size)  # ceil(long / size): the short side then resizes to >= 1 px
    if min(h, w) >= need:
        return image
    pad = ((0, need - h), (0, 0), (0, 0)) if h < w else ((0, 0), (0, need - w), (0, 0))
    return np.ascontiguousarray(np.pad(image, pad, mode="edge"))


DECODERS = ("fast", "exact")
ENCODER_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def _tf32(on: bool) -> Iterator[None]:
    """Allow TF32 matrix products (CUDA) inside the block only; the process-wide flags are restored."""
    if not on:
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class Segmenter:
    """SAM with an LRU cache of image embeddings: encode once per image, decode per click.

    Not thread-safe; it belongs to the single model-service thread.
    """

    def __init__(
        self,
        sam: Sam,
        model_type: str,
        device: str | torch.device = "cpu",
        cache_size: int = 4,
        *,
        decoder: str = "fast",
        encoder_precision: str = "auto",
    ):
        """``encoder_precision`` (CUDA only; the CPU always encodes in float32): "fp32", "tf32" (float32
        with TF32 matrix units), "bf16" or "fp16" (autocast); "auto" = "tf32" on CUDA. The embedding is
        stored as float32 and the decoder always runs in float32. A half-precision embedding that is not
        finite (overflow) is recomputed in float32."""
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if encoder_precision not in ("auto", *ENCODER_PRECISIONS):
            raise ValueError(
                f"encoder_precision must be 'auto' or one of {ENCODER_PRECISIONS}, not {encoder_precision!r}"
            )
        self.model = sam.to(device).eval()
        self.model_type = model_type
        self.device = torch.device(device)
        self.cache_size = cache_size
        self.encoder_calls = 0
        cuda = self.device.type == "cuda"
        self.encoder_precision = (
            ("tf32" if encoder_precision == "auto" else encoder_precision) if cuda else "fp32"
        )
        self.encoder_fallbacks = 0  # half-precision embeddings that overflowed and were redone in float32
        self._predictor = SamPredictor(self.model)
        self._cache: OrderedDict[str, _Embedding] = OrderedDict()
        self._current: str | None = None
        # Exact shortcuts of the decoder (see the module docstring); False runs SAM's modules unchanged.
        self.reuse_image_tokens = _standard_decoder(self.model.mask_decoder)
        # "fast": the re-associated decoder of .sam_decoder (same maths, float32 rounding differs).
        self.fast_decoder = (
            decoder == "fast" and self.reuse_image_tokens and fast_decoder_supported(self.model.mask_decoder)
        )
        self._dense_pe: torch.Tensor | None = None
        self._pos_src: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._tokens: _ImageTokens | None = None
        self._key_pe: torch.Tensor | None = None
        self._first_layer: tuple[torch.Tensor, FirstLayer] | None = None  # (features, their tensors)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        model_type: str | None = None,
        device: str | torch.device = "cpu",
        cache_size: int = 4,
        *,
        decoder: str = "fast",
        encoder_precision: str = "auto",
    ) -> Segmenter:
        """Load a checkpoint with :func:`load_sam` and wrap it."""
        sam, detected = load_sam(path, model_type, device)
        return cls(sam, detected, device, cache_size, decoder=decoder, encoder_precision=encoder_precision)

    def warm_up(self, *, force: bool = False) -> None:
        """On CUDA (or with ``force``), encode and decode a blank image once through a throwaway Segmenter
        on the same model: CUDA/cuBLAS set-up and kernel choice then happen at model load, not at the
        user's first click (0.85 s vs 0.06 s per encode on an H200, docs/PERFORMANCE.md §7). This
        Segmenter's image, cache and counters are untouched."""
        if self.device.type != "cuda" and not force:
            return
        tmp = Segmenter(
            self.model,
            self.model_type,
            self.device,
            cache_size=1,
            decoder="fast" if self.fast_decoder else "exact",
            encoder_precision=self.encoder_precision,
        )
        tmp.set_image(np.zeros((64, 64, 3), np.uint8))
        tmp.predict(np.array([[32, 32]]), np.array([1]))

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
        self._tokens = None
        self._first_layer = None

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
        padded = _pad_thin(image, int(self.model.image_encoder.img_size))
        with self._oom_guard("encoding the image"), torch.inference_mode():
            try:
                self._encode(padded, self.encoder_precision)
                if self.encoder_precision in _AUTOCAST and not bool(torch.isfinite(p.features).all()):
                    log.warning(
                        "SAM embedding overflowed in %s; encoding again in float32", self.encoder_precision
                    )
                    self.encoder_fallbacks += 1
                    self._encode(padded, "fp32")
            except BaseException:
                p.reset_image()
                raise
        self.encoder_calls += 1
        assert p.features is not None
        self._cache[key] = _Embedding(
            p.features,
            tuple(p.original_size),
            tuple(p.input_size),
            (int(image.shape[0]), int(image.shape[1])),
        )
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self._current = key
        return True

    def _encode(self, image: np.ndarray, precision: str) -> None:
        """``SamPredictor.set_image`` at ``precision``; leaves a float32 embedding in the predictor."""
        p = self._predictor
        dtype = _AUTOCAST.get(precision)
        autocast = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        with _tf32(precision == "tf32"), autocast:
            p.set_image(image)
        if p.features is not None and p.features.dtype != torch.float32:
            p.features = p.features.float()

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
        Equal to ``SamPredictor.predict`` with the same prompts: bit for bit with ``decoder="exact"``,
        to float32 rounding with the default fast decoder.
        """
        if self._current is None or not self._predictor.is_image_set:
            raise ValueError("No image set: call set_image() before predict().")
        pts, lbl, bx, mi = self._check_prompts(points, labels, box, mask_input)
        if multimask is None:
            multimask = pts is not None and len(pts) == 1 and bx is None and mi is None
        p = self._predictor
        with self._oom_guard("predicting a mask"), torch.inference_mode():
            low_res, iou = self._predict_low_res(pts, lbl, bx, mi, multimask)
            source = _Upscaler(
                self.model,
                low_res,
                tuple(p.input_size),
                tuple(p.original_size),
                exact=not self.fast_decoder,
                crop=self._cache[self._current].image_size,
            )
            scores, logits = iou.cpu().numpy(), low_res.cpu().numpy()
            if self.device.type != "cpu" and not self.fast_decoder:  # exact: SamPredictor's K-way resize
                return SegmentResult(source.all(), scores, logits)
            result = SegmentResult(None, scores, logits, source=source)
            result.mask()  # the best candidate now, on this (worker) thread; the others on demand
            return result

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
        if self.fast_decoder and sparse.shape[0] == 1:
            return self._decode_fast(sparse, dense, multimask, reuse=mask_t is None)
        if not self.reuse_image_tokens:
            low_res, iou = self.model.mask_decoder(
                image_embeddings=p.features,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        else:
            low_res, iou = self._decode(sparse, dense, multimask, reuse=mask_t is None)
        return low_res[0], iou[0]

    def _image_pe(self) -> torch.Tensor:
        """``prompt_encoder.get_dense_pe()`` (a pure function of the weights), computed once."""
        if self._dense_pe is None:
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        return self._dense_pe

    def _positional(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pos_src as the decoder builds it, a contiguous copy of its token view or None), computed once."""
        if self._pos_src is None:
            pos_src = torch.repeat_interleave(self._image_pe(), 1, dim=0)
            key_pe = pos_src.flatten(2).permute(0, 2, 1)
            shape = torch.Size((1, key_pe.shape[1], key_pe.shape[2]))
            self._pos_src = (pos_src, key_pe.contiguous() if _follows_first(shape, key_pe) else None)
        return self._pos_src

    def _image_tokens(self, dense: torch.Tensor, pos_src: torch.Tensor) -> _ImageTokens:
        """The current image's prompt-independent first-layer tensors (no ``mask_input``), cached."""
        features = self._predictor.features
        threads = torch.get_num_threads()
        t = self._tokens
        if t is not None and t.features is features and t.threads == threads:
            return t
        layer = self.model.mask_decoder.transformer.layers[0]
        src = torch.repeat_interleave(features, 1, dim=0)
        src = src + dense
        keys = src.flatten(2).permute(0, 2, 1)
        k = keys + pos_src.flatten(2).permute(0, 2, 1)
        t = _ImageTokens(
            features=features,
            threads=threads,
            src=src,
            k=k,
            tti_k=layer.cross_attn_token_to_image.k_proj(k),
            tti_v=layer.cross_attn_token_to_image.v_proj(keys),
            itt_q=layer.cross_attn_image_to_token.q_proj(k),
        )
        self._tokens = t
        return t

    def _decode_fast(
        self, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool, *, reuse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`.sam_decoder.decode_fast` with this image's cached first-layer tensors."""
        features = self._predictor.features
        hw = (int(features.shape[-2]), int(features.shape[-1]))
        key_pe = self._key_pe_rows()
        if not reuse:
            return decode_fast(
                self.model.mask_decoder, image_rows(features + dense), key_pe, hw, sparse, multimask
            )
        first = self._first_layer
        if first is None or first[0] is not features:
            md = self.model.mask_decoder
            first = (features, FirstLayer.build(md, image_rows(features + dense), key_pe))
            self._first_layer = first
        cached = first[1]
        return decode_fast(self.model.mask_decoder, cached.keys, key_pe, hw, sparse, multimask, cached)

    def _key_pe_rows(self) -> torch.Tensor:
        """The dense positional encoding as contiguous (N, E) rows (a pure function of the weights)."""
        if self._key_pe is None:
            self._key_pe = image_rows(self._image_pe())
        return self._key_pe

    def _decode(
        self, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool, *, reuse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``MaskDecoder.forward`` (predict_masks + TwoWayTransformer) step for step, same kernels and
        layouts, re-using the dense positional encoding and, without ``mask_input``, the first layer's
        image-only projections. Bit-for-bit equal to the module (tests/test_segmenter.py)."""
        md = self.model.mask_decoder
        tr = md.transformer
        features = self._predictor.features
        output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        if tokens.shape[0] == 1:
            pos_src, key_pe_c = self._positional()
        else:
            pos_src, key_pe_c = torch.repeat_interleave(self._image_pe(), tokens.shape[0], dim=0), None
        pre = self._image_tokens(dense, pos_src) if reuse and tokens.shape[0] == 1 else None
        if pre is not None:
            src = pre.src
        else:
            src = torch.repeat_interleave(features, tokens.shape[0], dim=0)
            src = src + dense
        b, c, h, w = src.shape

        # TwoWayTransformer.forward
        keys = src.flatten(2).permute(0, 2, 1)
        key_pe = pos_src.flatten(2).permute(0, 2, 1)
        queries = tokens
        for i, layer in enumerate(tr.layers):
            queries, keys = _block(layer, queries, keys, tokens, key_pe, pre if i == 0 else None, key_pe_c)
        q = queries + tokens
        k = _add_pe(keys, key_pe, key_pe_c)
        attn_out = _attention(tr.final_attn_token_to_image, q, k, keys)
        queries = queries + attn_out
        hs = tr.norm_final_attn(queries)

        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + md.num_mask_tokens), :]
        src = keys.transpose(1, 2).view(b, c, h, w)
        upscaled = md.output_upscaling(src)
        hyper_in = torch.stack(
            [md.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in range(md.num_mask_tokens)],
            dim=1,
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = md.iou_prediction_head(iou_token_out)
        sl = slice(1, None) if multimask else slice(0, 1)
        return masks[:, sl, :, :], iou_pred[:, sl]

    def _upscale(self, low_res: torch.Tensor) -> torch.Tensor:
        """(K, L, L) logits -> (K, H, W) bool masks at the original image size."""
        p = self._predictor
        up = self.model.postprocess_masks(low_res[None], p.input_size, p.original_size)[0]
        return up > self.model.mask_threshold
