"""Auto mask: Run / Cancel an AutoMaskJob, the proposal on the canvas, the tau slider, the heatmap."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QMainWindow

from maskpix_desktop.core.automask.relevance import unsupported_reason
from maskpix_desktop.ui.canvas import Prompts
from maskpix_desktop.ui.model_controller import error_text
from maskpix_desktop.ui.window_layout import AUTOMASK_TIP
from maskpix_desktop.ui.worker import AutoMaskJob, JobMessage, MessageKind

__all__ = ["TAU_DELAY_MS", "AutomaskController", "proposal_prompts", "relevance_rgba"]

log = logging.getLogger(__name__)

TAU_DELAY_MS = 80  # the tau slider re-thresholds the auto mask this long after it stops moving


def proposal_prompts(result: Any) -> Prompts:
    """An auto mask's SAM prompts as canvas prompts (one box: the box; several: the box around them)."""
    pts = np.asarray(result.points, np.float64).reshape(-1, 2)
    labels = np.asarray(result.labels).reshape(-1)
    boxes = np.asarray(result.boxes, np.float64).reshape(-1, 4)
    box = None
    if len(boxes):
        box = (
            float(boxes[:, 0].min()),
            float(boxes[:, 1].min()),
            float(boxes[:, 2].max()),
            float(boxes[:, 3].max()),
        )
    return Prompts(
        points=tuple((float(x), float(y)) for x, y in pts),
        labels=tuple(int(v) for v in labels),
        box=box,
    )


def relevance_rgba(relevance: Any) -> np.ndarray:
    """The relevance map as an RGBA overlay: jet colours, opaque where relevant, clear where not."""
    rgb = relevance.heatmap_rgb()
    alpha = np.clip(np.rint(210.0 * relevance.heatmap()), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.dstack([rgb, alpha]))


