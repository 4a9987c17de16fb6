"""Dataset readers: PIE-Bench and MagicBrush folders -> :class:`EvalItem` records (:func:`read_dataset`),
and :func:`load_item`, which reads an item's images and masks (:class:`ItemError` for a bad item).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images, masks
from maskpix_desktop.core.blend import MASK_MODES
from maskpix_desktop.core.errors import ImageLoadError, MaskPixError
from maskpix_desktop.core.evaluation.store import json_kind

#: The rows of an item: the unmasked IP2P baseline, then each mask mode.
MODES = ("baseline", *MASK_MODES)
#: The rows run when no mode is named: all but ``trained``, which needs a mask checkpoint (``--ip2p``).
DEFAULT_MODES = tuple(m for m in MODES if m != "trained")
MODE_LABELS = {"baseline": "IP2P baseline", **{m: m for m in MASK_MODES}}
FORMATS = ("pie", "magicbrush")
PIE_SIZE = (512, 512)
PIE_MAPPING = "mapping_file.json"
MB_SESSIONS = "edit_sessions.json"
#: The output's global description (``{img_id: {output file: caption}}``): CLIP-T's fallback caption.
MB_CAPTIONS = "global_descriptions.json"
#: The output's local description (same layout), the caption MagicBrush's CLIP-T uses: its evaluation
#: README runs ``image_eval.py --caption_path ./test/local_captions.json``, which reads
#: ``caption_dict[img_id][output file]``. The test release's name first, then the README's.
MB_LOCAL_CAPTIONS = ("local_descriptions.json", "local_captions.json")
MB_JSONL = "metadata.jsonl"
#: MagicBrush settings (its ``image_eval.py``): ``single`` = every turn edited from its ground-truth input
#: ("all turn"), ``multi`` = each session edited turn after turn from the model's own outputs, scored on
#: the final turn ("final turn"), ``both``.
MB_SETTINGS = ("single", "multi", "both")
MULTI_TURN = "multi-turn"

#: PIE-Bench editing types (``editing_type_id``), as named in the PIE-Bench paper.
PIE_EDIT_TYPES = {
    "0": "random editing",
    "1": "change object",
    "2": "add object",
    "3": "delete object",
    "4": "change attribute (content)",
    "5": "change attribute (pose)",
    "6": "change attribute (color)",
    "7": "change attribute (material)",
    "8": "change background",
    "9": "change style",
}


class ItemError(MaskPixError):
    """One dataset item cannot be evaluated (unreadable image, wrong mask size, missing field)."""


@dataclass(frozen=True)
class EvalItem:
    """One edit of a dataset. ``problem`` is set when the record itself is broken (reported as an error)."""

    id: str
    dataset: str
    image: Path
    instruction: str
    prompt: str | None = None  # the description of the wanted result (CLIP score and CLIP-T text)
    source_prompt: str | None = None
    edit_type: str = ""
    mask_rle: tuple[int, ...] | None = None  # PIE-Bench: (start, length) pairs at 512x512
    blended_word: str = ""  # PIE-Bench: the words naming the edited object (auto-mask parser check)
    mask_path: Path | None = None  # MagicBrush: brush mask image
    target: Path | None = None  # MagicBrush: ground-truth edited image
    problem: str | None = None
    #: MagicBrush multi-turn: the session's turns, edited in a row (turn k edits the output of turn k - 1);
    #: the item is scored on the last output against the last ground truth (``image`` = turn 1's input).
    chain: tuple[EvalItem, ...] = ()

    @property
    def slug(self) -> str:
        """The folder of the item's saved images: a readable file-safe prefix of the id plus a hash of the
        exact id, so ids that differ only in unsafe characters (``a b``/``a_b``, ``猫``/``犬``) or in case
        (on case-insensitive disks) never share a folder. Rows name their files, so resuming a run made
        with the older plain slugs still finds the old folders."""
        return item_folder(self.id)


def item_folder(item_id: str) -> str:
    """``<safe prefix, at most 40 chars>-<10 hex of sha256(id)>``; never empty, never ``.``/``..``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)[:40].strip(".") or "item"
    return f"{safe}-{hashlib.sha256(item_id.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def detect_format(root: Path) -> str:
    root = Path(root)
    if (root / PIE_MAPPING).is_file():
        return "pie"
    if (root / MB_SESSIONS).is_file() or (root / MB_JSONL).is_file():
        return "magicbrush"
    raise MaskPixError(
        f"{root} is neither a PIE-Bench folder ({PIE_MAPPING}) nor a MagicBrush folder "
        f"({MB_SESSIONS} with images/, or {MB_JSONL}); pass --format to say which"
    )


