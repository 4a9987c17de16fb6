"""Pixel metrics against the original on the user's mask M: change map, leakage, mIoU, PSNRs, the PIE-Bench
MSE / PSNR, and the region crop CLIP scores (docs/MATHS.md). Pure numpy; full resolution, float64."""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------------------------- helpers


def _check_images(orig: np.ndarray, edit: np.ndarray) -> None:
    if orig.ndim != 3 or orig.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {orig.shape}")
    if orig.shape != edit.shape:
        raise ValueError(f"image shapes differ: {orig.shape} vs {edit.shape}")


def _as_bool_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return the mask as HxW bool (inside where value >= 0.5), checking it matches ``shape[:2]``."""
    m = np.asarray(mask)
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"mask shape {m.shape} does not match image size {tuple(shape[:2])}")
    return m if m.dtype == np.bool_ else m >= 0.5


# ------------------------------------------------------------------------------------- pixel metrics


def change_map(orig: np.ndarray, edit: np.ndarray) -> np.ndarray:
    """Per-pixel change ``D = mean_c |edit - orig|`` as float32 HxW in 0..255."""
    _check_images(orig, edit)
    diff = np.abs(edit.astype(np.int16) - orig.astype(np.int16))
    return diff.mean(axis=2, dtype=np.float32)


def leakage(change: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean and 99th percentile (linear interpolation) of ``change`` outside the mask; (0, 0) if none."""
    outside = change[~_as_bool_mask(mask, change.shape)]
    if outside.size == 0:
        return 0.0, 0.0
    return float(outside.mean(dtype=np.float64)), float(np.percentile(outside, 99))


def spatial_miou(change: np.ndarray, mask: np.ndarray, tau: float | None = None) -> tuple[float, float]:
    """Mean IoU of the two classes between ``change > tau`` and the mask; returns ``(miou, tau)``.

    tau defaults to ``max(10, mean(change))``. Foreground IoU compares changed pixels with M, background
    IoU unchanged pixels with ~M; the IoU of two empty sets counts as 1.
    """
    m = _as_bool_mask(mask, change.shape)
    if tau is None:
        tau = max(10.0, float(change.mean(dtype=np.float64)))
    changed = change > tau

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        union = int(np.count_nonzero(a | b))
        return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union

    return (iou(changed, m) + iou(~changed, ~m)) / 2.0, float(tau)


def _psnr_from_mse(mse: float, peak: float) -> float:
    return float("inf") if mse == 0.0 else float(10.0 * math.log10(peak * peak / mse))


def background_psnr(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) over all channels of the pixels outside the mask; inf if equal, nan if none."""
    _check_images(orig, edit)
    outside = ~_as_bool_mask(mask, orig.shape)
    if not outside.any():
        return float("nan")
    diff = edit[outside].astype(np.float64) - orig[outside].astype(np.float64)
    return _psnr_from_mse(float(np.mean(diff * diff)), 255.0)


def _pie_masked(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images on the [0, 1] scale times (1 - M), with M binarised at 0.5 (as PIE-Bench's masks)."""
    _check_images(orig, edit)
    keep = (~_as_bool_mask(mask, orig.shape))[..., None].astype(np.float64)
    return orig.astype(np.float64) / 255.0 * keep, edit.astype(np.float64) / 255.0 * keep


def pie_background_mse(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> float:
    """PIE-Bench background MSE: images in [0, 1] times (1 - M), MSE over the whole image (not x10^4)."""
    a, b = _pie_masked(orig, edit, mask)
    return float(np.mean((a - b) ** 2))


def pie_background_psnr(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> float:
    """PIE-Bench background PSNR (dB): whole-image PSNR of both images times (1 - M); inf if equal."""
    return _psnr_from_mse(pie_background_mse(orig, edit, mask), 1.0)


def pie_masked_frame(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PIE-Bench's "edited part" image for CLIP: the full frame times M (``np.uint8(img * mask)``), pixels
    outside M black. (MaskPix's :func:`region_crop` instead crops the mask's padded box.)"""
    m = _as_bool_mask(mask, image.shape)
    return np.where(m[..., None], image, np.uint8(0)).astype(np.uint8)


def region_crop(
    image: np.ndarray, mask: np.ndarray, pad_frac: float = 0.1, min_pad: int = 4
) -> np.ndarray | None:
    """The image region CLIP scores for the mask, or None for an empty mask.

    The mask's bounding box is padded by ``max(min_pad, round(pad_frac * longest side))`` pixels (clipped to
    the image); crop pixels outside the mask are set to the image's mean colour (rounded), and the crop is
    padded with that colour, centred, to a square so CLIP's centre crop keeps all of it.
    """
    m = _as_bool_mask(mask, image.shape)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return None
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    pad = max(int(min_pad), int(round(pad_frac * max(y1 - y0, x1 - x0))))
    h, w = m.shape
    y0, y1, x0, x1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
    fill = np.round(image.reshape(-1, 3).mean(axis=0, dtype=np.float64)).astype(np.uint8)
    crop = image[y0:y1, x0:x1].copy()
    crop[~m[y0:y1, x0:x1]] = fill
    ch, cw = crop.shape[:2]
    side = max(ch, cw)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:] = fill
    oy, ox = (side - ch) // 2, (side - cw) // 2
    out[oy : oy + ch, ox : ox + cw] = crop
    return out
