"""Autosave: the document is handed to the autosave thread ``AUTOSAVE_DELAY_MS`` after the last change,
and at the latest ``AUTOSAVE_MAX_DELAY_MS`` after the first unsaved one; its failures go to the banner."""

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
        self.autosaver: sessions.Autosaver | None = None
        if enabled:
            self.autosaver = sessions.Autosaver(
                folder,
                on_error=self._bridge.failed.emit,
                on_saved=lambda path: self._bridge.saved.emit(str(path)),
            )
        self.timer = QTimer(self, singleShot=True, interval=autosave_delay_ms())
        self.timer.timeout.connect(self.save_now)
        # Not restarted by later changes: bounds the wait while the debounce keeps restarting.
        self.deadline = QTimer(self, singleShot=True, interval=autosave_max_delay_ms())
        self.deadline.timeout.connect(self.save_now)
        win.document.changed.connect(self.arm)

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
        if self.autosaver is not None:
            self.autosaver.close()

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
