"""SSIM (Wang et al. 2004): the definitions (:func:`ssim_map`, :func:`background_ssim`,
:func:`pie_background_ssim`, float64, full resolution) and the edit loop's float32 fast path
(:class:`_SsimShared`, :func:`ssim_factor`; docs/PERFORMANCE.md, "Edit loop")."""

from __future__ import annotations

import math

import cv2
import numpy as np

from maskpix_desktop.core.metrics.pixel import _as_bool_mask, _check_images, _pie_masked

# SSIM constants (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255.
_SSIM_KSIZE = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2

# compute_metrics: SSIM of images with more pixels runs on an f x f area-averaged copy (about a 1080p screen).
SSIM_MAX_PIXELS = 1 << 21
_SSIM_TILE = 128  # band tiles of the PIE-Bench SSIM (see _SsimShared)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map (HxW float64, mean over channels) of two same-shape images on the 0..255 scale.

    Wang et al.: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, computed per channel with
    ``cv2.GaussianBlur`` (border: reflect-101) on the full image, then averaged over channels.
    """
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    x = a.astype(np.float64)
    y = b.astype(np.float64)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(
            img,
            (_SSIM_KSIZE, _SSIM_KSIZE),
            _SSIM_SIGMA,
            sigmaY=_SSIM_SIGMA,
            borderType=cv2.BORDER_REFLECT_101,
        )

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx = blur(x * x) - mu_xx
    s_yy = blur(y * y) - mu_yy
    s_xy = blur(x * y) - mu_xy
    num = (2.0 * mu_xy + _SSIM_C1) * (2.0 * s_xy + _SSIM_C2)
    den = (mu_xx + mu_yy + _SSIM_C1) * (s_xx + s_yy + _SSIM_C2)
    s = num / den
    return s.mean(axis=2) if s.ndim == 3 else s


def background_ssim(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> float:
    """SSIM map of the full images averaged over the pixels outside the mask; nan if there are none.

    The mask is not eroded: windows centred just outside M also see changes inside it, so a seam at the
    mask border lowers the score (on purpose: that is what a viewer sees).
    """
    _check_images(orig, edit)
    outside = ~_as_bool_mask(mask, orig.shape)
    if not outside.any():
        return float("nan")
    return float(ssim_map(orig, edit)[outside].mean())


#: How the PIE-Bench SSIM map is averaged: torchmetrics <= 1.4 cut a 5-pixel border (``border-cut``, the
#: default: PIE-Bench's code ran with such a version), torchmetrics >= 1.5 averages the whole map.
SSIM_LAYOUTS = ("border-cut", "full-map")


def ssim_layout_mean(s: np.ndarray, layout: str = "border-cut") -> float:
    """Mean of an SSIM map in one of :data:`SSIM_LAYOUTS` (the whole map for images under 11 px)."""
    if layout not in SSIM_LAYOUTS:
        raise ValueError(f"SSIM layout must be one of {', '.join(SSIM_LAYOUTS)}, not {layout!r}")
    r = _SSIM_KSIZE // 2
    if layout == "border-cut" and s.shape[0] > 2 * r and s.shape[1] > 2 * r:
        s = s[r:-r, r:-r]
    return float(s.mean())


def pie_ssim_map(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The SSIM map (channel mean, reflect-101 borders) of both images times (1 - M)."""
    a, b = _pie_masked(orig, edit, mask)
    return ssim_map(a * 255.0, b * 255.0)


def pie_background_ssim(
    orig: np.ndarray, edit: np.ndarray, mask: np.ndarray, layout: str = "border-cut"
) -> float:
    """PIE-Bench background SSIM: SSIM of both images times (1 - M).

    ``layout="border-cut"`` (default) averages the map like torchmetrics <= 1.4 (which PIE-Bench used),
    leaving out a 5-pixel border where the window would leave the image; ``"full-map"`` averages the
    whole map like torchmetrics >= 1.5.
    """
    return ssim_layout_mean(pie_ssim_map(orig, edit, mask), layout)


# ------------------------------------------------------------------------------- edit-loop fast path


