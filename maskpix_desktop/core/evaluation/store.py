"""The evaluation's on-disk state: append-only JSONL result rows (one ``shard-{rank}.jsonl`` per process,
then the merged ``results.jsonl``), the output folder's file names and its OS lock.

Qt-free and torch-free. Rows are read tolerantly: a torn last line (a kill mid-write, even inside a
multi-byte UTF-8 character), a line that is not UTF-8 or not JSON, and a row whose fields have the wrong
type are skipped with a warning naming the file, line and field, so the (item, mode) pair is simply
run again. Lines are split on ``\\n`` only (a row may hold U+2028 or U+0085 in its text).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.export import json_number, json_safe
from maskpix_desktop.core.metric_catalog import upgrade_eval_metrics
from maskpix_desktop.core.session.locks import try_lock

log = logging.getLogger(__name__)

LOCK_NAME = "eval.lock"
RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
PLOT_PNG = "distributions.png"
GRID_PNG = "grid.png"
CONFIG_JSON = "eval-config.json"
ITEMS_DIR = "items"
SHARD_GLOB = "shard-*.jsonl"

# field -> the JSON types it may have (None: null allowed); "item", "mode" are required.
_ROW_FIELDS: dict[str, tuple[type | None, ...]] = {
    "item": (str,),
    "mode": (str,),
    "status": (str,),
    "error": (str, None),
    "dataset": (str,),
    "edit_type": (str,),
    "instruction": (str,),
    "prompt": (str, None),
    "metrics": (dict,),
    "missing": (dict,),
    "files": (dict,),
    "config": (dict,),
    "finished_at": (int, float, None),
    "run_s": (int, float, None),
}


def json_kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r:.40}"


def _row_problem(row: Any) -> str | None:
    """Why ``row`` is not a usable result row (None when it is)."""
    if not isinstance(row, dict):
        return f"the line is {json_kind(row)}, not a JSON object"
    for name, types in _ROW_FIELDS.items():
        if name not in row:
            if name in ("item", "mode"):
                return f"'{name}' is missing"
            continue
        value = row[name]
        ok = (value is None and None in types) or (
            value is not None and isinstance(value, tuple(t for t in types if t is not None))
        )
        if ok and isinstance(value, bool):
            ok = False  # JSON true/false is no number
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            return f"'{name}' is {_show(value)}"
    for key, value in (row.get("metrics") or {}).items():
        good = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not good and json_number(value) is value:
            return f"metric '{key}' is {_show(value)}, not a number"
    for section in ("missing", "files"):
        for key, value in (row.get(section) or {}).items():
            if not isinstance(value, str):
                return f"'{section}.{key}' is {json_kind(value)}, not text"
    for key, value in (row.get("files") or {}).items():
        p = PurePosixPath(value)
        if p.is_absolute() or ".." in p.parts or "\\" in value or ":" in value:
            return f"'files.{key}' = {value!r:.60} leaves the output folder"
    return None


def row_to_json(row: dict[str, Any]) -> str:
    """One line of strict JSON; ASCII-escaped when the row holds text UTF-8 cannot store (a surrogate)."""
    text = json.dumps(json_safe(row), sort_keys=True, allow_nan=False, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(json_safe(row), sort_keys=True, allow_nan=False)
    return text


def row_from_json(line: str | bytes) -> dict[str, Any]:
    """One row from its JSON line; ValueError (with the reason) for anything that is not a valid row."""
    if isinstance(line, bytes):
        line = line.decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        row = json.loads(line)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    problem = _row_problem(row)
    if problem:
        raise ValueError(problem)
    row["metrics"] = upgrade_eval_metrics({k: json_number(v) for k, v in (row.get("metrics") or {}).items()})
    if isinstance(row.get("missing"), dict):
        row["missing"] = upgrade_eval_metrics(row["missing"])  # older names (clip_score_region) read as now
    return row


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; unusable lines are skipped with a warning (file, line, reason)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("%s: cannot read it (%s); its rows are ignored", path, exc)
        return []
    rows = []
    lines = data.split(b"\n")
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(row_from_json(line))
        except ValueError as exc:
            torn = n == len(lines)  # no newline after it: a write cut short
            what = "a torn last line" if torn else "an unusable result row"
            if isinstance(exc, UnicodeDecodeError):
                exc = ValueError("not UTF-8 text")
            log.warning("%s:%d: skipping %s (%s); that (item, mode) is run again", path, n, what, exc)
    return rows


def repair_tail(path: Path) -> None:
    """Cut a torn last line (a kill mid-write) so the next append starts on a fresh line. Works on bytes:
    a line cut inside a multi-byte UTF-8 character is cut like any other."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        cut = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes)", path, size - cut)
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())


class JsonlAppender:
    """Append-only JSON lines; every row is flushed and fsynced before :meth:`append` returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fh = open(self.path, "a", encoding="utf-8", newline="\n")

    def append(self, row: dict[str, Any]) -> None:
        self._fh.write(row_to_json(row) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OutputLock:
    """An exclusive OS lock on ``<out>/eval.lock`` (``flock`` / ``msvcrt.locking``) for one evaluation
    run; the OS drops it when the process dies. The file holds the owner's pid, host and start time."""

    def __init__(self, out: Path, fd: int):
        self.path = Path(out) / LOCK_NAME
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, out: str | Path) -> OutputLock:
        """Take the lock, or raise :class:`MaskPixError` naming the run that holds it."""
        out = Path(out)
        path = out / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise MaskPixError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
        try:
            locked = try_lock(fd)
        except OSError as exc:
            os.close(fd)
            raise MaskPixError(f"cannot lock {path}: {exc.strerror or exc}") from None
        if not locked:
            os.close(fd)
            raise MaskPixError(
                f"another evaluation is writing to {out} ({_owner(path)}); wait for it to finish, "
                "or use another --out folder"
            )
        marker = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(marker).encode("utf-8"))
        except OSError:
            pass  # the marker is informative only; the lock is what counts
        return cls(out, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            info = json.loads(fh.read(4096).decode("utf-8"))
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {int(info['pid'])} on {info['host']}, started {when}"
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return f"its lock file is {path}"


def shard_path(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / f"shard-{rank}.jsonl"


def all_rows(out_dir: Path) -> list[dict[str, Any]]:
    """Every row in the folder: the merged results first, then each shard (any number of them)."""
    out_dir = Path(out_dir)
    rows = read_rows(out_dir / RESULTS_JSONL)
    for path in sorted(out_dir.glob(SHARD_GLOB)):
        rows += read_rows(path)
    return rows


def done_keys(out_dir: Path, *, retry_errors: bool = False) -> set[tuple[str, str]]:
    """(item, mode) pairs already finished in any shard (error rows too, unless ``retry_errors``)."""
    return done_in(all_rows(out_dir), retry_errors)


def done_in(rows: Iterable[dict[str, Any]], retry_errors: bool) -> set[tuple[str, str]]:
    ok = ("ok",) if retry_errors else ("ok", "error")
    return {(r["item"], r["mode"]) for r in rows if r.get("status") in ok}


__all__ = [
    "CONFIG_JSON",
    "GRID_PNG",
    "ITEMS_DIR",
    "LOCK_NAME",
    "PLOT_PNG",
    "RESULTS_CSV",
    "RESULTS_JSONL",
    "SHARD_GLOB",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "JsonlAppender",
    "OutputLock",
    "all_rows",
    "done_in",
    "done_keys",
    "json_kind",
    "read_rows",
    "repair_tail",
    "row_from_json",
    "row_to_json",
    "shard_path",
]
