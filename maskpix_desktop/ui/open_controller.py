"""Opening images: File > Open, drops, recent files and samples; Save / Discard / Cancel before unsaved
work is replaced. A ``.maskpix`` path goes to the project controller."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMainWindow

from maskpix_desktop.core import images
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.ui import questions

__all__ = ["IMAGE_FILTER", "MAX_RECENT", "OpenController"]

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.tif *.tiff *.bmp *.gif);;All files (*)"
MAX_RECENT = 10


class OpenController(QObject):
    """Puts a decoded image into the document; remembers the recent files (settings ``files/recent``)."""

    def __init__(self, win: QMainWindow):
        super().__init__(win)
        self.win = win
        self.doc = win.document

    # ------------------------------------------------------------------ unsaved work
    def keep_work_before(self, action: str) -> bool:
        """Save / Discard / Cancel before ``action`` replaces unsaved work; True means go ahead."""
        if not self.doc.has_unsaved_work():
            return True
        answer = self.win.hook("ask_save_changes")(self.win, action)
        if answer == questions.SAVE:
            return self.win.projects.save_project(wait=True)
        return answer == questions.DISCARD

    # ------------------------------------------------------------------ images
    def open_dialog(self) -> None:
        if not self.keep_work_before("opening another image"):
            return
        path = self.doc.image_path
        start = str(path.parent) if path else str(Path.home())
        chosen, _ = QFileDialog.getOpenFileNames(self.win, "Open images", start, IMAGE_FILTER)
        if chosen:
            self.open_images(chosen, ask=False)

    def open_images(self, paths: list[str | Path], *, ask: bool = True) -> bool:
        """Open the first file; queue the other images in the filmstrip (projects among them are left)."""
        if not paths or not self.open_image(paths[0], ask=ask):
            return False
        rest = [Path(p) for p in paths[1:]]
        queued = [p for p in rest if p.suffix.lower() != sessions.PROJECT_SUFFIX]
        self.win.strip.queue(queued)
        if len(queued) < len(rest):
            self.win.statusBar().showMessage(
                f"Opened {Path(paths[0]).name}; projects open one at a time: "
                f"{len(rest) - len(queued)} not opened.",
                8000,
            )
        return True

    def open_image(self, path: str | Path, *, ask: bool = True) -> bool:
        """Load an image into the canvas; a bad file gives a message and changes nothing.

        A ``.maskpix`` path opens as a project. ``ask``: Save / Discard / Cancel first when the current
        document has unsaved work (Cancel returns False and changes nothing).
        """
        win = self.win
        path = Path(path)
        if path.suffix.lower() == sessions.PROJECT_SUFFIX:
            return win.projects.open_project(path, ask=ask)
        try:
            image = images.load_image(path)
        except MaskPixError as exc:
            win.banner.show_message(str(exc), "error")
            win.statusBar().showMessage(f"Could not open {path.name}", 5000)
            return False
        except MemoryError:
            win.banner.show_message(f"Cannot open '{path}': not enough memory to decode it.", "error")
            return False
        if ask and not self.keep_work_before(f"opening {path.name}"):
            return False
        self.doc.set_history([])  # the history is per image: the new one starts without results
        self.doc.project_path, self.doc.recovered = None, False  # Ctrl+S must not write it into a project
        self.show_image(image, path)
        h, w = image.shape[:2]
        win.statusBar().showMessage(f"Opened {path.name} ({w}×{h})", 5000)
        win.banner.hide()
        self.add_recent(path)
        return True

    def show_image(self, image: np.ndarray, path: Path | None, name: str = "") -> None:
        """Put a decoded image on the canvas (empty mask, no prompts) and start its SAM encoding."""
        win, doc = self.win, self.doc
        doc.new_document()
        doc.image_path = path
        doc.image_name = path.name if path is not None else name
        win.canvas.set_image(image)
        doc.set_image(win.canvas.image())
        win.empty_hint.hide()
        win.segments.forget()
        win.automasks.forget()  # its prompts and masks belong to the previous image
        win.tabs.setCurrentIndex(0)
        win.strip.shown(path, doc.image_name)
        win.update_title()
        doc.mark_changed()
        win.segments.encode()

    def open_dropped(self, paths: list[str]) -> bool:
        """Files dropped on the canvas or the window: the first one opens (a project as a project), the
        other images wait in the filmstrip."""
        if not paths:
            return False
        path = Path(paths[0])
        if path.suffix.lower() == sessions.PROJECT_SUFFIX:
            return self.win.projects.open_project(path, wait=False)  # read on the file thread
        return self.open_images(paths)

    # ------------------------------------------------------------------ recent files
    def add_recent(self, path: Path) -> None:
        recent = [p for p in self.recent() if p != str(path)]
        recent.insert(0, str(path))
        self.win.settings.setValue("files/recent", json.dumps(recent[:MAX_RECENT]))
        self.refresh_recent()

    def recent(self) -> list[str]:
        try:
            return list(json.loads(self.win.settings.value("files/recent", "[]")))
        except (TypeError, ValueError):
            return []

    def refresh_recent(self) -> None:
        """File > Open recent and the start screen list the recent files."""
        menu = self.win.recent_menu
        menu.clear()
        for p in self.recent():
            menu.addAction(p, lambda p=p: self.win.open_image(p))
        menu.setEnabled(bool(self.recent()))
        self.win.start_screen.set_recent(self.recent())
