"""The mask toolkit: every mask operation in MaskPix goes through here.

A mask is an ``HxW`` numpy array, either ``bool`` (hard) or ``float32`` in ``[0, 1]`` (soft).
Integer masks are accepted as input: values are read on a 0..1 scale when the array's maximum is
at most 1, otherwise on a 0..255 scale. No Qt and no torch here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "area",
    "as_bool",
    "as_float",
    "bbox",
    "dilate",
    "erode",
    "feather",
    "fill_holes",
    "intersect",
    "invert",
    "padded_bbox",
    "pie_rle_decode",
    "pie_rle_encode",
    "remove_small",
    "resize_mask",
    "rle_decode",
    "rle_encode",
    "subtract",
    "union",
]

Size = tuple[int, int]
BBox = tuple[int, int, int, int]

# Above this radius dilate/erode use an exact Euclidean distance transform (cost independent of the
# radius) instead of a morphology kernel (cost grows with the radius). Both give the same pixels.
_KERNEL_MAX_RADIUS = 8


def _check_2d(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be a 2-D HxW array, got shape {arr.shape}")
    return arr


def _check_size(size: Sequence[int]) -> Size:
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"mask size must be positive (h, w), got {tuple(size)}")
    return h, w


def as_float(mask: np.ndarray) -> np.ndarray:
    """Return a new float32 mask in [0, 1] (bool -> 0/1; integers -> see module docstring)."""
    arr = _check_2d(mask)
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        scale = 255.0 if arr.size and int(arr.max()) > 1 else 1.0
        return np.clip(arr.astype(np.float32) / np.float32(scale), 0.0, 1.0)
    out = np.nan_to_num(arr.astype(np.float32), nan=0.0)
    return np.clip(out, 0.0, 1.0)


def as_bool(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Return a bool mask: ``as_float(mask) > threshold`` (a bool input is returned as is, not copied)."""
    arr = _check_2d(mask)
    if arr.dtype == np.bool_:
        return arr
    return as_float(arr) > threshold


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")


