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
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from maskpix_desktop.core import images, masks
from maskpix_desktop.core.errors import Cancelled, MissingWeightsError

log = logging.getLogger(__name__)

__all__ = [
    "ACTIONS",
    "AutoMaskParams",
    "AutoMaskResult",
    "AutoMasker",
    "Detection",
    "ParsedInstruction",
    "RelevanceMap",
    "compute_relevance",
    "is_plural",
    "mask_iou",
    "normalise_relevance",
    "parse_instruction",
    "relevance_from_eps",
]

ACTIONS = ("change", "add", "remove", "global")

ProgressFn = Callable[[int, int, str], None]
"""on_step(done, total, stage) — stage is "relevance", "grounding" or "sam"."""


# =========================================================================================== parsing


@dataclass(frozen=True)
class ParsedInstruction:
    """What an instruction asks for: where (``targets``), what kind of edit (``action``) and ``new`` content.

    ``targets`` are short noun phrases suitable as GroundingDINO prompts ("cat", "red car", "person");
    empty for global edits and when the instruction names no place ("add a rainbow").
    """

    targets: tuple[str, ...]
    action: str
    new: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {self.action!r}")

    @property
    def prompt(self) -> str:
        """GroundingDINO text prompt: lower-case phrases, each ending with a dot ("cat. dog.")."""
        return " ".join(f"{t.lower().strip(' .')}." for t in self.targets)


_DETERMINERS = (
    "the|a|an|this|that|these|those|his|her|their|its|my|your|our|some|any|all the|all|both|every|each"
)
_DET_RE = re.compile(rf"^(?:(?:{_DETERMINERS})\s+)+")
_PRONOUNS = {
    "him": "person",
    "her": "person",
    "he": "person",
    "she": "person",
    "himself": "person",
    "herself": "person",
    "them": "people",
    "they": "people",
    "themselves": "people",
}
# Nouns that name the whole picture: an edit "to the image" is global when it carries a global cue.
_WHOLE_IMAGE = frozenset(
    "it|this|image|photo|photograph|picture|pic|scene|painting|whole image|whole picture|whole scene|"
    "entire image|entire picture|entire scene|everything|style|season|weather|time|time of day|lighting|"
    "light|atmosphere|mood|setting|art style|image style|photo style".split("|")
)
# Style, season, weather and time-of-day cues (whole words or phrases) -> a global edit.
_GLOBAL_CUES = re.compile(
    r"\b(?:in the style of|style of|styled as|\w+ style\b|van gogh|monet|picasso|da vinci|rembrandt|"
    r"vermeer|hokusai|warhol|dali|klimt|cezanne|watercolou?r|oil painting|painting|painted|sketch|drawing|"
    r"pencil|charcoal|cartoon|anime|manga|pixar|disney|ghibli|comic|pixel art|impressionis\w*|"
    r"expressionis\w*|cubis\w*|surreal\w*|pop art|ukiyo-e|mosaic|stained glass|low poly|vintage|retro|"
    r"black and white|monochrome|sepia|grayscale|greyscale|cyberpunk|steampunk|vaporwave|"
    r"winter|summer|spring|autumn|fall season|snowy|snowing|snow|rainy|raining|rain|foggy|fog|misty|"
    r"stormy|storm|cloudy|sunny|thunderstorm|at night|night time|nighttime|night|midnight|evening|"
    r"dusk|dawn|sunset|sunrise|golden hour|daytime|at noon)\b"
)
_STYLE_ONLY = re.compile(r"\b(?:in the style of|style of|styled as|\w+ style)\b")

