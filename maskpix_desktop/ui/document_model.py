"""The open document as one observable object: what the user would lose, and the signals widgets bind to.

The pixels stay where they are edited: the canvas holds the image, the mask (with its undo stack) and
the prompts, the edit panel the parameters, the results panel the history. :class:`DocumentModel` owns
everything else (file names, project path, modified flag, document id, the SAM candidates and the auto
mask on show) and reads the views for one :meth:`~DocumentModel.session` snapshot, so controllers never
rebuild the document from scattered window attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.jobs import EditParams
from maskpix_desktop.ui.canvas import ImageCanvas
from maskpix_desktop.ui.edit_panel import EditPanel
from maskpix_desktop.ui.results import ResultsPanel

__all__ = ["DocumentModel", "freeze"]


def freeze(result: Any) -> None:
    """Results are immutable: make their arrays read-only (autosave then need not re-hash them)."""
    req = getattr(result, "request", None)
    for arr in (
        getattr(result, "baseline", None),
        getattr(result, "blended", None),
        getattr(result, "edit", None),
        getattr(result, "mask_used", None),
        getattr(req, "image", None),
        getattr(req, "mask", None),
    ):
        if isinstance(arr, np.ndarray):
            arr.flags.writeable = False


class DocumentModel(QObject):
    """Image name and path, project path, modified / recovered flags, document id and change serial,
    SAM candidates, the auto mask shown; the views that hold image, mask, prompts, params and history.

    Signals: ``replaced(id)`` when an image, project or re-run replaces the document (controllers drop
    the old one's jobs); ``changed()`` after every change the user would miss (autosave re-arms);
    ``titleChanged()`` when the window title's parts change.
    """

    replaced = Signal(int)
    changed = Signal()
    titleChanged = Signal()

    def __init__(
        self, canvas: ImageCanvas, edit_panel: EditPanel, results: ResultsPanel, parent: QObject | None = None
    ):
        super().__init__(parent)
        self.canvas, self.edit_panel, self.results = canvas, edit_panel, results
        self.image_path: Path | None = None
        self.image_name = ""
        self.project_path: Path | None = None
        self.modified = False
        self.recovered = False
        self.restoring = False  # a session is being put on show: its own changes do not mark it modified
        self.id = 0  # incremented for every image, project or re-run opened
        self.change_serial = 0  # incremented by every change (a save knows which changes it holds)
        self.candidates: Any = None  # the SAM result whose masks the candidate list shows
        self.chosen_logits: np.ndarray | None = None  # the chosen candidate's logits refine the next click
        self.automask_result: Any = None  # the AutoMaskResult on the canvas (None after a new image)

    # ------------------------------------------------------------------ identity
    def new_document(self) -> int:
        """A new image, project or re-run: a new id, announced so the old document's jobs are dropped."""
        self.id += 1
        self.replaced.emit(self.id)
        return self.id

    def mark_changed(self) -> None:
        """Something the user would miss changed: count it, mark modified, tell the listeners."""
        self.change_serial += 1
        if not self.modified and not self.restoring:
            self.modified = True
            self.titleChanged.emit()
        self.changed.emit()

    def name(self) -> str:
        """The image's name as shown (the file name, or e.g. "photo (re-run)")."""
        return self.image_name or (self.image_path.name if self.image_path else "")

    def title(self) -> str:
        parts = []
        if self.project_path is not None:
            parts.append(self.project_path.name + (" *" if self.modified else ""))
        if self.name():
            parts.append(self.name())
        if self.recovered:
            parts.append("(recovered)")
        return " — ".join([*parts, "MaskPix Desktop"])

    def clear_candidates(self) -> None:
        self.candidates = None
        self.chosen_logits = None

    # ------------------------------------------------------------------ snapshot
    def session(self) -> sessions.Session:
        """A snapshot of everything the user would lose (arrays are shared read-only or copied)."""
        image = self.canvas.image()
        prompts = self.canvas.prompts()
        try:
            params = self.edit_panel.params()
        except ValueError:
            params = EditParams("")
        return sessions.Session(
            image=image,
            image_name=self.name(),
            image_path=str(self.image_path) if self.image_path is not None else None,
            points=[tuple(p) for p in prompts.points],
            labels=list(prompts.labels),
            box=prompts.box,
            mask=self.canvas.mask() if image is not None else None,
            params=params,
            history=self.results.history(),
            current=self.results.current_index(),
        )

    def has_unsaved_work(self) -> bool:
        """Changes that exist nowhere else: a mask, prompts, results, a modified project or re-run.

        A photo just opened (nothing done to it yet) is still on disk: replacing it asks nothing.
        """
        if not self.modified or not self.canvas.has_image():
            return False
        return bool(
            self.project_path is not None
            or self.image_path is None
            or self.canvas.mask().any()
            or not self.canvas.prompts().is_empty()
            or self.results.history()
        )

    def param_limits(self) -> dict[str, tuple[int, int]]:
        """The integer ranges the edit panel can show exactly (a spin box would clamp other values)."""
        p = self.edit_panel
        pairs = (("steps", p.steps), ("seed", p.seed), ("dilate", p.dilate))
        return {name: (w.minimum(), w.maximum()) for name, w in pairs}
