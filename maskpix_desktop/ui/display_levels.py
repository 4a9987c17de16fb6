"""Display pyramids: power-of-two reductions of a full-size image, built lazily, for the image views.

A view shows the coarsest level that still has at least one level pixel per screen pixel, so a fitted
24 MP photo converts a screen-sized copy, not the full image; level 0 (the image itself, not copied) is
only converted when the user zooms to 1:1 or beyond.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from maskpix_desktop.core import masks
from maskpix_desktop.core.export import mask_overlay

#: Levels below this long side are not built (a thumbnail is coarse enough for any fit).
MIN_LONG_SIDE = 64


def level_size(size: tuple[int, int], k: int) -> tuple[int, int]:
    """``(h, w)`` of level ``k``: each side divided by ``2**k``, rounded up."""
    h, w = size
    f = 1 << k
    return max(1, -(-h // f)), max(1, -(-w // f))


def max_level(size: tuple[int, int]) -> int:
    """The coarsest level worth building: long side still at least ``MIN_LONG_SIDE`` (0 for small images)."""
    k, long = 0, max(size)
    while long >> (k + 1) >= MIN_LONG_SIDE:
        k += 1
    return k


def choose_level(size: tuple[int, int], scale: float) -> int:
    """The coarsest level whose sampling ``2**-k`` is at least ``scale`` (screen pixels per image pixel)."""
    k, top = 0, max_level(size)
    while k < top and 2.0 ** -(k + 1) >= scale:
        k += 1
    return k


def reduce_area(image: np.ndarray, k: int) -> np.ndarray:
    """Level ``k`` of an image by area averaging (``cv2.INTER_AREA``); level 0 is ``image`` itself."""
    if k == 0:
        return image
    h, w = level_size(image.shape[:2], k)
    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_AREA)


def reduce_max(image: np.ndarray, k: int) -> np.ndarray:
    """Level ``k`` by max pooling over ``2**k`` blocks: one bright pixel (a leak) stays visible."""
    if k == 0:
        return image
    f = 1 << k
    h, w = level_size(image.shape[:2], k)
    pad = [(0, h * f - image.shape[0]), (0, w * f - image.shape[1])] + [(0, 0)] * (image.ndim - 2)
    a = np.pad(image, pad, mode="edge") if any(p[1] for p in pad[:2]) else image
    return a.reshape(h, f, w, f, *image.shape[2:]).max(axis=(1, 3))


class Pyramid:
    """Lazily built display levels of one image (``make(k)`` gives level ``k``; cached once built)."""

    def __init__(self, size: tuple[int, int], make: Callable[[int], np.ndarray]):
        self.size = (int(size[0]), int(size[1]))
        self._make = make
        self._levels: dict[int, np.ndarray] = {}

    @classmethod
    def of_image(cls, image: np.ndarray, reduce: Callable[[np.ndarray, int], np.ndarray] = reduce_area):
        """Levels of ``image`` (HxW[xC] uint8), reduced by ``reduce`` (area averaging by default)."""
        return cls(image.shape[:2], lambda k: reduce(image, k))

    @property
    def max_level(self) -> int:
        return max_level(self.size)

    def level(self, k: int) -> np.ndarray:
        k = min(max(int(k), 0), self.max_level)
        if k not in self._levels:
            self._levels[k] = self._make(k)
        return self._levels[k]

    def built(self) -> list[int]:
        """The levels built so far (for tests and the bench)."""
        return sorted(self._levels)


def overlay_pyramid(image: Pyramid, mask: np.ndarray) -> Pyramid:
    """Levels of ``mask_overlay(image, mask)``: the tint is applied to each reduced level of the image.

    Level 0 equals ``mask_overlay`` of the full image exactly; coarser levels tint the area-reduced image
    with the area-reduced (soft) mask, never building the full-size overlay.
    """

    def make(k: int) -> np.ndarray:
        if k == 0:
            return mask_overlay(image.level(0), mask)
        h, w = level_size(image.size, k)
        if mask.dtype == np.bool_:  # coverage of each block in 1/255 steps, no full-size float copy
            m255 = np.ascontiguousarray(mask).view(np.uint8) * np.uint8(255)
            soft = cv2.resize(m255, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        else:
            soft = masks.resize_mask(masks.as_float(mask), (h, w), mode="area")
        return mask_overlay(image.level(k), soft)

    return Pyramid(image.size, make)


__all__ = [
    "MIN_LONG_SIDE",
    "Pyramid",
    "choose_level",
    "level_size",
    "max_level",
    "overlay_pyramid",
    "reduce_area",
    "reduce_max",
]
