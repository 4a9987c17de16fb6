"""The one metric catalogue: name, unit, direction, scale and texts of every metric the app and eval write.

The results table and headline (``ui/results_metrics.py``), the evaluation browser
(``ui/results_browser.py``), the CLI's metrics CSV (:func:`core.export.metrics_csv`) and the evaluation
report (``core/evaluation/report.py``) all read labels, directions and column order from :data:`CATALOG`
at call time. Qt-free, numpy-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_ARROW = {1: " ↑", -1: " ↓", 0: ""}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``key`` as stored in rows, sidecars and CSV columns."""

    key: str
    label: str  # plain name: the results table's row header (without the unit)
    unit: str  # "dB", "0-255", ...; "" for a unitless ratio or score (shown after the label)
    direction: int  # +1 higher is better, -1 lower is better, 0 informational
    tooltip: str  # the results table's explanation
    short: str = ""  # compact name for report columns and the browser ("" = label)
    scale: float = 1.0  # report tables show mean * scale (the paper's x10^k)
    digits: int = 2  # decimals in report tables
    description: str = ""  # the evaluation summary's one-line definition ("" = tooltip)
    headline: str = ""  # the results table's headline phrase ("" = label), for HEADLINE_KEY

    @property
    def display(self) -> str:
        """The results table's row header: the plain name, then the unit in brackets when there is one."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def name(self) -> str:
        """The compact name (report columns, the evaluation browser)."""
        return self.short or self.label

    @property
    def header(self) -> str:
        """Report column header: compact name, the x10^k of :attr:`scale`, an arrow for the direction."""
        exp = round(math.log10(self.scale)) if self.scale > 0 else 0
        times = f" ×10{str(exp).translate(_SUPERSCRIPT)}" if exp else ""
        return f"{self.name}{times}{_ARROW.get(self.direction, '')}"

    @property
    def summary(self) -> str:
        """The one-line definition written into the evaluation summary."""
        return self.description or self.tooltip


_SPECS = (
    # -- the app's metrics (core.metrics.compute_metrics), in the results table's order
    MetricSpec(
        "leakage_mean",
        "Leakage outside the mask, mean",
        "0-255",
        -1,
        "Mean per-pixel change |edit - original| (0-255, channel mean) outside the mask. Lower is better.",
        short="Leakage",
        description="mean |edit - original| (0-255) outside M",
        headline="Leakage outside the mask",
    ),
    MetricSpec(
        "leakage_p99",
        "Leakage outside the mask, worst 1%",
        "0-255",
        -1,
        "99th percentile of the change outside the mask: the worst local spill. Lower is better.",
        short="Leakage p99",
        description="99th percentile of the change outside M",
    ),
    MetricSpec(
        "miou",
        "Change matches the mask, mIoU",
        "0-1",
        1,
        "Mean IoU between 'changed pixels' (change > tau) and the mask, over both classes. Higher is better.",
        short="Change mIoU",
    ),
    MetricSpec(
        "miou_tau",
        "Change threshold for mIoU",
        "0-255",
        0,
        "Change threshold tau (0-255) used for mIoU; default max(10, mean change). Informational.",
        short="mIoU threshold",
    ),
    MetricSpec(
        "bg_psnr",
        "Background kept, PSNR",
        "dB",
        1,
        "PSNR (dB) on the pixels outside the mask only; infinite when untouched. Higher is better.",
        short="Background PSNR",
    ),
    MetricSpec(
        "bg_ssim",
        "Background kept, SSIM",
        "0-1",
        1,
        "SSIM map (11x11 Gaussian) averaged over pixels outside the mask; 1 = identical. Higher is better.",
        short="Background SSIM",
    ),
    MetricSpec(
        "pie_psnr",
        "Unmasked part PSNR, PIE-Bench",
        "dB",
        1,
        "PIE-Bench style: PSNR of the whole images after zeroing the masked region. Higher is better.",
        short="PSNR",
        description="PSNR (dB) of both images times (1 - M), PIE-Bench protocol",
    ),
    MetricSpec(
        "pie_ssim",
        "Unmasked part SSIM, PIE-Bench",
        "0-1",
        1,
        "PIE-Bench style: SSIM of the whole images after zeroing the masked region. Higher is better.",
        short="SSIM",
        scale=1e2,
        description="SSIM of both images times (1 - M), PIE-Bench protocol",
    ),
    MetricSpec(
        "pie_mse",
        "Unmasked part MSE, PIE-Bench",
        "0-1",
        -1,
        "PIE-Bench style: MSE on [0, 1] images after zeroing the masked region (papers show x10^4). "
        "Lower is better.",
        short="MSE",
        scale=1e4,
        description="MSE on [0, 1] images times (1 - M), PIE-Bench protocol",
    ),
    MetricSpec(
        "clip_score",
        "Matches the instruction, CLIP",
        "0-100",
        1,
        "100 x cosine(CLIP image, CLIP text) of the whole edited image, floored at 0. Higher is better.",
        short="CLIP whole",
        description="100 x max(cos(image, editing prompt), 0), whole image",
    ),
    MetricSpec(
        "clip_score_region",
        "Mask region matches, CLIP",
        "0-100",
        1,
        "CLIP score of the mask's padded bounding box, non-mask pixels set to mean colour. Higher is better.",
        short="CLIP region",
        description="CLIP score of the mask's padded box",
    ),
    MetricSpec(
        "clip_direction",
        "Change follows the caption, CLIP",
        "-1 to 1",
        1,
        "Cosine between the image change and the caption change in CLIP space (-1..1). Higher is better.",
        short="CLIP direction",
    ),
    # -- evaluation-only metrics (core.evaluation.score_row)
    MetricSpec(
        "pie_structure",
        "Structure distance (PIE-Bench)",
        "",
        -1,
        "PIE-Bench structure distance: MSE between the cosine self-similarity matrices of DINO ViT-B/8's "
        "last-block keys of the original and the edit (whole images). Lower is better.",
        short="Structure",
        scale=1e3,
        description="PIE-Bench: MSE of the DINO ViT-B/8 key self-similarities (whole images, official "
        "code: inputs 0-255, Resize(224), ImageNet normalisation)",
    ),
    MetricSpec(
        "pie_lpips",
        "LPIPS (PIE-Bench)",
        "",
        -1,
        "PIE-Bench style: LPIPS (SqueezeNet) of the whole images after zeroing the masked region. "
        "Lower is better.",
        short="LPIPS",
        scale=1e3,
        description="LPIPS (SqueezeNet, inputs in [-1, 1]) on both x (1 - M)",
    ),
    MetricSpec(
        "pie_ssim_full",
        "SSIM full map (PIE-Bench)",
        "0-1",
        1,
        "PIE-Bench SSIM averaged over the whole map (torchmetrics >= 1.5 layout). Higher is better.",
        short="SSIM (full map)",
        scale=1e2,
        description="SSIM of both images times (1 - M), whole map averaged (torchmetrics >= 1.5)",
    ),
    MetricSpec(
        "clip_edited_pie",
        "CLIP edited (PIE-Bench)",
        "0-100",
        1,
        "PIE-Bench's CLIP edited: the full frame times the mask (outside black) against the editing "
        "prompt, 100 x max(cos, 0). Higher is better.",
        short="CLIP edited",
        description="100 x max(cos(image x M, editing prompt), 0): full frame, outside M black (PIE-Bench)",
    ),
    MetricSpec(
        "clip_edited_crop",
        "CLIP edited (crop)",
        "0-100",
        1,
        "MaskPix's CLIP edited: the mask's padded bounding box, non-mask pixels mean-filled, padded to a "
        "square. Higher is better.",
        short="CLIP crop",
        description="CLIP score of the mask's padded box, mean-filled (MaskPix; not comparable with papers)",
    ),
    MetricSpec(
        "l1",
        "L1 to target",
        "0-1",
        -1,
        "MagicBrush: mean |edit - target| on [0, 1] images. Lower is better.",
        short="L1",
        digits=4,
        description="MagicBrush: mean |edit - target| on [0, 1] images (edit resized to the target, bicubic)",
    ),
    MetricSpec(
        "l2",
        "L2 to target",
        "0-1",
        -1,
        "MagicBrush: mean (edit - target)^2 on [0, 1] images (torch MSELoss). Lower is better.",
        short="L2",
        digits=4,
        description="MagicBrush: mean squared difference on [0, 1] images (nn.MSELoss, not its root)",
    ),
    MetricSpec(
        "clip_i",
        "CLIP-I to target",
        "-1 to 1",
        1,
        "MagicBrush: cosine of the CLIP image embeddings of the edit and the target. Higher is better.",
        short="CLIP-I",
        digits=4,
        description="MagicBrush: cos(CLIP(edit), CLIP(target))",
    ),
    MetricSpec(
        "dino",
        "DINO to target",
        "-1 to 1",
        1,
        "MagicBrush: cosine of the DINO ViT-S/16 CLS embeddings of edit and target. Higher is better.",
        short="DINO",
        digits=4,
        description="MagicBrush: cos(DINO ViT-S/16 CLS(edit), CLS(target)); Resize(256), CenterCrop(224)",
    ),
    MetricSpec(
        "clip_t",
        "CLIP-T",
        "-1 to 1",
        1,
        "MagicBrush: raw cosine of the CLIP embeddings of the edit and the target caption. Higher is better.",
        short="CLIP-T",
        digits=4,
        description="MagicBrush: cos(CLIP(edit), CLIP(target caption)), raw cosine (not x100, not clamped)",
    ),
)

#: key -> spec, in the app's table order, then the evaluation-only metrics. The one table.
CATALOG: dict[str, MetricSpec] = {s.key: s for s in _SPECS}

#: The keys :func:`core.metrics.compute_metrics` (and ``compare`` per view) can return, in its order.
APP_KEYS = (
    "leakage_mean",
    "leakage_p99",
    "miou",
    "miou_tau",
    "bg_psnr",
    "bg_ssim",
    "pie_psnr",
    "pie_ssim",
    "pie_mse",
    "clip_score",
    "clip_score_region",
    "clip_direction",
)
#: The results table's headline: this metric of the baseline -> the masked result (one line above the table).
HEADLINE_KEY = "leakage_mean"
#: The keys of an evaluation row's ``metrics``, in the paper's table order (then ours, then MagicBrush's).
EVAL_KEYS = (
    "pie_structure",
    "pie_psnr",
    "pie_lpips",
    "pie_mse",
    "pie_ssim",
    "pie_ssim_full",
    "clip_score",
    "clip_edited_pie",
    "clip_edited_crop",
    "leakage_mean",
    "leakage_p99",
    "l1",
    "l2",
    "clip_i",
    "dino",
    "clip_t",
)
#: Evaluation metric keys of older result files -> their name now (read by core/evaluation/store.py).
LEGACY_EVAL_KEYS = {"clip_score_region": "clip_edited_crop"}


def upgrade_eval_metrics(values: dict) -> dict:
    """An evaluation row's ``metrics`` (or ``missing``) with older keys renamed (:data:`LEGACY_EVAL_KEYS`);
    a current key already present wins."""
    if not any(k in values for k in LEGACY_EVAL_KEYS):
        return values
    out = {LEGACY_EVAL_KEYS.get(k, k): v for k, v in values.items() if k in LEGACY_EVAL_KEYS}
    out.update({k: v for k, v in values.items() if k not in LEGACY_EVAL_KEYS})
    return out


def get(key: str) -> MetricSpec | None:
    """The spec of ``key``; None when it is not catalogued."""
    return CATALOG.get(key)


def spec(key: str) -> MetricSpec:
    """The spec of ``key``; KeyError naming the key when it is not catalogued."""
    try:
        return CATALOG[key]
    except KeyError:
        raise KeyError(f"metric {key!r} is not in core/metric_catalog.py") from None


def specs(keys: Iterable[str]) -> list[MetricSpec]:
    """The specs of ``keys``, in that order (KeyError on an unknown key)."""
    return [spec(k) for k in keys]


def direction(key: str) -> int:
    """+1 (higher is better), -1 (lower is better) or 0 (informational or not catalogued)."""
    s = CATALOG.get(key)
    return s.direction if s is not None else 0


def label(key: str) -> str:
    """Plain name of ``key`` (the key itself when not catalogued)."""
    s = CATALOG.get(key)
    return s.label if s is not None else key


def name(key: str) -> str:
    """Compact name of ``key`` (report columns, browser; the key itself when not catalogued)."""
    s = CATALOG.get(key)
    return s.name if s is not None else key


def tooltip(key: str) -> str:
    """Explanation of ``key`` (the key itself when not catalogued)."""
    s = CATALOG.get(key)
    return s.tooltip if s is not None else key


def ordered(keys: Iterable[str], order: Iterable[str] | None = None) -> list[str]:
    """The distinct ``keys`` in ``order`` (default: catalogue order), then the others as first seen."""
    seen = list(dict.fromkeys(keys))
    present = set(seen)
    first = [k for k in (CATALOG if order is None else order) if k in present]
    return first + [k for k in seen if k not in set(first)]


__all__ = [
    "APP_KEYS",
    "CATALOG",
    "EVAL_KEYS",
    "HEADLINE_KEY",
    "LEGACY_EVAL_KEYS",
    "MetricSpec",
    "direction",
    "get",
    "label",
    "name",
    "ordered",
    "spec",
    "specs",
    "tooltip",
    "upgrade_eval_metrics",
]
