"""Start-up, done once: logging to a rotating file, Qt messages into the log, an excepthook dialog."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
import traceback
from pathlib import Path

from maskpix_desktop.paths import log_dir

log = logging.getLogger("maskpix")

APP_NAME = "MaskPix Desktop"
ORG_NAME = "MaskPix"


def setup_logging(level: int = logging.INFO) -> Path:
    """Log to stderr (when there is one) and to a rotating file under the user's log folder."""
    folder = log_dir()
    path = folder / "maskpix.log"
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
        handler.setFormatter(fmt)
        root.addHandler(handler)
    except OSError:
        path = Path(os.devnull)
    if sys.stderr is not None:
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        stream.setLevel(logging.WARNING)
        root.addHandler(stream)
    return path


def _redirect_missing_streams() -> None:
    """Windowed (frozen) builds have no stdout/stderr; tqdm and transformers write to them."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


def install_qt_message_handler() -> None:
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    qt_log = logging.getLogger("qt")
    levels = {
        QtMsgType.QtDebugMsg: logging.DEBUG,
        QtMsgType.QtInfoMsg: logging.INFO,
        QtMsgType.QtWarningMsg: logging.WARNING,
        QtMsgType.QtCriticalMsg: logging.ERROR,
        QtMsgType.QtFatalMsg: logging.CRITICAL,
    }

    def handler(mode, context, message):  # noqa: ANN001
        qt_log.log(levels.get(mode, logging.WARNING), "%s", message)

    qInstallMessageHandler(handler)


def install_excepthook(log_path: Path) -> None:
    """Unexpected exceptions on the GUI thread: log with traceback and show a dialog; the app goes on."""

    def hook(exc_type, exc, tb):  # noqa: ANN001
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("Unexpected error:\n%s", text)
        try:
            from PySide6.QtWidgets import QApplication, QMessageBox

            if QApplication.instance() is not None:
                box = QMessageBox(QMessageBox.Icon.Critical, APP_NAME, f"Unexpected error: {exc}")
                box.setInformativeText(f"Details were written to {log_path}. Your work is still open.")
                box.setDetailedText(text)
                box.exec()
        except Exception:  # pragma: no cover - never let the hook itself raise
            pass

    sys.excepthook = hook


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="maskpix", description="MaskPix Desktop")
    p.add_argument("image", nargs="?", help="image or .maskpix project to open")
    p.add_argument("--models-dir", help="models folder (default: $MASKPIX_MODELS or the user data folder)")
    p.add_argument("--device", default=None, help="auto | cuda | cpu | mps")
    p.add_argument("--no-models", action="store_true", help="do not load models at start")
    return p.parse_args(argv)


def create_app(argv: list[str] | None = None):
    """The QApplication (created once) with names set so QSettings and log folders are right."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(["maskpix", *(argv or [])])
    app.setOrganizationName(ORG_NAME)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    return app


ENV_RESTORE = "MASKPIX_RESTORE"  # "yes" / "no": answer the restore question without asking (automation)


def _ask_restore(window, description: str) -> bool:
    from PySide6.QtWidgets import QMessageBox

    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    answer = QMessageBox.question(
        window,
        "Restore your last session?",
        "MaskPix did not close cleanly last time. Restore the autosaved work?\n\n"
        f"{description}\n\nNo keeps it as previous.maskpix in the autosave folder.",
        buttons,
        QMessageBox.StandardButton.Yes,
    )
    return answer == QMessageBox.StandardButton.Yes


def offer_restore(window, ask=None) -> bool | None:
    """If a session ended without a clean exit, offer to restore its autosaves into ``window``.

    Every open image with unsaved work had its own autosave: all of them are offered in one question
    (``ask(window, description) -> bool``, a question box by default; the environment variable
    ``MASKPIX_RESTORE=yes|no`` answers without asking). The newest is shown, the others wait in the
    filmstrip. Returns None when there was nothing to offer, else whether anything was restored. A
    declined autosave is kept as ``previous.maskpix`` (``previous-N.maskpix`` for the others); one that
    cannot be read is kept aside as ``unreadable-<time>.maskpix`` and the banner says where (the text is
    also left in ``window.restore_notice``). Either way it is not offered again, and nothing in an
    autosave can stop the app from starting.
    """
    from maskpix_desktop.core import session as sessions

    window.restore_notice = None
    if window.autosaver is None:
        return None
    found = sessions.find_recoverable(window.autosaver.folder)
    if not found:
        return None
    preset = os.environ.get(ENV_RESTORE, "").strip().lower()
    if preset in ("yes", "y", "1", "true"):
        wanted = True
    elif preset in ("no", "n", "0", "false"):
        wanted = False
    else:
        description = "\n".join(("" if len(found) == 1 else "• ") + rec.describe() for rec in found)
        wanted = bool((ask or _ask_restore)(window, description))
    done = [False] * len(found)
    if wanted:
        for i, rec in enumerate(found):
            try:
                if not any(done):  # the first that opens is shown, the others wait in the filmstrip
                    done[i] = bool(window.open_project(rec.path, recovered=True))
                else:
                    done[i] = window.strip.add_recovered(rec.path)
            except Exception:  # the window's own failure: keep the autosave, go on
                log.exception("restoring the autosave %s failed", rec.path)
            if not done[i]:
                log.warning("could not restore the autosave %s", rec.path)
    for rec, restored in zip(found, done, strict=True):
        outcome = sessions.resolve_recoverable(rec, keep_copy=not restored)
        if outcome.problem is not None:
            where = outcome.kept if outcome.kept is not None else rec.path
            after = "; MaskPix starts with an empty session." if not any(done) else "."
            problem = f"Your last session's autosave could not be read: {outcome.problem}"
            window.restore_notice = f"{problem} It was kept as {where}{after}"
            window.banner.show_message(window.restore_notice, "warning")
    return any(done)


def _offer_restore_safely(window, ask) -> bool | None:
    """:func:`offer_restore` that can never stop the start-up: any failure is logged and shown."""
    try:
        return offer_restore(window, ask)
    except Exception as exc:
        log.exception("the restore offer failed")
        window.restore_notice = f"Your last session could not be checked for recovery: {exc}"
        window.banner.show_message(window.restore_notice, "warning")
        return False


def build_window(args: argparse.Namespace, *, ask_restore=None, **window_kwargs):
    """The main window as the app starts it: shown, a crashed session offered back, the image opened.

    ``window_kwargs`` go to :class:`MainWindow` (tests pass their own ``settings``).
    """
    from maskpix_desktop.ui.main_window import MainWindow

    window = MainWindow(
        models_dir=args.models_dir, device=args.device, load_models=not args.no_models, **window_kwargs
    )
    window.show()
    restored = _offer_restore_safely(window, ask_restore)
    if args.image:
        if restored:
            window.banner.show_message(
                f"Restored your previous session; {args.image} was not opened.", "info"
            )
        else:
            opened = window.open_image(args.image)
            if opened and window.restore_notice:  # opening the image hides the banner: say it again
                window.banner.show_message(window.restore_notice, "warning")
    return window


def run_app(argv: list[str]) -> int:
    _redirect_missing_streams()
    args = parse_args(argv)
    log_path = setup_logging()
    app = create_app()
    install_qt_message_handler()
    install_excepthook(log_path)
    window = build_window(args)
    window.log_path = log_path
    return app.exec()