def resize_mask(mask: np.ndarray, size: Sequence[int], mode: str = "nearest") -> np.ndarray:
    """Resize a mask to ``size = (h, w)``.

    ``"nearest"`` keeps the dtype (bool stays bool; pixel-centre sampling, ``cv2.INTER_NEAREST_EXACT``),
    ``"area"`` returns float32 coverage fractions (``cv2.INTER_AREA``), ``"bilinear"`` returns float32.
    Always returns a new array.
    """
    arr = _check_2d(mask)
    h, w = _check_size(size)
    if mode == "nearest":
        if arr.shape == (h, w):
            return arr.copy()
        if arr.dtype == np.bool_:
            src = arr.view(np.uint8)
            return cv2.resize(src, (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
        if arr.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
            return cv2.resize(np.ascontiguousarray(arr), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return cv2.resize(as_float(arr), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    if mode not in ("area", "bilinear"):
        raise ValueError(f"unknown resize mode {mode!r}; use 'nearest', 'area' or 'bilinear'")
    src = as_float(arr)
    if src.shape == (h, w):
        return src
    interp = cv2.INTER_AREA if mode == "area" else cv2.INTER_LINEAR
    return np.clip(cv2.resize(src, (w, h), interpolation=interp), 0.0, 1.0)


def resize_logits(logits: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of float logits (not clipped) to ``size = (h, w)``: pixel-centre sampling with the
    edges replicated, the maths of ``F.interpolate(mode="bilinear", align_corners=False)`` (float32
    rounding may differ). Returns float32."""
    arr = _check_2d(logits)
    h, w = _check_size(size)
    src = np.ascontiguousarray(arr, dtype=np.float32)
    if src.shape == (h, w):
        return src.copy()
    return cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR)


def _disc_kernel(radius: int) -> np.ndarray:
    """Disc of diameter ``2r+1``: the pixels whose centre lies within ``r + 0.5`` of the centre."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy <= radius * radius + radius).astype(np.uint8)


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a bool mask by a disc of the given positive radius (pixels outside the image are off)."""
    if not mask.any():
        return mask.copy()
    if radius <= _KERNEL_MAX_RADIUS:
        return cv2.dilate(
            mask.view(np.uint8), _disc_kernel(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0
        ).astype(bool)
    # Exact Euclidean distance to the nearest mask pixel; squared distances are integers, so a
    # half-integer margin makes the comparison with r^2 + r exact.
    dist = cv2.distanceTransform((~mask).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist.astype(np.float64) ** 2 <= radius * radius + radius + 0.5


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a mask by a disc of diameter ``2*radius+1`` (see ``_disc_kernel``); negative radius erodes."""
    m = as_bool(mask)
    radius = int(radius)
    if radius == 0:
        return m.copy()
    if radius < 0:
        return erode(m, -radius)
    return _grow(m, radius)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Shrink a mask by a disc of diameter ``2*radius+1``; the image border does not erode the mask.

    Negative radius dilates.
    """
    m = as_bool(mask)
    radius = int(radius)
    if radius == 0:
        return m.copy()
    if radius < 0:
        return dilate(m, -radius)
    if m.all():
        return m.copy()
    return ~_grow(~m, radius)


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blurred float32 mask; ``sigma <= 0`` returns ``as_float(mask)`` exactly."""
    soft = as_float(mask)
    if sigma <= 0:
        return soft
    blurred = cv2.GaussianBlur(
        soft, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT_101
    )
    return np.clip(blurred, 0.0, 1.0)


def invert(mask: np.ndarray) -> np.ndarray:
    """Complement: ``~mask`` for bool, ``1 - mask`` (float32) otherwise."""
    arr = _check_2d(mask)
    if arr.dtype == np.bool_:
        return ~arr
    return np.float32(1.0) - as_float(arr)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected (4-connectivity) to the image border."""
    m = as_bool(mask)
    h, w = m.shape
    background = np.ones((h + 2, w + 2), np.uint8)  # a frame of background joins every border pixel
    background[1:-1, 1:-1] = ~m
    flood = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(background, flood, (0, 0), 2, flags=4)
    return background[1:-1, 1:-1] != 2


def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a | b`` for two bool masks, else the float32 maximum."""
    a, b = _check_2d(a), _check_2d(b)
    _same_shape(a, b)
    if a.dtype == np.bool_ and b.dtype == np.bool_:
        return a | b
    return np.maximum(as_float(a), as_float(b))


def intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a & b`` for two bool masks, else the float32 minimum."""
    a, b = _check_2d(a), _check_2d(b)
    _same_shape(a, b)
    if a.dtype == np.bool_ and b.dtype == np.bool_:
        return a & b
    return np.minimum(as_float(a), as_float(b))


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a & ~b`` for two bool masks, else float32 ``min(a, 1 - b)``."""
    a, b = _check_2d(a), _check_2d(b)
    _same_shape(a, b)
    if a.dtype == np.bool_ and b.dtype == np.bool_:
        return a & ~b
    return np.minimum(as_float(a), np.float32(1.0) - as_float(b))


def area(mask: np.ndarray) -> int:
    """Number of pixels set in ``as_bool(mask)``."""
    return int(np.count_nonzero(as_bool(mask)))


def bbox(mask: np.ndarray) -> BBox | None:
    """Tight box ``(x0, y0, x1, y1)`` with exclusive ends, or None for an empty mask."""
    m = as_bool(mask)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _fit_span(lo: int, hi: int, margin: float, min_size: int, multiple: int, limit: int) -> tuple[int, int]:
    """1-D part of ``padded_bbox``: a span containing [lo, hi) inside [0, limit)."""
    size = max(hi - lo + 2 * margin, min_size)
    size = int(math.ceil(size / multiple) * multiple)
    if size > limit:
        size = (limit // multiple) * multiple
        if size < hi - lo:
            size = limit
    start = int(math.floor((lo + hi) / 2 - size / 2))
    start = min(max(start, hi - size, 0), lo, limit - size)
    return start, start + size


def padded_bbox(mask: np.ndarray, pad: float = 0.15, multiple: int = 8, min_size: int = 64) -> BBox | None:
    """The mask's box grown for a crop edit, as ``(x0, y0, x1, y1)`` with exclusive ends.

    Each side grows by ``pad * max(box width, box height)``; each dimension is then at least
    ``min_size`` and rounded up to a multiple of ``multiple``. The box is shifted (not shrunk) to stay
    inside the image; a dimension that cannot fit is cut to the largest multiple that fits and still
    holds the mask, else to the full image side. The tight box is always contained. None if empty.
    """
    tight = bbox(mask)
    if tight is None:
        return None
    if multiple < 1:
        raise ValueError("multiple must be >= 1")
    h, w = np.shape(mask)
    x0, y0, x1, y1 = tight
    margin = max(0.0, float(pad)) * max(x1 - x0, y1 - y0)
    nx0, nx1 = _fit_span(x0, x1, margin, min_size, multiple, w)
    ny0, ny1 = _fit_span(y0, y1, margin, min_size, multiple, h)
    return nx0, ny0, nx1, ny1


def remove_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_area`` pixels."""
    m = as_bool(mask)
    if min_area <= 1 or not m.any():
        return m.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.view(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


def rle_encode(mask: np.ndarray) -> dict:
    """Row-major run lengths ``{"size": [h, w], "counts": [...]}``; runs alternate, starting with False.

    The first count is 0 when the first pixel is set. (COCO's RLE is column-major; this one is not.)
    """
    m = as_bool(mask)
    h, w = m.shape
    flat = m.ravel()
    if flat.size == 0:
        return {"size": [h, w], "counts": []}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": [h, w], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of ``rle_encode``; raises ValueError when counts do not cover the image exactly."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError("RLE counts must be non-negative")
    if int(counts.sum()) != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w} for size {[h, w]}")
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape(h, w)


def pie_rle_decode(
    pairs: Sequence[int], size: Sequence[int] = (512, 512), *, mark_border: bool = False
) -> np.ndarray:
    """Decode a PIE-Bench mask: flat ``[start, length, start, length, ...]`` over the row-major image.

    Runs past the end are clipped, as in PIE-Bench's ``mask_decode``. That reference also sets the
    outermost rows and columns to 1 ("to avoid annotation errors in boundary"); pass
    ``mark_border=True`` to reproduce it exactly (needed to match the published metrics).
    """
    h, w = _check_size(size)
    values = [int(v) for v in pairs]
    if len(values) % 2:
        raise ValueError("PIE-Bench RLE needs an even number of values (start, length pairs)")
    n = h * w
    flat = np.zeros(n, dtype=bool)
    for start, length in zip(values[0::2], values[1::2], strict=True):
        if start < 0 or length < 0:
            raise ValueError(f"negative PIE-Bench RLE entry ({start}, {length})")
        flat[start : min(start + length, n)] = True
    out = flat.reshape(h, w)
    if mark_border:
        out[0, :] = out[-1, :] = True
        out[:, 0] = out[:, -1] = True
    return out


def pie_rle_encode(mask: np.ndarray) -> list[int]:
    """Encode a mask as PIE-Bench's flat ``(start, length)`` pairs of set runs, row-major."""
    flat = as_bool(mask).ravel().astype(np.int8)
    edges = np.diff(np.concatenate(([0], flat, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    out: list[int] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        out += [int(s), int(e - s)]
    return out
