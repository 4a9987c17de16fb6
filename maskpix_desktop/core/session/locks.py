"""OS file locks a dead process drops, crash markers, and the leftovers of an autosave slot."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "BLOB_SUFFIX",
    "read_marker",
    "remove_temp_files",
    "same_file",
    "stale_lock",
    "try_lock",
    "unlink_quietly",
]

BLOB_SUFFIX = ".blobs"  # session.maskpix keeps its arrays in session.blobs/ (written once each)
LOCK_OFFSET = 1 << 20  # Windows locks a byte range; lock one far beyond the marker's text


def try_lock(fd: int) -> bool:
    """Non-blocking exclusive lock on an open file; released by the OS when the process dies."""
    try:
        if os.name == "nt":  # pragma: no cover - exercised on Windows only
            import msvcrt

            os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            return False
        raise


def same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def stale_lock(lock: Path) -> Iterator[bool]:
    """Yield True while holding ``lock`` when nobody else holds it (its owner is gone), else False."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        yield False
        return
    try:
        yield try_lock(fd) and same_file(fd, lock)
    finally:
        os.close(fd)


def read_marker(lock: Path) -> dict[str, Any]:
    try:
        with open(lock, "rb") as fh:
            data = json.loads(fh.read(4096).decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):  # a marker is a hint only: never fatal
        return {}


def remove_temp_files(path: Path) -> None:
    """Remove what interrupted writes of ``path`` (an autosave slot) left: ``.<name>.*.tmp`` beside it
    and any temp file in its blobs folder. Only called by the slot's owner, so none is in use."""
    candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    blobs = path.with_suffix(BLOB_SUFFIX)
    with contextlib.suppress(OSError):
        candidates += list(blobs.glob(".*.tmp"))
    for tmp in candidates:
        unlink_quietly(tmp)


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
