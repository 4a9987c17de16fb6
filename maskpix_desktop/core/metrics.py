"""Edit-quality metrics against the original image, on the user's mask M (docs/MATHS.md).

Conventions:
- images are HxWx3 uint8 RGB; masks are HxW bool or float (a pixel is inside M when its value >= 0.5);
- "outside" means the background ~M, where a masked edit should leave the image untouched;
- every function is pure numpy / OpenCV; only :class:`ClipScorer` needs torch and open_clip, imported
  lazily, so importing this module stays cheap.

The single-metric functions (:func:`background_ssim`, :func:`pie_background_ssim`, ...) are the
definitions: full resolution, float64 (the PIE-Bench evaluation uses them). :func:`compute_metrics` and
:func:`compare`, which run after every edit, take a fast path with the same maths (docs/PERFORMANCE.md,
"Edit loop"): the pixel statistics (leakage, mIoU, PSNRs, MSE) stay exact at full resolution, computed
from one difference image and integer histograms; SSIM runs in float32, once per edit (the PIE-Bench
variant is recomputed only in the band where its zeroed mask changes the window), with the original's
half shared by both views, and on images over :data:`SSIM_MAX_PIXELS` on an ``f x f`` area-averaged copy
(SSIM's 11-pixel window is defined at viewing resolution; Wang et al.'s reference code downsamples the
same way). ``reference=True`` runs the definitions instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from maskpix_desktop.core import metric_catalog
from maskpix_desktop.core.errors import MaskPixError, MissingWeightsError, OutOfMemoryError, WeightsError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLIP_FETCH_COMMAND",
    "METRIC_INFO",
    "SSIM_MAX_PIXELS",
    "ClipScorer",
    "background_psnr",
    "background_ssim",
    "change_map",
    "compare",
    "compute_metrics",
    "leakage",
    "metrics_provenance",
    "pie_background_mse",
    "pie_background_psnr",
    "pie_background_ssim",
    "region_crop",
    "spatial_miou",
    "ssim_factor",
    "ssim_map",
]

CLIP_FETCH_COMMAND = "maskpix-cli models download clip"

# SSIM constants (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255.
_SSIM_KSIZE = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2

# compute_metrics: SSIM of images with more pixels runs on an f x f area-averaged copy (about a 1080p screen).
SSIM_MAX_PIXELS = 1 << 21
_SSIM_TILE = 128  # band tiles of the PIE-Bench SSIM (see _SsimShared)

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

#: key -> (label, tooltip) of the app's metrics, from :data:`core.metric_catalog.CATALOG` (for old callers).
METRIC_INFO: dict[str, tuple[str, str]] = {
    k: (metric_catalog.spec(k).label, metric_catalog.spec(k).tooltip) for k in metric_catalog.APP_KEYS
}


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


def pie_background_ssim(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> float:
    """PIE-Bench background SSIM: SSIM of both images times (1 - M).

    Like torchmetrics (which PIE-Bench uses) the map is averaged over the interior, leaving out a
    5-pixel border where the window would leave the image (whole map for images under 11 px).
    """
    a, b = _pie_masked(orig, edit, mask)
    s = ssim_map(a * 255.0, b * 255.0)
    r = _SSIM_KSIZE // 2
    if s.shape[0] > 2 * r and s.shape[1] > 2 * r:
        s = s[r:-r, r:-r]
    return float(s.mean())


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


# ------------------------------------------------------------------------------------------------ CLIP


def _is_weights_path(open_clip: Any, model_name: str, pretrained: str) -> bool:
    """A file path rather than a tag: a weights suffix or a separator, or an existing file that is no tag."""
    if pretrained.lower().endswith(_WEIGHT_SUFFIXES) or "/" in pretrained or os.sep in pretrained:
        return True
    return (
        not open_clip.get_pretrained_cfg(model_name, pretrained) and Path(pretrained).expanduser().is_file()
    )


def _register_config(open_clip: Any, config_path: Path, model_name: str) -> None:
    """Register a JSON model config with open_clip under its file stem (which must be ``model_name``)."""
    import json

    if config_path.stem != model_name:
        raise MaskPixError(
            f"CLIP config {config_path} registers the model '{config_path.stem}', not '{model_name}': "
            "name the file after the model."
        )
    if not config_path.is_file():
        raise MissingWeightsError(f"CLIP model config '{model_name}'", config_path, CLIP_FETCH_COMMAND)
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"CLIP model config {config_path} is not readable JSON: {e}") from e
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise WeightsError(f"CLIP model config {config_path} lacks embed_dim / vision_cfg / text_cfg.")
    if open_clip.get_model_config(model_name) != cfg:
        open_clip.add_model_config(config_path)


def _resolve_tag(open_clip: Any, model_name: str, tag: str, cache_dir: Path | None) -> tuple[Path, dict]:
    """Find a tag's weights in the local cache without touching the network; returns (file, tag config)."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise MaskPixError(
            f"'{tag}' is neither a weights file nor a known open_clip tag for {model_name} (known: {known})."
        )
    expected: Path | None = None
    hf_hub = cfg.get("hf_hub", "")
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit), cfg
        root = Path(cache_dir) if cache_dir is not None else Path(hf_constants.HF_HUB_CACHE)
        expected = root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "<revision>" / names[0]
    url = cfg.get("url", "")
    if url:
        root = Path(cache_dir) if cache_dir is not None else Path("~/.cache/clip").expanduser()
        target = root / os.path.basename(url)
        if target.is_file():
            return target, cfg
        expected = expected or target
    raise MissingWeightsError(
        f"CLIP {model_name}/{tag}", expected or Path(str(cache_dir)), CLIP_FETCH_COMMAND
    )


