"""Edit masks derived from (input, edited) pairs, as the proposal says: change map ``|edited - input|``
-> threshold -> boxes / points -> SAM -> clean -> dilate.

Pure numpy / OpenCV plus any :class:`~maskpix_desktop.core.protocols.SegmentEngine` (SAM 1, SAM 2.1, the
tests' fake); no torch here. Deterministic: the same images, options and segmenter give the same mask.

Quality = IoU of the cleaned SAM mask (before dilation) with the cleaned, thresholded change map: SAM
masks that cover far more (a prompt that grabbed the background) or far less (a missed region) than what
actually changed score low and can be filtered out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from maskpix_desktop.core import masks
from maskpix_desktop.core.protocols import SegmentEngine


@dataclass(frozen=True)
class DeriveConfig:
    """Options of :func:`derive_mask` (recorded in every mask's provenance)."""

    threshold: float | None = 0.1  # on the per-pixel max channel |diff| / 255; None: Otsu's threshold
    blur: int = 1  # box-blur radius of the change map before thresholding (0: none)
    min_area: float = 0.001  # regions smaller than this fraction of the image (at least 4 px) are noise
    max_regions: int = 8  # SAM is prompted once per region, largest first
    close_px: int = 2  # morphological closing of the thresholded map (joins a region's fragments)
    open_px: int = 1  # morphological opening of the SAM mask (drops slivers)
    dilate_px: int = 8  # the final mask grows by this many pixels around the object boundary
    points: bool = True  # prompt SAM with each region's innermost pixel as well as its box


@dataclass
class DerivedMask:
    """``mask``: the dilated edit mask (HxW bool); ``quality`` in [0, 1]; ``reason``: why it is empty."""

    mask: np.ndarray
    quality: float
    provenance: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def change_map(image: np.ndarray, edited: np.ndarray, blur: int = 0) -> np.ndarray:
    """HxW float32 in [0, 1]: the largest channel difference per pixel, box-blurred by ``blur`` pixels."""
    if image.shape != edited.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"images must be HxWx3 of one size, got {image.shape} and {edited.shape}")
    diff = np.abs(image.astype(np.int16) - edited.astype(np.int16)).max(axis=2).astype(np.float32) / 255.0
    if blur > 0:
        k = 2 * int(blur) + 1
        diff = cv2.blur(diff, (k, k), borderType=cv2.BORDER_REFLECT)
    return diff


def otsu_threshold(change: np.ndarray, floor: float = 0.02) -> float:
    """Otsu's threshold of a change map (as a fraction of 255), never below ``floor`` (sensor noise)."""
    u8 = np.clip(np.rint(change * 255.0), 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return max(float(t) / 255.0, floor)


def _min_pixels(shape: tuple[int, ...], frac: float) -> int:
    return max(4, int(round(frac * shape[0] * shape[1])))


def close(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological closing by a disc (dilate, then erode)."""
    return masks.erode(masks.dilate(mask, radius), radius) if radius > 0 else masks.as_bool(mask)


def open_(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological opening by a disc (erode, then dilate), clipped to the input."""
    if radius <= 0:
        return masks.as_bool(mask)
    m = masks.as_bool(mask)
    return masks.dilate(masks.erode(m, radius), radius) & m


def regions(changed: np.ndarray, max_regions: int) -> list[dict[str, list[int]]]:
    """The largest ``max_regions`` 8-connected regions as SAM prompts: ``box`` (x0, y0, x1, y1, pixels,
    inclusive) and ``point`` (x, y: the region pixel farthest from its border; first in row order on ties)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
    order = sorted(range(1, n), key=lambda k: (-int(stats[k, cv2.CC_STAT_AREA]), k))[:max_regions]
    out = []
    for k in order:
        x, y, w, h = (int(stats[k, i]) for i in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, 2, 3))
        region = np.pad(labels == k, 1).astype(np.uint8)  # padded: the image border counts as outside
        dist = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        py, px = np.unravel_index(int(np.argmax(dist)), dist.shape)
        out.append({"box": [x, y, x + w - 1, y + h - 1], "point": [int(px), int(py)]})
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; 0 when both are empty."""
    union = int(np.count_nonzero(a | b))
    return float(np.count_nonzero(a & b)) / union if union else 0.0


def derive_mask(
    image: np.ndarray,
    edited: np.ndarray,
    segmenter: SegmentEngine | None,
    cfg: DeriveConfig = DeriveConfig(),
    *,
    sam_name: str | None = None,
) -> DerivedMask:
    """The edit mask of one pair. ``segmenter=None`` uses the cleaned change map itself, holes filled."""
    change = change_map(image, edited, cfg.blur)
    thr = otsu_threshold(change) if cfg.threshold is None else float(cfg.threshold)
    min_px = _min_pixels(image.shape, cfg.min_area)
    changed = close(masks.remove_small(change > thr, min_px), cfg.close_px)
    changed = masks.remove_small(changed, min_px)
    prompts = regions(changed, cfg.max_regions)
    prov: dict[str, Any] = {
        "method": "sam" if segmenter is not None else "change-map",
        "threshold": round(thr, 6),
        "threshold_mode": "otsu" if cfg.threshold is None else "fixed",
        "prompts": prompts,
        "sam": sam_name if segmenter is not None else None,
        "options": asdict(cfg),
    }
    empty = np.zeros(image.shape[:2], bool)
    if not prompts:
        return DerivedMask(empty, 0.0, prov, f"no change above threshold {thr:.3f}")
    if segmenter is None:
        found = masks.fill_holes(changed)
    else:
        segmenter.set_image(image)
        found = empty.copy()
        for p in prompts:
            pts = np.array([p["point"]], np.float32) if cfg.points else None
            lbl = np.array([1], np.int64) if cfg.points else None
            res = segmenter.predict(
                points=pts, labels=lbl, box=np.array(p["box"], np.float32), multimask=False
            )
            found |= np.asarray(res.mask(), bool)
        found = masks.remove_small(open_(masks.fill_holes(found), cfg.open_px), min_px)
    quality = iou(found, changed)
    if not found.any():
        return DerivedMask(empty, 0.0, prov, "the segmenter returned an empty mask")
    return DerivedMask(masks.dilate(found, cfg.dilate_px), round(quality, 6), prov)