def _strip_brackets(text: str) -> str:
    """PIE-Bench marks the edited words with [ ]; its evaluation removes them before CLIP."""
    return text.replace("[", "").replace("]", "")


def _clean(text: str) -> str:
    """Text as UTF-8 can store it: a lone surrogate (possible in JSON) becomes its ``\\udXXX`` escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _load_index(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise MaskPixError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def _field(rec: dict, name: str, problems: list[str], lacks: list[str] | None = None) -> str:
    """A text field of an index record ("" when absent); a wrong type is a problem, never str()-ed."""
    value = rec.get(name)
    if value is None or value == "":
        if lacks is not None:
            lacks.append(name)
        return ""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, int) and not isinstance(value, bool) and name in ("editing_type_id", "img_id"):
        return str(value)
    problems.append(f"'{name}' is {json_kind(value)}, not text")
    return ""


def _whole(value: Any, least: int) -> int | None:
    """``value`` as an integer >= ``least`` (ints, integral floats, digit strings), else None."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= least else None


def _rle(value: Any) -> tuple[tuple[int, ...] | None, str | None]:
    if not isinstance(value, list):
        return None, f"mask is {json_kind(value)}, not a list of (start, length) integers"
    runs = [_whole(v, 0) for v in value]
    bad = next((v for v, r in zip(value, runs, strict=True) if r is None), None)
    if bad is not None or any(r is None for r in runs):
        return None, f"mask holds {bad!r:.40}, not a non-negative integer"
    return tuple(r for r in runs if r is not None), None


def read_pie(root: Path) -> list[EvalItem]:
    """Items of a PIE-Bench folder: ``mapping_file.json`` plus images under ``annotation_images/``. A record
    of the wrong shape becomes an item with a ``problem`` (an error row), never a crash."""
    root = Path(root)
    data = _load_index(root / PIE_MAPPING)
    if not isinstance(data, dict):
        raise MaskPixError(f"{root / PIE_MAPPING} must map item ids to records, not a {json_kind(data)}")
    img_root = root / "annotation_images" if (root / "annotation_images").is_dir() else root
    items = []
    for key in sorted(data):
        rec = data[key]
        problems = [] if isinstance(rec, dict) else [f"the record is {json_kind(rec)}, not an object"]
        rec = rec if isinstance(rec, dict) else {}
        lacks: list[str] = []
        image_path = _field(rec, "image_path", problems, lacks)
        instruction = _field(rec, "editing_instruction", problems, lacks)
        prompt, source = _field(rec, "editing_prompt", problems), _field(rec, "original_prompt", problems)
        edit_type = _field(rec, "editing_type_id", problems)
        rle_t, rle_problem = _rle(rec["mask"]) if "mask" in rec else (None, None)
        if "mask" not in rec and isinstance(data[key], dict):
            lacks.append("mask")  # an empty list is a valid (empty) mask
        problem = problems[0] if problems else f"record lacks {', '.join(lacks)}" if lacks else rle_problem
        items.append(
            EvalItem(
                id=_clean(str(key)),
                dataset="pie",
                image=img_root / image_path,
                instruction=instruction,
                prompt=_strip_brackets(prompt) or None,
                source_prompt=_strip_brackets(source) or None,
                edit_type=edit_type,
                mask_rle=rle_t,
                blended_word=_clean(str(rec.get("blended_word", "") or "")),
                problem=problem,
            )
        )
    return items


MB_TURN_KEYS = ("input", "mask", "instruction", "output")
MB_HF_KEYS = ("source_img", "mask_img", "instruction", "target_img")


def _mb_item(
    item_id: str, folder: Path, rec: dict, problems: list[str], where: str, keys: Sequence[str], **extra: Any
) -> EvalItem:
    """One MagicBrush turn; ``keys`` name its input, mask, instruction and output fields in ``rec``."""
    lacks: list[str] = []
    image, mask, instruction, output = (_field(rec, k, problems, lacks) for k in keys)
    problem = problems[0] if problems else f"lacks {', '.join(lacks)}" if lacks else None
    return EvalItem(
        id=item_id,
        dataset="magicbrush",
        image=folder / image,
        instruction=instruction,
        mask_path=folder / mask,
        target=folder / output,
        problem=f"{where}: {problem}" if problem else None,
        **extra,
    )