class ClipScorer:
    """An open_clip model in eval mode with its preprocessing and tokenizer; loaded only from local files."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, device: str, name: str):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.name = name

    @classmethod
    def load(
        cls,
        model_name: str = "ViT-B-32",
        pretrained: str | Path = "openai",
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        config_path: str | Path | None = None,
    ) -> ClipScorer:
        """Load a CLIP model offline.

        ``pretrained`` is either an open_clip tag, looked up in ``cache_dir`` (open_clip's cache: the
        Hugging Face hub cache layout, or the URL file name) and never downloaded, or a local weights file
        (.safetensors / .bin / .pt / .pth state dict, loaded with ``weights_only=True``). ``config_path``
        registers a JSON model config (file stem = ``model_name``) for architectures open_clip lacks.
        Raises MissingWeightsError when files are absent and WeightsError when they are unusable.
        """
        import open_clip
        import torch

        cache = Path(cache_dir).expanduser() if cache_dir is not None else None
        if config_path is not None:
            _register_config(open_clip, Path(config_path).expanduser(), model_name)
        if open_clip.get_model_config(model_name) is None:
            raise MaskPixError(f"Unknown CLIP architecture '{model_name}' (no open_clip model config).")

        overrides: dict[str, Any] = {}
        pretrained = str(pretrained)
        if _is_weights_path(open_clip, model_name, pretrained):
            weights = Path(pretrained).expanduser()
            if not weights.is_file():
                raise MissingWeightsError(f"CLIP {model_name}", weights, CLIP_FETCH_COMMAND)
            name = f"{model_name}/{weights.name}"
        else:
            weights, tag_cfg = _resolve_tag(open_clip, model_name, pretrained, cache)
            name = f"{model_name}/{pretrained}"
            # What open_clip takes from a tag's config, applied by hand since we pass a file path.
            overrides = {
                "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
                "image_mean": tag_cfg.get("mean"),
                "image_std": tag_cfg.get("std"),
                "image_interpolation": tag_cfg.get("interpolation"),
                "image_resize_mode": tag_cfg.get("resize_mode"),
            }
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=str(weights), device=device, weights_only=True, **overrides
            )
        except torch.cuda.OutOfMemoryError as e:
            raise OutOfMemoryError(f"Out of memory loading CLIP {name} on {device}.") from e
        except Exception as e:
            detail = (str(e).strip().splitlines() or [""])[0][:300]
            raise WeightsError(
                f"CLIP weights {weights} could not be loaded as {model_name} ({type(e).__name__}: {detail})"
            ) from e
        model.eval()
        try:
            tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as e:
            raise MaskPixError(f"The tokenizer of CLIP {model_name} is not available offline: {e}") from e
        return cls(model, preprocess, tokenizer, device, name)

    def image_features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """L2-normalised image embeddings (N x D, float32, on the model's device) of RGB uint8 images."""
        import torch
        from PIL import Image

        with torch.inference_mode():
            batch = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(im))) for im in images])
            feats = self.model.encode_image(batch.to(self.device)).float()
            return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings (N x D, float32)."""
        import torch

        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float()
            return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @staticmethod
    def _score(img_feat: torch.Tensor, txt_feat: torch.Tensor) -> float:
        return max(100.0 * float((img_feat * txt_feat).sum()), 0.0)

    @staticmethod
    def _direction(src_img: Any, edit_img: Any, src_txt: Any, tgt_txt: Any) -> float:
        import torch

        d_img, d_txt = edit_img - src_img, tgt_txt - src_txt
        return float(torch.nn.functional.cosine_similarity(d_img, d_txt, dim=0, eps=1e-8))

    def score(self, image: np.ndarray, text: str) -> float:
        """CLIP score ``max(100 * cos(E_img, E_text), 0)``."""
        return self._score(self.image_features([image])[0], self.text_features([text])[0])

    def region_score(self, image: np.ndarray, mask: np.ndarray, text: str) -> float:
        """CLIP score of :func:`region_crop` (padded mask box, non-mask pixels mean-filled); nan if empty."""
        crop = region_crop(image, mask)
        return float("nan") if crop is None else self.score(crop, text)

    def direction(self, src_img: np.ndarray, edit_img: np.ndarray, src_text: str, tgt_text: str) -> float:
        """CLIP directional similarity ``cos(E(edit) - E(src), E(tgt_text) - E(src_text))``, in -1..1.

        Uses normalised embeddings; 0.0 when either difference vanishes (e.g. an unchanged image).
        """
        img = self.image_features([src_img, edit_img])
        txt = self.text_features([src_text, tgt_text])
        return self._direction(img[0], img[1], txt[0], txt[1])


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


_CHANGE_LEVELS = 3 * 255 + 1  # channel sums of |edit - orig|: the change map takes these / 3
_CHUNK_PIXELS = 1 << 22


def _pixel_metrics(
    orig: np.ndarray, edit: np.ndarray, inside: np.ndarray, keep8: np.ndarray, tau: float | None
) -> dict[str, float]:
    """Leakage, mIoU and both PSNRs / the MSE, exact at full resolution.

    The change map only takes the values ``k / 3`` (k = channel sum of the absolute difference, 0..765),
    so leakage and mIoU come from two integer histograms of k (inside / outside M); the squared errors
    from ``cv2.norm`` (integer sums). Same numbers as the single-metric functions up to float64 summation
    order.
    """
    h, w = inside.shape
    hist = np.zeros(2 * _CHANGE_LEVELS, np.int64)
    sse = 0.0
    inside8 = inside.view(np.uint8)
    step = max(1, _CHUNK_PIXELS // max(w, 1))
    bins, span = [2 * _CHANGE_LEVELS], [0, 2 * _CHANGE_LEVELS]
    for y in range(0, h, step):  # bounded temporaries; float32 histogram counts stay exact below 2**24
        rows = slice(y, y + step)
        d = cv2.absdiff(orig[rows], edit[rows])
        k = np.add(d[..., 0], d[..., 1], dtype=np.uint16)
        k += d[..., 2]
        k += inside8[rows] * np.uint16(_CHANGE_LEVELS)  # inside M: bins 766 and up
        hist += cv2.calcHist([k], [0], None, bins, span).ravel().astype(np.int64)
        sse += float(cv2.norm(d, cv2.NORM_L2SQR, mask=keep8[rows]))
    h_out, h_in = hist[:_CHANGE_LEVELS], hist[_CHANGE_LEVELS:]
    n_out, n_in = int(h_out.sum()), int(h_in.sum())
    level = np.arange(_CHANGE_LEVELS, dtype=np.float32) / np.float32(3.0)  # exactly change_map's values
    level64 = level.astype(np.float64)
    out: dict[str, float] = {}
    if n_out:
        out["leakage_mean"] = float(h_out @ level64) / n_out
        # numpy's default percentile: position 0.99 (n - 1) in the sorted values, linear interpolation
        pos = 0.99 * (n_out - 1)
        lo = int(math.floor(pos))
        cum = np.cumsum(h_out)
        a, b = level64[np.searchsorted(cum, lo, "right")], level64[np.searchsorted(cum, lo + 1, "right")]
        g = pos - lo
        out["leakage_p99"] = float(a + (b - a) * g if g < 0.5 else b - (b - a) * (1 - g))
    else:
        out["leakage_mean"] = out["leakage_p99"] = 0.0
    if tau is None:
        tau = max(10.0, float((h_out + h_in) @ level64) / max(n_out + n_in, 1))
    changed = level > tau  # as spatial_miou compares the float32 map with tau

    def iou(inter: int, union: int) -> float:
        return 1.0 if union == 0 else inter / union

    fg = iou(int(h_in[changed].sum()), n_in + int(h_out[changed].sum()))
    bg = iou(int(h_out[~changed].sum()), n_out + int(h_in[~changed].sum()))
    out["miou"], out["miou_tau"] = (fg + bg) / 2.0, float(tau)
    out["bg_psnr"] = _psnr_from_mse(sse / (3 * n_out), 255.0) if n_out else float("nan")
    out["pie_mse"] = sse / (255.0 * 255.0 * 3 * h * w)
    out["pie_psnr"] = _psnr_from_mse(out["pie_mse"], 1.0)
    return out


# ------------------------------------------------------------------------------------------ aggregates


def _clip_metrics(
    orig: np.ndarray,
    edit: np.ndarray,
    mask: np.ndarray,
    clip: ClipScorer,
    text: str | None,
    src_caption: str | None,
    tgt_caption: str | None,
    cache: dict[Any, Any],
) -> dict[str, float]:
    """CLIP entries; ``cache`` keeps the original's and the texts' embeddings across calls (compare)."""
    out: dict[str, float] = {}
    want_dir = src_caption is not None and tgt_caption is not None
    if text is None and not want_dir:
        return out
    crop = region_crop(edit, mask) if text is not None else None
    imgs = [edit] + ([crop] if crop is not None else [])
    feats = clip.image_features(imgs)
    if text is not None:
        if ("text", text) not in cache:
            cache[("text", text)] = clip.text_features([text])[0]
        t = cache[("text", text)]
        out["clip_score"] = clip._score(feats[0], t)
        out["clip_score_region"] = clip._score(feats[1], t) if crop is not None else float("nan")
    if want_dir:
        if "orig" not in cache:
            cache["orig"] = clip.image_features([orig])[0]
        key = ("captions", src_caption, tgt_caption)
        if key not in cache:
            cache[key] = clip.text_features([src_caption, tgt_caption])
        src_t, tgt_t = cache[key]
        out["clip_direction"] = clip._direction(cache["orig"], feats[0], src_t, tgt_t)
    return out


def compute_metrics(
    orig: np.ndarray,
    edit: np.ndarray,
    mask: np.ndarray,
    *,
    text: str | None = None,
    clip: ClipScorer | None = None,
    tau: float | None = None,
    src_caption: str | None = None,
    tgt_caption: str | None = None,
    reference: bool = False,
) -> dict[str, float]:
    """All metrics of one edit, keyed as in :data:`core.metric_catalog.APP_KEYS`.

    Always: leakage_mean, leakage_p99, miou, miou_tau, bg_psnr, bg_ssim, pie_psnr, pie_ssim, pie_mse
    (PSNRs may be inf; background metrics are nan for a mask covering everything). With ``clip`` and
    ``text`` (a description of the wanted result): clip_score, clip_score_region. With ``clip`` and both
    captions: clip_direction. The CLIP model's name is not a float: take it from
    :func:`metrics_provenance`. The fast path (module docstring) agrees with the single-metric functions
    to float32 rounding in SSIM (float64 summation order elsewhere) up to :data:`SSIM_MAX_PIXELS`;
    ``reference=True`` calls those functions instead (slow on large photos).
    """
    return _compute(orig, edit, mask, {}, text, clip, tau, src_caption, tgt_caption, reference)


def _compute(
    orig: np.ndarray,
    edit: np.ndarray,
    mask: np.ndarray,
    cache: dict[Any, Any],
    text: str | None = None,
    clip: ClipScorer | None = None,
    tau: float | None = None,
    src_caption: str | None = None,
    tgt_caption: str | None = None,
    reference: bool = False,
) -> dict[str, float]:
    _check_images(orig, edit)
    m = _as_bool_mask(mask, orig.shape)
    out = _reference_metrics(orig, edit, m, tau) if reference else _fast_metrics(orig, edit, m, tau, cache)
    if clip is not None:
        out.update(_clip_metrics(orig, edit, m, clip, text, src_caption, tgt_caption, cache))
    return out


def _reference_metrics(
    orig: np.ndarray, edit: np.ndarray, m: np.ndarray, tau: float | None
) -> dict[str, float]:
    """The pixel metrics from the single-metric functions (the definitions)."""
    d = change_map(orig, edit)
    leak_mean, leak_p99 = leakage(d, m)
    miou, tau_used = spatial_miou(d, m, tau)
    return {
        "leakage_mean": leak_mean,
        "leakage_p99": leak_p99,
        "miou": miou,
        "miou_tau": tau_used,
        "bg_psnr": background_psnr(orig, edit, m),
        "bg_ssim": background_ssim(orig, edit, m),
        "pie_psnr": pie_background_psnr(orig, edit, m),
        "pie_ssim": pie_background_ssim(orig, edit, m),
        "pie_mse": pie_background_mse(orig, edit, m),
    }


def _fast_metrics(
    orig: np.ndarray, edit: np.ndarray, m: np.ndarray, tau: float | None, cache: dict[Any, Any]
) -> dict[str, float]:
    """The same keys as :func:`_reference_metrics` by the fast path; ``cache`` keeps the original's half."""
    orig, edit = np.ascontiguousarray(orig), np.ascontiguousarray(edit)
    inside = np.ascontiguousarray(m)
    if "ssim" not in cache:
        keep8 = (~inside).view(np.uint8)
        cache["ssim"] = _SsimShared(orig, inside, keep8, None)
    shared: _SsimShared = cache["ssim"]
    out = _pixel_metrics(orig, edit, inside, shared.keep8, tau)
    out["bg_ssim"], out["pie_ssim"] = shared.scores(edit)
    keys = ("leakage_mean", "leakage_p99", "miou", "miou_tau", "bg_psnr", "bg_ssim", "pie_psnr", "pie_ssim")
    return {k: out[k] for k in (*keys, "pie_mse")}


def compare(
    orig: np.ndarray, baseline: np.ndarray, blended: np.ndarray, mask: np.ndarray, **kw: Any
) -> dict[str, dict[str, float]]:
    """``{"baseline": ..., "blended": ...}`` from :func:`compute_metrics` (same keyword arguments).

    The original's and the texts' CLIP embeddings are computed once and shared.
    """
    cache: dict[Any, Any] = {}
    return {
        "baseline": _compute(orig, baseline, mask, cache, **kw),
        "blended": _compute(orig, blended, mask, cache, **kw),
    }


def metrics_provenance(clip: ClipScorer | None = None) -> dict[str, str]:
    """String facts to store next to the numbers: ``{"clip_model": "ViT-B-32/openai"}`` when CLIP ran."""
    return {"clip_model": clip.name} if clip is not None else {}
