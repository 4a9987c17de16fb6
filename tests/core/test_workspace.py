"""The filmstrip's documents without Qt: show, queue, put away, take back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.core.session import Session
from maskpix_desktop.core.session.workspace import OpenDocument, Workspace


def test_show_queue_put_away_and_take_back():
    ws = Workspace()
    assert ws.current_document() is None and len(ws) == 0
    assert ws.show(Path("a.png")) == 0
    assert ws.queue([Path("b.png"), Path("a.png"), Path("c.png")]) == [1, 2]  # a.png is listed already
    assert [d.path.name for d in ws.documents] == ["a.png", "b.png", "c.png"]
    assert [d.opened for d in ws.documents] == [True, False, False]

    kept = Session(image=np.zeros((2, 3, 3), np.uint8), mask=np.full((2, 3), 255, np.uint8))
    ws.put_away(kept, project_path=Path("a.maskpix"), modified=True, unsaved=True, recovered=False)
    doc, session = ws.take(2)
    assert ws.current == 2 and session is None and doc.path == Path("c.png")  # only queued
    assert [d.label() for d in ws.unsaved()] == ["a.png *"]

    doc, session = ws.take(0)
    assert session is kept and doc.session is None  # handed over, no longer held twice
    assert doc.project_path == Path("a.maskpix") and doc.modified
    with pytest.raises(IndexError):
        ws.take(3)


def test_showing_a_listed_file_replaces_the_current_entry_without_a_duplicate():
    ws = Workspace()
    ws.show(Path("a.png"))
    ws.queue([Path("b.png"), Path("c.png")])
    ws.take(2)
    assert ws.show(Path("a.png")) == 1  # c.png is replaced by a.png, whose old entry goes
    assert [d.path.name for d in ws.documents] == ["b.png", "a.png"]
    assert ws.current_document().path == Path("a.png")
    assert ws.show(None, "photo (re-run)") == 1
    assert ws.current_document().label() == "photo (re-run)"
    assert ws.current_document().display_name() == "photo (re-run)"
    ws.current_document().unsaved = True
    assert ws.current_document().label() == "photo (re-run) *"
    assert ws.documents[0].display_name() == "b.png" and OpenDocument(None).display_name() == "untitled"


def _three(current: int) -> Workspace:
    ws = Workspace()
    ws.show(Path("a.png"))
    ws.queue([Path("b.png"), Path("c.png")])
    ws.take(current)
    return ws


def _names(ws: Workspace) -> list[str]:
    return [d.path.name for d in ws.documents]


def test_closing_before_the_current_one_keeps_it_on_show():
    ws = _three(current=2)
    assert ws.close(0) == 1
    assert _names(ws) == ["b.png", "c.png"] and ws.current == 1
    assert ws.current_document().path == Path("c.png")


def test_closing_after_the_current_one_keeps_its_index():
    ws = _three(current=1)
    assert ws.close(2) == 1
    assert _names(ws) == ["a.png", "b.png"] and ws.current_document().path == Path("b.png")


def test_closing_the_current_one_offers_the_next_then_the_previous_then_none():
    ws = _three(current=1)
    assert ws.close(1) == 1  # c.png moved into its place
    assert _names(ws) == ["a.png", "c.png"] and ws.current == -1 and ws.current_document() is None
    ws.take(1)
    assert ws.close(1) == 0  # the last one: its previous neighbour
    assert _names(ws) == ["a.png"] and ws.current == -1
    ws.take(0)
    assert ws.close(0) == -1 and len(ws) == 0 and ws.current == -1
    with pytest.raises(IndexError):
        ws.close(0)
