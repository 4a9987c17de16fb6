"""Older edit results on disk: their arrays become read-only memory maps of ``.npy`` files.

A 24 MP result holds ~340 MB of arrays (baseline, blended, edit, the float mask used, the user's mask).
:class:`ResultStore` writes those of older results to a private folder under the data folder
(``<data>/results/session-*``) on a background thread, then points the result's fields at memory maps of
the files. Every holder of the :class:`EditResult` (history, project save, export) still reads plain
read-only arrays with the same values; pages are read from disk when used and the kernel may drop them
again, so they no longer count as the process's own memory. Folders of sessions that ended without
cleaning up (a crash) are removed when a later store starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop import paths
from maskpix_desktop.core.jobs import EditResult

__all__ = ["SPILLED_FIELDS", "ResultStore", "is_spilled", "result_nbytes"]

log = logging.getLogger(__name__)

#: (owner, field) of the arrays a store writes: the result's own and the request's mask.
SPILLED_FIELDS = (
    ("result", "baseline"),
    ("result", "blended"),
    ("result", "edit"),
    ("result", "mask_used"),
    ("request", "mask"),
)
_PREFIX = "session-"
_STALE_S = 2 * 24 * 3600  # where a folder's owner cannot be checked (Windows): older folders go


def _owner(result: EditResult, which: str) -> Any:
    return result if which == "result" else result.request


def is_spilled(result: EditResult) -> bool:
    """True when every array a store writes is a memory map (or absent)."""
    return all(
        not isinstance(a := getattr(_owner(result, o), f), np.ndarray) or isinstance(a, np.memmap)
        for o, f in SPILLED_FIELDS
    )


def result_nbytes(result: EditResult, *, in_memory_only: bool = True) -> int:
    """Bytes of the result's distinct arrays (memory maps left out unless ``in_memory_only`` is False)."""
    seen: set[int] = set()
    total = 0
    for o, f in SPILLED_FIELDS:
        a = getattr(_owner(result, o), f)
        if isinstance(a, np.ndarray) and id(a) not in seen:
            seen.add(id(a))
            if not (in_memory_only and isinstance(a, np.memmap)):
                total += a.nbytes
    return total


class ResultStore:
    """Keeps the newest ``keep`` results in memory; :meth:`keep_newest` moves the others to disk.

    Writes run on one background thread (``flush()`` waits for them); the folder is made on first use and
    removed by :meth:`close` (or when the store is garbage-collected / the process exits).
    """

    def __init__(self, root: Path | None = None, keep: int = 2):
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self.root = Path(root) if root is not None else paths.data_dir() / "results"
        self.keep = keep
        self._folder: Path | None = None
        self._lock = threading.Lock()
        self._dirs: dict[int, Path] = {}  # id(result) -> its folder, while written or on disk
        self._alive: dict[int, EditResult] = {}  # results this store is responsible for
        self._pending: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None
        self._count = 0
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------------------------------ API
    @property
    def folder(self) -> Path | None:
        """This session's folder (None until something was written)."""
        return self._folder

    def keep_newest(self, results: Iterable[EditResult], *, wait: bool = False) -> int:
        """Move every result but the last ``keep`` to disk (those already there are skipped).

        Returns how many writes were queued; ``wait`` blocks until they are done.
        """
        items = list(results)
        older = items[: max(len(items) - self.keep, 0)]
        queued = 0
        for result in older:
            if self._queue(result):
                queued += 1
        if wait:
            self.flush()
        return queued

    def spill(self, result: EditResult) -> None:
        """Write ``result``'s arrays now (this thread) and point it at the memory maps."""
        if self._claim(result):
            self._write(result)

    def flush(self) -> None:
        """Wait for the queued writes (their errors are logged, the results then stay in memory)."""
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            for fut in pending:
                fut.result()

    def forget(self, results: Iterable[EditResult]) -> None:
        """The results left the history: delete their files (a write still running deletes its own)."""
        for result in results:
            with self._lock:
                self._alive.pop(id(result), None)
                folder = self._dirs.pop(id(result), None)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)  # Windows: a mapped file stays until close()

    def close(self) -> None:
        """Wait for writes, then delete the folder (results already on disk keep their open maps)."""
        self.flush()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            self._alive.clear()
            self._dirs.clear()
        if self._finalizer is not None:
            self._finalizer()

    # ------------------------------------------------------------------------------------ internals
    def _claim(self, result: EditResult) -> bool:
        with self._lock:
            if id(result) in self._dirs or is_spilled(result):
                return False
            self._alive[id(result)] = result
            self._dirs[id(result)] = self._new_dir()
            return True

    def _queue(self, result: EditResult) -> bool:
        if not self._claim(result):
            return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="maskpix-results")
        fut = self._pool.submit(self._write_logged, result)
        with self._lock:
            self._pending.append(fut)
        return True

    def _write_logged(self, result: EditResult) -> None:
        try:
            self._write(result)
        except Exception:  # disk full, folder removed: the result simply stays in memory
            log.exception("could not move an edit result to disk")
            with self._lock:
                folder = self._dirs.pop(id(result), None)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def _write(self, result: EditResult) -> None:
        with self._lock:
            folder = self._dirs.get(id(result))
        if folder is None:
            return
        maps: dict[int, np.memmap] = {}  # one file per distinct array (edit is often the baseline)
        swaps: list[tuple[Any, str, np.memmap]] = []
        for which, name in SPILLED_FIELDS:
            owner = _owner(result, which)
            arr = getattr(owner, name)
            if not isinstance(arr, np.ndarray) or isinstance(arr, np.memmap):
                continue
            if id(arr) not in maps:
                path = folder / f"{which}.{name}.npy"
                np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
                maps[id(arr)] = np.load(path, mmap_mode="r", allow_pickle=False)
            swaps.append((owner, name, maps[id(arr)]))
        with self._lock:
            if id(result) not in self._alive:  # forgotten meanwhile: nothing to swap, files go
                self._dirs.pop(id(result), None)
                shutil.rmtree(folder, ignore_errors=True)
                return
            for owner, name, mm in swaps:
                object.__setattr__(owner, name, mm)  # frozen dataclasses; same values, read-only

    def _new_dir(self) -> Path:
        if self._folder is None:
            self.root.mkdir(parents=True, exist_ok=True)
            _remove_stale(self.root)
            self._folder = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=self.root))
            (self._folder / "pid").write_text(str(os.getpid()))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._folder), True)
        self._count += 1
        d = self._folder / f"r{self._count:04d}"
        d.mkdir()
        return d


def _remove_stale(root: Path) -> None:
    """Delete ``session-*`` folders whose process is gone (POSIX) or that are old (elsewhere)."""
    for d in root.glob(f"{_PREFIX}*"):
        try:
            pid = int((d / "pid").read_text())
        except (OSError, ValueError):
            pid = None
        if pid is not None and pid != os.getpid() and sys.platform != "win32":
            stale = not _pid_alive(pid)
        else:
            try:
                stale = pid != os.getpid() and time.time() - d.stat().st_mtime > _STALE_S
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(d, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True
