"""A blinded human study on disk: ``study.json`` (what raters see), ``key.json`` (code -> method, kept apart)
and ``answers-<rater>.json`` (one rater's ratings, rewritten atomically after every answer).

Qt-free. Every reader checks the types of what it reads and names the file and the field it refuses.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import MaskPixError

STUDY_JSON = "study.json"
KEY_JSON = "key.json"
ANSWERS_PREFIX = "answers-"
STUDY_FORMAT = "maskpix-study"
ANSWERS_FORMAT = "maskpix-study-answers"
KEY_FORMAT = "maskpix-study-key"
VERSION = 1

#: 5-point agreement scale shown with every question.
SCALE = (1, 2, 3, 4, 5)
SCALE_LABELS = {1: "strongly disagree", 2: "disagree", 3: "neither", 4: "agree", 5: "strongly agree"}
RATER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class StudyError(MaskPixError):
    """A study package, key or answers file is unusable; the message names the file and the field."""


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    short: str


QUESTIONS = (
    Question("region", "The edit stayed within the marked region", "Stayed within the region"),
    Question("instruction", "The edit did what the instruction asked", "Did what was asked"),
)
QUESTION_IDS = tuple(q.id for q in QUESTIONS)


@dataclass(frozen=True)
class StudyItem:
    """One item: its original, instruction, mask and the blinded candidates (code -> relative path)."""

    id: str
    instruction: str
    original: str
    mask: str
    candidates: dict[str, str]


@dataclass
class Study:
    folder: Path
    study_id: str
    items: dict[str, StudyItem]
    orders: dict[str, list[tuple[str, str]]]  # rater -> (item, code) in the order they are shown
    questions: tuple[Question, ...] = QUESTIONS

    def path(self, rel: str) -> Path:
        return self.folder / rel

    def answers_path(self, rater: str) -> Path:
        return self.folder / f"{ANSWERS_PREFIX}{rater}.json"


def candidate_key(item: str, code: str) -> str:
    return f"{item}/{code}"


def check_rater(name: str, where: str = "rater") -> str:
    if not isinstance(name, str) or not RATER_PATTERN.match(name):
        raise StudyError(
            f"{where}: {name!r:.50} is not a usable rater id (letters, digits, '_', '-', '.', at most 40, "
            "starting with a letter or digit)"
        )
    return name


def _safe_rel(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise StudyError(f"{where} is {_kind(value)}, not a relative file path")
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or "\\" in value or ":" in value:
        raise StudyError(f"{where} = {value!r:.60} leaves the study folder")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r:.40}"


def read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise StudyError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise StudyError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise StudyError(f"{path}: not valid JSON ({exc})") from None


def write_json(path: Path, data: Any) -> None:
    images.atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n")


def _field(obj: dict[str, Any], name: str, types: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise StudyError(f"{where}: '{name}' is missing")
    value = obj[name]
    if not isinstance(value, types) or isinstance(value, bool):
        raise StudyError(f"{where}.{name} is {_kind(value)}")
    return value


def _header(data: Any, path: Path, fmt: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise StudyError(f"{path}: the file holds {type(data).__name__}, not a JSON object")
    if data.get("format") != fmt:
        raise StudyError(f"{path}: 'format' is {data.get('format')!r:.40}, expected {fmt!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
        raise StudyError(f"{path}: 'version' is {_kind(version)}; this MaskPix reads version {VERSION}")
    return data


def study_to_json(study: Study, created: float | None = None) -> dict[str, Any]:
    return {
        "format": STUDY_FORMAT,
        "version": VERSION,
        "study_id": study.study_id,
        "created": created if created is not None else time.time(),
        "questions": [{"id": q.id, "text": q.text, "short": q.short} for q in study.questions],
        "scale": {str(k): v for k, v in SCALE_LABELS.items()},
        "items": [
            {
                "id": it.id,
                "instruction": it.instruction,
                "original": it.original,
                "mask": it.mask,
                "candidates": dict(it.candidates),
            }
            for it in study.items.values()
        ],
        "raters": {r: [[i, c] for i, c in order] for r, order in study.orders.items()},
    }


def load_study(path: str | Path) -> Study:
    """The study in ``path`` (its folder or its ``study.json``); :class:`StudyError` naming the field."""
    path = Path(path)
    folder = path.parent if path.name == STUDY_JSON and path.is_file() else path
    file = folder / STUDY_JSON
    if not folder.is_dir():
        raise StudyError(f"{folder}: no such study folder")
    data = _header(read_json(file, "the study manifest (made by maskpix-cli study make)"), file, STUDY_FORMAT)
    where = str(file)
    study_id = _field(data, "study_id", str, where)
    items: dict[str, StudyItem] = {}
    for n, raw in enumerate(_field(data, "items", list, where)):
        at = f"{file}: items[{n}]"
        if not isinstance(raw, dict):
            raise StudyError(f"{at} is {_kind(raw)}, not an object")
        item_id = _field(raw, "id", str, at)
        if item_id in items or "/" in item_id:
            raise StudyError(f"{at}.id {item_id!r} is repeated or holds '/'")
        cands = _field(raw, "candidates", dict, at)
        if not cands:
            raise StudyError(f"{at}.candidates is empty")
        items[item_id] = StudyItem(
            id=item_id,
            instruction=_field(raw, "instruction", str, at),
            original=_safe_rel(raw.get("original"), f"{at}.original"),
            mask=_safe_rel(raw.get("mask"), f"{at}.mask"),
            candidates={str(c): _safe_rel(p, f"{at}.candidates.{c}") for c, p in cands.items()},
        )
    orders: dict[str, list[tuple[str, str]]] = {}
    for rater, raw_order in _field(data, "raters", dict, where).items():
        at = f"{file}: raters.{rater}"
        check_rater(rater, at)
        if not isinstance(raw_order, list):
            raise StudyError(f"{at} is {_kind(raw_order)}, not a list")
        order = []
        for k, pair in enumerate(raw_order):
            ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
            if not ok or pair[0] not in items or pair[1] not in items[pair[0]].candidates:
                raise StudyError(f"{at}[{k}] = {pair!r:.60} is no candidate of this study")
            order.append((pair[0], pair[1]))
        if len(set(order)) != len(order):
            raise StudyError(f"{at} shows a candidate twice")
        orders[rater] = order
    if not orders:
        raise StudyError(f"{file}: 'raters' is empty")
    return Study(folder=folder, study_id=study_id, items=items, orders=orders)


# ============================================================================================ answers


@dataclass
class Answers:
    """One rater's ratings: ``"item/code" -> {question id: 1..5}``; partial entries are allowed."""

    study_id: str
    rater: str
    ratings: dict[str, dict[str, int]] = field(default_factory=dict)

    def get(self, item: str, code: str, question: str) -> int | None:
        return self.ratings.get(candidate_key(item, code), {}).get(question)

    def set(self, item: str, code: str, question: str, value: int) -> None:
        if question not in QUESTION_IDS:
            raise ValueError(f"unknown question {question!r}")
        if value not in SCALE or isinstance(value, bool):
            raise ValueError(f"rating must be one of {SCALE}, not {value!r}")
        self.ratings.setdefault(candidate_key(item, code), {})[question] = int(value)

    def complete(self, item: str, code: str) -> bool:
        got = self.ratings.get(candidate_key(item, code), {})
        return all(q in got for q in QUESTION_IDS)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ANSWERS_FORMAT,
            "version": VERSION,
            "study_id": self.study_id,
            "rater": self.rater,
            "updated": time.time(),
            "answers": {k: dict(v) for k, v in self.ratings.items()},
        }