_PREFIXES = re.compile(
    r"^(?:(?:please|pls|kindly|now|then|and|ok|okay|so|hey|just|also)\s*,?\s+|"
    r"(?:can|could|would|will) (?:you|we|i)\s+(?:please\s+)?|let'?s\s+|let us\s+|"
    r"i (?:want|would like|'d like|wish|need) (?:you )?(?:to\s+)?|we (?:should|need to|want to)\s+|"
    r"try (?:to\s+)?|go ahead and\s+)+"
)
# Where a target phrase stops: relative clauses, participles and most prepositions ("the cat sitting on
# the sofa" -> "cat"). "of" is kept only inside the attribute patterns handled before this cut.
_CUT = re.compile(
    r"\s+(?:that|which|who|whose|where|while|when|so|sitting|standing|lying|laying|walking|running|"
    r"holding|wearing|looking|sleeping|eating|playing|flying|swimming|hanging|parked|placed|located|"
    r"on|in|at|into|onto|to|from|with|without|near|next|beside|behind|under|over|above|below|"
    r"between|by|for|inside|outside|around|across|along|against|like|as|of|and make|and turn|"
    r"and change|instead|too|also|now|please)\b.*$"
)
_ATTRIBUTES = (
    r"colou?r|colou?rs|texture|material|shape|pattern|style|size|pose|posture|position|expression|"
    r"facial expression|emotion|look|appearance|fur|hair colou?r|surface|action|activity|gesture|state|"
    r"design|print|finish|shade"
)
_ATTRIBUTE_OF = re.compile(rf"^(?:the\s+)?(?:{_ATTRIBUTES})\s+of\s+(.+)$")
_NEW_TAIL = re.compile(
    r"(?:\s+(?:on|in|onto|into|at|over|to|for|around)\s+(?:it|them|him|her|top))?"
    r"\s*(?:instead|please|now|too|as well)?\s*$"
)


def _clean_phrase(text: str) -> str:
    """Lower-case noun phrase without determiners, trailing punctuation or possessive owners."""
    t = text.strip().strip(" .,!?;:'\"").lower()
    t = re.sub(r"\s+", " ", t)
    m = _ATTRIBUTE_OF.match(t)
    if m:
        t = m.group(1)
    t = _DET_RE.sub("", t)
    # "the man's hat" -> "hat" (the possessed thing is what changes)
    t = re.sub(r"^.*?\b\w+'s\s+", "", t)
    t = re.sub(r"^.*?\b\w+s'\s+", "", t)
    return t.strip()


def _target_phrases(text: str) -> tuple[str, ...]:
    """Split "the cat and the dog" into ("cat", "dog"); cut clauses; map pronouns to person/people."""
    raw = text.strip().lower()
    m = _ATTRIBUTE_OF.match(_DET_RE.sub("", raw))
    if m:
        raw = m.group(1)
    parts = re.split(rf"\s*(?:,\s*(?:and\s+)?|\s+and\s+|\s+&\s+)(?=(?:{_DETERMINERS})\s)", raw)
    out: list[str] = []
    for part in parts:
        phrase = _clean_phrase(part)
        phrase = _CUT.sub("", " " + phrase).strip() if phrase else phrase
        phrase = _clean_phrase(phrase)
        if not phrase:
            continue
        phrase = _PRONOUNS.get(phrase, phrase)
        if phrase not in out:
            out.append(phrase)
    return tuple(out)


def _new_phrase(text: str | None) -> str | None:
    if text is None:
        return None
    t = _NEW_TAIL.sub("", text.strip().strip(" .,!?;:'\"").lower())
    t = _DET_RE.sub("", t).strip()
    return t or None


