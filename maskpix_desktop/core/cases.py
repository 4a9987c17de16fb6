"""Batch cases for the headless CLI: a TOML file of ``[[case]]`` tables, validated up front."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Case:
    """One batch item: an image, a mask source (file or SAM prompts) and the edit parameters."""

    name: str
    image: Path
    params: EditParams
    mask: Path | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    candidate: int | None = None  # which SAM candidate to use; None = highest predicted IoU
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_sam(self) -> bool:
        return self.mask is None and (bool(self.points) or self.box is not None)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "case"


def parse_case(raw: dict[str, Any], base: Path, index: int) -> Case:
    """Validate one ``[[case]]`` table; relative paths are resolved against ``base``."""
    name = _slug(str(raw.get("name", f"case{index + 1:03d}")))
    where = f"case '{name}'"
    if "image" not in raw:
        raise CaseError(f"{where}: 'image' is required")
    if "instruction" not in raw or not str(raw["instruction"]).strip():
        raise CaseError(f"{where}: 'instruction' is required")
    try:
        params = EditParams(**{k: v for k, v in raw.items() if k in _PARAM_KEYS})
    except (TypeError, ValueError) as exc:
        raise CaseError(f"{where}: {exc}") from exc
    points = tuple(tuple(float(c) for c in p) for p in raw.get("points", []))
    if any(len(p) != 2 for p in points):
        raise CaseError(f"{where}: each point must be [x, y]")
    labels = tuple(int(v) for v in raw.get("labels", [1] * len(points)))
    if len(labels) != len(points) or any(v not in (0, 1) for v in labels):
        raise CaseError(f"{where}: 'labels' must have one 1 (keep) or 0 (exclude) per point")
    box = raw.get("box")
    if box is not None:
        if len(box) != 4:
            raise CaseError(f"{where}: 'box' must be [x0, y0, x1, y1]")
        box = tuple(float(v) for v in box)
    mask = raw.get("mask")
    mask_path = None if mask is None else (base / str(mask)).resolve()
    if mask_path is None and not points and box is None:
        raise CaseError(f"{where}: give a 'mask' file, or SAM 'points'/'box' prompts")
    known = _PARAM_KEYS | {"name", "image", "mask", "points", "labels", "box", "candidate"}
    return Case(
        name=name,
        image=(base / str(raw["image"])).resolve(),
        params=params,
        mask=mask_path,
        points=points,
        labels=labels,
        box=box,
        candidate=raw.get("candidate"),
        extra={k: v for k, v in raw.items() if k not in known},
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
    if not raw_cases:
        raise CaseError(f"{path} has no [[case]] tables")
    cases, seen = [], set()
    for i, raw in enumerate(raw_cases):
        case = parse_case(raw, path.parent, i)
        if case.name in seen:
            raise CaseError(f"case name '{case.name}' appears twice in {path}")
        seen.add(case.name)
        cases.append(case)
    return cases
