"""The auto mask's SAM fusion with a SAM 2.1 segmenter: the masks it keeps are the segmenter's own
candidates for the prompts it chose (box prompts from grounding; points + box from the relevance map)."""

from __future__ import annotations

import numpy as np
import pytest

from maskpix_desktop.core.automask import (
    AutoMasker,
    AutoMaskParams,
    Detection,
    RelevanceMap,
    mask_iou,
    parse_instruction,
)
from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter
from maskpix_desktop.testing.tiny_sam2 import build_tiny_sam2


@pytest.fixture(scope="module")
def seg() -> Sam2Segmenter:
    model, processor = build_tiny_sam2(seed=0)
    return Sam2Segmenter(model, processor.image_processor)


def test_grounding_box_goes_to_sam2_and_its_best_candidate_is_kept(seg: Sam2Segmenter, rng_image) -> None:
    image = rng_image(96, 128, seed=4)
    box = (20.0, 10.0, 90.0, 70.0)
    params = AutoMaskParams(use_relevance=False)
    out = AutoMasker(segmenter=seg).fuse(
        image, parse_instruction("make the cat red"), None, [Detection(box, 0.9)], params
    )
    seg.set_image(image)
    res = seg.predict(box=np.array(box, np.float32), multimask=True)
    best = int(np.argmax(res.scores))
    assert out.source == "grounding"
    assert np.array_equal(out.raw_mask, res.masks[best])
    assert np.array_equal(out.sam_logits, res.logits[best][None])


def test_relevance_prompts_go_to_sam2_and_the_closest_candidate_is_kept(
    seg: Sam2Segmenter, rng_image
) -> None:
    image = rng_image(96, 128, seed=5)
    raw = np.zeros((12, 16), np.float32)
    raw[3:8, 4:10] = 1.0  # a relevance blob at latent resolution
    relevance = RelevanceMap.from_raw(raw, (96, 128))
    params = AutoMaskParams()
    out = AutoMasker(segmenter=seg).fuse(image, parse_instruction("make the cat red"), relevance, [], params)
    assert out.source == "relevance" and len(out.points) >= 1 and out.boxes.shape == (1, 4)
    seg.set_image(image)
    res = seg.predict(points=out.points, labels=out.labels, box=out.boxes[0], multimask=True)
    rel = relevance.mask(params.tau)
    ious = [mask_iou(m, rel) for m in res.masks]
    idx = int(np.argmax(ious))
    assert np.array_equal(out.raw_mask, res.masks[idx])
    assert out.confidence == pytest.approx(ious[idx])