_V_CHANGE = r"(?:turn|change|convert|transform|transfer|morph|switch|alter|modify|edit|make|render)"
_V_REMOVE = (
    r"(?:remove|erase|delete|eliminate|get rid of|take away|take out|take off|clear away|clear|wipe out|"
    r"wipe away|wipe|cut out|drop|hide|lose|rid of|do away with)"
)
_V_ADD = r"(?:add|insert|include|put|place|draw|paint in|attach|drop in|stick|set|plant|introduce)"
_LOC = (
    r"(?:to|on|onto|on top of|in|into|inside|at|near|next to|beside|by|behind|in front of|under|"
    r"underneath|below|above|over|around|between|among|along|across|against|to the left of|"
    r"to the right of|left of|right of)"
)
_MAKE_DET = r"(?:(?:the|a|an|his|her|their|its|this|that|these|those|all)\s+)?"
_MAKE_X = (
    rf"{_MAKE_DET}(?:(?:two|three|four|five|six|\d+|both)\s+)?(?:\S+'s\s+)?\S+(?:\s+of\s+{_MAKE_DET}\S+)?"
)
_THERE = r"(?:there should be|there is|there are|there's)"
_WHAT_IF_THERE = r"what if (?:there (?:was|were|is|are)|we had)"
_WEAR = r"(?:wear|wears|wearing|hold|holds|holding|carry|carrying|have|has|having|put on|don)"

Rule = tuple[re.Pattern[str], str, str | None, str | None]


def _r(action: str, pattern: str, x: str | None = "x", y: str | None = "y") -> Rule:
    return re.compile(pattern), action, x, y


# (regex, action, target group, new group); first match wins. Patterns see the normalised instruction.
_RULES: list[Rule] = [
    # replace / swap / substitute the X with/for/by Y
    _r("change", r"^(?:replace|swap|exchange|substitute)\s+(?P<x>.+?)\s+(?:with|for|by|to)\s+(?P<y>.+)$"),
    _r("change", r"^(?:substitute|use)\s+(?P<y>.+?)\s+(?:for|instead of)\s+(?P<x>.+)$"),
    # remove / erase / delete the X (from ...)
    _r("remove", rf"^{_V_REMOVE}\s+(?P<x>.+?)(?:\s+(?:from|off|out of)\s+.+)?$", y=None),
    _r("remove", rf"^{_THERE}\s+no\s+(?P<x>.+)$", y=None),
    _r("remove", r"^(?:without|no more|no)\s+(?P<x>.+)$", y=None),
    _r("remove", r"^(?:make|let)\s+(?P<x>.+?)\s+(?:disappear|vanish|go away|be gone)$", y=None),
    # let / make / have the X wear / hold / carry Y ; give the X Y
    _r("add", rf"^(?:let|make|have|get)\s+(?P<x>.+?)\s+{_WEAR}\s+(?P<y>.+)$"),
    _r(
        "add",
        r"^(?P<x>.+?)\s+(?:should|could|would|will|can)\s+(?:be\s+)?"
        r"(?:wear|hold|carry|have|wearing|holding|carrying)\s+(?P<y>.+)$",
    ),
    _r("add", r"^(?P<x>.+?)\s+(?:is|are)\s+(?:now\s+)?(?:wearing|holding|carrying)\s+(?P<y>.+)$"),
    _r("add", r"^give\s+(?P<x>.+?)\s+(?P<y>(?:a|an|some|two|three|\d+)\s+.+)$"),
    _r("add", r"^give\s+(?P<x>him|her|them|it|the\s+\S+|\S+)\s+(?P<y>.+)$"),
    _r("add", r"^(?:dress|equip|decorate|cover|fill|top|garnish|adorn)\s+(?P<x>.+?)\s+with\s+(?P<y>.+)$"),
    # add Y to/on the X ; put Y on the X ; add Y ; there should be Y on the X ; what if there was Y
    _r("add", rf"^{_V_ADD}\s+(?P<y>.+?)\s+{_LOC}\s+(?P<x>.+)$"),
    _r("add", rf"^{_V_ADD}\s+(?P<y>.+)$", x=None),
    _r("add", rf"^(?:{_THERE}|have)\s+(?P<y>.+?)\s+{_LOC}\s+(?P<x>.+)$"),
    _r("add", rf"^{_THERE}\s+(?P<y>.+)$", x=None),
    _r("add", rf"^{_WHAT_IF_THERE}\s+(?P<y>.+?)\s+{_LOC}\s+(?P<x>.+)$"),
    _r("add", rf"^{_WHAT_IF_THERE}\s+(?P<y>.+)$", x=None),
    _r("add", r"^what if\s+(?P<x>.+?)\s+(?:had|has|wore|was wearing|were wearing|held)\s+(?P<y>.+)$"),
    # turn / change / make / convert the X into / to Y
    _r("change", rf"^{_V_CHANGE}\s+(?P<x>.+?)\s+(?:into|to be|to look like|to|in to|as)\s+(?P<y>.+)$"),
    # make the X look / seem / appear Y ; make the X more Y
    _r(
        "change",
        r"^(?:make|let|have|get)\s+(?P<x>.+?)\s+(?:look|looks|seem|appear|become|be|turn|get)"
        r"(?:\s+like)?\s+(?P<y>.+)$",
    ),
    # paint / dye / colour the X Y
    _r(
        "change",
        r"^(?:paint|dye|colou?r|recolou?r|tint|stain)\s+(?P<x>.+?)\s+(?:in\s+)?(?P<y>\S+(?:\s+and\s+\S+)?)$",
    ),
    # the X should be / is / becomes Y ; what if the X was Y
    _r("change", r"^what if\s+(?P<x>.+?)\s+(?:was|were|is|are|became|looked like)\s+(?P<y>.+)$"),
    _r(
        "change",
        r"^(?P<x>.+?)\s+(?:should|could|would|must|will|can)\s+(?:be|become|look like|turn into)"
        r"\s+(?P<y>.+)$",
    ),
    _r("change", r"^(?P<x>.+?)\s+(?:is|are|becomes|become|turns into|turn into)\s+(?:now\s+)?(?P<y>.+)$"),
    # make the X Y (adjective or noun): X is one word after optional determiner, count, possessive, with an
    # optional "of the Z" ("the color of the car"); several X joined by "and"
    _r("change", rf"^(?:make|let|have|get)\s+(?P<x>{_MAKE_X}(?:\s*(?:,|and)\s+{_MAKE_X})*)\s+(?P<y>.+)$"),
    # bare verb + object: "change the car", "turn the lights on"
    _r("change", rf"^{_V_CHANGE}\s+(?P<x>.+)$", y=None),
]


