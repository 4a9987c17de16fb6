"""The ``mask = "auto"`` path of ``maskpix-cli run``."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from maskpix_desktop.core.errors import MaskPixError

__all__ = ["case_auto_mask"]


def case_auto_mask(case: Any, image: np.ndarray, service: Any) -> np.ndarray:
    """The ``mask = "auto"`` path of ``maskpix-cli run``: the feathered proposal for the case's instruction.

    Grounding is used when its weights are present (a note says when they are not); the relevance map runs
    with the case's seed and working size.
    """
    from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams

    masker = AutoMasker.from_service(service)
    p = case.params
    result = masker.run(image, p.instruction, AutoMaskParams(seed=p.seed, long_side=p.long_side))
    print(f"note: case '{case.name}': {result.summary()}", file=sys.stderr)
    for note in result.notes:
        print(f"note: case '{case.name}': {note}", file=sys.stderr)
    if not result.mask.any():
        raise MaskPixError(
            f"case '{case.name}': the auto mask found nothing for {p.instruction!r}; give a 'mask' file or "
            "SAM 'points'/'box' prompts"
        )
    return result.soft_mask
