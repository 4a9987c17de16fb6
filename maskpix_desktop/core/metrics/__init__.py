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

The package's modules: ``pixel`` (change map, leakage, mIoU, PSNR/MSE, region crop), ``ssim`` (SSIM and its
fast path), ``clip`` (:class:`ClipScorer`), ``views`` (:func:`compute_metrics`, :func:`compare`). Every
public name is re-exported here, so ``from maskpix_desktop.core.metrics import X`` keeps working.
"""

from __future__ import annotations

from maskpix_desktop.core import metric_catalog
from maskpix_desktop.core.metrics.clip import CLIP_FETCH_COMMAND, ClipScorer
from maskpix_desktop.core.metrics.clip import _resolve_tag as _resolve_tag  # tests
from maskpix_desktop.core.metrics.pixel import (
    background_psnr,
    change_map,
    leakage,
    pie_background_mse,
    pie_background_psnr,
    pie_masked_frame,
    region_crop,
    spatial_miou,
)
from maskpix_desktop.core.metrics.ssim import (
    SSIM_LAYOUTS,
    SSIM_MAX_PIXELS,
    background_ssim,
    pie_background_ssim,
    pie_ssim_map,
    ssim_factor,
    ssim_layout_mean,
    ssim_map,
)
from maskpix_desktop.core.metrics.ssim import (
    _SsimShared as _SsimShared,
)
from maskpix_desktop.core.metrics.views import compare, compute_metrics, metrics_provenance

__all__ = [
    "CLIP_FETCH_COMMAND",
    "METRIC_INFO",
    "SSIM_LAYOUTS",
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
    "pie_masked_frame",
    "pie_ssim_map",
    "region_crop",
    "spatial_miou",
    "ssim_factor",
    "ssim_layout_mean",
    "ssim_map",
]

#: key -> (label, tooltip) of the app's metrics, from :data:`core.metric_catalog.CATALOG` (for old callers).
METRIC_INFO: dict[str, tuple[str, str]] = {
    k: (metric_catalog.spec(k).label, metric_catalog.spec(k).tooltip) for k in metric_catalog.APP_KEYS
}