def _normalise(text: str) -> str:
    t = text.strip().lower().replace("’", "'").replace("`", "'")
    t = re.sub(r"[\"“”]", "", t)
    t = re.sub(r"\s+", " ", t).strip(" .!?;")
    prev = None
    while prev != t:
        prev = t
        t = _PREFIXES.sub("", t).strip()
    return t


def _is_whole_image(targets: Sequence[str]) -> bool:
    return not targets or all(t in _WHOLE_IMAGE for t in targets)


def parse_instruction(text: str) -> ParsedInstruction:
    """Rule-based parse of an editing instruction (offline, no model).

    >>> parse_instruction("Turn the cat into a dog")
    ParsedInstruction(targets=('cat',), action='change', new='dog')
    >>> parse_instruction("add a hat to the man").action
    'add'
    >>> parse_instruction("make it winter").action
    'global'

    Rules, in order: replace/swap X with Y; remove/erase/delete X; let/make/have X wear/hold Y, give X Y;
    add/put Y to/on X (or just "add Y"); turn/change/make/convert X into/to Y; make X look Y; paint X Y;
    "X should be Y" / "what if X was Y"; "make X Y"; pronouns (him/her/he/she -> "person", them/they ->
    "people"). An instruction that names no specific object (or names the image itself) and carries a
    style, season, weather or time-of-day cue ("in the style of", "Van Gogh", "watercolor", "winter",
    "snowy", "at night", "sunset", ...) is ``global``; so is an explicit "in the style of" phrase.
    """
    norm = _normalise(text)
    if not norm:
        return ParsedInstruction((), "global", None)
    action, targets, new = "change", (), None
    for rx, act, xg, yg in _RULES:
        m = rx.match(norm)
        if not m:
            continue
        action = act
        targets = _target_phrases(m.group(xg)) if xg else ()
        new = _new_phrase(m.group(yg)) if yg else None
        break
    else:
        # No verb pattern: a bare phrase ("a snowy day", "sunset", "red car") — treat it as new content.
        new = _new_phrase(norm)

    cue = _GLOBAL_CUES.search(norm)
    style_phrase = _STYLE_ONLY.search(norm)
    if cue and action != "remove" and (_is_whole_image(targets) or style_phrase and action == "change"):
        if not (action == "add" and targets and not _is_whole_image(targets)):
            return ParsedInstruction((), "global", new)
    if action in ("change", "remove") and targets and _is_whole_image(targets):
        targets = ()
    return ParsedInstruction(tuple(targets), action, new)


