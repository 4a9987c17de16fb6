"""Model downloads for the Models dialog: ``core.models.download`` on a QThread, one model after another.

Cancel (or closing the dialog) sets a ``threading.Event`` that the downloader checks between chunks, then
the thread is waited for; a thread that does not stop in time is kept alive, never terminated.
"""

from __future__ import annotations

import logging
import threading
import time

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import DownloadError
from maskpix_desktop.ui.model_files import MISSING, is_network_error, offline_message

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05
#: Milliseconds to wait for a download thread when the dialog closes (the downloader's stall timeout + 5 s).
STOP_WAIT_MS = int((models.DOWNLOAD_TIMEOUT_S + 5) * 1000)

# (thread, worker) pairs that did not stop within STOP_WAIT_MS: kept alive (never terminated) and pruned
# once finished, so Qt never destroys a running thread or the worker it is executing.
_ORPHANS: list[tuple[QThread, QObject]] = []


class DownloadWorker(QObject):
    """Runs one ``models.download`` call; lives on its own QThread."""

    progress = Signal(object, object)  # done bytes, total bytes or None (may exceed 32-bit ints)
    succeeded = Signal(str)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, name: str, models_dir: str | None, cancel: threading.Event):
        super().__init__()
        self.name = name
        self.models_dir = models_dir
        self.cancel = cancel
        self._last_emit = 0.0

    @Slot()
    def run(self) -> None:
        try:
            path = models.download(self.name, self.models_dir, progress=self._report, cancel=self.cancel)
        except DownloadError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # a worker must never die silently
            log.exception("download of %s failed", self.name)
            self.failed.emit(f"Download of '{self.name}' failed: {type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(str(path))
        finally:
            self.finished.emit()

    def _report(self, done: int, total: int | None) -> None:
        # at most ~20 updates a second (huggingface_hub reports tiny steps), plus the final one
        now = time.monotonic()
        if now - self._last_emit >= PROGRESS_INTERVAL_S or (total is not None and done >= total):
            self._last_emit = now
            self.progress.emit(done, total)


class DownloadsMixin:
    """The Models dialog's download half: needs ``selected_model``, ``model_status``, ``models_folder``,
    ``refresh_models``, ``_update_enabled``, ``folder_edit`` and the progress / status / offline widgets."""

    def _init_downloads(self) -> None:
        self._queue: list[str] = []  # models still to fetch after the current download ("Download missing")
        self._missing: list[str] = []  # registry names of the needed models that are missing
        self._thread: QThread | None = None
        self._worker: DownloadWorker | None = None
        self._cancel: threading.Event | None = None
        self._downloading: str | None = None
        self._network_failed: str | None = None  # model whose download failed for want of a network

    def is_downloading(self) -> bool:
        return self._thread is not None

    def download_targets(self) -> list[str]:
        """What Download fetches: the selected row when it is missing, else every missing needed model."""
        name = self.selected_model()
        if name is not None and name in models.REGISTRY and self.model_status(name) == MISSING:
            return [name]
        return list(self._missing)

    def start_download(self) -> None:
        """Download the selected missing model, or every missing one (one after the other), on a thread."""
        if self._thread is not None:
            return
        targets = self.download_targets()
        if not targets:
            return
        if models.offline_mode():
            self._update_offline(targets[0], force=True)
            return
        self._queue = targets[1:]
        self._start_one(targets[0])

    def _start_one(self, name: str) -> None:
        folder = self.folder_edit.text().strip() or None
        self._cancel = threading.Event()
        self._worker = DownloadWorker(name, folder, self._cancel)
        self._thread = QThread()
        self._thread.setObjectName(f"maskpix-download-{name}")
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.finished.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._worker.progress.connect(self._on_progress)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.failed.connect(self._on_failed)
        self._thread.finished.connect(self._on_thread_finished)
        self._downloading = name
        self._network_failed = None
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(f"{name}: %p%")
        self.status_label.setText(f"Downloading {name} into {self.models_folder()}…")
        self.offline_label.hide()
        self._thread.start()
        self._update_enabled()

    def cancel_download(self) -> None:
        """Ask the running download to stop (it stops at its next chunk); the queued ones are dropped."""
        self._queue.clear()
        if self._cancel is not None:
            self._cancel.set()
            self.status_label.setText("Cancelling…")

    def stop_download(self, timeout_ms: int = STOP_WAIT_MS) -> bool:
        """Cancel and wait for the download thread; True when no thread is left running."""
        _ORPHANS[:] = [(t, w) for t, w in _ORPHANS if not t.isFinished()]
        self._queue.clear()
        thread = self._thread
        if thread is None:
            return True
        if self._cancel is not None:
            self._cancel.set()
        stopped = thread.wait(timeout_ms)
        if not stopped and self._worker is not None:  # never terminate(): let it notice the cancel
            log.warning("download thread did not stop within %d ms; leaving it to finish", timeout_ms)
            _ORPHANS.append((thread, self._worker))
        self._release_thread()
        return stopped

    @Slot(object, object)
    def _on_progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(min(1000, int(done * 1000 / total)))
        else:
            self.progress_bar.setRange(0, 0)  # busy indicator: total unknown

    @Slot(str)
    def _on_succeeded(self, path: str) -> None:
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(1000)
        self.status_label.setText(f"Downloaded {self._downloading} to {path}")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        cancelled = self._cancel is not None and self._cancel.is_set()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self._queue.clear()  # a failure stops the rest: the message stays readable
        if cancelled:
            self.status_label.setText("Download cancelled.")
            return
        self.status_label.setText(message)
        if is_network_error(message):
            self._network_failed = self._downloading
            self._update_offline()

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._thread is not None and self._thread.isFinished():
            self._thread.wait()  # returns at once; makes sure Qt is done with the thread before release
            self._release_thread()
            if self._queue:
                self._start_one(self._queue.pop(0))

    # internals -------------------------------------------------------------------------------------
    def _release_thread(self) -> None:
        self._thread = None
        self._worker = None
        self._downloading = None
        self.refresh_models()

    def _update_offline(self, name: str | None = None, force: bool = False) -> None:
        """Show the offline explanation in offline mode or after a download failed for want of network."""
        if force or models.offline_mode() or self._network_failed:
            name = name or self._network_failed or self.selected_model() or "NAME"
            self.offline_label.setText(offline_message(self.models_folder(), name))
            self.offline_label.show()
        else:
            self.offline_label.hide()
