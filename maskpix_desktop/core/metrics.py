"""Edit-quality metrics against the original image, on the user's mask M (DESIGN.md section 2).

Conventions:
- images are HxWx3 uint8 RGB; masks are HxW bool or float (a pixel is inside M when its value >= 0.5);
- "outside" means the background ~M, where a masked edit should leave the image untouched;
- every function is pure numpy / OpenCV; only :class:`ClipScorer` needs torch and open_clip, imported
  lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from maskpix_desktop.core.errors import MaskPixError, MissingWeightsError, OutOfMemoryError, WeightsError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLIP_FETCH_COMMAND",
    "METRIC_INFO",
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
    "ssim_map",
]

CLIP_FETCH_COMMAND = "maskpix-cli models download clip"

# SSIM constants (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255.
_SSIM_KSIZE = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

METRIC_INFO: dict[str, tuple[str, str]] = {
    "leakage_mean": (
        "Leakage (mean)",
        "Mean per-pixel change |edit - original| (0-255, channel mean) outside the mask. Lower is better.",
    ),
    "leakage_p99": (
        "Leakage (p99)",
        "99th percentile of the change outside the mask: the worst local spill. Lower is better.",
    ),
    "miou": (
        "Change mIoU",
        "Mean IoU between 'changed pixels' (change > tau) and the mask, over both classes. Higher is better.",
    ),
    "miou_tau": (
        "mIoU threshold",
        "Change threshold tau (0-255) used for mIoU; default max(10, mean change). Informational.",
    ),
    "bg_psnr": (
        "Background PSNR",
        "PSNR (dB) on the pixels outside the mask only; infinite when untouched. Higher is better.",
    ),
    "bg_ssim": (
        "Background SSIM",
        "SSIM map (11x11 Gaussian) averaged over pixels outside the mask; 1 = identical. Higher is better.",
    ),
    "pie_psnr": (
        "PSNR (PIE-Bench)",
        "PIE-Bench style: PSNR of the whole images after zeroing the masked region. Higher is better.",
    ),
    "pie_ssim": (
        "SSIM (PIE-Bench)",
        "PIE-Bench style: SSIM of the whole images after zeroing the masked region. Higher is better.",
    ),
    "pie_mse": (
        "MSE (PIE-Bench)",
        "PIE-Bench style: MSE on [0, 1] images after zeroing the masked region (papers show x10^4). "
        "Lower is better.",
    ),
    "clip_score": (
        "CLIP score",
        "100 x cosine(CLIP image, CLIP text) of the whole edited image, floored at 0. Higher is better.",
    ),
    "clip_score_region": (
        "CLIP score (region)",
        "CLIP score of the mask's padded bounding box, non-mask pixels set to mean colour. Higher is better.",
    ),
    "clip_direction": (
        "CLIP direction",
        "Cosine between the image change and the caption change in CLIP space (-1..1). Higher is better.",
    ),
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
) -> dict[str, float]:
    """All metrics of one edit, keyed as in :data:`METRIC_INFO`.

    Always: leakage_mean, leakage_p99, miou, miou_tau, bg_psnr, bg_ssim, pie_psnr, pie_ssim, pie_mse
    (PSNRs may be inf; background metrics are nan for a mask covering everything). With ``clip`` and
    ``text`` (a description of the wanted result): clip_score, clip_score_region. With ``clip`` and both
    captions: clip_direction. The CLIP model's name is not a float: take it from
    :func:`metrics_provenance`.
    """
    return _compute(orig, edit, mask, {}, text, clip, tau, src_caption, tgt_caption)


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
) -> dict[str, float]:
    _check_images(orig, edit)
    m = _as_bool_mask(mask, orig.shape)
    d = change_map(orig, edit)
    leak_mean, leak_p99 = leakage(d, m)
    miou, tau_used = spatial_miou(d, m, tau)
    out = {
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
    if clip is not None:
        out.update(_clip_metrics(orig, edit, m, clip, text, src_caption, tgt_caption, cache))
    return out


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
