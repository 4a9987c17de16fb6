"""Autosave: the document is handed to the autosave thread ``AUTOSAVE_DELAY_MS`` after the last change,
and at the latest ``AUTOSAVE_MAX_DELAY_MS`` after the first unsaved one; its failures go to the banner.

Every open image with unsaved work has its own autosave: an image put away in the filmstrip keeps its
:class:`~maskpix_desktop.core.session.Autosaver` (its own slot, ``session-2`` ...), written once as it
leaves the screen, so a crash loses none of the open images; it comes back with its image, and closing
the image closes it cleanly (nothing offered at the next launch)."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QMainWindow

from maskpix_desktop.core import session as sessions

__all__ = [
    "AUTOSAVE_DELAY_MS",
    "AUTOSAVE_MAX_DELAY_MS",
    "ENV_AUTOSAVE_MAX_MS",
    "ENV_AUTOSAVE_MS",
    "AutosaveController",
]

AUTOSAVE_DELAY_MS = 2000
ENV_AUTOSAVE_MS = "MASKPIX_AUTOSAVE_MS"  # tests and power users: the autosave debounce in milliseconds
#: While changes keep coming (the debounce keeps restarting), an autosave still runs this long after the
#: first change it has not saved: continuous painting never loses more than about this much work.
AUTOSAVE_MAX_DELAY_MS = 10_000
ENV_AUTOSAVE_MAX_MS = "MASKPIX_AUTOSAVE_MAX_MS"


def _env_ms(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, default)))
    except ValueError:
        return default


def autosave_delay_ms() -> int:
    """The autosave debounce: this long after the last change (``$MASKPIX_AUTOSAVE_MS`` overrides it)."""
    return _env_ms(ENV_AUTOSAVE_MS, AUTOSAVE_DELAY_MS)


def autosave_max_delay_ms() -> int:
    """The longest an unsaved change waits for its autosave (``$MASKPIX_AUTOSAVE_MAX_MS`` overrides it)."""
    return _env_ms(ENV_AUTOSAVE_MAX_MS, AUTOSAVE_MAX_DELAY_MS)


class _AutosaveBridge(QObject):
    """Carries the autosave thread's reports onto the GUI thread (queued signals)."""

    failed = Signal(str)
    saved = Signal(str)


class AutosaveController(QObject):
    """Re-arms on every ``document.changed``; ``enabled=False`` turns autosave off (no thread)."""

    def __init__(self, win: QMainWindow, enabled: bool, folder: str | Path | None):
        super().__init__(win)
        self.win = win
        self.error: str | None = None  # the last failure shown (shown once until it works again)
        self._bridge = _AutosaveBridge(self)
        self._bridge.failed.connect(self._on_failed)
        self._bridge.saved.connect(self._on_saved)
        self.enabled = enabled
        self.folder = folder
        #: The autosave of the image on show (None: autosave is off).
        self.autosaver: sessions.Autosaver | None = self._new_autosaver()
        #: The autosaves of the images put away with unsaved work, by ``id(OpenDocument)``.
        self.away: dict[int, sessions.Autosaver] = {}
        self.timer = QTimer(self, singleShot=True, interval=autosave_delay_ms())
        self.timer.timeout.connect(self.save_now)
        # Not restarted by later changes: bounds the wait while the debounce keeps restarting.
        self.deadline = QTimer(self, singleShot=True, interval=autosave_max_delay_ms())
        self.deadline.timeout.connect(self.save_now)
        win.document.changed.connect(self.arm)

    def _new_autosaver(self) -> sessions.Autosaver | None:
        if not self.enabled:
            return None
        return sessions.Autosaver(
            self.folder,
            on_error=self._bridge.failed.emit,
            on_saved=lambda path: self._bridge.saved.emit(str(path)),
        )

    # ------------------------------------------------------------------ the filmstrip's images
    def put_away(self, key: int, session: sessions.Session, unsaved: bool) -> None:
        """The image on show leaves the screen as ``session``: its autosave goes with it, written now
        when it holds unsaved work (else closed: there is nothing to recover)."""
        self.stop()
        saver, self.autosaver = self.autosaver, None
        if saver is None:
            return
        self._close(self.away.pop(key, None))
        if unsaved and not session.is_empty() and not saver.closed:
            saver.save(session)
            self.away[key] = saver
        else:
            self._close(saver)

    def keep_away(self, key: int, session: sessions.Session) -> None:
        """An image that is not on show holds unsaved work it was never shown with (a recovered one)."""
        saver = self._new_autosaver()
        if saver is not None:
            self._close(self.away.pop(key, None))
            saver.save(session)
            self.away[key] = saver

    def bring_back(self, key: int | None) -> None:
        """Image ``key`` is on show (None: no image): its own autosave, or a new one, takes over."""
        if self.autosaver is not None and self.autosaver not in self.away.values():
            self._close(self.autosaver)  # never written (an image that failed to open) or closed
        kept = self.away.pop(key, None) if key is not None else None
        self.autosaver = kept if kept is not None else self._new_autosaver()

    def forget(self, key: int, on_show: bool) -> None:
        """Image ``key`` was closed (its work saved or discarded): its autosave ends cleanly."""
        self._close(self.away.pop(key, None))
        if on_show:
            self.stop()
            self._close(self.autosaver)
            self.autosaver = None

    def keep_only(self, keys: set[int]) -> None:
        """Close the autosaves of images no longer open (an id is reused once its document is gone)."""
        for key in [k for k in self.away if k not in keys]:
            self._close(self.away.pop(key))

    @staticmethod
    def _close(saver: sessions.Autosaver | None) -> None:
        if saver is not None and not saver.closed:
            saver.close()

    # ------------------------------------------------------------------ the image on show
    def _live(self) -> bool:
        return self.autosaver is not None and not self.autosaver.closed

    def arm(self) -> None:
        """(Re)start the countdown after a change."""
        if self._live():
            self.timer.start()
            if not self.deadline.isActive():
                self.deadline.start()

    def save_now(self, *, wait: bool = False) -> None:
        """Hand the current session to the autosave thread (``wait``: write it before returning)."""
        self.timer.stop()
        self.deadline.stop()
        if not self._live():
            return
        s = self.win.document.session()
        if s.is_empty():
            return
        if wait:
            self.autosaver.save_now(s)
        else:
            self.autosaver.save(s)

    def stop(self) -> None:
        """No autosave from now on (the window is closing)."""
        self.timer.stop()
        self.deadline.stop()

    def close(self) -> None:
        """A clean exit: the autosave thread ends and the next launch offers nothing."""
        self.stop()
        self._close(self.autosaver)
        for key in list(self.away):
            self._close(self.away.pop(key))

    def _on_failed(self, message: str) -> None:
        if message != self.error:
            self.win.banner.show_message(
                f"Autosave failed: {message} Use File > Save project to keep your work.", "warning"
            )
        self.error = message

    def _on_saved(self, _path: str) -> None:
        if self.error is not None:
            self.error = None
            self.win.statusBar().showMessage("Autosave works again.", 5000)