def magicbrush_caption_file(root: str | Path) -> Path | None:
    """The caption file a MagicBrush test folder's items take their CLIP text from: the first of
    :data:`MB_LOCAL_CAPTIONS` that exists (MagicBrush's CLIP-T), else :data:`MB_CAPTIONS`, else None."""
    root = Path(root)
    for name in (*MB_LOCAL_CAPTIONS, MB_CAPTIONS):
        if (root / name).is_file():
            return root / name
    return None


def magicbrush_caption_source(root: str | Path) -> str:
    """What the CLIP-T caption (``prompt``) of a MagicBrush folder's items is, in words (the report's
    definitions)."""
    root = Path(root)
    if not (root / MB_SESSIONS).is_file():
        return f"the `caption` column of {MB_JSONL} (used as given)"
    path = magicbrush_caption_file(root)
    if path is None:
        return f"none: no {' / '.join(MB_LOCAL_CAPTIONS)} or {MB_CAPTIONS}, so no CLIP-T or CLIP score"
    if path.name == MB_CAPTIONS:
        return (
            f"the global descriptions, {MB_CAPTIONS} (no {' / '.join(MB_LOCAL_CAPTIONS)}): "
            "not MagicBrush's CLIP-T caption, so CLIP-T is not comparable with the paper"
        )
    return f"the local descriptions, {path.name}, as MagicBrush's image_eval.py CLIP-T"


def _load_captions(root: Path) -> dict[str, Any]:
    """``{img_id: {output file: caption}}`` from :func:`magicbrush_caption_file` (empty without one). An
    unreadable file or one that is not a JSON object is an error; an entry of the wrong shape only leaves
    its items without a caption."""
    path = magicbrush_caption_file(root)
    if path is None:
        return {}
    captions = _load_index(path)
    if not isinstance(captions, dict):
        raise MaskPixError(
            f"{path} must map image ids to {{output file: caption}} objects, not a {json_kind(captions)}"
        )
    return captions


