"""Batch cases for the headless CLI: a TOML file of ``[[case]]`` tables, validated up front."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.jobs import EditParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class CaseError(MaskPixError):
    """A cases file is malformed; the message names the case and the field."""


_PARAM_KEYS = set(EditParams.__dataclass_fields__)
# TOML value types per parameter (annotations are strings under ``from __future__ import annotations``).
_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str}
_TYPE_NAMES = {int: "an integer", (int, float): "a number", str: "a string"}
_PARAM_TYPES = {
    name: _TYPES[str(f.type)] for name, f in EditParams.__dataclass_fields__.items() if str(f.type) in _TYPES
}


@dataclass(frozen=True)
class Case:
    """One batch item: an image, a mask source (file, SAM prompts or ``mask = "auto"``), edit parameters."""

    name: str
    image: Path
    params: EditParams
    mask: Path | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    candidate: int | None = None  # which SAM candidate to use; None = highest predicted IoU
    extra: dict[str, Any] = field(default_factory=dict)
    auto_mask: bool = False  # mask = "auto": proposed from the instruction (core.automask)

    @property
    def uses_sam(self) -> bool:
        return self.mask is None and (self.auto_mask or bool(self.points) or self.box is not None)


def _slug(text: str) -> str:
    """A safe folder name: never "." or ".." (the CLI replaces case folders) nor hidden (temp folders)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "case"


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise TypeError("not a list")
    return list(value)


def _numbers(value: Any, n: int) -> tuple[float, ...]:
    """``n`` finite numbers from a TOML array; TypeError/ValueError otherwise (bools and strings refused)."""
    items = _as_list(value)
    if len(items) != n or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
        raise ValueError(f"expected {n} numbers")
    out = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in out):
        raise ValueError("not finite")
    return out


def _label(value: Any) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise ValueError("label must be 0 or 1")
    return int(value)


def parse_case(raw: dict[str, Any], base: Path, index: int) -> Case:
    """Validate one ``[[case]]`` table; relative paths are resolved against ``base``."""
    name = _slug(str(raw.get("name", f"case{index + 1:03d}")))
    where = f"case '{name}'"
    if "image" not in raw:
        raise CaseError(f"{where}: 'image' is required")
    if "instruction" not in raw or not str(raw["instruction"]).strip():
        raise CaseError(f"{where}: 'instruction' is required")
    for key, value in raw.items():
        kind = _PARAM_TYPES.get(key)
        if kind is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise CaseError(f"{where}: '{key}' must be {_TYPE_NAMES[kind]}, got {value!r}")
    try:
        params = EditParams(**{k: v for k, v in raw.items() if k in _PARAM_KEYS})
    except (TypeError, ValueError) as exc:
        raise CaseError(f"{where}: {exc}") from exc
    try:
        points = tuple(_numbers(p, 2) for p in _as_list(raw.get("points", [])))
    except (TypeError, ValueError):
        raise CaseError(f"{where}: 'points' must be a list of [x, y] pixel positions") from None
    try:
        labels: tuple[int, ...] | None = tuple(
            _label(v) for v in _as_list(raw.get("labels", [1] * len(points)))
        )
    except (TypeError, ValueError):
        labels = None
    if labels is None or len(labels) != len(points):
        raise CaseError(f"{where}: 'labels' must have one 1 (keep) or 0 (exclude) per point")
    box = raw.get("box")
    if box is not None:
        try:
            box = _numbers(box, 4)
        except (TypeError, ValueError):
            raise CaseError(f"{where}: 'box' must be [x0, y0, x1, y1] (numbers)") from None
        if not (box[2] > box[0] and box[3] > box[1]):
            raise CaseError(
                f"{where}: 'box' must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {list(box)}"
            )
    candidate = raw.get("candidate")
    if candidate is not None and (
        isinstance(candidate, bool) or not isinstance(candidate, int) or not 0 <= candidate <= 2
    ):
        raise CaseError(f"{where}: 'candidate' must be a SAM candidate index (0, 1 or 2), got {candidate!r}")
    mask = raw.get("mask")
    auto_mask = isinstance(mask, str) and mask.strip().lower() == "auto"
    if auto_mask and (points or box is not None):
        raise CaseError(f"{where}: mask = \"auto\" cannot be combined with SAM 'points'/'box' prompts")
    mask_path = None if mask is None or auto_mask else (base / str(mask)).resolve()
    if mask_path is None and not auto_mask and not points and box is None:
        raise CaseError(f"{where}: give a 'mask' file, or SAM 'points'/'box' prompts (or mask = \"auto\")")
    known = _PARAM_KEYS | {"name", "image", "mask", "points", "labels", "box", "candidate"}
    return Case(
        name=name,
        image=(base / str(raw["image"])).resolve(),
        params=params,
        mask=mask_path,
        points=points,
        labels=labels,
        box=box,
        candidate=candidate,
        extra={k: v for k, v in raw.items() if k not in known},
        auto_mask=auto_mask,
    )


def load_cases(path: str | Path) -> list[Case]:
    """Read and validate every case of a TOML file (names made unique)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CaseError(f"cases file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CaseError(f"{path} is not valid TOML: {exc}") from exc
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        raise CaseError(f"{path}: cases must be [[case]] tables (an array of tables)")
    if not raw_cases:
        raise CaseError(f"{path} has no [[case]] tables")
    cases, seen = [], set()
    for i, raw in enumerate(raw_cases):
        case = parse_case(raw, path.parent, i)
        if case.name.lower() in seen:  # case-insensitive: the folders must differ on every file system
            raise CaseError(f"case name '{case.name}' appears twice in {path}")
        seen.add(case.name.lower())
        cases.append(case)
    return cases
