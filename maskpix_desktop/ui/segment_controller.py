"""SAM on the canvas: prompts -> a SegmentJob (debounced) -> candidate masks -> the chosen one shown."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QListWidgetItem, QMainWindow

from maskpix_desktop.ui.canvas import Prompts
from maskpix_desktop.ui.worker import JobMessage, MessageKind, SegmentJob

__all__ = ["SEGMENT_DELAY_MS", "SegmentController"]

SEGMENT_DELAY_MS = 30


class SegmentController(QObject):
    """Posts a SegmentJob this long after the prompts stop changing; shows its candidates in the list."""

    def __init__(self, win: QMainWindow):
        super().__init__(win)
        self.win = win
        self.doc = win.document
        self.job = 0
        self.timer = QTimer(self, singleShot=True, interval=SEGMENT_DELAY_MS)
        self.timer.timeout.connect(self.request)
        self.doc.replaced.connect(self._drop)

    def _drop(self, _doc: int = 0) -> None:
        """A new document: no pending or running segmentation of the old one lands on it."""
        self.timer.stop()
        self.job = 0

    def encode(self) -> None:
        """Start the SAM encoding of the image just shown (no prompts: the next click is decoder-only)."""
        self.win.client.segment(SegmentJob(image=self.win.canvas.image(), points=None, labels=None, box=None))

    def request(self) -> None:
        image = self.win.canvas.image()
        if image is None:
            return
        prompts: Prompts = self.win.canvas.prompts()
        if prompts.is_empty():
            self.doc.clear_candidates()
            self.win.candidate_list.clear()
            return
        pts = np.asarray(prompts.points, np.float32) if prompts.points else None
        labels = np.asarray(prompts.labels, np.int32) if prompts.points else None
        box = np.asarray(prompts.box, np.float32) if prompts.box is not None else None
        refine = self.doc.chosen_logits if (len(prompts.points) > 1 or box is not None) else None
        if box is not None and len(prompts.points) == 0:
            refine = None
        self.job = self.win.client.segment(
            SegmentJob(image=image, points=pts, labels=labels, box=box, mask_input=refine)
        )

    def on_message(self, msg: JobMessage) -> None:
        if msg.job_id != self.job:
            return
        if msg.kind is MessageKind.FINISHED and msg.result is not None:
            self.show_candidates(msg.result)
        elif msg.kind is MessageKind.FAILED:
            self.win.models.show_failure("Segmentation failed: ", msg)

    def show_candidates(self, res: Any) -> None:
        self.doc.candidates = res
        lst = self.win.candidate_list
        lst.blockSignals(True)
        lst.clear()
        order = np.argsort(-np.asarray(res.scores))
        for rank, i in enumerate(order):
            # Area share from the low-res logits: full-size masks are computed only when chosen.
            share = float((np.asarray(res.logits[i]) > 0).mean())
            item = QListWidgetItem(
                f"Mask {rank + 1} — IoU {float(res.scores[i]):.2f} · ~{share:.0%} of image"
            )
            item.setData(Qt.ItemDataRole.UserRole, int(i))
            lst.addItem(item)
        lst.blockSignals(False)
        lst.setCurrentRow(0)
        if len(order) == 1:
            self.choose(0)

    def choose(self, row: int) -> None:
        cands = self.doc.candidates
        if cands is None or row < 0:
            return
        i = self.win.candidate_list.item(row).data(Qt.ItemDataRole.UserRole)
        self.doc.chosen_logits = np.asarray(cands.logits[i : i + 1])
        self.win.canvas.set_mask(cands.mask(i), text="SAM mask")

    def forget(self) -> None:
        """Candidates and chosen logits belong to the previous image (or to a proposal that replaced them)."""
        self.doc.clear_candidates()
        self.win.candidate_list.clear()
