"""The edit loop's aggregates: :func:`compute_metrics` and :func:`compare` (every metric of an edit, fast
path or the definitions) and :func:`metrics_provenance`."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np

from maskpix_desktop.core.metrics.clip import ClipScorer
from maskpix_desktop.core.metrics.pixel import (
    _as_bool_mask,
    _check_images,
    _psnr_from_mse,
    background_psnr,
    change_map,
    leakage,
    pie_background_mse,
    pie_background_psnr,
    region_crop,
    spatial_miou,
)
from maskpix_desktop.core.metrics.ssim import _SsimShared, background_ssim, pie_background_ssim

#: compare() computes the two views' pixel metrics on this many threads from this many pixels on.
COMPARE_THREADS = min(2, os.cpu_count() or 1)
PARALLEL_PIXELS = 1 << 20
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
    shared = _shared(orig, inside, cache)
    out = _pixel_metrics(orig, edit, inside, shared.keep8, tau)
    out["bg_ssim"], out["pie_ssim"] = shared.scores(edit)
    keys = ("leakage_mean", "leakage_p99", "miou", "miou_tau", "bg_psnr", "bg_ssim", "pie_psnr", "pie_ssim")
    return {k: out[k] for k in (*keys, "pie_mse")}


def _shared(orig: np.ndarray, inside: np.ndarray, cache: dict[Any, Any]) -> _SsimShared:
    """The original's half of the SSIMs (and the outside mask), built once per ``cache``."""
    if "ssim" not in cache:
        cache["ssim"] = _SsimShared(orig, inside, (~inside).view(np.uint8), None)
    return cache["ssim"]


def compare(
    orig: np.ndarray, baseline: np.ndarray, blended: np.ndarray, mask: np.ndarray, **kw: Any
) -> dict[str, dict[str, float]]:
    """``{"baseline": ..., "blended": ...}`` from :func:`compute_metrics` (same keyword arguments).

    The original's SSIM half and the texts' CLIP embeddings are computed once and shared. From
    :data:`PARALLEL_PIXELS` on, the pixel metrics of the two views run on two threads (OpenCV and numpy
    release the GIL; the numbers are the same as one after the other); CLIP runs after, on this thread.
    """
    cache: dict[Any, Any] = {}
    views = {"baseline": baseline, "blended": blended}
    if kw.get("reference") or orig.shape[0] * orig.shape[1] < PARALLEL_PIXELS or COMPARE_THREADS < 2:
        return {name: _compute(orig, edit, mask, cache, **kw) for name, edit in views.items()}
    for edit in views.values():
        _check_images(orig, edit)
    inside = np.ascontiguousarray(_as_bool_mask(mask, orig.shape))
    orig = np.ascontiguousarray(orig)
    _shared(orig, inside, cache)
    with ThreadPoolExecutor(COMPARE_THREADS, thread_name_prefix="maskpix-metrics") as pool:
        jobs = {
            name: pool.submit(_fast_metrics, orig, e, inside, kw.get("tau"), cache)
            for name, e in views.items()
        }
        out = {name: job.result() for name, job in jobs.items()}
    clip = kw.get("clip")
    if clip is not None:
        texts = (kw.get("text"), kw.get("src_caption"), kw.get("tgt_caption"))
        for name, edit in views.items():
            out[name].update(_clip_metrics(orig, edit, inside, clip, *texts, cache))
    return out


def metrics_provenance(clip: ClipScorer | None = None) -> dict[str, str]:
    """String facts to store next to the numbers: ``{"clip_model": "ViT-B-32/openai"}`` when CLIP ran."""
    return {"clip_model": clip.name} if clip is not None else {}
