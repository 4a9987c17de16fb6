"""Results of a SAM click: :class:`SegmentResult` (lazy full-size masks) and SAM 1's :class:`MaskUpscaler`."""

from __future__ import annotations

import threading
from dataclasses import FrozenInstanceError
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from maskpix_desktop.core.masks import resize_logits

__all__ = ["MaskSource", "MaskUpscaler", "SegmentResult"]


class MaskSource(Protocol):
    """What :class:`SegmentResult` computes its full-size masks from (one per engine)."""

    @property
    def count(self) -> int: ...

    def single_exact(self) -> bool:
        """True when one candidate may be resized on its own (else :meth:`all` gives the exact bits)."""
        ...

    def one(self, i: int) -> np.ndarray: ...

    def all(self) -> np.ndarray: ...


class MaskUpscaler:
    """SAM 1 low-res logits -> full-size bool masks, one candidate at a time.

    The maths of ``Sam.postprocess_masks`` + threshold (bilinear resize to the encoder input, crop,
    bilinear resize to the image size), run per candidate: a K-th of the work when only one mask is
    shown. The rounding may differ from SamPredictor's K-channel resize, so only the fast decoder's
    results (not bit-exact anyway) use it; on the CPU the second resize runs through OpenCV
    (:func:`~maskpix_desktop.core.masks.resize_logits`, same maths). ``crop`` cuts the masks of a padded
    thin image back to the caller's size. Holds no reference to the model.
    """

    def __init__(
        self,
        model: Sam,
        low_res: torch.Tensor,
        input_size: tuple[int, int],
        size: tuple[int, int],
        *,
        crop: tuple[int, int] | None = None,
    ):
        self._img_size = int(model.image_encoder.img_size)
        self._low_res = low_res  # (K, L, L) on the model's device
        self._input_size = tuple(input_size)
        self._size = tuple(size)
        self._threshold = float(model.mask_threshold)
        self._crop = None if crop is None or tuple(crop) == self._size else tuple(crop)

    @property
    def count(self) -> int:
        return int(self._low_res.shape[0])

    def single_exact(self) -> bool:
        return True

    def one(self, i: int) -> np.ndarray:
        """(H, W) bool mask of candidate ``i``."""
        with torch.inference_mode():
            img = self._img_size
            low = self._low_res[i : i + 1]
            mid = F.interpolate(low[None], (img, img), mode="bilinear", align_corners=False)
            mid = mid[..., : self._input_size[0], : self._input_size[1]]
            if mid.device.type == "cpu":
                mask = resize_logits(mid[0, 0].numpy(), self._size) > self._threshold
            else:
                up = F.interpolate(mid, self._size, mode="bilinear", align_corners=False)
                mask = (up[0, 0] > self._threshold).cpu().numpy()
        return self._cropped(mask)

    def all(self) -> np.ndarray:
        """(K, H, W) bool: every candidate."""
        return np.stack([self.one(i) for i in range(self.count)])

    def _cropped(self, masks: np.ndarray) -> np.ndarray:
        if self._crop is None:
            return masks
        h, w = self._crop
        return np.ascontiguousarray(masks[..., :h, :w])


class SegmentResult:
    """Candidate masks for one prompt set (immutable).

    masks: (K, H, W) bool at image size; scores: (K,) float32 predicted IoU;
    logits: (K, L, L) float32 low-res logits (L = 256 for official SAM) to feed back as ``mask_input``.

    Built with a ``source`` (:class:`MaskSource`) the full-size masks are computed lazily: ``mask(i)``
    computes (and keeps) only candidate ``i``; ``masks`` computes every candidate; either way the masks
    are the same. A result may also be built from ready arrays: ``SegmentResult(m, s, l)`` (what
    ``Segmenter(decoder="exact")`` returns: SamPredictor's own arrays).
    """

    __slots__ = ("scores", "logits", "_masks", "_one", "_source", "_lock")

    def __init__(
        self,
        masks: np.ndarray | None,
        scores: np.ndarray,
        logits: np.ndarray,
        *,
        source: MaskSource | None = None,
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