_IRREGULAR_PLURALS = frozenset(
    "people men women children kids mice geese teeth feet oxen sheep fish deer cattle police persons glasses "
    "leaves wolves knives shelves loaves calves halves".split()
)
_SINGULAR_S = ("ss", "us", "is", "ous", "ics")
_COUNT_WORDS = re.compile(r"\b(?:two|three|four|five|six|seven|eight|nine|ten|many|several|both|all|\d+)\b")


def is_plural(phrase: str) -> bool:
    """True for plural noun phrases ("cats", "two dogs", "people", "all the apples"): keep every box."""
    p = phrase.strip().lower()
    if not p:
        return False
    if _COUNT_WORDS.search(p):
        return True
    head = p.split()[-1]
    if head in _IRREGULAR_PLURALS:
        return head not in ("sheep", "fish", "deer", "glasses") or bool(_COUNT_WORDS.search(p))
    return len(head) > 3 and head.endswith("s") and not head.endswith(_SINGULAR_S)


def singular(word: str) -> str:
    """Crude English singular for matching words ("cats" -> "cat", "boxes" -> "box", "people" -> "person")."""
    w = word.lower()
    special = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse"}
    if w in special:
        return special[w]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "xes", "sses", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(_SINGULAR_S):
        return w[:-1]
    return w


def parser_hit(parsed: ParsedInstruction, blended_word: str) -> bool | None:
    """Does the parse name PIE-Bench's ``blended_word``? None when there is no blended word.

    PIE-Bench's blended word is "source target" (e.g. "cat dog") or a single word; it is a hit when any of
    its words (singularised) is a word of a parsed target — or, for "add" edits, of the new content.
    """
    words = {singular(w) for w in re.findall(r"[a-z]+", (blended_word or "").lower())}
    if not words:
        return None
    phrases = list(parsed.targets)
    if parsed.action in ("add", "global") and parsed.new:
        phrases.append(parsed.new)
    have = {singular(w) for p in phrases for w in re.findall(r"[a-z]+", p)}
    return bool(words & have)


# ========================================================================================= relevance