def read_magicbrush(root: Path, setting: str = "single") -> list[EvalItem]:
    """Items of a MagicBrush folder in ``setting`` (:data:`MB_SETTINGS`; multi-turn items: id
    ``<img_id>-multi``, edit type ``multi-turn``, their turns in ``chain``).

    Either the official test layout: ``edit_sessions.json`` (``{img_id: [{"input", "mask", "instruction",
    "output"}, ...]}``) with files in ``images/<img_id>/``; one item per turn, id ``<img_id>-<turn>``. The
    item's ``prompt`` (CLIP-T's caption, also the CLIP score's text) is its output's entry in the local
    descriptions (``local_descriptions.json`` or ``local_captions.json``, ``{img_id: {output file:
    caption}}``, as MagicBrush's ``image_eval.py`` reads them), or in ``global_descriptions.json`` (same
    layout) only when there is no local file (:func:`magicbrush_caption_source` says which).
    Or ``metadata.jsonl`` with the Hugging Face columns ``img_id``, ``turn_index``, ``source_img``,
    ``mask_img``, ``instruction``, ``target_img`` (paths relative to the folder) and optional ``caption``.
    A session, turn or line of the wrong shape becomes an item with a ``problem`` (an error row).
    """
    root = Path(root)
    if setting not in MB_SETTINGS:
        raise MaskPixError(f"unknown MagicBrush setting {setting!r}; use {', '.join(MB_SETTINGS)}")
    items: list[EvalItem] = []
    sessions_of: dict[str, tuple[str, int]] = {}  # turn item id -> (session, turn)
    if (root / MB_SESSIONS).is_file():
        sessions = _load_index(root / MB_SESSIONS)
        if not isinstance(sessions, dict):
            raise MaskPixError(
                f"{root / MB_SESSIONS} must map image ids to lists of turns, not a {json_kind(sessions)}"
            )
        captions = _load_captions(root)
        for img_id in sorted(sessions):
            folder, turns, sid = root / "images" / img_id, sessions[img_id], _clean(img_id)
            if not isinstance(turns, list):
                why = f"is {json_kind(turns)}, not a list of turns"
                items.append(_mb_item(sid, folder, {}, [why], f"session {sid!r}", MB_TURN_KEYS))
                continue
            caps = captions.get(img_id)
            for turn, rec in enumerate(turns, start=1):
                problems = [] if isinstance(rec, dict) else [f"is {json_kind(rec)}, not a record"]
                rec = rec if isinstance(rec, dict) else {}
                out_name = rec.get("output")
                caption = caps.get(out_name) if isinstance(caps, dict) and isinstance(out_name, str) else None
                prompt = _clean(caption) if isinstance(caption, str) and caption else None
                extra = {"prompt": prompt, "edit_type": f"turn {turn}"}
                items.append(
                    _mb_item(f"{sid}-{turn}", folder, rec, problems, f"turn {turn}", MB_TURN_KEYS, **extra)
                )
                sessions_of[items[-1].id] = (sid, turn)
        return _with_setting(items, sessions_of, setting)
    try:
        lines = (root / MB_JSONL).read_bytes().split(b"\n")
    except OSError as exc:
        raise MaskPixError(f"cannot read {root / MB_JSONL}: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problems: list[str] = []
        try:
            rec = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            rec, problems = {}, ["not UTF-8 text"]
        except (ValueError, RecursionError):
            rec, problems = {}, ["not valid JSON"]
        if not isinstance(rec, dict):
            rec, problems = {}, [f"is {json_kind(rec)}, not a record"]
        img_id = _field(rec, "img_id", problems) or f"line{n}"
        raw_turn = rec.get("turn_index", 1)
        turn = _whole(1 if raw_turn is None else raw_turn, 1)
        if turn is None:
            problems.append(f"turn_index {raw_turn!r:.40} is not a whole number >= 1")
        caption = rec.get("caption")
        items.append(
            _mb_item(
                f"{img_id}-{turn}" if turn is not None else f"{img_id}-line{n}",
                root,
                rec,
                problems,
                f"line {n}",
                MB_HF_KEYS,
                prompt=_clean(caption) if isinstance(caption, str) and caption else None,
                edit_type=f"turn {turn or '?'}",
            )
        )
        if turn is not None and img_id:
            sessions_of[items[-1].id] = (img_id, turn)
    return _with_setting(sorted(items, key=lambda it: it.id), sessions_of, setting)


def _with_setting(
    items: list[EvalItem], sessions_of: dict[str, tuple[str, int]], setting: str
) -> list[EvalItem]:
    """The turn items (single), one chained item per session (multi), or both."""
    if setting == "single":
        return items
    by_session: dict[str, list[tuple[int, EvalItem]]] = {}
    for it in items:
        if it.id in sessions_of:
            sid, turn = sessions_of[it.id]
            by_session.setdefault(sid, []).append((turn, it))
    multi = []
    for sid in sorted(by_session):
        turns = [it for _, it in sorted(by_session[sid], key=lambda p: p[0])]
        numbers = sorted(n for n, _ in by_session[sid])
        gap = numbers != list(range(1, len(numbers) + 1))
        problem = next((f"turn {n}: {it.problem}" for n, it in sorted(by_session[sid]) if it.problem), None)
        if problem is None and gap:
            problem = f"session {sid!r} has turns {numbers}, not 1..{len(numbers)}"
        last = turns[-1]
        multi.append(
            replace(
                last,
                id=f"{sid}-multi",
                image=turns[0].image,
                instruction=" / ".join(t.instruction for t in turns),
                edit_type=MULTI_TURN,
                problem=problem,
                chain=tuple(turns),
            )
        )
    return multi if setting == "multi" else sorted(items + multi, key=lambda it: it.id)


def read_dataset(
    root: str | Path, fmt: str = "auto", mb_setting: str = "single"
) -> tuple[str, list[EvalItem]]:
    """``(format, items)``; item ids are unique (a duplicate is an error in the index). ``mb_setting``:
    MagicBrush's single-turn and/or multi-turn items (:data:`MB_SETTINGS`)."""
    root = Path(root)
    if not root.is_dir():
        raise MaskPixError(f"dataset folder not found: {root}")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise MaskPixError(f"unknown dataset format {fmt!r}; use pie, magicbrush or auto")
    items = read_pie(root) if fmt == "pie" else read_magicbrush(root, mb_setting)
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise MaskPixError(f"duplicate item id {it.id!r} in {root}")
        seen.add(it.id)
    return fmt, items


@dataclass(frozen=True, eq=False)
class LoadedItem:
    image: np.ndarray
    edit_mask: np.ndarray  # the annotated mask given to the editor (bool HxW)
    metric_mask: np.ndarray  # the mask the background metrics leave out (PIE: optionally border-marked)
    target: np.ndarray | None = None
    chain_masks: tuple[np.ndarray, ...] = ()  # multi-turn: each turn's mask (edit/metric mask: their union)


def _magicbrush_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """MagicBrush ships the source image with the brushed region made transparent: alpha < 128 is the
    edit region. A mask without transparency is read as white = edit. Masks may come at another
    resolution than the image (resized, nearest); a different aspect ratio is a wrong mask."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            alpha = np.asarray(img.convert("RGBA"))[..., 3] if has_alpha else None
    except (OSError, ValueError) as exc:
        raise ItemError(f"cannot read mask {path}: {exc}") from None
    if alpha is not None and alpha.min() < 255:
        m = alpha < 128
    else:
        try:
            m = images.load_mask(path)
        except ImageLoadError as exc:
            raise ItemError(str(exc)) from None
    h, w = size
    mh, mw = m.shape
    if abs(mh / mw - h / w) > 0.01 * (h / w):
        raise ItemError(f"mask {path.name} is {mw}x{mh}, image is {w}x{h}: wrong mask size")
    return masks.resize_mask(m, (h, w)) if (mh, mw) != (h, w) else m


def load_item(item: EvalItem, *, pie_border: bool = True) -> LoadedItem:
    """Read an item's images and masks; :class:`ItemError` for anything that makes it unusable."""
    if item.problem:
        raise ItemError(item.problem)
    if item.chain:
        return _load_chain(item)
    if not item.instruction.strip():
        raise ItemError("empty editing instruction")
    try:
        image = images.load_image(item.image)
    except ImageLoadError as exc:
        raise ItemError(str(exc)) from None
    h, w = image.shape[:2]
    target = None
    if item.dataset == "pie":
        if (h, w) != PIE_SIZE:
            raise ItemError(
                f"image is {w}x{h} but PIE-Bench masks are defined at {PIE_SIZE[1]}x{PIE_SIZE[0]}: "
                "wrong mask size"
            )
        rle = item.mask_rle or ()
        n = PIE_SIZE[0] * PIE_SIZE[1]
        if any(s >= n for s in rle[0::2]):
            raise ItemError("mask RLE starts past the 512x512 image: wrong mask size")
        try:
            edit_mask = masks.pie_rle_decode(rle, PIE_SIZE, mark_border=False)
            metric_mask = masks.pie_rle_decode(rle, PIE_SIZE, mark_border=pie_border)
        except ValueError as exc:
            raise ItemError(f"bad mask RLE: {exc}") from None
    else:
        assert item.mask_path is not None and item.target is not None
        edit_mask = _magicbrush_mask(item.mask_path, (h, w))
        metric_mask = edit_mask
        try:
            target = images.load_image(item.target)
        except ImageLoadError as exc:
            raise ItemError(f"target: {exc}") from None
    return LoadedItem(image=image, edit_mask=edit_mask, metric_mask=metric_mask, target=target)


def _load_chain(item: EvalItem) -> LoadedItem:
    """A multi-turn item: turn 1's input, every turn's mask (at that size), the last turn's ground truth."""
    first = load_item(item.chain[0])
    h, w = first.image.shape[:2]
    chain_masks = [first.edit_mask]
    for n, turn in enumerate(item.chain[1:], start=2):
        if not turn.instruction.strip():
            raise ItemError(f"turn {n}: empty editing instruction")
        assert turn.mask_path is not None
        try:
            chain_masks.append(_magicbrush_mask(turn.mask_path, (h, w)))
        except ItemError as exc:
            raise ItemError(f"turn {n}: {exc}") from None
    last = item.chain[-1]
    assert last.target is not None
    try:
        target = images.load_image(last.target)
    except ImageLoadError as exc:
        raise ItemError(f"target: {exc}") from None
    union = np.logical_or.reduce(chain_masks)
    return LoadedItem(first.image, union, union, target=target, chain_masks=tuple(chain_masks))
