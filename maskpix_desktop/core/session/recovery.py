"""Crash recovery: autosaves a dead session left behind, found, described, restored or kept aside."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import MaskPixError, ProjectError
from maskpix_desktop.core.session.codec import PROJECT_SUFFIX, embed_project, project_summary
from maskpix_desktop.core.session.locks import (
    BLOB_SUFFIX,
    read_marker,
    remove_temp_files,
    stale_lock,
    unlink_quietly,
)
from maskpix_desktop.paths import autosave_dir

__all__ = ["Recoverable", "Resolution", "discard_recoverable", "find_recoverable", "resolve_recoverable"]

log = logging.getLogger(__name__)

PREVIOUS_NAME = "previous"  # a declined autosave is kept once under this name
UNREADABLE_PREFIX = "unreadable-"  # an autosave that cannot be read is kept as unreadable-<time>.maskpix


@dataclass(frozen=True)
class Recoverable:
    """An autosave left behind by a session that did not exit cleanly."""

    path: Path
    lock: Path
    saved: float  # mtime of the autosave
    marker: dict[str, Any]

    def describe(self) -> str:
        """One line for the restore question: when it was saved and what it holds (never raises)."""
        try:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved))
        except (OverflowError, OSError, ValueError):
            when = "at an unknown time"
        try:
            manifest = project_summary(self.path)
        except ProjectError:
            return f"autosaved {when} (it looks damaged)"
        name = (manifest.get("image") or {}).get("name") or "an image"
        n = len(manifest.get("history") or [])
        results = f", {n} result{'s' if n != 1 else ''}" if n else ""
        return f"{name}{results}, autosaved {when}"


def find_recoverable(folder: str | os.PathLike | None = None) -> list[Recoverable]:
    """Autosaves whose marker is still there but whose process is gone (newest first).

    Markers of sessions still running (locked by another process) are skipped; a stale marker without an
    autosave beside it is removed.
    """
    root = Path(folder) if folder is not None else autosave_dir()
    found = []
    try:
        locks = sorted(root.glob("*.lock"))
    except OSError:
        return []
    for lock in locks:
        path = lock.with_suffix(PROJECT_SUFFIX)
        try:
            with stale_lock(lock) as stale:
                if not stale:
                    continue
                marker = read_marker(lock)
                if not path.is_file():
                    unlink_quietly(lock)
                    continue
                saved = path.stat().st_mtime
        except OSError as exc:  # an odd marker must not stop the app from starting
            log.warning("skipping the autosave marker %s: %s", lock, exc)
            continue
        found.append(Recoverable(path, lock, saved, marker))
    found.sort(key=lambda r: r.saved, reverse=True)
    return found


@dataclass(frozen=True)
class Resolution:
    """What became of an answered autosave: ``kept`` is where a copy was kept (None: restored, nothing
    kept); ``problem`` says why it could not be read (then ``kept`` is an ``unreadable-<time>`` file)."""

    kept: Path | None = None
    problem: str | None = None


def resolve_recoverable(rec: Recoverable, *, keep_copy: bool = False) -> Resolution:
    """The user answered: drop ``rec``'s marker (it will not be offered again).

    With ``keep_copy`` (declined, or restoring failed) the autosave is kept: as a self-contained
    ``previous.maskpix`` (``previous-N`` for slot ``session-N``) beside it when it can be read, else moved
    aside, with its blobs folder, to ``unreadable-<time>.maskpix`` (never overwriting an earlier one), so the
    next autosave cannot touch it. Never raises for a damaged autosave.
    """
    result = Resolution()
    with stale_lock(rec.lock) as stale:
        if not stale:
            return result  # someone else took it over meanwhile
        blobs = rec.path.with_suffix(BLOB_SUFFIX)
        if keep_copy:
            previous = rec.path.with_name(previous_name(rec.path))
            try:  # self-contained: the blobs folder will be reused and pruned by the next autosave
                embed_project(rec.path, previous)
                unlink_quietly(rec.path)
                result = Resolution(kept=previous)
            except MaskPixError as exc:
                log.warning("keeping the unreadable autosave aside: %s", exc)
                result = Resolution(kept=_set_aside(rec.path), problem=str(exc))
            except Exception as exc:  # e.g. the disk is full while writing previous.maskpix
                log.exception("could not copy the autosave %s", rec.path)
                result = Resolution(kept=_set_aside(rec.path), problem=f"{type(exc).__name__}: {exc}")
        remove_temp_files(rec.path)
        if result.problem is None:  # else the blobs went aside with the autosave
            shutil.rmtree(blobs, ignore_errors=True)
        if os.name != "nt":
            unlink_quietly(rec.lock)
    if os.name == "nt":  # pragma: no cover - an open file cannot be removed on Windows
        unlink_quietly(rec.lock)
    return result


def previous_name(path: Path) -> str:
    """Where a declined autosave is kept: ``previous.maskpix`` for ``session.maskpix``, ``previous-2.maskpix``
    for ``session-2.maskpix`` (several open images: one each)."""
    _, dash, slot = path.stem.partition("-")
    return PREVIOUS_NAME + (f"-{slot}" if dash and slot else "") + PROJECT_SUFFIX


def _set_aside(path: Path) -> Path | None:
    """Move an unreadable autosave (and its blobs folder) to ``unreadable-<time>``; where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        stem = f"{UNREADABLE_PREFIX}{stamp}" + ("" if i == 1 else f"-{i}")
        target = path.with_name(stem + PROJECT_SUFFIX)
        if target.exists() or target.with_suffix(BLOB_SUFFIX).exists():
            continue
        try:
            os.replace(path, target)
        except OSError as exc:
            log.warning("could not move %s aside: %s", path, exc)
            return path if path.exists() else None
        with contextlib.suppress(OSError):
            os.replace(path.with_suffix(BLOB_SUFFIX), target.with_suffix(BLOB_SUFFIX))
        return target
    return path


def discard_recoverable(rec: Recoverable) -> Resolution:
    """Declined: keep the autosave as ``previous.maskpix`` (or set it aside if unreadable); forget the
    marker."""
    return resolve_recoverable(rec, keep_copy=True)
