"""Several open images: the filmstrip's documents (a Qt-free ``Workspace``).

Switching puts the document on show away as a :class:`~maskpix_desktop.core.session.Session` (its results
moved to disk by a :class:`~maskpix_desktop.core.result_store.ResultStore` that keeps none in memory) and
shows the chosen one: a new document id, so the jobs of the one put away are cancelled and their messages
dropped, exactly as when another image is opened. A queued file is decoded when first chosen. The
mask's undo history, SAM candidates and auto mask of an image put away wait in a
:class:`~maskpix_desktop.ui.kept_views.KeptViews`; its autosave goes with it (the
:class:`~maskpix_desktop.ui.autosave_controller.AutosaveController` keeps one per image with unsaved
work). Closing an image asks Save / Discard / Cancel first when it holds unsaved work; after the last
one the start screen shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QMainWindow

from maskpix_desktop.core.result_store import ResultStore
from maskpix_desktop.core.session.workspace import OpenDocument, Workspace
from maskpix_desktop.ui.filmstrip import STRIP_ICON, file_icon, set_history_icons, thumbnail_icon
from maskpix_desktop.ui.kept_views import KeptViews

__all__ = ["StripController"]


class StripController(QObject):
    """Keeps the workspace and the filmstrip in step with the document on show."""

    def __init__(self, win: QMainWindow, store: ResultStore | None = None):
        super().__init__(win)
        self.win, self.doc = win, win.document
        self.workspace = Workspace()
        #: Results of the documents not on show: every one of them on disk (memory-mapped).
        self.store = store if store is not None else ResultStore(keep=0)
        self._icons: dict[int, QIcon] = {}
        self.kept = KeptViews(win)
        self._switching = False
        win.filmstrip.chosen.connect(self.switch_to)
        win.filmstrip.closeRequested.connect(self.close)
        win.results.resultShown.connect(
            lambda _r: set_history_icons(win.results.history_list, self.doc.data.history)
        )
        self.doc.titleChanged.connect(self.refresh)
        self.doc.changed.connect(self._relabel_current)

    # ------------------------------------------------------------------ the strip
    def shown(self, path: Path | None, name: str) -> None:
        """A new image is on show (opened, a project, a re-run): it replaces the current entry."""
        if self._switching:
            return
        i = self.workspace.show(path, name)
        self._icons[id(self.workspace.documents[i])] = thumbnail_icon(self.doc.data.image, STRIP_ICON)
        self.refresh()

    def queue(self, paths: Iterable[str | Path]) -> int:
        """Add image files to the strip without opening them; returns how many were added."""
        added = self.workspace.queue(Path(p) for p in paths)
        for i in added:
            doc = self.workspace.documents[i]
            self._icons[id(doc)] = file_icon(doc.path, STRIP_ICON) if doc.path else QIcon()
        self.refresh()
        return len(added)

    def add_recovered(self, path: Path) -> bool:
        """Add the autosave ``path`` of an image that was not on show as a recovered image of the strip
        (not shown; its own autosave keeps it); False, with the banner saying why, if it cannot be read."""
        s = self.win.projects.read(path)
        if s is None:
            return False
        image_path = Path(s.image_path) if s.image_path else None
        doc = OpenDocument(
            image_path, s.image_name, s, modified=True, unsaved=True, recovered=True, opened=True
        )
        self.workspace.add(doc)
        self._icons[id(doc)] = thumbnail_icon(s.image, STRIP_ICON) if s.image is not None else QIcon()
        self.win.autosaves.keep_away(id(doc), s)
        self.refresh()
        return True

    def refresh(self) -> None:
        """Labels (``*`` on modified documents), tooltips and icons of the strip."""
        if self._switching:  # half-way: the document model still holds the previous image's flags
            return
        ws = self.workspace
        live = [id(d) for d in ws.documents]  # a closed or replaced document's icon and history go
        self._icons = {k: v for k, v in self._icons.items() if k in live}
        self.kept.keep_only(live)
        self.win.autosaves.keep_only(set(live))
        entries = []
        for i, d in enumerate(ws.documents):
            if i == ws.current:  # its flags live in the document model while it is on show
                d.unsaved, d.project_path = self.doc.has_unsaved_work(), self.doc.project_path
            entries.append((d.label(), str(d.path) if d.path else d.label(), self._icons.get(id(d), QIcon())))
        self.win.filmstrip.set_entries(entries, ws.current)

    def _relabel_current(self) -> None:
        """A change to the document on show: its ``*`` (a cheap update, this runs on every stroke)."""
        d, item = self.workspace.current_document(), self.win.filmstrip.currentItem()
        if d is None or item is None or self._switching:
            return
        d.unsaved = self.doc.has_unsaved_work()
        if item.text() != d.label():
            item.setText(d.label())

    def keep_all_before(self, action: str) -> bool:
        """Save / Discard / Cancel for every open image with unsaved work, each shown while it is asked
        about (e.g. before quitting); True means go ahead, False (Cancel) stops at that image."""
        if not self.win.opener.keep_work_before(action):
            return False
        for doc in self.workspace.unsaved():
            if doc not in self.workspace.documents:
                continue
            if not self.switch_to(self.workspace.documents.index(doc)):
                return False
            if not self.win.opener.keep_work_before(action):
                return False
        return True

    def documents(self) -> list[OpenDocument]:
        return list(self.workspace.documents)

    # ------------------------------------------------------------------ switching
    def switch_to(self, index: int) -> bool:
        """Show document ``index``; the one on show is kept (nothing is asked, nothing is lost).

        A queued file that cannot be decoded leaves everything as it was (the banner says why).
        """
        ws, doc = self.workspace, self.doc
        if index == ws.current or not 0 <= index < len(ws):
            return index == ws.current
        before = ws.current
        session = doc.session()
        ws.put_away(
            session,
            project_path=doc.project_path,
            modified=doc.modified,
            unsaved=doc.has_unsaved_work(),
            recovered=doc.recovered,
        )
        self.store.keep_newest(session.history)
        key = id(ws.documents[before])
        self.kept.keep(key)
        self.win.autosaves.put_away(key, session, ws.documents[before].unsaved)
        if self._show(index):
            return True
        ws.take(before)  # nothing was replaced: the previous document is still on show
        self.kept.give_back(key)
        self.win.autosaves.bring_back(key)
        self.refresh()
        return False

    def _show(self, index: int) -> bool:
        """Put document ``index`` on the screen in place of what is there (False: its file is unreadable)."""
        ws, win, doc = self.workspace, self.win, self.doc
        self._switching = True
        try:
            target, kept = ws.take(index)
            win.autosaves.bring_back(id(target))
            if kept is None:
                if target.path is None or not win.opener.open_image(target.path, ask=False):
                    return False
                target.opened = True
                self._icons[id(target)] = thumbnail_icon(doc.data.image, STRIP_ICON)
            else:
                win.projects.restore_session(kept)
                doc.project_path, doc.recovered = target.project_path, target.recovered
                doc.modified = target.modified
                self.kept.give_back(id(target))
        finally:
            self._switching = False
        win.update_title()
        self.refresh()
        return True

    # ------------------------------------------------------------------ closing
    def close_current(self) -> bool:
        """File > Close image: close the image on show."""
        return self.close(self.workspace.current) if self.workspace.current >= 0 else False

    def close(self, index: int) -> bool:
        """Close image ``index``; False if Cancel was chosen (then nothing is closed).

        Unsaved work is asked about first (Save / Discard / Cancel), the image shown while it is asked.
        The image on show gives way to its neighbour, another one leaves the screen as it was; after the
        last one the start screen shows.
        """
        ws = self.workspace
        if not 0 <= index < len(ws):
            return False
        target, back = ws.documents[index], ws.current_document()
        if index == ws.current or target.unsaved:
            action = f"closing {target.display_name()}"
            if not self.switch_to(index) or not self.win.opener.keep_work_before(action):
                if back is not None and back is not target:
                    self.switch_to(ws.documents.index(back))
                return False
        on_show = target is ws.current_document()
        nxt = ws.close(ws.documents.index(target))
        self.win.autosaves.forget(id(target), on_show)
        if on_show:
            if back is not None and back is not target:
                nxt = ws.documents.index(back)
            while nxt >= 0 and not self._show(nxt):  # an unreadable queued file: dropped (the banner says)
                nxt = ws.close(nxt)
            if nxt < 0:
                self._show_start_screen()
        self.refresh()
        return True

    def _show_start_screen(self) -> None:
        """No image left: an empty document, a fresh autosave and the start screen."""
        self.win.projects.show_empty()
        self.win.autosaves.bring_back(None)
