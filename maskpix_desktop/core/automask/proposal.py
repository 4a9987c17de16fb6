"""The auto mask's knobs and its proposal: Detection, AutoMaskParams, AutoMaskResult."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskpix_desktop.core.automask.parser import ParsedInstruction
from maskpix_desktop.core.automask.relevance_map import RelevanceMap

__all__ = ["AutoMaskParams", "AutoMaskResult", "Detection"]


@dataclass(frozen=True)
class Detection:
    """One grounding box in image pixels ``(x0, y0, x1, y1)`` with its score and matched text."""

    box: tuple[float, float, float, float]
    score: float
    label: str = ""


@dataclass(frozen=True)
class AutoMaskParams:
    """Knobs of the auto mask; the defaults follow the issue (tau 0.5, t = 0.8 T, GroundingDINO 0.3/0.25)."""

    tau: float = 0.5
    t_frac: float = 0.8
    draws: int | None = None  # None: 1 on CPU, 4 on CUDA
    seed: int = 0
    long_side: int = 512
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    use_relevance: bool = True
    use_grounding: bool = True
    max_points: int = 3  # relevance component centroids given to SAM as positive clicks
    min_component: float = 0.002  # relevance components smaller than this fraction of the image are noise
    change_dilate: float = 0.01  # fractions of the image's long side
    change_feather: float = 0.005
    remove_dilate: float = 0.03
    remove_feather: float = 0.005
    add_dilate: float = 0.05
    add_feather: float = 0.005

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau < 1.0:
            raise ValueError("tau must be in [0, 1)")
        if self.draws is not None and self.draws < 1:
            raise ValueError("draws must be at least 1")


@dataclass(frozen=True, eq=False)
class AutoMaskResult:
    """A proposal: the mask plus everything the UI needs to show and refine it.

    ``mask``: (H, W) bool, post-processed for the action (dilated); ``soft_mask``: float32 with the action's
    feather, ready to hand to an edit; ``points``/``labels``: SAM clicks (N x 2 xy pixels, 1 = positive);
    ``boxes``: (M, 4) xyxy pixels; ``sam_logits``: (1, L, L) low-res logits of the chosen SAM candidate
    when one SAM call made the mask (feed back as ``mask_input`` for a refining click), else None;
    ``source``: "grounding", "relevance", "both" or "global"; ``confidence``: IoU between the grounding and
    relevance masks (with one source: IoU of the SAM mask with the relevance mask; None when undefined).
    """

    mask: np.ndarray
    soft_mask: np.ndarray
    parsed: ParsedInstruction
    source: str
    confidence: float | None
    points: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    detections: tuple[Detection, ...] = ()
    relevance: RelevanceMap | None = None
    sam_logits: np.ndarray | None = None
    raw_mask: np.ndarray | None = None  # before the action's dilation
    params: AutoMaskParams = field(default_factory=AutoMaskParams)
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a status bar or a log."""
        conf = "n/a" if self.confidence is None else f"{self.confidence:.2f}"
        where = ", ".join(self.parsed.targets) or "-"
        return (
            f"auto mask: {self.parsed.action} [{where}] from {self.source}, confidence {conf}, "
            f"{100.0 * float(self.mask.mean()):.1f}% of the image"
        )
