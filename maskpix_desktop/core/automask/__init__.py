"""Auto mask: propose the edit region from the image and the instruction alone (no Qt, no clicks).

Three sources, fused and refined with SAM:

1. :func:`parse_instruction` — a rule-based, offline parser: target phrase(s), the action (change / add /
   remove / global) and the new content.
2. :func:`compute_relevance` — the InstructPix2Pix *relevance map* of "Watch Your Steps" (Mirzaei et al.,
   2023): encode the image once, noise ``z0`` to ``t = 0.8 T`` with a seeded noise, run the UNet once with
   and once without the instruction (one batch of two), ``R = sum_c |eps_instr - eps_empty|``, clip at
   ``Q3 + 1.5 IQR``, min-max normalise; ``K`` noise draws averaged. No extra model.
3. Text grounding (``core.grounding.GroundingDetector``, GroundingDINO): boxes for the target phrase.

:class:`AutoMasker` fuses them with SAM (``core.segmenter.Segmenter``): boxes become SAM box prompts; without
boxes (or for "add") SAM is prompted by the relevance box and component centroids; among SAM's three
candidates the one with the highest IoU with the relevance mask wins. Each action is post-processed
(change: small dilation + feather; remove: larger dilation; add: relevance united with the dilated
anchor; global: the whole image). The :class:`AutoMaskResult` keeps the prompts (for the UI to show as
ordinary prompt items), the continuous relevance map (so the threshold can change without re-running the
UNet: :meth:`AutoMasker.rethreshold`), which source proposed the mask and a confidence.

Modules: ``parser`` (instructions), ``relevance`` (the relevance map), ``proposal`` (params and result
types), ``masker`` (:class:`AutoMasker`, the fusion). Patch a name where it is looked up: ``masker`` calls
``compute_relevance`` and ``parse_instruction`` through its own module globals.
"""

from maskpix_desktop.core.automask.masker import AutoMasker, mask_iou
from maskpix_desktop.core.automask.parser import (
    ACTIONS,
    ParsedInstruction,
    is_plural,
    parse_instruction,
    parser_hit,
    singular,
)
from maskpix_desktop.core.automask.proposal import AutoMaskParams, AutoMaskResult, Detection
from maskpix_desktop.core.automask.relevance import (
    ProgressFn,
    RelevanceMap,
    compute_relevance,
    ddpm_scheduler,
    default_draws,
    normalise_relevance,
    relevance_from_eps,
)

__all__ = [
    "ACTIONS",
    "AutoMaskParams",
    "AutoMaskResult",
    "AutoMasker",
    "Detection",
    "ParsedInstruction",
    "ProgressFn",
    "RelevanceMap",
    "compute_relevance",
    "ddpm_scheduler",
    "default_draws",
    "is_plural",
    "mask_iou",
    "normalise_relevance",
    "parse_instruction",
    "parser_hit",
    "relevance_from_eps",
    "singular",
]
