"""File work off the GUI thread: project saves and loads run on one background thread, one at a time.

The window takes a snapshot on the GUI thread (cheap: the image and results are read-only arrays shared
as they are, the mask is copied once) and hands a function over; its result or exception comes back on
the GUI thread through a queued signal. A second save of the same file queued behind a running one
replaces the queued snapshot (five Ctrl+S in a row write at most twice). Quitting waits for the queue.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

__all__ = ["FileJob", "FileJobs"]

log = logging.getLogger(__name__)


@dataclass
class FileJob:
    """``run()`` on the file thread, then ``done(value, error)`` on the GUI thread (exactly one is set)."""

    label: str  # for the status bar, e.g. "Saving trip.maskpix"
    run: Callable[[], Any]
    done: Callable[[Any, BaseException | None], None]
    key: str = ""  # jobs with the same non-empty key coalesce while queued
    value: Any = field(default=None, repr=False)
    error: BaseException | None = None


class FileJobs(QObject):
    """A queue of :class:`FileJob` served by one daemon thread; ``changed`` fires when it starts/ends one."""

    changed = Signal()
    _finished = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._queue: deque[FileJob] = deque()
        self._current: FileJob | None = None
        self._undelivered = 0
        self._thread: threading.Thread | None = None
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def submit(self, job: FileJob) -> None:
        with self._cond:
            same = [i for i, queued in enumerate(self._queue) if job.key and queued.key == job.key]
            if same:
                self._queue[same[0]] = job  # the newer snapshot wins; the older one never runs
            else:
                self._queue.append(job)
                self._undelivered += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maskpix-files", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        self.changed.emit()

    def busy(self) -> bool:
        """True while a job is queued, running, or its result is not yet delivered."""
        with self._cond:
            return self._undelivered > 0

    def label(self) -> str:
        """The running job's label ("" when idle)."""
        with self._cond:
            job = self._current or (self._queue[0] if self._queue else None)
            return job.label if job is not None else ""

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running (results may still await delivery); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and self._current is None, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                job = self._current = self._queue.popleft()
            try:
                job.value = job.run()
            except BaseException as exc:  # reported to the window, never lost
                job.error = exc
            with self._cond:
                self._current = None
                self._cond.notify_all()
            self._finished.emit(job)

    @Slot(object)
    def _deliver(self, job: FileJob) -> None:
        with self._cond:
            self._undelivered -= 1
        try:
            job.done(job.value, job.error)
        except Exception:
            log.exception("file job '%s': reporting its end failed", job.label)
        finally:
            self.changed.emit()
