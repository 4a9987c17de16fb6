"""The autosave: :class:`Autosaver` writes the session on a background thread while holding a crash marker.

One :class:`Autosaver` per window writes ``<data dir>/autosave/session.maskpix`` (another running
instance gets ``session-2`` and so on); its arrays live beside it in ``session.blobs/``, one file per
distinct array named by its hash, written once, so an autosave after a brush stroke writes the new mask
and a few kilobytes of JSON however many results the session holds. The Autosaver holds an OS lock on
the matching ``.lock`` marker for as long as the window is open; a clean exit removes the marker. The OS
drops the lock when a process dies (crash, kill, power loss), so a marker that can be locked belongs to
a dead session: :func:`recovery.find_recoverable` lists those and the app offers to restore them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.session.arrays import SaveCache
from maskpix_desktop.core.session.codec import PROJECT_SUFFIX, save_project
from maskpix_desktop.core.session.document import Session
from maskpix_desktop.core.session.locks import (
    BLOB_SUFFIX,
    remove_temp_files,
    same_file,
    try_lock,
    unlink_quietly,
)
from maskpix_desktop.paths import autosave_dir

__all__ = ["AUTOSAVE_NAME", "Autosaver"]

log = logging.getLogger(__name__)

AUTOSAVE_NAME = "session"


def _claimed(fd: int, path: Path) -> bool:
    """The slot's marker (open as ``fd``) is written and its autosave ``path`` exists."""
    return os.fstat(fd).st_size > 0 and path.exists()


class Autosaver:
    """Writes the latest :class:`Session` it was given to ``<folder>/session.maskpix`` on a background
    thread (the newest request wins; a save never blocks the caller), holding the ``.lock`` marker that
    tells the next launch whether this session ended cleanly.

    ``on_error(message)`` and ``on_saved(path)`` are called on the writer thread (a Qt caller should emit a
    signal from them). :meth:`close` is the clean exit: it waits for the last write and removes the marker.
    """

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        *,
        name: str = AUTOSAVE_NAME,
        on_error: Callable[[str], None] | None = None,
        on_saved: Callable[[Path], None] | None = None,
        compress_level: int = 1,
    ):
        self.folder = Path(folder) if folder is not None else autosave_dir()
        self.name = name
        self.on_error = on_error
        self.on_saved = on_saved
        self.compress_level = compress_level
        self.path: Path | None = None
        self.lock_path: Path | None = None
        self.last_error: str | None = None
        self.saves = 0
        self._fd: int | None = None
        self._cond = threading.Condition()
        self._pending: Session | None = None
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._cache = SaveCache()

    # ------------------------------------------------------------------ slot
    def _acquire(self) -> None:
        """Take the first free slot: ``session``, ``session-2``, ... (caller holds ``_cond``)."""
        if self._fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, 100):
            stem = self.name if i == 1 else f"{self.name}-{i}"
            lock = self.folder / f"{stem}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            path = lock.with_suffix(PROJECT_SUFFIX)
            try:
                # Taken: a live session holds it (or it was just removed), or it is claimed: a live
                # session's or a crashed one nobody has answered for yet (kept for the offer). A claimed
                # slot is never locked here, not even briefly (the restore offer must be able to resolve it
                # at that very moment), and is checked again once locked.
                if _claimed(fd, path) or not try_lock(fd) or not same_file(fd, lock) or _claimed(fd, path):
                    os.close(fd)
                    continue
                marker = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, json.dumps(marker).encode("utf-8"))
            except BaseException:
                os.close(fd)
                raise
            self._fd, self.lock_path, self.path = fd, lock, path
            remove_temp_files(path)  # left by a write this slot's previous owner did not finish
            return
        raise OSError(errno.EBUSY, f"no free autosave slot in {self.folder}")

    # ------------------------------------------------------------------ API
    def save(self, session: Session) -> None:
        """Queue ``session`` (replacing any queued one) for writing on the background thread."""
        with self._cond:
            if self._closed:
                return
            self._pending = session
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maskpix-autosave", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def save_now(self, session: Session) -> bool:
        """Write ``session`` on the calling thread (after any write in progress); True on success."""
        self.flush()
        with self._cond:
            if self._closed:
                return False
            self._busy = True
        try:
            return self._write(session)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every queued session is written; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Clean exit: finish the last write, stop the thread, release and remove the marker."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            fd, self._fd = self._fd, None
        if fd is not None:
            if os.name != "nt" and self.lock_path is not None:
                unlink_quietly(self.lock_path)
            os.close(fd)
            if os.name == "nt" and self.lock_path is not None:  # pragma: no cover
                unlink_quietly(self.lock_path)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ writer thread
    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed and self._pending is None:
                    return
                session, self._pending = self._pending, None
                self._busy = True
            try:
                self._write(session)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, session: Session) -> bool:
        try:
            with self._cond:
                self._acquire()
            assert self.path is not None
            save_project(
                self.path,
                session,
                compress_level=self.compress_level,
                cache=self._cache,
                blob_dir=self.path.with_suffix(BLOB_SUFFIX),
            )
        except (MaskPixError, OSError) as exc:
            message = str(exc) if isinstance(exc, MaskPixError) else f"{self.folder}: {exc.strerror or exc}"
            log.warning("autosave failed: %s", message)
            self.last_error = message
            self._notify(self.on_error, message)
            return False
        except Exception as exc:  # never let autosave take the app down
            log.exception("autosave failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._notify(self.on_error, self.last_error)
            return False
        self.saves += 1
        self.last_error = None
        self._notify(self.on_saved, self.path)
        return True

    @staticmethod
    def _notify(callback: Callable[[Any], None] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("autosave callback failed")
