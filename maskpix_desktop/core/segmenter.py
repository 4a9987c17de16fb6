"""Segment Anything engine: per-image embedding cache, click-to-mask prediction.

Loading lives in :mod:`.sam_checkpoint`, results in :mod:`.sam_result` (both re-exported here).
Two decoder paths (``Segmenter(decoder=...)``):

- ``"fast"`` (default): :mod:`.sam_decoder`'s re-associated decoder (same maths, float32 rounding
  differs) with the image's first-layer tensors cached; full-size masks are produced lazily, the best
  candidate before ``predict`` returns, the others when asked for (:class:`.sam_result.MaskUpscaler`).
- ``"exact"``: ``SamPredictor.predict`` itself on the cached embedding, so bit-for-bit its results.

Figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import MaskDecoder, Sam, TwoWayTransformer
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

from maskpix_desktop.core.errors import OutOfMemoryError
from maskpix_desktop.core.images import image_hash
from maskpix_desktop.core.sam_checkpoint import (
    CUSTOM,
    OFFICIAL_CONFIGS,
    SamConfig,
    build_sam_from_config,
    detect_model_type,
    infer_config,
    load_sam,
)
from maskpix_desktop.core.sam_decoder import FirstLayer, decode_fast, fast_decoder_supported, image_rows
from maskpix_desktop.core.sam_result import MaskUpscaler, SegmentResult

__all__ = [
    "CUSTOM",
    "DECODERS",
    "ENCODER_PRECISIONS",
    "OFFICIAL_CONFIGS",
    "SamConfig",
    "SamEmbedding",
    "SegmentResult",
    "Segmenter",
    "build_sam_from_config",
    "detect_model_type",
    "infer_config",
    "load_sam",
]

log = logging.getLogger(__name__)

DECODERS = ("fast", "exact")
ENCODER_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}

Prompt = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class SamEmbedding:
    """One encoded image, as ``SamPredictor`` holds it after ``set_image`` (``features``: read-only)."""

    features: torch.Tensor  # (1, C, h, w) float32 on the model's device
    original_size: tuple[int, int]  # of the (possibly padded, see _pad_thin) image SAM encoded
    input_size: tuple[int, int]  # that image resized to the encoder input (long side = img_size)
    image_size: tuple[int, int]  # of the caller's image: masks are cropped to it


def _standard_decoder(decoder: torch.nn.Module) -> bool:
    """True when the decoder is segment_anything's own (the fast decoder re-implements exactly that)."""
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