def relevance_from_eps(eps_instr: Any, eps_empty: Any) -> np.ndarray:
    """``R = sum_c |eps_instr - eps_empty|`` of (C, h, w) or (1, C, h, w) predictions, (h, w) float32."""
    a = _to_numpy(eps_instr).astype(np.float32)
    b = _to_numpy(eps_empty).astype(np.float32)
    if a.shape != b.shape:
        raise ValueError(f"noise predictions differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError("relevance_from_eps takes one image at a time")
        a, b = a[0], b[0]
    if a.ndim != 3:
        raise ValueError(f"noise predictions must be (C, h, w), got {a.shape}")
    return np.abs(a - b).sum(axis=0)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return x.detach().float().cpu().numpy()


def normalise_relevance(raw: np.ndarray) -> np.ndarray:
    """Clip at ``Q3 + 1.5 IQR`` (outliers), then min-max normalise to [0, 1] (float32).

    When the quartiles collapse (IQR = 0 and the clip would flatten everything above Q3, e.g. a small
    region of change on an exactly constant background), the clip is skipped. A constant map gives zeros.
    """
    r = np.asarray(raw, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"a relevance map is 2-D, got {r.shape}")
    q1, q3 = np.percentile(r, [25.0, 75.0])
    hi = q3 + 1.5 * (q3 - q1)
    lo = float(r.min())
    if hi <= lo or (q3 == q1 and r.max() > hi):
        hi = float(r.max())
    r = np.minimum(r, hi)
    span = float(r.max()) - lo  # min-max of the clipped map (hi itself when something was clipped)
    if span <= 0:
        return np.zeros(r.shape, np.float32)
    return ((r - lo) / span).astype(np.float32)


@dataclass(frozen=True, eq=False)
class RelevanceMap:
    """The continuous relevance map; thresholds are applied later, so tau changes never re-run the UNet.

    ``values``: (h, w) float32 in [0, 1] at latent resolution (working size / 8); ``raw``: the K-averaged
    ``sum_c |eps_instr - eps_empty|`` before clipping; ``image_size``: (H, W) of the user's image.
    """

    values: np.ndarray
    raw: np.ndarray
    image_size: tuple[int, int]
    working_size: tuple[int, int] = (0, 0)
    timestep: int = 0
    draws: int = 1
    seed: int = 0
    instruction: str = ""
    seconds: float = 0.0
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_raw(cls, raw: np.ndarray, image_size: Sequence[int], **kw: Any) -> RelevanceMap:
        """Normalise ``raw`` (see :func:`normalise_relevance`) and wrap it."""
        h, w = (int(v) for v in image_size)
        return cls(values=normalise_relevance(raw), raw=np.asarray(raw, np.float32), image_size=(h, w), **kw)

    def heatmap(self) -> np.ndarray:
        """(H, W) float32 in [0, 1]: ``values`` bilinearly upsampled to the image size (cached)."""
        hit = self._cache.get("heat")
        if hit is None:
            hit = masks.resize_mask(self.values, self.image_size, mode="bilinear")
            self._cache["heat"] = hit
        return hit

    def mask(self, tau: float = 0.5) -> np.ndarray:
        """(H, W) bool: ``values > tau`` at latent resolution, then upsampled (nearest) to the image size.

        Thresholding before upsampling keeps the result exact: a 0/1 map comes back as its 1-region,
        pixel for pixel, for any tau. (SAM smooths the blocky edges in the fused mask.)
        """
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {tau}")
        return masks.resize_mask(self.values > np.float32(tau), self.image_size, mode="nearest")

    def heatmap_rgb(self, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
        """(H, W, 3) uint8 RGB colour rendering of the heatmap for an overlay."""
        u8 = np.clip(np.rint(self.heatmap() * 255.0), 0, 255).astype(np.uint8)
        return cv2.cvtColor(cv2.applyColorMap(u8, colormap), cv2.COLOR_BGR2RGB)


def _check_cancel(cancel: threading.Event | None, what: str = "Auto mask cancelled.") -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(what)


def default_draws(device: str) -> int:
    """K noise draws: 1 on CPU (and MPS), 4 on CUDA."""
    return 4 if str(device).startswith("cuda") else 1


def ddpm_scheduler(pipe: Any) -> Any:
    """A ``DDPMScheduler`` with the pipeline scheduler's training schedule (betas -> alphas_cumprod).

    The UNet was trained with the DDPM forward process ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps``.
    The IP2P pipeline ships EulerAncestral, whose ``add_noise`` works in sigma space and needs
    ``scale_model_input`` afterwards; ``(z0 + sigma eps) / sqrt(sigma^2 + 1)`` is the same tensor, so we
    noise with DDPM's ``add_noise`` on the same betas (``beta_start``, ``beta_end``, ``beta_schedule``,
    ``num_train_timesteps`` from ``pipe.scheduler.config``) and feed the UNet directly.
    """
    from diffusers import DDPMScheduler

    cfg = {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    return DDPMScheduler.from_config(cfg)


def compute_relevance(
    editor: Any,
    image: np.ndarray,
    instruction: str,
    *,
    t_frac: float = 0.8,
    draws: int | None = None,
    seed: int = 0,
    long_side: int = 512,
    on_step: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    progress_offset: int = 0,
    progress_total: int | None = None,
) -> RelevanceMap:
    """The IP2P relevance map of ``instruction`` on ``image`` (HxWx3 uint8) with the editor's pipeline.

    The image is brought to the working size (long side ``long_side``, multiple of 8) and encoded once:
    the image condition is the unscaled posterior mode (as the pipeline computes it) and
    ``z0 = mode * scaling_factor``. For each of ``draws`` seeded noises (CPU generator seeded with ``seed``,
    drawn in sequence) ``z0`` is noised to ``t = t_frac * T`` (DDPM schedule, see :func:`ddpm_scheduler`)
    and the UNet runs once on a batch of two — with the instruction's and with the empty prompt's
    embeddings (``pipe._encode_prompt``, exactly the pipeline's), the image condition concatenated on the
    channels like the pipeline does. ``R = sum_c |eps_instr - eps_empty|`` is averaged over draws.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    pipe = editor.pipe
    device = pipe.device
    k = int(draws) if draws is not None else default_draws(str(device))
    if k < 1:
        raise ValueError("draws must be at least 1")
    if not 0.0 < t_frac <= 1.0:
        raise ValueError("t_frac must be in (0, 1]")
    total = progress_total if progress_total is not None else k
    _check_cancel(cancel)
    t0 = time.perf_counter()
    h, w = image.shape[:2]
    wh, ww = images.working_size(h, w, long_side, multiple=8)
    work = images.resize_image(image, (wh, ww), resample="area")
    sched = ddpm_scheduler(pipe)
    n_train = int(sched.config.num_train_timesteps)
    t_int = min(n_train - 1, int(round(t_frac * n_train)))
    with torch.inference_mode():
        cond = editor.encode_image(work)  # unscaled mode, the pipeline's image condition
        z0 = cond * pipe.vae.config.scaling_factor
        embeds = pipe._encode_prompt(instruction, device, 1, True, None)[:2]  # [instruction, empty]
        dtype = pipe.unet.dtype
        embeds = embeds.to(dtype)
        cond2 = torch.cat([cond, cond]).to(dtype)
        t = torch.tensor([t_int], device=device, dtype=torch.long)
        gen = editor._generator(seed)
        acc = np.zeros(z0.shape[-2:], np.float64)
        for i in range(k):
            _check_cancel(cancel)
            noise = randn_tensor(tuple(z0.shape), generator=gen, device=z0.device, dtype=z0.dtype)
            zt = sched.add_noise(z0, noise, t)
            x = torch.cat([torch.cat([zt, zt]).to(dtype), cond2], dim=1)
            eps = pipe.unet(x, t_int, encoder_hidden_states=embeds, return_dict=False)[0]
            acc += relevance_from_eps(eps[0:1], eps[1:2])
            if on_step is not None:
                on_step(progress_offset + i + 1, total, "relevance")
            _check_cancel(cancel)
    raw = (acc / k).astype(np.float32)
    return RelevanceMap.from_raw(
        raw,
        (h, w),
        working_size=(wh, ww),
        timestep=t_int,
        draws=k,
        seed=int(seed),
        instruction=instruction,
        seconds=time.perf_counter() - t0,
    )


# ============================================================================================ fusion


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
        _check_cancel(cancel)
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
            _check_cancel(cancel)
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
        _check_cancel(cancel)
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
