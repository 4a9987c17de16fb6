"""What the window checks before a project, sidecar or autosave replaces the document (atomic apply).

``core.session`` parses files; these checks add what the window itself needs to show a session without
failing half-way: every field of the right type, numbers finite, integers inside the range of the
widget that shows them (a spin box would silently clamp them). A failure raises :class:`ProjectError`
naming the file and the field; nothing has been applied by then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from maskpix_desktop.core.errors import ProjectError
from maskpix_desktop.core.jobs import EditParams
from maskpix_desktop.core.session import Session

__all__ = ["check_params", "check_session", "Limits"]

#: ``{field: (minimum, maximum)}`` for integer fields (the edit panel's spin box ranges).
Limits = Mapping[str, tuple[int, int]]

_INT_FIELDS = ("steps", "seed", "long_side", "dilate", "latent_dilate")
_FLOAT_FIELDS = ("text_scale", "image_scale", "feather", "crop_pad", "guidance", "true_cfg_scale")
_STR_FIELDS = ("instruction", "negative_prompt", "mask_mode", "seam")


def _bad(where: str, name: str, value: Any, expected: str) -> ProjectError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ProjectError(f"Cannot open '{where}': the field '{name}' is {shown}; expected {expected}.")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_finite_number(v: Any) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and math.isfinite(float(v))
    )


def check_params(p: Any, where: str, prefix: str = "params", limits: Limits | None = None) -> None:
    """Every :class:`EditParams` field of the right type; numbers finite; integers inside ``limits``."""
    if not isinstance(p, EditParams):
        raise _bad(where, prefix, p, "edit parameters")
    known = {f.name for f in fields(EditParams)}
    for name in known:
        value = getattr(p, name)
        label = f"{prefix}.{name}"
        if name in _STR_FIELDS and not isinstance(value, str):
            raise _bad(where, label, value, "text")
        if name in _INT_FIELDS:
            if not _is_int(value):
                raise _bad(where, label, value, "a whole number")
            lo, hi = (limits or {}).get(name, (None, None))
            if lo is not None and hi is not None and not lo <= int(value) <= hi:
                raise _bad(where, label, value, f"a whole number from {lo} to {hi}")
        if name in _FLOAT_FIELDS:
            if not _is_finite_number(value):
                raise _bad(where, label, value, "a finite number")
            if float(value) < 0:
                raise _bad(where, label, value, "a number that is not negative")


def _check_xy(values: Any, n: int, where: str, label: str) -> None:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise _bad(where, label, values, f"{n} numbers")
    for v in values:
        if not _is_finite_number(v):
            raise _bad(where, label, values, f"{n} finite numbers")


def check_session(s: Session, where: str, limits: Limits | None = None) -> None:
    """Everything the window shows of ``s``: raise ProjectError (file + field) on the first bad field."""
    if not isinstance(s.image_name, str):
        raise _bad(where, "image.name", s.image_name, "text")
    if s.image_path is not None and not isinstance(s.image_path, str):
        raise _bad(where, "image.path", s.image_path, "a file path (text)")
    if s.image is not None:
        img = s.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise _bad(where, "image", getattr(img, "shape", img), "an RGB 8-bit image")
    if s.mask is not None:
        if s.image is None or not isinstance(s.mask, np.ndarray) or s.mask.shape != s.image.shape[:2]:
            raise _bad(where, "layers.mask", getattr(s.mask, "shape", s.mask), "a mask the size of the image")
    if len(s.points) != len(s.labels):
        raise _bad(where, "prompts.labels", s.labels, f"{len(s.points)} labels, one per point")
    for i, point in enumerate(s.points):
        _check_xy(point, 2, where, f"prompts.points[{i}]")
    for i, label in enumerate(s.labels):
        if not _is_int(label) or int(label) not in (0, 1):
            raise _bad(where, f"prompts.labels[{i}]", label, "0 or 1")
    if s.box is not None:
        _check_xy(s.box, 4, where, "prompts.box")
    check_params(s.params, where, "params", limits)
    if not _is_int(s.current) or not -1 <= int(s.current) < len(s.history):
        raise _bad(where, "current", s.current, "the index of a result")
    for i, result in enumerate(s.history):
        check_params(getattr(getattr(result, "request", None), "params", None), where, f"history[{i}].params")