def _crop(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return masks if masks.shape[-2:] == (h, w) else np.ascontiguousarray(masks[..., :h, :w])


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


def check_rgb_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a non-empty H x W x 3 uint8 array (what SAM 1 and 2 take)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("set_image expects an H x W x 3 uint8 RGB array")
    if image.dtype != np.uint8:
        raise ValueError(f"set_image expects uint8 pixels, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("set_image got an empty image")


@contextmanager
def oom_guard(model: str, device: object, action: str) -> Iterator[None]:
    """Turn a CUDA out-of-memory error while ``action`` into :class:`OutOfMemoryError` naming ``model``."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemoryError(
            f"The GPU ran out of memory while {action} with {model} on {device}. "
            "Close other GPU programs, use a smaller SAM model or switch to the CPU."
        ) from exc


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
        """``decoder``: "fast" or "exact" (see the module docstring); "fast" falls back to "exact" for a
        decoder that is not segment_anything's. ``encoder_precision`` (CUDA only; the CPU always encodes
        in float32): "fp32", "tf32" (float32 with TF32 matrix units), "bf16" or "fp16" (autocast); "auto"
        = "tf32" on CUDA. The embedding is stored as float32 and the decoder always runs in float32; a
        half-precision embedding that is not finite (overflow) is recomputed in float32."""
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
        self._cache: OrderedDict[str, SamEmbedding] = OrderedDict()
        self._current: str | None = None
        md = self.model.mask_decoder
        self._fast_ok = _standard_decoder(md) and fast_decoder_supported(md)
        self._decoder = "fast" if decoder == "fast" and self._fast_ok else "exact"
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
        on the same model, so CUDA/cuBLAS set-up and kernel choice happen at model load rather than at
        the user's first click (docs/PERFORMANCE.md, GPU). This Segmenter's image, cache and counters are
        untouched."""
        if self.device.type != "cuda" and not force:
            return
        tmp = Segmenter(
            self.model,
            self.model_type,
            self.device,
            cache_size=1,
            decoder=self._decoder,
            encoder_precision=self.encoder_precision,
        )
        tmp.set_image(np.zeros((64, 64, 3), np.uint8))
        tmp.predict(np.array([[32, 32]]), np.array([1]))

    # --- state -------------------------------------------------------------------------------------

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

    @property
    def embedding(self) -> SamEmbedding | None:
        """The current image's embedding and sizes (None before ``set_image``); read-only."""
        return None if self._current is None else self._cache[self._current]

    def cached_keys(self) -> list[str]:
        """Hashes of the cached embeddings, least recently used first."""
        return list(self._cache)

    def clear_cache(self) -> None:
        """Forget every embedding (including the current image)."""
        self._cache.clear()
        self._predictor.reset_image()
        self._current = None
        self._first_layer = None

    @property
    def decoder(self) -> str:
        """The decoder path in use: "fast" or "exact"."""
        return self._decoder

    @property
    def fast_decoder(self) -> bool:
        """True when clicks run the fast decoder."""
        return self._decoder == "fast"

    @contextmanager
    def use_decoder(self, name: str) -> Iterator[None]:
        """Run the decoder as ``name`` ("fast" or "exact") inside the block, e.g. to time one against the
        other on the same embedding; "fast" stays "exact" where the model does not support it."""
        if name not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {name!r}")
        saved = self._decoder
        self._decoder = "fast" if name == "fast" and self._fast_ok else "exact"
        try:
            yield
        finally:
            self._decoder = saved

    def twin(self, *, decoder: str | None = None) -> Segmenter:
        """A Segmenter on the same model holding this one's current image (no second encode), with
        ``decoder`` (default: this one's), e.g. an "exact" twin to compare the fast decoder with."""
        tw = Segmenter(
            self.model,
            self.model_type,
            self.device,
            cache_size=1,
            decoder=decoder or self._decoder,
            encoder_precision=self.encoder_precision,
        )
        if self._current is not None:
            tw._adopt(self._current, self._cache[self._current])
        return tw

    # --- encoding ----------------------------------------------------------------------------------

    def set_image(self, image: np.ndarray) -> bool:
        """Make ``image`` (H, W, 3 uint8 RGB) current; True if it was encoded, False if served from cache."""
        check_rgb_image(image)
        key = image_hash(image)
        cached = self._cache.get(key)
        if cached is not None:
            self._adopt(key, cached)
            return False
        self._current = None
        p = self._predictor
        padded = _pad_thin(image, int(self.model.image_encoder.img_size))
        with oom_guard(f"SAM {self.model_type}", self.device, "encoding the image"), torch.inference_mode():
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
        emb = SamEmbedding(
            p.features,
            tuple(p.original_size),
            tuple(p.input_size),
            (int(image.shape[0]), int(image.shape[1])),
        )
        self._adopt(key, emb)
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

    def _adopt(self, key: str, emb: SamEmbedding) -> None:
        """Make ``emb`` current (most recently used) and load it into the predictor."""
        self._cache[key] = emb
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        p = self._predictor
        p.features = emb.features
        p.original_size = emb.original_size
        p.input_size = emb.input_size
        p.is_image_set = True
        self._current = key

    # --- prediction --------------------------------------------------------------------------------

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
        pts, lbl, bx, mi = prompt = self._prompt(points, labels, box, mask_input)
        multimask = self._multimask(prompt, multimask)
        emb = self._cache[self._current]  # type: ignore[index]
        with oom_guard(f"SAM {self.model_type}", self.device, "predicting a mask"), torch.inference_mode():
            if not self.fast_decoder:
                masks, scores, logits = self._predictor.predict(pts, lbl, bx, mi, multimask_output=multimask)
                return SegmentResult(_crop(masks, emb.image_size), scores, logits)
            low_res, iou = self._low_res(prompt, multimask)
            source = MaskUpscaler(self.model, low_res, emb.input_size, emb.original_size, crop=emb.image_size)
            result = SegmentResult(None, iou.cpu().numpy(), low_res.cpu().numpy(), source=source)
            result.mask()  # the best candidate now, on this (worker) thread; the others on demand
            return result

    def predict_low_res(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder alone, on the current decoder path: (K, L, L) low-res logits and (K,) IoU scores on
        the model's device, no full-size masks (for timing the decoder). Prompts as :meth:`predict`."""
        prompt = self._prompt(points, labels, box, mask_input)
        with oom_guard(f"SAM {self.model_type}", self.device, "predicting a mask"), torch.inference_mode():
            return self._low_res(prompt, self._multimask(prompt, multimask))

    def _prompt(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
    ) -> Prompt:
        if self._current is None or not self._predictor.is_image_set:
            raise ValueError("No image set: call set_image() before predict().")
        return self._check_prompts(points, labels, box, mask_input)

    @staticmethod
    def _multimask(prompt: Prompt, multimask: bool | None) -> bool:
        if multimask is not None:
            return bool(multimask)
        pts, _, bx, mi = prompt
        return pts is not None and len(pts) == 1 and bx is None and mi is None

    def _check_prompts(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
    ) -> Prompt:
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

    def _low_res(self, prompt: Prompt, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + decoder as ``SamPredictor.predict_torch`` runs them (the fast decoder on the
        fast path): (K, L, L) logits and (K,) IoU scores."""
        points, labels, box, mask_input = prompt
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
        if self.fast_decoder:
            return self._decode_fast(sparse, dense, multimask, reuse=mask_t is None)
        low_res, iou = self.model.mask_decoder(
            image_embeddings=p.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return low_res[0], iou[0]

    def _decode_fast(
        self, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool, *, reuse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`.sam_decoder.decode_fast` with this image's cached first-layer tensors."""
        md = self.model.mask_decoder
        features = self._predictor.features
        hw = (int(features.shape[-2]), int(features.shape[-1]))
        if self._key_pe is None:  # the dense positional encoding as (N, E) rows: a function of the weights
            self._key_pe = image_rows(self.model.prompt_encoder.get_dense_pe())
        key_pe = self._key_pe
        if not reuse:
            return decode_fast(md, image_rows(features + dense), key_pe, hw, sparse, multimask)
        first = self._first_layer
        if first is None or first[0] is not features:
            first = (features, FirstLayer.build(md, image_rows(features + dense), key_pe))
            self._first_layer = first
        cached = first[1]
        return decode_fast(md, cached.keys, key_pe, hw, sparse, multimask, cached)
