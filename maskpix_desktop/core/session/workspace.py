"""The open images of one window: an ordered list of documents, one of them on show (the filmstrip).

Each :class:`OpenDocument` is Qt-free data: the file, and while it is not on show its :class:`Session`
(image, mask, prompts, parameters, results) plus the flags the window shows (project, modified). The one on
show has ``session=None``: its state is in the window's document until it is put away again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from maskpix_desktop.core.session.document import Session

__all__ = ["OpenDocument", "Workspace"]


@dataclass
class OpenDocument:
    """One image of the strip. ``session`` None: on show, or queued (never opened yet)."""

    path: Path | None
    name: str = ""
    session: Session | None = None
    project_path: Path | None = None
    modified: bool = False
    unsaved: bool = False  # changes that exist nowhere else (a mask, prompts, results...)
    recovered: bool = False
    opened: bool = False  # shown at least once (a queued file has not been decoded yet)

    def display_name(self) -> str:
        """The image's name: the one given, else the file name ("untitled" without either)."""
        return self.name or (self.path.name if self.path is not None else "untitled")

    def label(self) -> str:
        """The name the strip shows, ``*`` when it holds unsaved work."""
        return self.display_name() + (" *" if self.unsaved else "")


class Workspace:
    """Documents in strip order and the index of the one on show (-1: none)."""

    def __init__(self) -> None:
        self.documents: list[OpenDocument] = []
        self.current = -1

    def __len__(self) -> int:
        return len(self.documents)

    def current_document(self) -> OpenDocument | None:
        return self.documents[self.current] if 0 <= self.current < len(self.documents) else None

    def index_of(self, path: Path) -> int:
        """The index of the document of ``path`` (-1 if none)."""
        return next((i for i, d in enumerate(self.documents) if d.path == path), -1)

    def show(self, path: Path | None, name: str = "") -> int:
        """A new image replaces the one on show (or becomes the first); returns its index.

        A path already in the strip elsewhere is not listed twice: that entry is dropped.
        """
        doc = OpenDocument(path, name, opened=True)
        other = self.index_of(path) if path is not None else -1
        if self.current_document() is None:
            self.documents.append(doc)
            self.current = len(self.documents) - 1
        else:
            self.documents[self.current] = doc
        if other >= 0 and other != self.current:
            del self.documents[other]
            self.current -= other < self.current
        return self.current

    def queue(self, paths: Iterable[Path]) -> list[int]:
        """Add files after the last one (those already listed are skipped); returns the new indices."""
        added = []
        for path in paths:
            if self.index_of(path) < 0:
                self.documents.append(OpenDocument(path))
                added.append(len(self.documents) - 1)
        return added

    def add(self, doc: OpenDocument) -> int:
        """Append ``doc`` (e.g. a recovered image, with its session) after the last one; its index."""
        self.documents.append(doc)
        return len(self.documents) - 1

    def put_away(
        self, session: Session, *, project_path: Path | None, modified: bool, unsaved: bool, recovered: bool
    ) -> None:
        """The document on show leaves the screen: keep its state and flags."""
        doc = self.current_document()
        if doc is None:
            return
        doc.session, doc.project_path, doc.recovered = session, project_path, recovered
        doc.modified, doc.unsaved = modified, unsaved

    def take(self, index: int) -> tuple[OpenDocument, Session | None]:
        """Make ``index`` the document on show; its kept state is handed over (and no longer held here).

        Returns the document and its session (None for a file that was only queued).
        """
        if not 0 <= index < len(self.documents):
            raise IndexError(f"no document #{index} (the strip holds {len(self.documents)})")
        self.current = index
        doc = self.documents[index]
        session, doc.session = doc.session, None
        return doc, session

    def close(self, index: int) -> int:
        """Remove document ``index``; returns the index to show now (-1: none left).

        Closing the one on show leaves none on show (``current`` -1) and returns its neighbour: the next
        one, or the previous one when it was the last. Closing another keeps the one on show.
        """
        if not 0 <= index < len(self.documents):
            raise IndexError(f"no document #{index} (the strip holds {len(self.documents)})")
        del self.documents[index]
        if index == self.current:
            self.current = -1
            return min(index, len(self.documents) - 1)
        self.current -= index < self.current
        return self.current

    def unsaved(self) -> list[OpenDocument]:
        """Documents not on show that hold changes saved nowhere."""
        return [d for i, d in enumerate(self.documents) if i != self.current and d.unsaved]
