"""Undo commands for the canvas mask: each stores only the patch it changed (before and after)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PySide6.QtGui import QUndoCommand

__all__ = ["MaskPatchCommand", "MaskTarget", "StrokeRecorder", "diff_patch"]

Patch = tuple[int, int, np.ndarray, np.ndarray]


def diff_patch(before: np.ndarray, after: np.ndarray) -> Patch | None:
    """The smallest box where two masks differ, as ``(x, y, before_patch, after_patch)``; None if equal."""
    diff = before != after
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return c0, r0, before[r0:r1, c0:c1].copy(), after[r0:r1, c0:c1].copy()


class MaskTarget(Protocol):
    """What a mask command edits (``ImageCanvas``): writes a uint8 patch at ``(x, y)`` and refreshes."""

    def _write_mask_patch(self, x: int, y: int, patch: np.ndarray) -> None: ...


class MaskPatchCommand(QUndoCommand):
    """Swap one rectangular region of the mask between ``before`` and ``after`` (uint8 HxW patches).

    ``applied=True`` means the target already holds ``after`` (a finished brush stroke): the first
    ``redo()``, which ``QUndoStack.push`` calls, then does nothing.
    """

    def __init__(
        self,
        target: MaskTarget,
        x: int,
        y: int,
        before: np.ndarray,
        after: np.ndarray,
        text: str,
        *,
        applied: bool = False,
    ) -> None:
        super().__init__(text)
        if before.shape != after.shape or before.dtype != np.uint8 or after.dtype != np.uint8:
            raise ValueError(f"patches must be uint8 of one shape, got {before.shape} and {after.shape}")
        self._target = target
        self._x, self._y = int(x), int(y)
        self._before = before
        self._after = after
        self._skip_redo = applied

    @property
    def region(self) -> tuple[int, int, int, int]:
        """The patch box ``(x0, y0, x1, y1)``, exclusive ends."""
        h, w = self._before.shape
        return self._x, self._y, self._x + w, self._y + h

    @property
    def nbytes(self) -> int:
        """Memory held by the two patches."""
        return self._before.nbytes + self._after.nbytes

    def redo(self) -> None:
        if self._skip_redo:
            self._skip_redo = False
            return
        self._target._write_mask_patch(self._x, self._y, self._after)

    def undo(self) -> None:
        self._target._write_mask_patch(self._x, self._y, self._before)


class StrokeRecorder:
    """Remembers the pre-stroke pixels of a mask lazily, tile by tile, as a stroke first touches them.

    Call :meth:`touch` *before* writing a region; :meth:`finish` returns the stroke's bounding box with
    its before/after patches, so a stroke costs memory in proportion to what it painted.
    """

    TILE = 128

    def __init__(self, mask: np.ndarray) -> None:
        self._mask = mask
        self._saved: dict[tuple[int, int], np.ndarray] = {}
        self._box: tuple[int, int, int, int] | None = None

    def touch(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Record the original pixels of ``[y0:y1, x0:x1]`` (exclusive ends) before they change."""
        if x1 <= x0 or y1 <= y0:
            return
        t = self.TILE
        for ty in range(y0 // t, (y1 - 1) // t + 1):
            for tx in range(x0 // t, (x1 - 1) // t + 1):
                if (tx, ty) not in self._saved:
                    self._saved[(tx, ty)] = self._mask[ty * t : (ty + 1) * t, tx * t : (tx + 1) * t].copy()
        if self._box is None:
            self._box = (x0, y0, x1, y1)
        else:
            bx0, by0, bx1, by1 = self._box
            self._box = (min(bx0, x0), min(by0, y0), max(bx1, x1), max(by1, y1))

    def finish(self) -> Patch | None:
        """``(x0, y0, before, after)`` for the touched box, or None when no pixel changed."""
        if self._box is None:
            return None
        x0, y0, x1, y1 = self._box
        after = self._mask[y0:y1, x0:x1].copy()
        before = after.copy()
        t = self.TILE
        for (tx, ty), tile in self._saved.items():
            th, tw = tile.shape
            sx0, sy0 = max(tx * t, x0), max(ty * t, y0)
            sx1, sy1 = min(tx * t + tw, x1), min(ty * t + th, y1)
            if sx1 > sx0 and sy1 > sy0:
                before[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[
                    sy0 - ty * t : sy1 - ty * t, sx0 - tx * t : sx1 - tx * t
                ]
        patch = diff_patch(before, after)  # trimmed: soft edges often change less than the box
        if patch is None:
            return None
        x, y, b, a = patch
        return x0 + x, y0 + y, b, a
