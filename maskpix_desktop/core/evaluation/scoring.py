"""Per-row scoring: every metric of one output (:func:`score_row`) and the metric models of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskpix_desktop.core import masks, metric_catalog, metrics
from maskpix_desktop.core.evaluation.datasets import EvalItem, LoadedItem
from maskpix_desktop.core.evaluation.lpips import LpipsScorer
from maskpix_desktop.core.metric_catalog import MetricSpec

#: Every per-row metric (core/metric_catalog.py, the one table), in the order of the paper's table.
#: Aliases for old callers; the report reads the catalogue at call time.
METRICS: tuple[MetricSpec, ...] = tuple(metric_catalog.specs(metric_catalog.EVAL_KEYS))
METRIC_BY_KEY = {m.key: m for m in METRICS}
PIE_KEYS = ("pie_psnr", "pie_lpips", "pie_mse", "pie_ssim", "clip_score", "clip_score_region", "leakage_mean")
MB_KEYS = ("l1", "clip_i", *PIE_KEYS)
#: Metrics of the unedited part (1 - M): undefined when the mask covers the whole image.
BACKGROUND_KEYS = ("pie_psnr", "pie_lpips", "pie_mse", "pie_ssim", "leakage_mean", "leakage_p99")
WHOLE_MASK = "the mask covers the whole image: no unedited part (NaN in PIE-Bench, left out of the means)"


@dataclass
class Scorers:
    """The metric models of a run; ``missing`` holds the reason for each absent one."""

    clip: Any = None
    lpips: LpipsScorer | None = None
    missing: dict[str, str] = field(default_factory=dict)


def magicbrush_l1(edit: np.ndarray, target: np.ndarray) -> float:
    """MagicBrush L1: the edit resized to the target's size (bicubic), mean |edit - target| on [0, 1]."""
    if edit.shape != target.shape:
        from PIL import Image

        size = (target.shape[1], target.shape[0])
        edit = np.asarray(Image.fromarray(edit).resize(size, Image.Resampling.BICUBIC))
    return float(np.mean(np.abs(edit.astype(np.float64) - target.astype(np.float64))) / 255.0)


def score_row(
    orig: np.ndarray, edit: np.ndarray, loaded: LoadedItem, item: EvalItem, scorers: Scorers
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric of one output; a metric that cannot be computed is None with a reason in ``missing``."""
    m = loaded.metric_mask
    out: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    if masks.as_bool(m).all():  # no unedited part: PIE-Bench's evaluation gives NaN, left out of means
        for key in BACKGROUND_KEYS:
            out[key], missing[key] = None, WHOLE_MASK
    else:
        out["pie_psnr"] = metrics.pie_background_psnr(orig, edit, m)
        out["pie_mse"] = metrics.pie_background_mse(orig, edit, m)
        out["pie_ssim"] = metrics.pie_background_ssim(orig, edit, m)
        out["leakage_mean"], out["leakage_p99"] = metrics.leakage(metrics.change_map(orig, edit), m)
        if scorers.lpips is not None:
            out["pie_lpips"] = scorers.lpips(orig, edit, m)
        else:
            out["pie_lpips"] = None
            missing["pie_lpips"] = scorers.missing.get("lpips", "LPIPS unavailable")
    clip = scorers.clip
    clip_reason = scorers.missing.get("clip", "CLIP unavailable")
    if clip is None or not item.prompt:
        reason = clip_reason if clip is None else "the item has no editing prompt / target caption"
        out["clip_score"] = out["clip_score_region"] = None
        missing["clip_score"] = missing["clip_score_region"] = reason
    else:
        out["clip_score"] = clip.score(edit, item.prompt)
        region = clip.region_score(edit, loaded.edit_mask, item.prompt)
        out["clip_score_region"] = None if math.isnan(region) else region
        if math.isnan(region):
            missing["clip_score_region"] = "empty mask"
    if item.dataset == "magicbrush":
        assert loaded.target is not None
        out["l1"] = magicbrush_l1(edit, loaded.target)
        if clip is None:
            out["clip_i"] = None
            missing["clip_i"] = clip_reason
        else:
            feats = clip.image_features([edit, loaded.target])
            out["clip_i"] = float((feats[0] * feats[1]).sum())
    return out, missing
