"""Projects and re-runs: open / save ``.maskpix`` files (on the file thread or at once), the sidecar re-run,
and the atomic apply: a loaded session is checked field by field, then shown in one step, and the
previous document is put back if showing it fails half-way."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMainWindow

from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.ui import folders
from maskpix_desktop.ui.canvas import Prompts
from maskpix_desktop.ui.document import check_params, check_session
from maskpix_desktop.ui.file_jobs import FileJob

__all__ = ["PROJECT_FILTER", "SIDECAR_FILTER", "ProjectController"]

log = logging.getLogger(__name__)

PROJECT_FILTER = "MaskPix projects (*.maskpix);;All files (*)"
SIDECAR_FILTER = "MaskPix exports (*.json *.png *.jpg *.jpeg *.webp *.tif *.tiff);;All files (*)"


class ProjectController(QObject):
    """Reads and writes the document as a project; every replacement goes through :meth:`apply_atomically`."""

    def __init__(self, win: QMainWindow):
        super().__init__(win)
        self.win = win
        self.doc = win.document

    # ------------------------------------------------------------------ show a session
    def restore_session(self, s: sessions.Session) -> None:
        """Show ``s`` exactly: image, prompts (no SAM run: the saved mask wins), mask, params, results.

        Not atomic on its own: callers check ``s`` first (:func:`document.check_session`) and apply it
        through :meth:`apply_atomically`.
        """
        win, doc = self.win, self.doc
        doc.new_document()
        doc.restoring = True
        try:
            doc.set_history(s.history)
            if 0 <= s.current < len(s.history):
                win.results.show_result(s.current)
            if s.image is not None:
                path = Path(s.image_path) if s.image_path else None
                win.opener.show_image(s.image, path, s.image_name)
                doc.image_name = s.image_name or (path.name if path else "")
                win.canvas.set_prompts(Prompts(tuple(map(tuple, s.points)), tuple(s.labels), s.box))
                win.segments.timer.stop()
                if s.mask is not None:
                    win.canvas.set_mask(s.mask, undoable=False)
            win.edit_panel.set_params(s.params)
            win.tabs.setCurrentIndex(0)
        finally:
            doc.restoring = False
        win.update_title()

    def read(self, path: Path) -> sessions.Session | None:
        """Read and check the project ``path`` without showing it; None (the banner says why) if it cannot
        be used."""
        try:
            s = sessions.load_project(path)
            check_session(s, str(path), self.doc.param_limits())
        except MaskPixError as exc:
            self._could_not_open(path, exc)
            return None
        return s

    def show_empty(self) -> None:
        """No image: an empty document (a new id: the old one's jobs are dropped), the canvas and its undo
        history cleared, no results, and the start screen."""
        win, doc = self.win, self.doc
        doc.new_document()
        win.segments.forget()
        win.automasks.forget()
        win.canvas.clear_image()
        doc.set_image(None)
        doc.set_history([])
        doc.image_path, doc.image_name, doc.project_path = None, "", None
        doc.modified = doc.recovered = False
        win.tabs.setCurrentIndex(0)
        win.empty_hint.resize(win.canvas.viewport().size())
        win.empty_hint.setVisible(win.isVisible())
        win.update_title()

    def apply_atomically(self, where: str, apply: Callable[[], None]) -> bool:
        """Run ``apply`` (it replaces the document); if it raises, put the previous document back.

        Validation comes first (nothing is applied to an invalid file); this is the second line: a
        failure half-way never leaves a mix of two documents that the next Ctrl+S would write.
        """
        before = self._state()
        try:
            apply()
        except Exception as exc:
            log.exception("applying '%s' failed: the previous document is put back", where)
            self._put_back(before)
            self.win.banner.show_message(
                f"Cannot open '{where}': it could not be shown ({type(exc).__name__}: {exc}). "
                "Nothing was changed.",
                "error",
            )
            return False
        return True

    def _state(self) -> dict[str, Any]:
        win, doc = self.win, self.doc
        return {
            "session": doc.session(),
            "project_path": doc.project_path,
            "image_path": doc.image_path,
            "image_name": doc.image_name,
            "modified": doc.modified,
            "recovered": doc.recovered,
            "seed_lock": win.edit_panel.seed_lock.isChecked(),
            "automask": win.automasks.kept_state(),
            "chosen_logits": doc.chosen_logits,
            "tab": win.tabs.currentIndex(),
        }

    def _put_back(self, st: dict[str, Any]) -> None:
        win, doc = self.win, self.doc
        s: sessions.Session = st["session"]
        if s.image is None:
            self.show_empty()
        self.restore_session(s)
        doc.project_path, doc.image_path = st["project_path"], st["image_path"]
        doc.image_name, doc.modified, doc.recovered = st["image_name"], st["modified"], st["recovered"]
        win.edit_panel.seed_lock.setChecked(st["seed_lock"])
        doc.chosen_logits = st["chosen_logits"]
        win.automasks.restore(st["automask"])
        win.tabs.setCurrentIndex(st["tab"])
        win.update_title()

    # ------------------------------------------------------------------ open
    def open_project_dialog(self) -> None:
        win = self.win
        if not win.opener.keep_work_before("opening a project"):
            return
        current = self.doc.project_path
        start = str(current.parent if current else folders.project_dir(win.settings))
        path, _ = QFileDialog.getOpenFileName(win, "Open project", start, PROJECT_FILTER)
        if path:
            folders.remember(win.settings, folders.PROJECT_KEY, Path(path).parent)
            self.open_project(path, wait=False, ask=False)

    def open_project(
        self, path: str | Path, *, recovered: bool = False, wait: bool = True, ask: bool = True
    ) -> bool:
        """Replace the session with a ``.maskpix`` project; a bad file gives a message and changes nothing.

        ``wait=False`` (File menu, drops) reads the file on the file thread and applies it when read
        (True then means "started"), unless another document was opened meanwhile. ``ask``: Save /
        Discard / Cancel first (once the file has been read) when there is unsaved work.
        """
        path = Path(path)
        if not wait:
            doc = self.doc.id

            def done(s: Any, error: BaseException | None) -> None:
                if error is not None:
                    self._could_not_open(path, error)
                elif doc != self.doc.id:
                    self.win.statusBar().showMessage(
                        f"{path.name} was not opened: another file was opened.", 8000
                    )
                else:
                    self._show_project(path, s, recovered, ask)

            job = FileJob(f"Opening {path.name}…", lambda: sessions.load_project(path), done)
            self.win.file_jobs.submit(job)
            return True
        try:
            s = sessions.load_project(path)
        except MaskPixError as exc:
            self._could_not_open(path, exc)
            return False
        return self._show_project(path, s, recovered, ask)

    def _could_not_open(self, path: Path, error: BaseException) -> None:
        text = str(error) if isinstance(error, MaskPixError) else f"Cannot open '{path}': {error!r}."
        if isinstance(error, MemoryError):
            text = f"Not enough memory to open '{path}'."
        self.win.banner.show_message(text, "error")
        self.win.statusBar().showMessage(f"Could not open {path.name}", 5000)

    def _show_project(self, path: Path, s: sessions.Session, recovered: bool, ask: bool = False) -> bool:
        """Check ``s`` field by field, then show it in one step (the previous document back on failure)."""
        win, doc = self.win, self.doc
        try:
            check_session(s, str(path), doc.param_limits())
        except MaskPixError as exc:
            self._could_not_open(path, exc)
            return False
        if ask and not recovered and not win.opener.keep_work_before(f"opening {path.name}"):
            return False

        def apply() -> None:
            self.restore_session(s)
            doc.recovered = recovered
            doc.project_path = None if recovered else path
            doc.modified = recovered

        if not self.apply_atomically(str(path), apply):
            win.statusBar().showMessage(f"Could not open {path.name}", 5000)
            return False
        win.banner.hide()
        if recovered:
            win.statusBar().showMessage("Restored the session that did not close cleanly.", 8000)
            doc.mark_changed()
        else:
            win.statusBar().showMessage(f"Opened project {path.name}", 5000)
        win.update_title()
        return True

    # ------------------------------------------------------------------ save
    def save_project(self, *, wait: bool = True) -> bool:
        """Save to the current project file (asks for one the first time); see :meth:`write_project`."""
        if self.doc.project_path is None:
            return self.save_project_as(wait=wait)
        return self.write_project(self.doc.project_path, wait=wait)

    def save_project_as(self, *, wait: bool = True) -> bool:
        win, doc = self.win, self.doc
        stem = doc.image_path.stem if doc.image_path else "untitled"
        start = doc.project_path or folders.project_dir(win.settings) / (stem + sessions.PROJECT_SUFFIX)
        path, _ = QFileDialog.getSaveFileName(win, "Save project", str(start), PROJECT_FILTER)
        if not path:
            return False
        path = Path(path)
        folders.remember(win.settings, folders.PROJECT_KEY, path.parent)
        if path.suffix.lower() != sessions.PROJECT_SUFFIX:
            path = path.with_name(path.name + sessions.PROJECT_SUFFIX)
        return self.write_project(path, wait=wait)

    def write_project(self, path: str | Path, *, wait: bool = True) -> bool:
        """Write the session to ``path`` (atomic); errors (disk full, read-only) go to the banner.

        ``wait=False`` (Ctrl+S and the File menu) snapshots the session here and writes it on the file
        thread; the window stays responsive, the status bar shows the save, and True means "started".
        """
        path = Path(path)
        snapshot, serial, doc = self.doc.session(), self.doc.change_serial, self.doc.id
        if not wait:

            def done(_value: Any, error: BaseException | None) -> None:
                if error is not None:
                    self._not_saved(error)
                else:
                    self._saved(path, serial, doc)

            save = lambda: sessions.save_project(path, snapshot)  # noqa: E731
            self.win.file_jobs.submit(FileJob(f"Saving {path.name}…", save, done, key=f"save:{path}"))
            return True
        self.win.file_jobs.wait_idle()  # an older snapshot queued for this file must not land after this one
        try:
            sessions.save_project(path, snapshot)
        except MaskPixError as exc:
            self._not_saved(exc)
            return False
        self._saved(path, serial, doc)
        return True

    def _not_saved(self, error: BaseException) -> None:
        text = str(error) if isinstance(error, MaskPixError) else f"{type(error).__name__}: {error}"
        self.win.banner.show_message(f"The project was not saved. {text}", "error")

    def _saved(self, path: Path, serial: int, doc_id: int) -> None:
        """A save of the document ``doc_id`` as it was at change ``serial`` is on disk."""
        self.win.statusBar().showMessage(f"Saved project {path.name}", 5000)
        doc = self.doc
        if doc_id != doc.id:
            return  # another file was opened meanwhile: it is not this project
        doc.project_path = path
        doc.modified = serial != doc.change_serial  # changes made during the save are not in it
        doc.recovered = False
        self.win.update_title()

    # ------------------------------------------------------------------ re-run from an export
    def rerun_dialog(self) -> None:
        win = self.win
        start = win.settings.value("export/dir") or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(win, "Re-run from exported file", str(start), SIDECAR_FILTER)
        if path:
            self.rerun_from_file(path)

    def rerun_from_file(self, path: str | Path) -> bool:
        """Load the image, mask and parameters an exported result was made with (Run reproduces it)."""
        win = self.win
        path = Path(path)
        try:
            request = sessions.rerun_from_sidecar(path)
            check_params(request.params, str(path), "params", self.doc.param_limits())
        except MaskPixError as exc:
            win.banner.show_message(str(exc), "error")
            return False
        if not win.opener.keep_work_before(f"loading {path.name}"):
            return False

        def apply() -> None:
            win.opener.show_image(request.image, None, name=f"{path.stem} (re-run)")
            win.canvas.set_mask(request.mask, text="Mask from export", undoable=False)
            win.edit_panel.set_params(request.params)
            win.edit_panel.seed_lock.setChecked(True)

        if not self.apply_atomically(str(path), apply):
            return False
        win.banner.show_message(
            f"Loaded the image, mask and settings of {path.name}: Run edit reproduces it "
            f"(seed {request.params.seed}).",
            "info",
        )
        return True
