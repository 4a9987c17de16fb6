"""Per-row scoring: every metric of one output (:func:`score_row`) and the metric models of a run."""

from __future__ import annotations

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
#: The summary table's columns: PIE-Bench's Table (structure, background, CLIP), then ours.
PIE_KEYS = (
    "pie_structure",
    "pie_psnr",
    "pie_lpips",
    "pie_mse",
    "pie_ssim",
    "clip_score",
    "clip_edited_pie",
    "clip_edited_crop",
    "leakage_mean",
)
#: MagicBrush's Table (L1, L2, CLIP-I, DINO, CLIP-T), then the PIE-style background columns.
MB_KEYS = ("l1", "l2", "clip_i", "dino", "clip_t", *(k for k in PIE_KEYS if k != "pie_structure"))
#: Metrics of the unedited part (1 - M): undefined when the mask covers the whole image.
BACKGROUND_KEYS = (
    "pie_psnr",
    "pie_lpips",
    "pie_mse",
    "pie_ssim",
    "pie_ssim_full",
    "leakage_mean",
    "leakage_p99",
)
#: The SSIM column of the summary per ``--ssim-variant`` (both are in every row).
SSIM_KEYS = {"border-cut": "pie_ssim", "full-map": "pie_ssim_full"}
WHOLE_MASK = "the mask covers the whole image: no unedited part (NaN in PIE-Bench, left out of the means)"


@dataclass
class Scorers:
    """The metric models of a run; ``missing`` holds the reason for each absent one."""

    clip: Any = None
    lpips: LpipsScorer | None = None
    #: DINO ViT-B/8 (PIE-Bench structure distance) and ViT-S/16 (MagicBrush DINO): :class:`DinoScorer`.
    dino_structure: Any = None
    dino_mb: Any = None
    missing: dict[str, str] = field(default_factory=dict)


def load_dino(name: str, models_dir: str | None, device: str) -> tuple[Any, str | None]:
    """``(DinoScorer, None)`` for registry model ``name`` (dino_vitb8, dino_vits16) in the models folder,
    or ``(None, reason)`` when it is absent or unusable (the metric is then missing, never 0)."""
    from maskpix_desktop.core import models
    from maskpix_desktop.core.errors import MaskPixError
    from maskpix_desktop.core.metrics.dino import DinoScorer

    folder = models.local_path(name, models_dir)
    if not models.is_present(name, models_dir):
        return None, f"{name} is not in {folder} ({models.fetch_command(name, models_dir)})"
    try:
        return DinoScorer.load(folder, device, fetch=name), None
    except MaskPixError as exc:
        return None, str(exc)


def _to_target_size(edit: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MagicBrush's ``gen_img.resize(gt_img.size)``: PIL's default filter for RGB, bicubic."""
    if edit.shape == target.shape:
        return edit
    from PIL import Image

    size = (target.shape[1], target.shape[0])
    return np.asarray(Image.fromarray(edit).resize(size, Image.Resampling.BICUBIC))


def magicbrush_l1(edit: np.ndarray, target: np.ndarray) -> float:
    """MagicBrush L1: the edit resized to the target's size (bicubic), mean |edit - target| on [0, 1]."""
    edit = _to_target_size(edit, target)
    return float(np.mean(np.abs(edit.astype(np.float64) - target.astype(np.float64))) / 255.0)


def magicbrush_l2(edit: np.ndarray, target: np.ndarray) -> float:
    """MagicBrush L2 (``nn.MSELoss``): mean squared difference on [0, 1] images, the edit resized first."""
    d = (_to_target_size(edit, target).astype(np.float64) - target.astype(np.float64)) / 255.0
    return float(np.mean(d * d))


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
        smap = metrics.pie_ssim_map(orig, edit, m)
        out["pie_ssim"] = metrics.ssim_layout_mean(smap, "border-cut")
        out["pie_ssim_full"] = metrics.ssim_layout_mean(smap, "full-map")
        out["leakage_mean"], out["leakage_p99"] = metrics.leakage(metrics.change_map(orig, edit), m)
        if scorers.lpips is not None:
            out["pie_lpips"] = scorers.lpips(orig, edit, m)
        else:
            out["pie_lpips"] = None
            missing["pie_lpips"] = scorers.missing.get("lpips", "LPIPS unavailable")
    if item.dataset == "pie":  # the official "structure_distance": whole images, no mask
        _model_metric(out, missing, "pie_structure", scorers.dino_structure, scorers.missing, orig, edit)
    _clip_metrics(out, missing, orig, edit, loaded, item, scorers)
    if item.dataset == "magicbrush":
        assert loaded.target is not None
        out["l1"] = magicbrush_l1(edit, loaded.target)
        out["l2"] = magicbrush_l2(edit, loaded.target)
        _model_metric(out, missing, "dino", scorers.dino_mb, scorers.missing, edit, loaded.target)
    return out, missing


def _model_metric(
    out: dict[str, float | None],
    missing: dict[str, str],
    key: str,
    scorer: Any,
    reasons: dict[str, str],
    a: np.ndarray,
    b: np.ndarray,
) -> None:
    """``pie_structure`` / ``dino`` from a DINO scorer, or None with the reason it is absent."""
    if scorer is None:
        out[key], missing[key] = None, reasons.get(key, "DINO unavailable")
    elif key == "pie_structure":
        out[key] = scorer.structure_distance(a, b)
    else:
        out[key] = scorer.cls_similarity(a, b)


def _clip_metrics(
    out: dict[str, float | None],
    missing: dict[str, str],
    orig: np.ndarray,
    edit: np.ndarray,
    loaded: LoadedItem,
    item: EvalItem,
    scorers: Scorers,
) -> None:
    """CLIP whole, CLIP edited (PIE-Bench's masked frame and our crop), and MagicBrush's CLIP-I / CLIP-T."""
    clip = scorers.clip
    clip_reason = scorers.missing.get("clip", "CLIP unavailable")
    region_keys = ("clip_edited_pie", "clip_edited_crop")
    if clip is None or not item.prompt:
        reason = clip_reason if clip is None else "the item has no editing prompt / target caption"
        for key in ("clip_score", *region_keys):
            out[key], missing[key] = None, reason
    else:
        text = clip.text_features([item.prompt])[0]
        # PIE-Bench scores the frame times its evaluation mask (border-marked); our crop uses the edit mask
        frame = metrics.pie_masked_frame(edit, loaded.metric_mask)
        crop = metrics.region_crop(edit, loaded.edit_mask)
        empty = not masks.as_bool(loaded.metric_mask).any()
        views = [edit, *([] if empty else [frame]), *([] if crop is None else [crop])]
        feats = clip.image_features(views)
        out["clip_score"] = clip._score(feats[0], text)
        out["clip_edited_pie"] = None if empty else clip._score(feats[1], text)
        out["clip_edited_crop"] = None if crop is None else clip._score(feats[-1], text)
        for key in region_keys:
            if out[key] is None:
                missing[key] = "empty mask"
        if item.dataset == "magicbrush":
            out["clip_t"] = float((feats[0] * text).sum())  # raw cosine (normalised features)
    if item.dataset == "magicbrush":
        assert loaded.target is not None
        if clip is None:
            out["clip_i"], missing["clip_i"] = None, clip_reason
        else:
            feats = clip.image_features([edit, loaded.target])
            out["clip_i"] = float((feats[0] * feats[1]).sum())
        if clip is None or not item.prompt:
            out["clip_t"] = None
            missing["clip_t"] = clip_reason if clip is None else "no caption of the target"
