"""SAM on the canvas: the open image's encode (with a "Preparing mask model…" badge), prompts -> a
SegmentJob (debounced) -> candidate masks (list + thumbnails) -> the chosen one shown."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QListWidgetItem, QMainWindow

from maskpix_desktop.ui.canvas import Prompts
from maskpix_desktop.ui.segment_overlays import CandidateStrip, PreparingBadge, candidate_thumbnail, downscale
from maskpix_desktop.ui.worker import TERMINAL, JobMessage, MessageKind, SegmentJob

__all__ = ["SEGMENT_DELAY_MS", "SegmentController"]

SEGMENT_DELAY_MS = 30


class SegmentController(QObject):
    """Posts a SegmentJob this long after the prompts stop changing; shows its candidates in the list
    and as thumbnails. ``preparingChanged(True)`` when the open image's encode starts, ``(False)`` when
    it is over (embedding ready, failed, cancelled, or the document replaced)."""

    preparingChanged = Signal(bool)

    def __init__(self, win: QMainWindow):
        super().__init__(win)
        self.win = win
        self.doc = win.document
        self.job = 0
        self.encode_job = 0  # the running encode of the open image (0: none)
        self.timer = QTimer(self, singleShot=True, interval=SEGMENT_DELAY_MS)
        self.timer.timeout.connect(self.request)
        self.doc.replaced.connect(self._drop)
        self.badge = PreparingBadge(win.canvas.viewport())
        self.strip = CandidateStrip(win.canvas.viewport())
        self.strip.chosen.connect(self._choose_row)
        self._small: tuple[np.ndarray | None, np.ndarray | None] = (None, None)  # (image, its thumbnail)

    def _drop(self, _doc: int = 0) -> None:
        """A new document: no pending or running segmentation of the old one lands on it."""
        self.timer.stop()
        self.job = 0
        self._set_preparing(0)

    def encode(self) -> None:
        """Start the SAM encoding of the image just shown; a click meanwhile queues behind it and reuses
        its embedding (the encode job is never superseded), so the image is encoded once."""
        self._set_preparing(self.win.client.encode(self.win.canvas.image()))

    def preparing(self) -> bool:
        return self.encode_job != 0

    def _set_preparing(self, job: int) -> None:
        was, self.encode_job = self.encode_job != 0, job
        if was != (job != 0):
            self.badge.set_preparing(job != 0)
            self.preparingChanged.emit(job != 0)

    def on_encode_message(self, msg: JobMessage) -> None:
        if msg.job_id != self.encode_job or msg.kind not in TERMINAL:
            return
        self._set_preparing(0)
        if msg.kind is MessageKind.FAILED:
            reason = msg.error.message if msg.error is not None else "unknown error"
            self.win.statusBar().showMessage(f"The mask model could not read this image: {reason}", 8000)

    def request(self) -> None:
        image = self.win.canvas.image()
        if image is None:
            return
        prompts: Prompts = self.win.canvas.prompts()
        if prompts.is_empty():
            self.forget()
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
        """A SAM answer: list its candidates, best first, and choose the best (its mask is applied)."""
        order = self._list(res)
        self.win.candidate_list.setCurrentRow(0)
        if len(order) == 1:
            self.choose(0)
        else:  # after the chosen mask is on screen: thumbnails cost a full-size mask each
            QTimer.singleShot(0, lambda: self._show_thumbnails(res, order))

    def restore_candidates(self, res: Any, row: int, logits: np.ndarray | None) -> None:
        """An image's candidates shown again, ``row`` marked; the mask it kept stays (nothing applied)."""
        order = self._list(res, row)
        self.doc.chosen_logits = logits
        if len(order) > 1:
            QTimer.singleShot(0, lambda: self._show_thumbnails(res, order))

    def _list(self, res: Any, row: int = -1) -> list[int]:
        """Fill the candidate list with ``res`` (``row`` current, no signal); returns the rank order."""
        self.doc.candidates = res
        lst = self.win.candidate_list
        lst.blockSignals(True)
        lst.clear()
        order = [int(i) for i in np.argsort(-np.asarray(res.scores))]
        for rank, i in enumerate(order):
            # Area share from the low-res logits: full-size masks are computed only when chosen.
            share = float((np.asarray(res.logits[i]) > 0).mean())
            item = QListWidgetItem(
                f"Mask {rank + 1} — IoU {float(res.scores[i]):.2f} · ~{share:.0%} of image"
            )
            item.setData(Qt.ItemDataRole.UserRole, i)
            lst.addItem(item)
        if row >= 0:
            lst.setCurrentRow(row)
        lst.blockSignals(False)
        self.strip.clear()
        return order

    def _show_thumbnails(self, res: Any, order: list[int]) -> None:
        image = self.win.canvas.image()
        if res is not self.doc.candidates or image is None:
            return
        if self._small[0] is not image:
            self._small = (image, downscale(image))
        small = self._small[1]
        thumbs = [candidate_thumbnail(small, res.mask(i)) for i in order]
        tips = [self.win.candidate_list.item(r).text() for r in range(len(order))]
        self.strip.set_thumbnails(thumbs, tips, max(0, self.win.candidate_list.currentRow()))

    def _choose_row(self, row: int) -> None:
        """A thumbnail was clicked: its row in the list becomes current (choosing it again re-applies it)."""
        lst = self.win.candidate_list
        if lst.currentRow() == row:
            self.choose(row)
        else:
            lst.setCurrentRow(row)

    def choose(self, row: int) -> None:
        cands = self.doc.candidates
        if cands is None or row < 0:
            return
        i = self.win.candidate_list.item(row).data(Qt.ItemDataRole.UserRole)
        self.doc.chosen_logits = np.asarray(cands.logits[i : i + 1])
        self.win.canvas.set_mask(cands.mask(i), text="SAM mask")
        self.strip.set_current(row)

    def forget(self) -> None:
        """Candidates and chosen logits belong to the previous image (or to a proposal that replaced them)."""
        self.doc.clear_candidates()
        self.win.candidate_list.clear()
        self.strip.clear()
