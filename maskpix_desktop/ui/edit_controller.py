"""Run / Cancel an edit: the panel's params + the canvas mask -> an EditRequest -> a result in the history."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMainWindow

from maskpix_desktop.core.jobs import EditRequest
from maskpix_desktop.ui.model_controller import error_text
from maskpix_desktop.ui.worker import ErrorKind, JobMessage, MessageKind

__all__ = ["STAGE_TEXT", "EditController"]

log = logging.getLogger(__name__)

#: The progress bar's words for the stages after the denoising steps (core.editor.POST_STAGES, metrics).
STAGE_TEXT = {
    "resize": "resizing to full size",
    "blend": "blending into the photo",
    "seam": "smoothing the seam",
    "metrics": "computing metrics",
}


class EditController(QObject):
    """One edit job at a time; progress in the edit panel, the result added to the results history."""

    def __init__(self, win: QMainWindow):
        super().__init__(win)
        self.win = win
        self.job = 0
        win.document.replaced.connect(self._drop)

    def _drop(self, _doc: int = 0) -> None:
        if self.job:
            self.job = 0
            self.win.edit_panel.set_running(False)
            self.win.statusBar().showMessage(
                "The running edit was cancelled: another image was opened.", 8000
            )

    def run(self) -> None:
        win = self.win
        image = win.document.data.image
        if image is None:
            win.banner.show_message("Open an image first.", "info")
            return
        if win.client.is_busy() and self.job:
            return
        try:
            params = win.edit_panel.next_params()
        except ValueError as exc:
            win.banner.show_message(str(exc), "error")
            return
        if not params.instruction:
            win.banner.show_message("Type an instruction first, e.g. “make the jacket red leather”.", "info")
            win.edit_panel.instruction.setFocus()
            return
        mask = win.document.data.mask
        if not mask.any():
            if not win.hook("ask_run_without_mask")(win):
                win.statusBar().showMessage("Not run: click the object to edit, then Run.", 6000)
                return
            win.statusBar().showMessage("The mask is empty: editing the whole image.", 6000)
            mask_arg = None
        else:
            mask_arg = mask.astype(np.float32) / 255.0
        request = EditRequest(image=image, mask=mask_arg, params=params)
        win.banner.hide()
        win.edit_panel.set_running(True)
        self.job = win.client.edit(request)

    def cancel(self) -> None:
        if self.job:
            self.win.client.cancel(self.job)
            self.win.edit_panel.progress.setFormat("cancelling…")

    def use_params(self, params: Any) -> None:
        """Results > Re-run with these settings: the params (seed locked) back in the panel."""
        self.win.edit_panel.set_params(params)
        self.win.edit_panel.seed_lock.setChecked(True)
        self.win.tabs.setCurrentIndex(0)

    def on_message(self, msg: JobMessage) -> None:
        if msg.job_id != self.job:
            return
        win, panel = self.win, self.win.edit_panel
        if msg.kind is MessageKind.STARTED:
            panel.progress.setFormat("encoding…")
        elif msg.kind is MessageKind.PROGRESS and msg.stage in STAGE_TEXT:  # after the denoising steps
            panel.set_progress(msg.done, msg.total)
            panel.progress.setFormat(f"{STAGE_TEXT[msg.stage]}… · step {msg.done}/{msg.total}")
        elif msg.kind is MessageKind.PROGRESS:
            panel.set_progress(msg.done, msg.total, msg.eta_s, msg.stage)
        elif msg.kind is MessageKind.FINISHED:
            panel.set_running(False)
            self.job = 0
            # the whole job as the user waited for it (models, steps, resize, blend, seam, metrics)
            result = replace(msg.result, timings={**msg.result.timings, "job_s": msg.seconds})
            win.document.add_result(result)
            win.document.mark_changed()
            win.tabs.setCurrentIndex(1)
            note = " (safety filter triggered)" if getattr(result, "nsfw", False) else ""
            win.statusBar().showMessage(f"Edit finished in {msg.seconds:.1f} s{note}", 8000)
        elif msg.kind is MessageKind.CANCELLED:
            panel.set_running(False)
            self.job = 0
            win.statusBar().showMessage("Edit cancelled.", 6000)
        elif msg.kind is MessageKind.FAILED:
            panel.set_running(False)
            self.job = 0
            log.error("edit failed: %s\n%s", msg.error, msg.detail)
            if msg.error is not None and msg.error.kind is ErrorKind.IMAGE:
                win.banner.show_message(f"The edit failed: {error_text(msg)}", "error")
            else:
                win.models.show_failure("The edit failed: ", msg)
