"""The auto mask's instruction parser: rule-based, offline; target phrase(s), action and new content."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ACTIONS", "ParsedInstruction", "is_plural", "parse_instruction", "parser_hit", "singular"]

ACTIONS = ("change", "add", "remove", "global")


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
