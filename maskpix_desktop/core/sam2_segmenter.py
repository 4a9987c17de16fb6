"""SAM 2 / 2.1 engine with the public surface of :class:`~maskpix_desktop.core.segmenter.Segmenter`.

Runs transformers' ``Sam2Model`` (Hugging Face format, ``model.safetensors`` only: no pickle). Per image,
one encoder run: the image embedding and the two high-resolution feature maps (already projected by the
decoder's ``conv_s0`` / ``conv_s1``, as ``Sam2Model.get_image_embeddings`` returns them) are kept in an
LRU cache of recent images; every click then runs the prompt encoder and the mask decoder only.

Two decoder paths (``Sam2Segmenter(decoder=...)``), as for SAM 1's ``Segmenter``:

- ``"fast"`` (default): :mod:`.sam2_decoder`'s re-associated decoder with the image's prompt-independent
  tensors cached; equal to the reference to float32 rounding (masks differ only where a logit is within
  rounding of 0; tests/core/test_sam2_decoder.py). Full-size masks are computed per candidate (OpenCV's
  bilinear resize on the CPU, same maths), the best one before ``predict`` returns.
- ``"exact"``: the reference's own modules, equal to ``Sam2Processor`` + ``Sam2Model`` called the
  documented way (image re-encoded or ``image_embeddings`` passed) bit for bit: the same pixels (the
  processor's own image processor), the same prompt scaling, the same modules; masks are the processor's
  ``post_process_masks`` resize, computed lazily per candidate when that gives the same bits
  (tests/core/test_sam2_segmenter.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maskpix_desktop.core.errors import MissingWeightsError, WeightsError
from maskpix_desktop.core.images import image_hash
from maskpix_desktop.core.masks import resize_logits
from maskpix_desktop.core.sam2_arch import detect_sam2_type, safetensors_shapes, sam2_folder
from maskpix_desktop.core.sam2_decoder import FastSam2Decoder, Sam2ImageTensors, fast_sam2_decoder_supported
from maskpix_desktop.core.sam2_pixels import channels_last_processor
from maskpix_desktop.core.segmenter import (
    DECODERS,
    ENCODER_PRECISIONS,
    Segmenter,
    SegmentResult,
    _tf32,
    check_rgb_image,
    oom_guard,
)

__all__ = ["Sam2Segmenter", "app_precision", "cpu_native_bf16", "load_sam2"]

log = logging.getLogger(__name__)

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
WEIGHTS = "model.safetensors"
PROCESSOR_CONFIGS = ("preprocessor_config.json", "processor_config.json")


@cache
def cpu_native_bf16() -> bool:
    """Does this CPU multiply bfloat16 in hardware (AMX-BF16 or AVX512-BF16)? Elsewhere CPU bf16 is
    emulated and slower than float32."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def app_precision(requested: str, device: str | torch.device) -> str:
    """The encoder precision the model service asks for: "auto" on a CPU with native bfloat16 is "bf16"
    (SAM 2's own inference precision, ~1.7x faster there); anything else is passed on."""
    if requested == "auto" and torch.device(device).type == "cpu" and cpu_native_bf16():
        return "bf16"
    return requested


def _hiera_backbone(model: Any) -> Any:
    """The Hiera image backbone of a ``Sam2Model`` (None for another architecture)."""
    return getattr(getattr(model, "vision_encoder", None), "backbone", None)


def cache_position_embedding(model: Any) -> None:
    """Make the encoder's position embeddings per-shape constants while gradients are off: the Hiera
    backbone's (a bicubic resize of a learned grid, keyed by size and autocast state) and the FPN neck's sine
    embedding (transformers' own cache holds one shape, the neck asks for four). The same tensors, computed
    once; each cache is its wrapper's ``maskpix_cache``. Parts without these methods are left as they are."""
    backbone = _hiera_backbone(model)

    def hiera_key(hw: Any) -> tuple:
        dev = backbone.pos_embed.device.type
        return tuple(int(x) for x in hw), dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)

    def sine_key(
        shape: Any, device: Any, dtype: torch.dtype, mask: torch.Tensor | None = None
    ) -> tuple | None:
        return None if mask is not None else (tuple(int(x) for x in shape), str(device), dtype)

    _memoise(backbone, "_get_pos_embed", hiera_key)
    neck = getattr(getattr(model, "vision_encoder", None), "neck", None)
    _memoise(getattr(neck, "position_encoding", None), "forward", sine_key)