def ssim_factor(h: int, w: int, max_pixels: int | None = None) -> int:
    """The integer factor ``f`` compute_metrics shrinks an ``h x w`` image by for SSIM (1: full size)."""
    limit = SSIM_MAX_PIXELS if max_pixels is None else max_pixels
    f = max(1, math.ceil(math.sqrt(h * w / limit)))
    while f > 1 and (h // (f - 1)) * (w // (f - 1)) <= limit:  # sqrt rounding
        f -= 1
    return f


def _shrink(img: np.ndarray, f: int) -> np.ndarray:
    """float32 copy of ``img`` after ``f x f`` block means (cv2.INTER_AREA, 8-bit; partial blocks dropped)."""
    if f > 1:
        h, w = img.shape[0] // f, img.shape[1] // f
        img = cv2.resize(img[: h * f, : w * f], (w, h), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32)


_CHANNEL_MEAN = np.full((1, 3), 1.0 / 3.0, np.float32)


def _blur32(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(
        img, (_SSIM_KSIZE, _SSIM_KSIZE), _SSIM_SIGMA, sigmaY=_SSIM_SIGMA, borderType=cv2.BORDER_REFLECT_101
    )


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, centred image, variance) of float32 ``x``; second moments of ``x - 128`` (less cancellation)."""
    mu = _blur32(x)
    xc = x - np.float32(128.0)
    muc = mu - np.float32(128.0)
    return mu, xc, _blur32(xc * xc) - muc * muc


def _ssim32(mx_: tuple, my_: tuple) -> np.ndarray:
    """SSIM map (HxW float32, channel mean) from both images' :func:`_moments`."""
    mu_x, xc, v_x = mx_
    mu_y, yc, v_y = my_
    cov = _blur32(xc * yc) - (mu_x - np.float32(128.0)) * (mu_y - np.float32(128.0))
    c1, c2, two = np.float32(_SSIM_C1), np.float32(_SSIM_C2), np.float32(2.0)
    num = (two * mu_x * mu_y + c1) * (two * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (v_x + v_y + c2)
    return cv2.transform(num / den, _CHANNEL_MEAN)  # HxW: mean over the three channels


class _SsimShared:
    """The original's half of both SSIMs, shared by every edit compared with the same original and mask.

    Working images are ``f x f`` block means (f from :func:`ssim_factor`). The PIE-Bench pair (both
    images zeroed in M) equals the plain pair outside the blocks that hold masked pixels, so its map
    equals the plain map wherever the 11x11 window misses those blocks, and is exactly 1 wherever the
    window lies in fully masked blocks (both images 0). Only the band in between is recomputed, on
    ``_SSIM_TILE``-sized tiles with a 5-pixel halo (the whole map when the band covers most tiles).
    """

    def __init__(self, orig: np.ndarray, inside: np.ndarray, keep8: np.ndarray, max_pixels: int | None):
        h, w = inside.shape
        self.f = f = ssim_factor(h, w, max_pixels)
        self.keep8 = keep8
        self.plain = _moments(_shrink(orig, f))
        if f > 1:
            hs, ws = h // f, w // f
            frac = cv2.resize(
                inside[: hs * f, : ws * f].astype(np.float32), (ws, hs), interpolation=cv2.INTER_AREA
            )
            count = np.rint(frac * np.float32(f * f))  # masked pixels per block, exact
            self.w_out = 1.0 - count.astype(np.float64) / (f * f)
            touched, full = count > 0, count == f * f
        else:
            hs, ws = h, w
            self.w_out = (~inside).astype(np.float64)
            touched, full = inside, inside
        self.r = r = _SSIM_KSIZE // 2
        kernel = np.ones((_SSIM_KSIZE, _SSIM_KSIZE), np.uint8)
        # outside the image counts as "not touched" for dilate and "full" for erode: windows are clipped,
        # which is what reflect-101 sees for an 11-pixel window
        near = cv2.dilate(touched.view(np.uint8), kernel).view(bool)
        self.ones = cv2.erode(full.view(np.uint8), kernel).view(bool)
        self.band = near & ~self.ones
        t = _SSIM_TILE
        ty, tx = -(-hs // t), -(-ws // t)
        padded = np.zeros((ty * t, tx * t), bool)
        padded[:hs, :ws] = self.band
        hit = np.argwhere(padded.reshape(ty, t, tx, t).any(axis=(1, 3)))
        self.tiles: list[tuple[tuple[int, ...], tuple]] | None = None
        self.pie_full: tuple | None = None
        if len(hit) * (t + 2 * r) ** 2 > 0.5 * hs * ws:
            self.pie_full = _moments(self._pie(orig, (0, hs, 0, ws)))
            return
        self.tiles = []
        for i, j in hit:
            y0, x0 = int(i) * t, int(j) * t
            y1, x1 = min(y0 + t, hs), min(x0 + t, ws)
            box = (y0, y1, x0, x1, max(0, y0 - r), min(hs, y1 + r), max(0, x0 - r), min(ws, x1 + r))
            self.tiles.append((box, _moments(self._pie(orig, box[4:]))))

    def _pie(self, img: np.ndarray, box: tuple[int, ...]) -> np.ndarray:
        """Working-size PIE-Bench image (masked pixels 0, then shrunk) of the working box (y0, y1, x0, x1)."""
        f = self.f
        y0, y1, x0, x1 = (v * f for v in box)
        return _shrink(cv2.copyTo(img[y0:y1, x0:x1], self.keep8[y0:y1, x0:x1]), f)  # copyTo zero-fills

    def maps(self, edit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(plain SSIM map, PIE-Bench SSIM map) of ``edit`` against the original, at the working size."""
        plain = _ssim32(self.plain, _moments(_shrink(edit, self.f)))
        hs, ws = plain.shape
        if self.tiles is None:
            assert self.pie_full is not None
            return plain, _ssim32(self.pie_full, _moments(self._pie(edit, (0, hs, 0, ws))))
        pie = plain.copy()
        pie[self.ones] = 1.0
        for (y0, y1, x0, x1, a0, a1, b0, b1), mom_x in self.tiles:
            local = _ssim32(mom_x, _moments(self._pie(edit, (a0, a1, b0, b1))))
            sel = self.band[y0:y1, x0:x1]
            pie[y0:y1, x0:x1][sel] = local[y0 - a0 : y1 - a0, x0 - b0 : x1 - b0][sel]
        return plain, pie

    def scores(self, edit: np.ndarray) -> tuple[float, float]:
        """(bg_ssim, pie_ssim): the plain map averaged over the background (each working pixel weighted by
        its fraction outside M), the PIE-Bench map over its interior (5-pixel border left out)."""
        plain, pie = self.maps(edit)
        total = float(self.w_out.sum())
        bg = float("nan") if total == 0.0 else float(np.vdot(plain.astype(np.float64), self.w_out)) / total
        r = self.r
        if pie.shape[0] > 2 * r and pie.shape[1] > 2 * r:
            pie = pie[r:-r, r:-r]
        return bg, float(pie.mean(dtype=np.float64))
