"""Compositing: the pixel blend, the per-step latent blend, crop paste-back and Poisson seams.

Maths in docs/MATHS.md. Everything here is array-in / array-out; torch is only imported by
:class:`LatentBlender`, which runs inside the diffusers step callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maskpix_desktop.core import masks

#: ``trained``: a mask checkpoint's UNet takes the mask (core/maskcond); the others are training-free.
MASK_MODES = ("pixel", "latent", "crop", "trained")
SEAM_MODES = ("none", "poisson")
_CHUNK_PIXELS = 1 << 20


def prepare_mask(mask: np.ndarray, *, dilate: int = 0, feather: float = 0.0) -> np.ndarray:
    """The float mask used for compositing: optionally dilated (pixels), then Gaussian-feathered (sigma)."""
    m = masks.dilate(mask, dilate) if dilate else masks.as_bool(mask)
    return masks.feather(m, feather)


def composite(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``y = M*edit + (1-M)*orig`` rounded to uint8.

    Computed as ``orig + M*(edit - orig)`` in float32, so where ``M == 0`` the output is the original
    exactly and where ``M == 1`` it is the edit exactly. Those pixels are copied (``cv2.copyTo``); the
    formula runs only on row chunks holding pixels with ``0 < M < 1`` (a feathered edge), and only those
    pixels take its value: bit for bit the whole-image formula, with no full-size float copies.
    """
    import cv2

    if orig.shape != edit.shape:
        raise ValueError(f"image shapes differ: {orig.shape} vs {edit.shape}")
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape != orig.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image {orig.shape[:2]}")
    out = np.array(orig, copy=True, order="C")
    edit = np.ascontiguousarray(edit)
    scale = None
    if np.issubdtype(m.dtype, np.integer):  # masks.as_float: 0..255 when the max is above 1
        scale = np.float32(255.0 if m.size and int(m.max()) > 1 else 1.0)
    step = max(1, _CHUNK_PIXELS // max(m.shape[1], 1))
    for y in range(0, m.shape[0], step):
        rows = slice(y, y + step)
        o, e = out[rows], edit[rows]
        if m.dtype == np.bool_:
            cv2.copyTo(e, np.ascontiguousarray(m[rows]).view(np.uint8), o)
            continue
        mr = _float_rows(m[rows], scale)  # NaN and values outside [0, 1] are only compared here
        cv2.copyTo(e, cv2.compare(mr, 1.0, cv2.CMP_GE), o)
        soft = cv2.bitwise_and(cv2.compare(mr, 0.0, cv2.CMP_GT), cv2.compare(mr, 1.0, cv2.CMP_LT))
        n = cv2.countNonZero(soft)
        if not n:
            continue
        if n * 8 >= soft.size:  # a wide soft band: the formula on the whole chunk, then a masked copy
            mc = np.clip(np.nan_to_num(mr, nan=0.0), 0.0, 1.0)
            of = o.astype(np.float32)
            yv = of + mc[..., None] * (e.astype(np.float32) - of)
            cv2.copyTo(np.clip(np.rint(yv), 0, 255).astype(np.uint8), soft, o)
        else:
            ys, xs = np.nonzero(soft)
            of = o[ys, xs].astype(np.float32)
            yv = of + mr[ys, xs][:, None] * (e[ys, xs].astype(np.float32) - of)
            o[ys, xs] = np.clip(np.rint(yv), 0, 255).astype(np.uint8)
    return out


def _float_rows(rows: np.ndarray, scale: np.float32 | None) -> np.ndarray:
    """A row chunk as C-contiguous float32; integers divided by ``scale`` (``masks.as_float``'s rule).

    Not clipped: the caller only compares it with 0 and 1 (NaN compares false, so it counts as 0, as in
    ``masks.as_float``) and uses its values where ``0 < M < 1``.
    """
    if scale is not None:
        return rows.astype(np.float32) / scale
    return np.ascontiguousarray(rows, dtype=np.float32)


def poisson_seam(orig: np.ndarray, composite_img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson-blend the masked region of ``composite_img`` into ``orig`` (cv2.seamlessClone).

    Pixels outside the mask's bounding box are the original's. Returns the composite unchanged when
    the mask is empty or touches too little area for OpenCV to clone.
    """
    import cv2

    hard = masks.as_bool(mask, threshold=0.01)
    box = masks.bbox(hard)
    if box is None:
        return composite_img.copy()
    h, w = hard.shape
    # seamlessClone needs the mask strictly inside the destination: keep a 1-pixel border free.
    hard = hard.copy()
    hard[[0, -1], :] = False
    hard[:, [0, -1]] = False
    box = masks.bbox(hard)
    if box is None:
        return composite_img.copy()
    x0, y0, x1, y1 = box
    center = ((x0 + x1) // 2, (y0 + y1) // 2)
    m8 = hard.astype(np.uint8) * 255  # OpenCV scales the mask by 1/255 into the gradient weights
    try:
        # The solve is per channel, so RGB in gives RGB out: no BGR copies of the full-size images.
        return cv2.seamlessClone(
            np.ascontiguousarray(composite_img), np.ascontiguousarray(orig), m8, center, cv2.NORMAL_CLONE
        )
    except cv2.error:
        return composite_img.copy()


@dataclass(frozen=True)
class CropWindow:
    """A crop (x0, y0, x1, y1) in original pixels, to edit small objects at full working resolution."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def around(cls, mask: np.ndarray, pad: float = 0.15) -> CropWindow | None:
        box = masks.padded_bbox(mask, pad=pad)
        return None if box is None else cls(*box)

    def cut(self, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr[self.y0 : self.y1, self.x0 : self.x1])

    def paste(self, base: np.ndarray, patch: np.ndarray) -> np.ndarray:
        out = base.copy()
        out[self.y0 : self.y1, self.x0 : self.x1] = patch
        return out

    @property
    def size(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def latent_mask(mask: np.ndarray, latent_hw: tuple[int, int], dilate_px: int) -> np.ndarray:
    """Mask area-downsampled to the latent grid after a small dilation (float32 in [0, 1])."""
    m = masks.dilate(mask, dilate_px) if dilate_px else masks.as_bool(mask)
    return masks.resize_mask(m, latent_hw, mode="area")


class LatentBlender:
    """``callback_on_step_end`` that pins the latents outside the mask to the noised source latents.

    After ``scheduler.step`` at index ``i`` the latents live at ``timesteps[i+1]``, so the background is
    replaced by ``add_noise(src, noise, timesteps[i+1])``; after the last step by ``src`` itself.
    ``src`` must be ``vae.encode(x).latent_dist.mode() * scaling_factor``.
    """

    def __init__(self, src: Any, noise: Any, mask: np.ndarray, inner: Any = None):
        import torch

        self.src = src
        self.noise = noise
        self.m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None].to(
            device=src.device, dtype=src.dtype
        )
        self.inner = inner  # another callback run first (progress / cancel)
        self.final = None

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
        import torch

        out = self.inner(pipe, i, t, kwargs) if self.inner is not None else {}
        lat = kwargs["latents"]
        timesteps = pipe.scheduler.timesteps
        if i + 1 < len(timesteps):
            t_next = timesteps[i + 1 : i + 2]
            bg = pipe.scheduler.add_noise(self.src, self.noise, t_next)
        else:
            bg = self.src
        m = self.m
        with torch.no_grad():
            lat = m * lat + (1 - m) * bg.to(lat.dtype)
        self.final = lat
        out = dict(out)
        out["latents"] = lat
        return out