def _memoise(owner: Any, name: str, key_of: Callable[..., tuple | None]) -> None:
    """Replace the method ``owner.<name>`` by a wrapper that, while gradients are off, returns the result
    computed once per ``key_of(*args)`` (a None key is computed every time); the dict is the wrapper's
    ``maskpix_cache``. Nothing happens when the method is missing or already wrapped."""
    original = getattr(owner, name, None)
    if original is None or hasattr(original, "maskpix_cache"):
        return
    cache: dict = {}

    def cached(*args: Any, **kwargs: Any) -> Any:
        key = None if torch.is_grad_enabled() else key_of(*args, **kwargs)
        if key is None:
            return original(*args, **kwargs)
        if key not in cache:
            cache[key] = original(*args, **kwargs)
        return cache[key]

    cached.maskpix_cache = cache  # type: ignore[attr-defined]
    setattr(owner, name, cached)


def _resolve_precision(requested: str, device: torch.device) -> str:
    """The encoder precision used for ``requested`` on ``device`` (see :meth:`Sam2Segmenter.__init__`)."""
    if device.type == "cuda":
        return "tf32" if requested == "auto" else requested
    return "bf16" if requested == "bf16" else "fp32"


def load_sam2(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any, str]:
    """(Sam2Model in eval mode on ``device``, its Sam2ImageProcessor, detected type) from a SAM 2 folder.

    ``path``: a Hugging Face SAM 2 folder (config.json + model.safetensors [+ preprocessor_config.json])
    or its model.safetensors; without a processor config, the processor defaults for the model's input
    size. MissingWeightsError when absent; WeightsError naming the file otherwise.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingWeightsError("sam2", p)
    folder = sam2_folder(p)
    if folder is None:
        raise WeightsError(
            f"'{p}' is not a SAM 2 model folder: it needs a config.json whose model_type is 'sam2' and "
            f"{WEIGHTS} (e.g. from facebook/sam2.1-hiera-tiny)."
        )
    weights = folder / WEIGHTS
    if not weights.is_file():
        pickled = sorted(q.name for q in folder.glob("*.bin"))
        if pickled:
            raise WeightsError(
                f"'{folder}' holds only pickled weights ({', '.join(pickled)}), which are refused for "
                f"safety; use the repository's {WEIGHTS}."
            )
        raise MissingWeightsError("sam2", weights)
    model_type = detect_sam2_type(safetensors_shapes(weights))
    try:
        from transformers import Sam2ImageProcessor, Sam2Model
    except ImportError as exc:
        raise WeightsError("SAM 2 needs a transformers release with Sam2Model (4.56 or newer).") from exc
    try:
        model, info = Sam2Model.from_pretrained(
            str(folder),
            local_files_only=True,
            use_safetensors=True,
            output_loading_info=True,
            dtype=torch.float32,
        )
    except Exception as exc:  # any loader failure: a wrong config, sizes that do not match, a bad file
        raise WeightsError(f"Cannot load SAM 2 from '{folder}': {type(exc).__name__}: {exc}") from exc
    bad = list(info.get("missing_keys") or []) + [str(k) for k in info.get("mismatched_keys") or []]
    if bad:
        raise WeightsError(
            f"'{weights}' does not fit its config.json: {len(bad)} tensors missing or "
            f"mis-shaped, e.g. {', '.join(sorted(bad)[:3])}."
        )
    side = int(model.config.prompt_encoder_config.image_size)
    configs = [folder / n for n in PROCESSOR_CONFIGS if (folder / n).is_file()]
    pre = configs[0] if configs else folder / PROCESSOR_CONFIGS[0]
    try:
        if configs:
            processor = Sam2ImageProcessor.from_pretrained(str(folder), local_files_only=True)
        else:  # the defaults of the model's input size
            low = 4 * side // int(model.config.prompt_encoder_config.patch_size)
            processor = Sam2ImageProcessor(
                size={"height": side, "width": side}, mask_size={"height": low, "width": low}
            )
    except Exception as exc:  # malformed JSON or values
        raise WeightsError(f"Cannot read '{pre}': {exc}") from exc
    size = (processor.size.get("height"), processor.size.get("width"))
    if size != (side, side):
        raise WeightsError(f"'{pre}': field 'size' is {size[0]}x{size[1]}, the model takes {side}x{side}.")
    return model.to(device).eval(), processor, model_type


@dataclass(frozen=True)
class _Embedding:
    features: tuple[torch.Tensor, ...]  # high-res s0, high-res s1, image embedding (float32)
    image_size: tuple[int, int]


@cache
def _single_channel_exact(k: int, threads: int, side: int) -> bool:
    """Does resizing channel j of a (1, k, side, side) tensor alone give the bits of the k-channel resize?

    Checked once per (k, thread count, side) on random data (the bilinear kernel may vectorise over
    channels); when not, ``SegmentResult`` resizes all candidates together.
    """
    gen = torch.Generator().manual_seed(1234)
    low = torch.randn((1, k, side, side), generator=gen) * 8
    size = (3 * side + 7, 4 * side + 3)
    with torch.inference_mode():
        ref = F.interpolate(low, size, mode="bilinear", align_corners=False)
        return all(
            torch.equal(
                F.interpolate(low[:, j : j + 1], size, mode="bilinear", align_corners=False),
                ref[:, j : j + 1],
            )
            for j in range(k)
        )


class _Upscaler:
    """Low-res logits -> masks at image size, as ``Sam2Processor.post_process_masks`` (threshold 0)."""

    def __init__(self, low_res: torch.Tensor, size: tuple[int, int]):
        self._low = low_res  # (K, L, L)
        self._size = size
        h, w = size
        threads = torch.get_num_threads()  # decided on the thread predict runs on
        self._single = (
            low_res.device.type == "cpu"
            and h + w > 160
            and _single_channel_exact(self.count, threads, int(low_res.shape[-1]))
        )

    @property
    def count(self) -> int:
        return int(self._low.shape[0])

    def single_exact(self) -> bool:
        return self._single

    def one(self, i: int) -> np.ndarray:
        with torch.inference_mode():
            up = F.interpolate(self._low[None, i : i + 1], self._size, mode="bilinear", align_corners=False)
            return (up[0, 0] > 0.0).cpu().numpy()

    def all(self) -> np.ndarray:
        with torch.inference_mode():
            up = F.interpolate(self._low[None], self._size, mode="bilinear", align_corners=False)
            return (up[0] > 0.0).cpu().numpy()


class _FastUpscaler:
    """Low-res logits -> masks at image size, one candidate at a time (the fast path's masks): the
    bilinear resize of ``post_process_masks`` through OpenCV on the CPU (same maths, float32 rounding)."""

    def __init__(self, low_res: torch.Tensor, size: tuple[int, int]):
        self._low = low_res  # (K, L, L)
        self._size = size

    @property
    def count(self) -> int:
        return int(self._low.shape[0])

    def single_exact(self) -> bool:
        return True

    def one(self, i: int) -> np.ndarray:
        with torch.inference_mode():
            if self._low.device.type == "cpu":
                return resize_logits(self._low[i].numpy(), self._size) > 0.0
            up = F.interpolate(self._low[None, i : i + 1], self._size, mode="bilinear", align_corners=False)
            return (up[0, 0] > 0.0).cpu().numpy()

    def all(self) -> np.ndarray:
        return np.stack([self.one(i) for i in range(self.count)])


class Sam2Segmenter:
    """SAM 2 with an LRU cache of image features: encode once per image, decode per click.

    Same public surface as :class:`Segmenter` (``set_image``, ``predict``, ``warm_up``, the cache
    accessors, ``encoder_calls``, ``decoder`` / ``use_decoder``). Not thread-safe; it belongs to the
    single model-service thread.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        model_type: str = "custom",
        device: str | torch.device = "cpu",
        cache_size: int = 4,
        *,
        decoder: str = "fast",
        encoder_precision: str = "auto",
    ):
        """``decoder``: "fast" or "exact" (module docstring); "fast" falls back to "exact" for a decoder
        that is not transformers' ``Sam2MaskDecoder``. ``encoder_precision`` as for :class:`Segmenter`
        on CUDA ("auto" = "tf32"); on the CPU "bf16" (autocast, SAM 2's own inference precision; the app
        asks for it where :func:`cpu_native_bf16`) or float32 (any other value). The features are stored
        as float32 and the decoder always runs in float32."""
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if encoder_precision not in ("auto", *ENCODER_PRECISIONS):
            raise ValueError(
                f"encoder_precision must be 'auto' or one of {ENCODER_PRECISIONS}, not {encoder_precision!r}"
            )
        self.model = model.to(device).eval()
        cache_position_embedding(self.model)
        self.processor = channels_last_processor(processor)
        self.model_type = model_type
        self.device = torch.device(device)
        self.cache_size = cache_size
        self.encoder_calls = 0
        self.encoder_fallbacks = 0
        self.encoder_precision = _resolve_precision(encoder_precision, self.device)
        self.input_size = int(model.config.prompt_encoder_config.image_size)
        self._cache: OrderedDict[str, _Embedding] = OrderedDict()
        self._current: str | None = None
        self._image_pe: torch.Tensor | None = None
        self._fast_ok = fast_sam2_decoder_supported(self.model.mask_decoder)
        self._decoder = "fast" if decoder == "fast" and self._fast_ok else "exact"
        self._fast: FastSam2Decoder | None = None
        self._tensors: tuple[str, Sam2ImageTensors] | None = None  # the current image's, fast path
        self._warm_position_embedding()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        cache_size: int = 4,
        *,
        decoder: str = "fast",
        encoder_precision: str = "auto",
    ) -> Sam2Segmenter:
        """Load a SAM 2 folder with :func:`load_sam2` and wrap it."""
        model, processor, model_type = load_sam2(path, device)
        return cls(
            model,
            processor,
            model_type,
            device,
            cache_size,
            decoder=decoder,
            encoder_precision=encoder_precision,
        )

    def warm_up(self, *, force: bool = False) -> None:
        """On CUDA, with a reduced-precision encoder (bf16 on a CPU: oneDNN sets up its kernels at the first
        encode) or with ``force``, encode and decode a blank image through a throwaway segmenter on the same
        model, so the first photo does not pay that set-up; this one's image, cache and counters are
        untouched."""
        if self.device.type != "cuda" and self.encoder_precision not in _AUTOCAST and not force:
            return
        tmp = Sam2Segmenter(
            self.model,
            self.processor,
            self.model_type,
            self.device,
            1,
            decoder=self._decoder,
            encoder_precision=self.encoder_precision,
        )
        tmp.set_image(np.zeros((64, 64, 3), np.uint8))
        tmp.predict(np.array([[32, 32]]), np.array([1]))

    @property
    def low_res_size(self) -> int:
        """Side of ``SegmentResult.logits`` / ``mask_input`` (256 for the official models)."""
        return int(self.model.prompt_encoder.mask_input_size[0])

    @property
    def has_image(self) -> bool:
        return self._current is not None

    @property
    def current_key(self) -> str | None:
        return self._current

    def cached_keys(self) -> list[str]:
        """Hashes of the cached images, least recently used first."""
        return list(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._current = None
        self._tensors = None

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
        """Run the decoder as ``name`` ("fast" or "exact") inside the block (e.g. to time one against the
        other on the same features); "fast" stays "exact" where the model does not support it."""
        if name not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {name!r}")
        saved = self._decoder
        self._decoder = "fast" if name == "fast" and self._fast_ok else "exact"
        try:
            yield
        finally:
            self._decoder = saved

    def set_image(self, image: np.ndarray) -> bool:
        """Make ``image`` (H, W, 3 uint8 RGB) current; True if it was encoded, False if served from cache."""
        check_rgb_image(image)
        key = image_hash(image)
        if key in self._cache:
            self._cache.move_to_end(key)
            self._current = key
            if self.fast_decoder:
                self._image_tensors()
            return False
        self._current = None
        pixels = self.processor(images=image, return_tensors="pt", input_data_format="channels_last")
        pixels = pixels["pixel_values"].contiguous().to(self.device)
        with (
            oom_guard(f"SAM 2 ({self.model_type})", self.device, "encoding the image"),
            torch.inference_mode(),
        ):
            feats = self._encode(pixels, self.encoder_precision)
            if self.encoder_precision in _AUTOCAST and not all(bool(torch.isfinite(f).all()) for f in feats):
                log.warning(
                    "SAM 2 features overflowed in %s; encoding again in float32", self.encoder_precision
                )
                self.encoder_fallbacks += 1
                feats = self._encode(pixels, "fp32")
        self.encoder_calls += 1
        self._cache[key] = _Embedding(feats, (int(image.shape[0]), int(image.shape[1])))
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self._current = key
        if self.fast_decoder:  # the click-independent decoder work, now rather than at the first click
            self._image_tensors()
        return True

    def _image_tensors(self) -> Sam2ImageTensors:
        """The current image's :class:`Sam2ImageTensors` (built once per image change)."""
        assert self._current is not None
        if self._tensors is None or self._tensors[0] != self._current:
            if self._fast is None:
                self._fast = FastSam2Decoder(self.model)
            with torch.inference_mode():
                self._tensors = (self._current, self._fast.prepare(self._cache[self._current].features))
        return self._tensors[1]

    def _autocast(self, precision: str) -> Any:
        dtype = _AUTOCAST.get(precision)
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def _encode(self, pixels: torch.Tensor, precision: str) -> tuple[torch.Tensor, ...]:
        with _tf32(precision == "tf32"), self._autocast(precision):
            feats = self.model.get_image_embeddings(pixels)
        return tuple(f.float() for f in feats)

    def _warm_position_embedding(self) -> None:
        """Fill :func:`cache_position_embedding`'s cache for the processor's input size now (model load)
        rather than at the first photo's encode."""
        backbone = _hiera_backbone(self.model)
        conv = getattr(getattr(backbone, "patch_embed", None), "projection", None)
        size = getattr(self.processor, "size", None)
        if not isinstance(conv, torch.nn.Conv2d) or size is None or not hasattr(backbone, "pos_embed"):
            return
        hw = tuple(
            (int(n) + 2 * p - d * (k - 1) - 1) // st + 1
            for n, p, d, k, st in zip(
                (size.get("height"), size.get("width")),
                conv.padding,
                conv.dilation,
                conv.kernel_size,
                conv.stride,
                strict=True,
            )
        )
        with torch.inference_mode(), self._autocast(self.encoder_precision):
            backbone._get_pos_embed(hw)

    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool | None = None,
    ) -> SegmentResult:
        """Masks for the current image from clicks (N x 2 xy pixels, labels 1/0), a box and/or logits.

        ``multimask=None`` returns 3 candidates for a lone point (no box, no mask_input), else 1 (SAM 2
        then picks the single-mask token or, when unstable, the best of the three, as Sam2Model does).
        """
        if self._current is None:
            raise ValueError("No image set: call set_image() before predict().")
        pts, lbl, bx, mi = Segmenter._check_prompts(self, points, labels, box, mask_input)  # type: ignore[arg-type]
        if multimask is None:
            multimask = pts is not None and len(pts) == 1 and bx is None and mi is None
        emb = self._cache[self._current]
        with (
            oom_guard(f"SAM 2 ({self.model_type})", self.device, "predicting a mask"),
            torch.inference_mode(),
        ):
            low_res, iou = self._decode(emb, pts, lbl, bx, mi, multimask)
            scores, logits = iou.cpu().numpy(), low_res.cpu().numpy()
            if self.fast_decoder:
                result = SegmentResult(None, scores, logits, source=_FastUpscaler(low_res, emb.image_size))
                result.mask()  # the best candidate now, on this (worker) thread; the others on demand
                return result
            source = _Upscaler(low_res, emb.image_size)
            if self.device.type != "cpu":
                return SegmentResult(source.all(), scores, logits)
            result = SegmentResult(None, scores, logits, source=source)  # type: ignore[arg-type]
            result.mask()  # the best candidate now, on this (worker) thread; the others on demand
            return result

    def _scaled(self, xy: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """(..., 2) image pixels -> the model's input frame, as ``Sam2Processor`` scales them."""
        h, w = size
        c = torch.as_tensor(np.asarray(xy, np.float64)).to(torch.float32)
        c[..., 0] = c[..., 0] * (self.input_size / w)
        c[..., 1] = c[..., 1] * (self.input_size / h)
        return c

    def _decode(
        self,
        emb: _Embedding,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder, the steps of ``Sam2Model.forward`` given ``image_embeddings``:
        (K, L, L) low-res logits and (K,) predicted IoU."""
        m, dev = self.model, self.device
        feats = emb.features
        pts_t = lbl_t = box_t = mask_t = None
        if points is not None:
            pts_t = self._scaled(points, emb.image_size).to(dev)[None, None]
            lbl_t = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=dev)[None, None]
        if box is not None:
            box_t = self._scaled(np.asarray(box).reshape(2, 2), emb.image_size).reshape(1, 1, 4).to(dev)
        if mask_input is not None:
            mask_t = torch.as_tensor(mask_input, dtype=torch.float32, device=dev)[None]
        if pts_t is None and box_t is None:  # as Sam2Model: an empty point (label -1)
            pts_t = torch.zeros(1, 1, 1, 2, dtype=feats[-1].dtype, device=dev)
            lbl_t = -torch.ones(1, 1, 1, dtype=torch.int32, device=dev)
        if self._image_pe is None:  # a pure function of the weights
            self._image_pe = m.get_image_wide_positional_embeddings().repeat(1, 1, 1, 1)
        sparse, dense = m.prompt_encoder(
            input_points=pts_t, input_labels=lbl_t, input_boxes=box_t, input_masks=mask_t
        )
        if self.fast_decoder:
            tensors = self._image_tensors()
            assert self._fast is not None
            return self._fast.decode(tensors, sparse[0, 0], dense if mask_t is not None else None, multimask)
        low_res, iou, _, _ = m.mask_decoder(
            image_embeddings=feats[-1],
            image_positional_embeddings=self._image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=list(feats[:-1]),
        )
        return low_res[0, 0], iou[0, 0]
