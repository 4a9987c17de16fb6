"""What the filmstrip keeps of an image put away besides its Qt-free Session: the mask's undo history,
the SAM candidates on show and the auto mask proposal. Widget state, so it stays on the UI side, keyed
by ``id(OpenDocument)``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMainWindow

__all__ = ["KeptViews"]


@dataclass
class _Kept:
    undo: QUndoStack
    candidates: Any = None  # the SAM result the candidate list showed (None: none)
    row: int = -1  # the candidate chosen in the list
    logits: np.ndarray | None = None  # the chosen candidate's logits (they refine the next click)
    automask: tuple[Any, str, str] = (None, "", "")  # the auto mask proposal and its status line


class KeptViews:
    """The undo stacks, candidates and auto masks of the images not on show."""

    def __init__(self, win: QMainWindow):
        self.win = win
        self._kept: dict[int, _Kept] = {}

    def keep(self, key: int) -> None:
        """The image on show is put away: take its undo history (the canvas starts a new one) and its
        candidates (still on screen until the next image replaces them)."""
        win, doc = self.win, self.win.document
        self.drop(key)
        undo = win.canvas.swap_undo_stack()
        row, automask = win.candidate_list.currentRow(), win.automasks.kept_state()
        self._kept[key] = _Kept(undo, doc.candidates, row, doc.chosen_logits, automask)

    def give_back(self, key: int) -> None:
        """Image ``key`` is on show again with the mask it was put away with: its history and candidates
        return (the canvas's current history is discarded)."""
        kept = self._kept.pop(key, None)
        if kept is None:
            return
        self.win.canvas.swap_undo_stack(kept.undo).deleteLater()
        if kept.candidates is not None:
            self.win.segments.restore_candidates(kept.candidates, kept.row, kept.logits)
        else:  # e.g. an auto mask's logits: they refine the next click as well
            self.win.document.chosen_logits = kept.logits
        self.win.automasks.restore(kept.automask)

    def drop(self, key: int) -> None:
        """Image ``key`` is closed or replaced: its history goes."""
        kept = self._kept.pop(key, None)
        if kept is not None:
            kept.undo.deleteLater()

    def keep_only(self, keys: Iterable[int]) -> None:
        """Drop what belongs to no listed image (an id is reused once its document is gone)."""
        live = set(keys)
        for key in [k for k in self._kept if k not in live]:
            self.drop(key)
