"""The open document as one observable object: what the user would lose, and the signals widgets bind to.

The document's data is a Qt-free :class:`~maskpix_desktop.core.session.Session` (``DocumentModel.data``):
image, mask, prompts, parameters and the result history. Widgets bind to it: the canvas and the edit panel
write the user's mask, prompts and parameters into it through their signals (the mask's undo stack
stays in the canvas); results enter through :meth:`~DocumentModel.add_result` /
:meth:`~DocumentModel.set_history`, which update the results panel. The model also owns
file names, project path, modified flag, document id, the SAM candidates and the auto mask on show;
:meth:`~DocumentModel.session` is a snapshot of ``data``.
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
        #: The document's data; widgets write the user's edits into it.
        self.data = sessions.Session(params=self._panel_params())
        canvas.promptsChanged.connect(self._take_prompts)
        canvas.maskEdited.connect(self._take_mask)
        edit_panel.paramsChanged.connect(self._take_params)
        results.resultShown.connect(self._take_current)

    # ------------------------------------------------------------------ bindings (widget -> data)
    def _panel_params(self) -> EditParams:
        try:
            return self.edit_panel.params()
        except ValueError:  # a value the user is still typing: the defaults, as a project would hold
            return EditParams("")

    def _take_params(self) -> None:
        self.data.params = self._panel_params()

    def _take_prompts(self) -> None:
        prompts = self.canvas.prompts()
        self.data.points = [tuple(p) for p in prompts.points]
        self.data.labels = list(prompts.labels)
        self.data.box = prompts.box

    def _take_mask(self) -> None:
        """A stroke, an undo, a SAM candidate...: the mask as it now is (a read-only copy)."""
        mask = self.canvas.mask()
        mask.flags.writeable = False
        self.data.mask = mask

    def _take_current(self, _result: Any = None) -> None:
        self.data.current = self.results.current_index()

    # ------------------------------------------------------------------ data (model -> widgets)
    def set_image(self, image: np.ndarray | None) -> None:
        """The image on show (the canvas's read-only array, shared: not a copy); its mask starts empty."""
        self.data.image = image
        self.data.mask = None if image is None else np.zeros(image.shape[:2], np.uint8)

    def add_result(self, result: Any) -> None:
        """A finished edit joins the history (and is shown)."""
        freeze(result)
        self.data.history.append(result)
        self.results.add_result(result)
        self.data.current = self.results.current_index()

    def set_history(self, history: list[Any]) -> None:
        """Replace the history (the last result shown; an empty list clears the results panel)."""
        for result in history:
            freeze(result)
        self.data.history = list(history)
        self.results.set_history(self.data.history)
        self.data.current = self.results.current_index()

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
        d = self.data
        return sessions.Session(
            image=d.image,
            image_name=self.name(),
            image_path=str(self.image_path) if self.image_path is not None else None,
            points=list(d.points),
            labels=list(d.labels),
            box=d.box,
            mask=d.mask.copy() if d.image is not None and d.mask is not None else None,
            params=d.params,
            history=list(d.history),
            current=d.current,
        )

    def has_unsaved_work(self) -> bool:
        """Changes that exist nowhere else: a mask, prompts, results, a modified project or re-run.

        A photo just opened (nothing done to it yet) is still on disk: replacing it asks nothing.
        """
        if not self.modified or self.data.image is None:
            return False
        return bool(
            self.project_path is not None
            or self.image_path is None
            or (self.data.mask is not None and self.data.mask.any())
            or self.data.points
            or self.data.box is not None
            or self.data.history
        )

    def param_limits(self) -> dict[str, tuple[int, int]]:
        """The integer ranges the edit panel can show exactly (a spin box would clamp other values)."""
        p = self.edit_panel
        pairs = (("steps", p.steps), ("seed", p.seed), ("dilate", p.dilate))
        return {name: (w.minimum(), w.maximum()) for name, w in pairs}
