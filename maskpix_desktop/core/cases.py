"""Batch cases for the headless CLI: a TOML file of ``[[case]]`` tables, validated up front.

Every key of a case is known (a typo such as ``seeed = 5`` is an error naming the closest valid key);
free-form notes go in a ``[case.extra]`` table. :func:`check_case_files` then checks the files a case
names against each other (mask size, prompts inside the image) from their headers, before any model
loads.
"""

from __future__ import annotations

import difflib
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
#: Every key a ``[[case]]`` table may hold.
CASE_KEYS = frozenset(
    _PARAM_KEYS | {"name", "image", "mask", "points", "labels", "box", "candidate", "extra"}
)
#: Longest case name: it becomes a folder name (255 bytes at most on every file system, less the CLI's
#: temp-folder prefix and suffix) and part of paths that must stay under Windows' 260 characters.
MAX_NAME_CHARS = 100
#: Names Windows reserves for devices (any extension): a folder called "CON" cannot be created there.
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in (*"123456789", "¹", "²", "³")}
)


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
    """A safe folder name: never "." or ".." (the CLI replaces case folders) nor hidden (temp folders),
    nor a Windows device name ("CON" becomes "CON_")."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "case"
    if slug.split(".")[0].upper() in WINDOWS_RESERVED:
        head, dot, tail = slug.partition(".")
        slug = f"{head}_{dot}{tail}"
    return slug


def _unknown_key(key: str) -> str:
    """``"'seeed' is not a case key (did you mean 'seed'?)"``."""
    close = difflib.get_close_matches(key, sorted(CASE_KEYS), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "free-form notes go in a [case.extra] table"
    return f"'{key}' is not a case key ({hint})"


def _path_value(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise CaseError(f"{where}: '{key}' must be a file path (a string), got {value!r}")
    return value


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
    where = f"case '{name if len(name) <= 40 else name[:37] + '...'}'"
    if len(name) > MAX_NAME_CHARS:
        raise CaseError(
            f"{where}: the name is {len(name)} characters long; at most {MAX_NAME_CHARS} "
            "(it becomes a folder name)"
        )
    unknown = [key for key in raw if key not in CASE_KEYS]
    if unknown:
        raise CaseError(f"{where}: " + "; ".join(_unknown_key(key) for key in unknown))
    if "image" not in raw:
        raise CaseError(f"{where}: 'image' is required")
    image = _path_value(raw, "image", where)
    if "instruction" not in raw or not str(raw["instruction"]).strip():
        raise CaseError(f"{where}: 'instruction' is required")
    extra = raw.get("extra", {})
    if not isinstance(extra, dict):
        raise CaseError(f"{where}: 'extra' must be a table of free-form notes ([case.extra])")
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
    mask = _path_value(raw, "mask", where) if "mask" in raw else None
    auto_mask = mask is not None and mask.strip().lower() == "auto"
    if auto_mask and (points or box is not None):
        raise CaseError(f"{where}: mask = \"auto\" cannot be combined with SAM 'points'/'box' prompts")
    mask_path = None if mask is None or auto_mask else (base / str(mask)).resolve()
    if mask_path is None and not auto_mask and not points and box is None:
        raise CaseError(f"{where}: give a 'mask' file, or SAM 'points'/'box' prompts (or mask = \"auto\")")
    return Case(
        name=name,
        image=(base / image).resolve(),
        params=params,
        mask=mask_path,
        points=points,
        labels=labels,
        box=box,
        candidate=candidate,
        extra=dict(extra),
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


def image_size(path: Path) -> tuple[int, int]:
    """``(h, w)`` of an image file as :func:`images.load_image` will give it (EXIF rotation applied), from
    the header alone; OSError/ValueError (or any Pillow error) for a file that is not an image."""
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
        try:
            rotated = int(img.getexif().get(0x0112, 1) or 1) in (5, 6, 7, 8)
        except Exception:  # broken EXIF: load_image ignores it too
            rotated = False
    return (w, h) if rotated else (h, w)


def _size_of(case: Case, what: str, path: Path) -> tuple[int, int]:
    where = f"case '{case.name}'"
    if not path.is_file():
        raise CaseError(f"{where}: {what} not found: {path}")
    from PIL import UnidentifiedImageError

    try:
        h, w = image_size(path)
    except UnidentifiedImageError:
        raise CaseError(
            f"{where}: cannot read the {what} '{path}': not an image file, or a format MaskPix cannot read"
        ) from None
    except Exception as exc:  # Pillow raises many types for damaged files
        detail = str(exc) or type(exc).__name__
        raise CaseError(f"{where}: cannot read the {what} '{path}': the file is damaged ({detail})") from None
    if h <= 0 or w <= 0:
        raise CaseError(f"{where}: the {what} '{path}' has no pixels ({w}x{h})")
    return h, w


def check_case_files(case: Case) -> tuple[int, int]:
    """Check a case's files from their headers (no decoding, no model): the image and mask exist and are
    images, the mask has the image's size, SAM points and box lie inside the image. Returns ``(h, w)``."""
    where = f"case '{case.name}'"
    h, w = _size_of(case, "image", case.image)
    if case.mask is not None:
        mh, mw = _size_of(case, "mask", case.mask)
        if (mh, mw) != (h, w):
            raise CaseError(
                f"{where}: the mask '{case.mask}' is {mw}x{mh} pixels but the image '{case.image}' is "
                f"{w}x{h}; a mask must have the image's size"
            )
        return h, w  # the mask file wins over prompts: they are not used
    inside = f"outside the {w}x{h} image (x in 0..{w}, y in 0..{h})"
    for x, y in case.points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise CaseError(f"{where}: point [{x:g}, {y:g}] is {inside}")
    if case.box is not None:
        x0, y0, x1, y1 = case.box
        if not (0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h):
            raise CaseError(f"{where}: box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] reaches {inside}")
    return h, w
