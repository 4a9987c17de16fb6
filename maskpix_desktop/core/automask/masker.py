"""AutoMasker: grounding boxes and the relevance mask refined with SAM, post-processed per action."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from maskpix_desktop.core import masks
from maskpix_desktop.core.automask.parser import ParsedInstruction, is_plural, parse_instruction
from maskpix_desktop.core.automask.proposal import AutoMaskParams, AutoMaskResult, Detection
from maskpix_desktop.core.automask.relevance import (
    ProgressFn,
    RelevanceMap,
    check_cancel,
    compute_relevance,
    default_draws,
)
from maskpix_desktop.core.errors import MissingWeightsError

log = logging.getLogger(__name__)

__all__ = ["AutoMasker", "mask_iou"]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty."""
    a, b = masks.as_bool(a), masks.as_bool(b)
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


def _components(mask: np.ndarray, min_area: int, max_n: int) -> list[tuple[float, float]]:
    """Inner points (x, y) of the largest 8-connected components (centroid, or the nearest inside pixel)."""
    m = masks.as_bool(mask)
    if not m.any() or max_n <= 0:
        return []
    n, lab, stats, cents = cv2.connectedComponentsWithStats(m.view(np.uint8), connectivity=8)
    order = sorted(range(1, n), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
    pts: list[tuple[float, float]] = []
    for i in order:
        if int(stats[i, cv2.CC_STAT_AREA]) < min_area and pts:
            break
        cx, cy = float(cents[i][0]), float(cents[i][1])
        ix, iy = int(round(cx)), int(round(cy))
        if not (0 <= iy < m.shape[0] and 0 <= ix < m.shape[1] and lab[iy, ix] == i):
            ys, xs = np.nonzero(lab == i)
            j = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
            cx, cy = float(xs[j]), float(ys[j])
        pts.append((cx, cy))
        if len(pts) >= max_n:
            break
    return pts


def _box_mask(shape: tuple[int, int], boxes: Sequence[Sequence[float]]) -> np.ndarray:
    out = np.zeros(shape, bool)
    h, w = shape
    for x0, y0, x1, y1 in boxes:
        xa, ya = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        xb, yb = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        out[ya:yb, xa:xb] = True
    return out


def _pick(candidates: np.ndarray, scores: np.ndarray, reference: np.ndarray | None) -> tuple[int, float]:
    """Index of the candidate with the highest IoU with ``reference`` (ties and no reference: SAM's score)."""
    if reference is None or not reference.any():
        return int(np.argmax(scores)), float("nan")
    ious = np.array([mask_iou(c, reference) for c in candidates])
    best = float(ious.max())
    tied = np.flatnonzero(ious >= best - 1e-12)
    idx = int(tied[np.argmax(np.asarray(scores)[tied])])
    return idx, best


class AutoMasker:
    """Runs the auto mask with whichever engines it has (each may be None, the result says what was used).

    ``editor``: ``core.editor.Editor`` (relevance map); ``segmenter``: ``core.segmenter.Segmenter`` (SAM);
    ``detector``: ``core.grounding.GroundingDetector``. Not thread-safe: it belongs to the model service
    thread like the engines.
    """

    def __init__(self, editor: Any = None, segmenter: Any = None, detector: Any = None):
        self.editor = editor
        self.segmenter = segmenter
        self.detector = detector

    @classmethod
    def from_service(cls, service: Any, *, grounding: bool = True, sam: bool = True) -> AutoMasker:
        """Engines from a ``core.service.ModelService``; missing grounding weights only disable grounding."""
        detector = None
        if grounding:
            try:
                detector = service.grounding()
            except MissingWeightsError as exc:
                log.warning("auto mask without text grounding: %s", exc)
        return cls(editor=service.editor(), segmenter=service.segmenter() if sam else None, detector=detector)

    # ------------------------------------------------------------------------------------------ run
    def run(
        self,
        image: np.ndarray,
        instruction: str,
        params: AutoMaskParams | None = None,
        *,
        on_step: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        parsed: ParsedInstruction | None = None,
    ) -> AutoMaskResult:
        """Propose a mask for ``instruction`` on ``image`` (HxWx3 uint8); raises Cancelled when asked to."""
        p = params or AutoMaskParams()
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        check_cancel(cancel)
        parsed = parsed or parse_instruction(instruction)
        timings["parse_s"] = time.perf_counter() - t_start
        h, w = image.shape[:2]
        notes: list[str] = []
        if parsed.action == "global":
            whole = np.ones((h, w), bool)
            notes.append("Global edit (style, season, weather or time of day): the mask is the whole image.")
            if on_step is not None:
                on_step(1, 1, "global")
            timings["total_s"] = time.perf_counter() - t_start
            return AutoMaskResult(
                mask=whole,
                soft_mask=whole.astype(np.float32),
                parsed=parsed,
                source="global",
                confidence=None,
                points=np.zeros((0, 2), np.float32),
                labels=np.zeros((0,), np.int32),
                boxes=np.zeros((0, 4), np.float32),
                raw_mask=whole,
                params=p,
                notes=tuple(notes),
                timings=timings,
            )

        use_rel = p.use_relevance and self.editor is not None
        use_gnd = p.use_grounding and self.detector is not None and bool(parsed.targets)
        device = str(getattr(getattr(self.editor, "pipe", None), "device", "cpu"))
        k = (p.draws or default_draws(device)) if use_rel else 0
        total = k + int(use_gnd) + 1
        relevance = None
        if use_rel:
            t1 = time.perf_counter()
            relevance = compute_relevance(
                self.editor,
                image,
                instruction,
                t_frac=p.t_frac,
                draws=k,
                seed=p.seed,
                long_side=p.long_side,
                on_step=on_step,
                cancel=cancel,
                progress_total=total,
            )
            timings["relevance_s"] = time.perf_counter() - t1
        elif p.use_relevance:
            notes.append("No InstructPix2Pix model: the relevance map was skipped.")
        detections: tuple[Detection, ...] = ()
        if use_gnd:
            check_cancel(cancel)
            t2 = time.perf_counter()
            detections = tuple(
                self.detector.detect(
                    image, parsed.targets, box_threshold=p.box_threshold, text_threshold=p.text_threshold
                )
            )
            timings["grounding_s"] = time.perf_counter() - t2
            if on_step is not None:
                on_step(k + 1, total, "grounding")
            if not detections:
                notes.append(f"Grounding found no box for {parsed.prompt!r}.")
        elif p.use_grounding and parsed.targets and self.detector is None:
            notes.append("No GroundingDINO model: text grounding was skipped.")
        check_cancel(cancel)
        t3 = time.perf_counter()
        result = self.fuse(image, parsed, relevance, detections, p, notes=notes)
        timings["fuse_s"] = time.perf_counter() - t3
        if on_step is not None:
            on_step(total, total, "sam")
        timings["total_s"] = time.perf_counter() - t_start
        return replace(result, timings={**timings, **result.timings})

    def rethreshold(self, image: np.ndarray, result: AutoMaskResult, tau: float) -> AutoMaskResult:
        """The same proposal at another relevance threshold: SAM decoding only, no UNet, no grounding."""
        params = replace(result.params, tau=float(tau))
        kept = tuple(n for n in result.notes if n.startswith(("No ", "Grounding found")))
        return self.fuse(image, result.parsed, result.relevance, result.detections, params, notes=list(kept))

    # ----------------------------------------------------------------------------------------- fuse
    def fuse(
        self,
        image: np.ndarray,
        parsed: ParsedInstruction,
        relevance: RelevanceMap | None,
        detections: Sequence[Detection],
        params: AutoMaskParams | None = None,
        *,
        notes: list[str] | None = None,
    ) -> AutoMaskResult:
        """Combine grounding boxes and the relevance mask with SAM, then post-process for the action."""
        p = params or AutoMaskParams()
        notes = list(notes or [])
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        rel_mask = relevance.mask(p.tau) if relevance is not None else None
        if rel_mask is not None:
            rel_mask = masks.remove_small(rel_mask, max(1, int(p.min_component * h * w)))
            if not rel_mask.any():
                notes.append(f"The relevance map has nothing above tau = {p.tau:.2f}.")
                rel_mask = None
        seg = self.segmenter
        if seg is not None and (detections or rel_mask is not None):
            seg.set_image(image)

        dets = self._select_detections(parsed, detections, rel_mask)
        boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
        points = np.zeros((0, 2), np.float32)
        labels = np.zeros((0,), np.int32)
        logits = None
        grounded = None  # mask from the grounding boxes
        if len(boxes):
            grounded, logits = self._segment_boxes(boxes, rel_mask, (h, w))

        anchor = grounded
        prompted = None  # SAM mask from the relevance prompts
        if rel_mask is not None and (grounded is None):
            bb = masks.bbox(rel_mask)
            assert bb is not None
            pts = _components(rel_mask, max(1, int(p.min_component * h * w)), p.max_points)
            points = np.array(pts, np.float32).reshape(-1, 2)
            labels = np.ones(len(points), np.int32)
            rbox = np.array(bb, np.float32)
            if seg is not None:
                res = seg.predict(
                    points=points if len(points) else None,
                    labels=labels if len(points) else None,
                    box=rbox,
                    multimask=True,
                )
                idx, _ = _pick(res.masks, res.scores, rel_mask)
                prompted = np.asarray(res.masks[idx], bool)
                logits = np.asarray(res.logits[idx])[None]
            else:
                prompted = rel_mask.copy()
                notes.append("No SAM model: the relevance mask is used as it is.")
            boxes = rbox[None]
            anchor = prompted

        if grounded is not None and rel_mask is not None:
            source = "both"
            confidence: float | None = mask_iou(grounded, rel_mask)
        elif grounded is not None:
            source = "grounding"
            confidence = None
        elif prompted is not None:
            source = "relevance"
            confidence = mask_iou(prompted, rel_mask) if rel_mask is not None else None
        else:
            source = "relevance"
            confidence = None
            notes.append("Nothing was found: the mask is empty; click the object or paint it.")

        raw = anchor if anchor is not None else np.zeros((h, w), bool)
        hard, soft = self._post_process(parsed.action, raw, rel_mask, p, (h, w))
        timings = {"sam_s": time.perf_counter() - t0}
        return AutoMaskResult(
            mask=hard,
            soft_mask=soft,
            parsed=parsed,
            source=source,
            confidence=confidence,
            points=points,
            labels=labels,
            boxes=boxes,
            detections=tuple(dets),
            relevance=relevance,
            sam_logits=logits,
            raw_mask=raw,
            params=p,
            notes=tuple(notes),
            timings=timings,
        )

    def _select_detections(
        self, parsed: ParsedInstruction, detections: Sequence[Detection], rel_mask: np.ndarray | None
    ) -> list[Detection]:
        """Plurals and several targets keep every box; one singular target keeps the best box — the one
        overlapping the relevance mask most when there is one, else the highest score."""
        dets = list(detections)
        if len(dets) <= 1:
            return dets
        if len(parsed.targets) > 1 or any(is_plural(t) for t in parsed.targets):
            return dets
        if rel_mask is not None:
            shape = rel_mask.shape

            def overlap(d: Detection) -> tuple[float, float]:
                return mask_iou(_box_mask(shape, [d.box]), rel_mask), d.score

            return [max(dets, key=overlap)]
        return [max(dets, key=lambda d: d.score)]

    def _segment_boxes(
        self, boxes: np.ndarray, rel_mask: np.ndarray | None, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Union of SAM's best candidate per box (best = highest IoU with the relevance mask)."""
        seg = self.segmenter
        if seg is None:
            return _box_mask(shape, boxes), None
        out = np.zeros(shape, bool)
        logits = None
        for b in boxes:
            res = seg.predict(box=np.asarray(b, np.float32), multimask=True)
            idx, _ = _pick(res.masks, res.scores, rel_mask)
            out |= np.asarray(res.masks[idx], bool)
            logits = np.asarray(res.logits[idx])[None] if len(boxes) == 1 else None
        return out, logits

    @staticmethod
    def _post_process(
        action: str, raw: np.ndarray, rel_mask: np.ndarray | None, p: AutoMaskParams, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per action: change -> small dilation + feather; remove -> larger dilation; add -> relevance united
        with the dilated anchor. Returns (hard bool mask, feathered float32 mask)."""
        long_side = max(shape)

        def px(frac: float) -> int:
            return max(1, int(round(frac * long_side))) if frac > 0 else 0

        if action == "remove":
            hard = masks.dilate(raw, px(p.remove_dilate)) if raw.any() else raw.copy()
            sigma = p.remove_feather * long_side
        elif action == "add":
            anchor = masks.dilate(raw, px(p.add_dilate)) if raw.any() else raw.copy()
            hard = anchor | rel_mask if rel_mask is not None else anchor
            sigma = p.add_feather * long_side
        else:
            hard = masks.dilate(raw, px(p.change_dilate)) if raw.any() else raw.copy()
            sigma = p.change_feather * long_side
        soft = masks.feather(hard, sigma) if hard.any() else hard.astype(np.float32)
        return hard, soft