def load_answers(study: Study, rater: str, path: Path | None = None, *, missing_ok: bool = True) -> Answers:
    """``rater``'s answers (empty when the file does not exist and ``missing_ok``); checked against the
    study: the same study id, the rater's own candidates, ratings 1..5."""
    path = path or study.answers_path(rater)
    if missing_ok and not path.exists():
        return Answers(study_id=study.study_id, rater=rater)
    data = _header(read_json(path, "the answers file"), path, ANSWERS_FORMAT)
    if data.get("study_id") != study.study_id:
        raise StudyError(
            f"{path}: 'study_id' is {data.get('study_id')!r:.40}, but this study is {study.study_id!r} "
            "(answers to another study)"
        )
    if data.get("rater") != rater:
        raise StudyError(f"{path}: 'rater' is {data.get('rater')!r:.40}, expected {rater!r}")
    if rater not in study.orders:
        raise StudyError(f"{path}: rater {rater!r} is not in {study.folder / STUDY_JSON}")
    allowed = {candidate_key(i, c) for i, c in study.orders[rater]}
    answers = Answers(study_id=study.study_id, rater=rater)
    for key, got in _field(data, "answers", dict, str(path)).items():
        at = f"{path}: answers.{key}"
        if key not in allowed:
            raise StudyError(f"{at}: no candidate shown to rater {rater!r}")
        if not isinstance(got, dict):
            raise StudyError(f"{at} is {_kind(got)}, not an object")
        for q, value in got.items():
            if q not in QUESTION_IDS:
                raise StudyError(f"{at}.{q}: unknown question (expected {', '.join(QUESTION_IDS)})")
            if isinstance(value, bool) or value not in SCALE or not isinstance(value, int):
                raise StudyError(f"{at}.{q} is {_kind(value)}, not a rating 1..5")
            answers.ratings.setdefault(key, {})[q] = value
    return answers


def save_answers(study: Study, answers: Answers) -> Path:
    """Write ``answers-<rater>.json`` atomically (a crash leaves the previous file whole)."""
    path = study.answers_path(answers.rater)
    write_json(path, answers.to_json())
    return path


def answer_files(folder: Path) -> list[tuple[str, Path]]:
    """``(rater, path)`` for every ``answers-<rater>.json`` in ``folder``."""
    found = []
    for path in sorted(folder.glob(f"{ANSWERS_PREFIX}*.json")):
        found.append((path.name[len(ANSWERS_PREFIX) : -len(".json")], path))
    return found


__all__ = [
    "ANSWERS_FORMAT",
    "ANSWERS_PREFIX",
    "KEY_FORMAT",
    "KEY_JSON",
    "QUESTIONS",
    "QUESTION_IDS",
    "SCALE",
    "SCALE_LABELS",
    "STUDY_FORMAT",
    "STUDY_JSON",
    "VERSION",
    "Answers",
    "Question",
    "Study",
    "StudyError",
    "StudyItem",
    "answer_files",
    "candidate_key",
    "check_rater",
    "load_answers",
    "load_study",
    "read_json",
    "save_answers",
    "study_to_json",
    "write_json",
]
