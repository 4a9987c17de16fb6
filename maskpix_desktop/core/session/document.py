"""The document: :class:`Session` (image, prompts, mask, parameters, result history) and its equality."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskpix_desktop.core.jobs import EditParams, EditResult

__all__ = ["Session", "sessions_equal"]


@dataclass(eq=False)
class Session:
    """Everything the user would lose: the image, SAM prompts, the mask, the parameters and the results.

    ``mask`` is ``HxW`` uint8 (0..255; brush edges are soft); prompts are in image pixels (``labels``: 1 keep,
    0 exclude; ``box``: x0, y0, x1, y1). ``history`` holds the results in order, ``current`` the one shown.
    """

    image: np.ndarray | None = None
    image_name: str = ""
    image_path: str | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None
    params: EditParams = field(default_factory=lambda: EditParams(""))
    history: list[EditResult] = field(default_factory=list)
    current: int = -1

    def is_empty(self) -> bool:
        """True when there is nothing worth saving (no image and no result)."""
        return self.image is None and not self.history


def sessions_equal(a: Session, b: Session) -> bool:
    """True when two sessions hold the same state (arrays bit for bit, NaN metrics equal)."""

    def same(x: Any, y: Any) -> bool:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return (
                isinstance(x, np.ndarray)
                and isinstance(y, np.ndarray)
                and x.dtype == y.dtype
                and np.array_equal(x, y)
            )
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, Sequence) and isinstance(y, Sequence) and not isinstance(x, str):
            return len(x) == len(y) and all(same(i, j) for i, j in zip(x, y, strict=True))
        return x == y

    def result(r: EditResult, s: EditResult) -> bool:
        return (
            same(r.request.image, s.request.image)
            and same(r.request.mask, s.request.mask)
            and r.request.params == s.request.params
            and all(same(getattr(r, k), getattr(s, k)) for k in ("baseline", "blended", "edit", "mask_used"))
            and tuple(r.working_size) == tuple(s.working_size)
            and same(r.timings, s.timings)
            and r.model == s.model
            and r.nsfw == s.nsfw
            and same(r.metrics, s.metrics)
        )

    return (
        same(a.image, b.image)
        and a.image_name == b.image_name
        and a.image_path == b.image_path
        and same([tuple(p) for p in a.points], [tuple(p) for p in b.points])
        and list(a.labels) == list(b.labels)
        and same(a.box, b.box)
        and same(a.mask, b.mask)
        and a.params == b.params
        and a.current == b.current
        and len(a.history) == len(b.history)
        and all(result(r, s) for r, s in zip(a.history, b.history, strict=True))
    )