class AutomaskController(QObject):
    """One auto mask job at a time; its result becomes the document's ``automask_result``."""

    def __init__(self, win: QMainWindow):
        super().__init__(win)
        self.win = win
        self.doc = win.document
        self.job = 0
        self.tau_job = 0
        self.tau_timer = QTimer(self, singleShot=True, interval=TAU_DELAY_MS)
        self.tau_timer.timeout.connect(self.apply_tau)
        self.doc.replaced.connect(self._drop)

    def _drop(self, _doc: int = 0) -> None:
        """A new document: the old one's auto mask and re-threshold jobs no longer count."""
        self.tau_timer.stop()
        self.tau_job = 0
        if self.job:
            self.job = 0
            self.set_running(False)

    def tau(self) -> float:
        """The relevance threshold the slider shows (0.05..0.95)."""
        return self.win.tau_slider.value() / 100.0

    def clicked(self) -> None:
        if self.job:
            self.cancel()
        else:
            self.run()

    def run(self) -> None:
        """Propose a mask from the image and the instruction on the worker (relevance, grounding, SAM)."""
        win = self.win
        image = self.doc.data.image
        if image is None:
            win.banner.show_message("Open an image first.", "info")
            return
        if self.job:
            return
        instruction = win.edit_panel.instruction.text().strip()
        if not instruction:
            win.banner.show_message(
                "Type an instruction first, e.g. “turn the dog into a cat”: Auto mask finds its region.",
                "info",
            )
            win.edit_panel.instruction.setFocus()
            return
        try:
            params = win.edit_panel.params()
        except ValueError as exc:
            win.banner.show_message(str(exc), "error")
            return
        win.banner.hide()
        self.tau_timer.stop()
        self.tau_job = 0
        job = AutoMaskJob(
            image=image, instruction=instruction, seed=params.seed, tau=self.tau(), long_side=params.long_side
        )
        self.job = win.client.automask(job)
        self.set_running(True)
        win.automask_status.setText("Auto mask: starting…")

    def cancel(self) -> None:
        if self.job:
            self.win.client.cancel(self.job)
            self.win.automask_status.setText("Auto mask: cancelling…")

    def set_editor_family(self, family: str) -> None:
        """Auto mask on for the families its relevance map reads; off, with the reason, for the others."""
        why = unsupported_reason(family) if family else None
        win = self.win
        for widget in (win.automask_button, win.automask_action):
            widget.setEnabled(why is None)
        win.automask_button.setToolTip(why or AUTOMASK_TIP)
        win.automask_status.setText(why or "")

    def set_running(self, running: bool) -> None:
        self.win.automask_button.setText("Cancel auto mask" if running else "Auto mask")

    def on_message(self, msg: JobMessage) -> None:
        if msg.job_id != self.job:
            return
        status = self.win.automask_status
        if msg.kind is MessageKind.PROGRESS:
            status.setText(f"Auto mask: {msg.stage} {msg.done}/{msg.total}")
            return
        if not msg.final:
            return
        self.job = 0
        self.set_running(False)
        if msg.kind is MessageKind.FINISHED:
            self.show(msg.result, "Auto mask")
            self.win.statusBar().showMessage(f"{status.text()} ({msg.seconds:.1f} s)", 8000)
        elif msg.kind is MessageKind.CANCELLED:
            status.setText("Auto mask cancelled.")
        else:
            log.error("auto mask failed: %s\n%s", msg.error, msg.detail)
            status.setText("Auto mask failed.")
            self.win.models.show_failure("Auto mask failed: ", msg)

    def show(self, result: Any, text: str) -> None:
        """The proposal as ordinary prompt items plus its mask; its SAM logits refine the next click."""
        win = self.win
        self.doc.automask_result = result
        win.canvas.set_prompts(proposal_prompts(result))
        win.segments.timer.stop()  # the proposal's own mask wins: no SAM run replaces it
        win.segments.job = 0  # and a SAM result still on its way is dropped
        win.segments.forget()
        win.canvas.set_mask(result.mask, text=text)
        logits = result.sam_logits
        self.doc.chosen_logits = None if logits is None else np.asarray(logits, np.float32)
        conf = "n/a" if result.confidence is None else f"{result.confidence:.2f}"
        line = f"Auto mask from {result.source}, confidence {conf}"
        if len(result.boxes) > 1:
            line += f" ({len(result.boxes)} boxes: the prompt shows the box around them)"
        win.automask_status.setText(line)
        win.automask_status.setToolTip("\n".join((result.summary(), *result.notes)))
        self.update_heatmap()

    def forget(self) -> None:
        """A new image: its prompts and masks belong to the previous one."""
        self.doc.automask_result = None
        self.win.automask_status.setText("")
        self.win.automask_status.setToolTip("")

    def kept_state(self) -> tuple[Any, str, str]:
        """The auto mask of the image on show as it is put away: the proposal and its status line."""
        status = self.win.automask_status
        return self.doc.automask_result, status.text(), status.toolTip()

    def restore(self, state: tuple[Any, str, str]) -> None:
        """An image put away comes back: its proposal (the tau slider moves to its tau quietly: no
        re-threshold runs), its status line and, when shown, its relevance heatmap."""
        result, text, tip = state
        win = self.win
        self.doc.automask_result = result
        win.automask_status.setText(text)
        win.automask_status.setToolTip(tip)
        if result is not None:
            value = int(round(100 * result.params.tau))
            blocked = win.tau_slider.blockSignals(True)
            win.tau_slider.setValue(value)
            win.tau_slider.blockSignals(blocked)
            win.tau_label.setText(f"τ {win.tau_slider.value() / 100:.2f}")
        self.update_heatmap()

    def on_tau_changed(self, value: int) -> None:
        self.win.tau_label.setText(f"τ {value / 100:.2f}")
        self.tau_timer.start()

    def apply_tau(self) -> None:
        """Re-threshold the current proposal at the slider's tau: SAM decoding on the worker, no UNet."""
        r, image = self.doc.automask_result, self.doc.data.image
        if r is None or r.relevance is None or image is None or self.job:
            return
        if abs(r.params.tau - self.tau()) < 1e-9:
            return
        self.tau_job = self.win.client.rethreshold(image, r, self.tau())

    def on_tau_message(self, msg: JobMessage) -> None:
        if msg.kind is MessageKind.FINISHED and msg.job_id == self.tau_job:
            self.tau_job = 0
            if self.doc.automask_result is not None:  # not replaced by a new image meanwhile
                self.show(msg.result, f"Auto mask at tau {msg.result.params.tau:.2f}")
        elif msg.kind is MessageKind.FAILED and msg.job_id == self.tau_job:
            self.tau_job = 0
            log.error("re-threshold failed: %s\n%s", msg.error, msg.detail)
            self.win.banner.show_message(f"Changing the threshold failed: {error_text(msg)}", "error")

    def update_heatmap(self) -> None:
        win, r = self.win, self.doc.automask_result
        shown = win.show_relevance.isChecked()
        if not shown or r is None or r.relevance is None:
            if win.canvas.has_image():
                win.canvas.set_heatmap(None)
            if shown and r is not None and r.relevance is None:
                win.statusBar().showMessage("This auto mask has no relevance map.", 5000)
            return
        win.canvas.set_heatmap(relevance_rgba(r.relevance))
