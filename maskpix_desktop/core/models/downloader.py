"""The downloader: single files over HTTP (resumed, retried, sha256-checked) and Hugging Face snapshots.

huggingface_hub and tqdm are imported inside the functions that need them. Every failure raises
:class:`DownloadError` and leaves no unchecked final file.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maskpix_desktop import __version__
from maskpix_desktop.core.errors import DownloadError
from maskpix_desktop.core.models.hashing import sha256_file
from maskpix_desktop.core.models.local import (
    ENV_OFFLINE,
    _env_true,
    diffusers_folder_complete,
    fetch_command,
    is_present,
    local_path,
    sam2_folder_complete,
    transformers_folder_complete,
    vit_folder_complete,
)
from maskpix_desktop.core.models.registry import _FOLDER_KINDS, ModelFile, ModelSpec, config_spec, get_spec

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int | None], None]

#: Seconds a connect or a single read may stall before the attempt counts as failed.
DOWNLOAD_TIMEOUT_S = 30.0
#: Attempts per file (network errors and 5xx answers are retried, resuming from the ``.part`` file).
DOWNLOAD_RETRIES = 3
#: Pause before retry n is ``RETRY_BACKOFF_S * n`` seconds (interrupted by the cancel event).
RETRY_BACKOFF_S = 1.0
#: Bytes read per chunk; progress and cancel are checked once per chunk.
DOWNLOAD_CHUNK = 1 << 20


class _Retryable(Exception):
    """A transient failure: the next attempt resumes from the .part file."""


class _CancelledDownload(Exception):
    pass


_PATH_LOCKS: dict[str, threading.Lock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(str(path.resolve()), threading.Lock())


def download(
    name: str,
    models_dir: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    url_override: str | None = None,
) -> Path:
    """Fetch ``name`` into the model folder and return its local path; returns at once if already present.

    Single files stream into ``<file>.part`` (resumed with a Range request, ``DOWNLOAD_RETRIES`` attempts),
    are checked against the registry sha256 and only then renamed into place. ``progress(done, total)``
    gets bytes; ``cancel`` is checked between chunks. Every failure raises DownloadError and leaves no
    final file; a ``.part`` survives only a network failure, so the next try resumes.
    """
    spec = get_spec(name)
    dest = local_path(name, models_dir)
    if is_present(name, models_dir):
        return dest
    if _env_true(ENV_OFFLINE):
        raise DownloadError(
            f"Cannot download '{name}': offline mode is on ({ENV_OFFLINE}). Copy the weights to {dest} "
            f"or run '{fetch_command(name, models_dir)}' on a connected machine."
        )
    if spec.single_file:
        return _download_converted(spec, dest, progress=progress, cancel=cancel)
    if spec.kind in _FOLDER_KINDS:
        return _download_snapshot(spec, dest, progress=progress, cancel=cancel)
    mf = spec.files[0]
    url = url_override or mf.url
    with _lock_for(dest):
        if is_present(name, models_dir):  # another thread finished it meanwhile
            return dest
        _download_file(name, mf, url, dest, progress=progress, cancel=cancel)
    return dest


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _download_file(
    name: str,
    mf: ModelFile,
    url: str,
    dest: Path,
    *,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    last: BaseException | None = None
    for attempt in range(1, DOWNLOAD_RETRIES + 1):
        try:
            if cancel is not None and cancel.is_set():
                raise _CancelledDownload
            _fetch_into(url, part, mf.size_bytes, progress, cancel)
            break
        except _CancelledDownload:
            _remove(part)
            raise DownloadError(f"Download of '{name}' was cancelled; nothing was kept.") from None
        except _Retryable as exc:
            last = exc.__cause__ or exc
            log.warning("download %s attempt %d/%d failed: %s", url, attempt, DOWNLOAD_RETRIES, last)
            if attempt < DOWNLOAD_RETRIES and RETRY_BACKOFF_S > 0:
                if cancel is not None and cancel.wait(RETRY_BACKOFF_S * attempt):
                    _remove(part)
                    raise DownloadError(f"Download of '{name}' was cancelled; nothing was kept.") from None
                if cancel is None:
                    time.sleep(RETRY_BACKOFF_S * attempt)
    else:
        raise DownloadError(
            f"Could not download '{name}' from {url} after {DOWNLOAD_RETRIES} attempts: {last}. "
            f"Are you offline? MaskPix runs offline once the weights are present: copy {mf.filename} "
            f"to {dest}, or retry later (the partial file is kept and the download resumes)."
        ) from last

    size = part.stat().st_size
    if mf.size_bytes is not None and size != mf.size_bytes:
        _remove(part)
        raise DownloadError(
            f"Download of '{name}' from {url} has {size} bytes, expected {mf.size_bytes}; discarded."
        )
    if mf.sha256:
        actual = sha256_file(part)
        if actual != mf.sha256.lower():
            _remove(part)
            raise DownloadError(
                f"Checksum mismatch for '{name}' from {url}: expected sha256 {mf.sha256}, got {actual}. "
                "The file was discarded; the source may be corrupt or changed."
            )
    else:
        log.warning("no sha256 pinned for %s; saved without a checksum check", mf.filename)
    os.replace(part, dest)
    log.info("downloaded %s -> %s", url, dest)


def _content_range_total(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from a ``Content-Range: bytes a-b/total`` header."""
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _fetch_into(
    url: str,
    part: Path,
    expected_size: int | None,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    """One attempt: append to (206) or rewrite (200) ``part``; raises _Retryable on transient failures."""
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:
        _remove(part)
        offset = 0
    if offset and expected_size is not None and offset == expected_size:
        return  # complete already; the caller verifies the hash
    req = urllib.request.Request(url, headers={"User-Agent": f"maskpix-desktop/{__version__}"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            if expected_size is None:
                return  # the server says the part already holds everything; the hash decides
            _remove(part)
            raise _Retryable("server refused the resume range; restarting") from exc
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code}") from exc
        raise DownloadError(f"Download from {url} failed: HTTP {exc.code} {exc.reason}.") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(str(exc)) from exc

    with resp:
        status = resp.getcode()
        length_hdr = resp.headers.get("Content-Length")
        length = int(length_hdr) if length_hdr and length_hdr.isdigit() else None
        start, range_total = _content_range_total(resp.headers.get("Content-Range"))
        if offset and status == 206 and start == offset:
            mode, done = "ab", offset
        else:  # 200 (or a file:// URL): the server sends everything, start over
            mode, done = "wb", 0
        total = expected_size or range_total or (done + length if length is not None else None)
        received = 0
        with open(part, mode) as fh:
            if progress is not None:
                progress(done, total)
            while True:
                if cancel is not None and cancel.is_set():
                    raise _CancelledDownload
                try:
                    chunk = resp.read(DOWNLOAD_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retryable(f"connection lost after {done} bytes: {exc}") from exc
                if not chunk:
                    break
                fh.write(chunk)
                done += len(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(done, total)
    if length is not None and received < length:
        raise _Retryable(f"connection closed after {done} bytes (expected {done - received + length})")


def _download_converted(
    spec: ModelSpec, dest: Path, *, progress: ProgressFn | None, cancel: threading.Event | None
) -> Path:
    """A single-file checkpoint (``spec.single_file`` of ``spec.hf_repo``) and the configs of
    ``spec.config_repo``, converted into the diffusers folder ``dest`` (``core/cosxl.py``; CosXL-Edit is the
    one such entry). Both downloads go to ``.<dest>.download`` beside ``dest``: kept after a network failure
    or a cancel (the next try resumes), removed after the conversion and after a failed one (a damaged
    file must not be converted again)."""
    from maskpix_desktop.core.cosxl import convert_cosxl_edit
    from maskpix_desktop.core.errors import WeightsError

    staging = dest.with_name(f".{dest.name}.download")
    checkpoint = staging / "checkpoint"
    with _lock_for(dest):
        if diffusers_folder_complete(dest):  # another thread finished it meanwhile
            return dest
        file = checkpoint / str(spec.single_file)
        _download_snapshot(
            spec, checkpoint, progress=progress, cancel=cancel, complete=lambda _: file.is_file()
        )
        index = staging / "config" / "model_index.json"
        _download_snapshot(
            config_spec(spec),
            index.parent,
            progress=progress,
            cancel=cancel,
            complete=lambda _: index.is_file(),
        )
        try:
            convert_cosxl_edit(file, staging / "config", dest)
        except WeightsError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise DownloadError(
                f"The download of '{spec.name}' could not be converted: {exc}. The downloaded files were "
                "removed; a later try downloads them again."
            ) from exc
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _download_snapshot(
    spec: ModelSpec,
    dest: Path,
    *,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
    complete: Callable[[Path], bool] | None = None,
) -> Path:
    """huggingface_hub snapshot of the registry files into ``dest``; then our own sha256 check.

    Byte progress and cancel go through a tqdm class handed to huggingface_hub; a cancel stops at the next
    progress update and keeps the partial files (huggingface_hub resumes them on the next try).
    """
    if cancel is not None and cancel.is_set():
        raise DownloadError(f"Download of '{spec.name}' was cancelled.")
    total = spec.size_bytes
    if progress is not None:
        progress(0, total)
    try:
        from huggingface_hub import snapshot_download

        with _lock_for(dest):
            snapshot_download(
                repo_id=spec.hf_repo,
                revision=spec.hf_revision,
                local_dir=str(dest),
                allow_patterns=list(spec.patterns) or [f.filename for f in spec.files],
                etag_timeout=DOWNLOAD_TIMEOUT_S,
                tqdm_class=_hub_tqdm_class(progress, cancel, total),
            )
    except _CancelledDownload:
        raise DownloadError(
            f"Download of '{spec.name}' was cancelled; the partial files in {dest} resume next time."
        ) from None
    except Exception as exc:  # any hub or network failure becomes a DownloadError
        access = f" {spec.hf_repo} is {spec.access}." if spec.access else ""
        raise DownloadError(
            f"Could not download '{spec.name}' ({spec.hf_repo}@{spec.hf_revision}) into {dest}: {exc}. "
            f"Are you offline?{access} A later try resumes where this one stopped."
        ) from exc
    missing = [f.filename for f in spec.files if not (dest / f.filename).is_file()]
    # Weights (hash-pinned) and model_index.json are essential; a missing small config is left for
    # diffusers_folder_complete() below and for diffusers itself to judge.
    essential = [m for m in missing if m == "model_index.json" or _pinned(spec, m)]
    if essential:
        raise DownloadError(
            f"The snapshot of {spec.hf_repo}@{spec.hf_revision} lacks {', '.join(essential)}; "
            "the pinned revision may not carry these files."
        )
    if missing:
        log.warning("snapshot of %s lacks optional files: %s", spec.hf_repo, ", ".join(missing))
    done = 0
    for f in spec.files:
        p = dest / f.filename
        if not p.is_file():
            continue
        if f.sha256:
            actual = sha256_file(p)
            if actual != f.sha256:
                _remove(p)
                raise DownloadError(
                    f"Checksum mismatch for {spec.name}/{f.filename}: expected sha256 {f.sha256}, got "
                    f"{actual}. The file was discarded."
                )
        done += p.stat().st_size
    if progress is not None:
        progress(done, done)
    complete = complete or {
        "grounding": transformers_folder_complete,
        "sam2": sam2_folder_complete,
        "dino": vit_folder_complete,
    }.get(spec.kind, diffusers_folder_complete)
    if not complete(dest):
        raise DownloadError(f"{dest} is still incomplete after the download of '{spec.name}'.")
    return dest


def _hub_tqdm_class(progress: ProgressFn | None, cancel: threading.Event | None, total: int | None) -> type:
    """A silent tqdm class that forwards byte counts to ``progress`` and raises when ``cancel`` is set."""
    from tqdm.auto import tqdm as base_tqdm

    lock = threading.Lock()
    best = [0]

    class _HubProgress(base_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            self._is_bytes = kwargs.get("unit") == "B"
            self._count = int(kwargs.get("initial") or 0)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if cancel is not None and cancel.is_set():
                raise _CancelledDownload
            if self._is_bytes and n and progress is not None:
                with lock:
                    self._count += int(n)
                    best[0] = max(best[0], self._count)
                    done = best[0]
                progress(done, total)
            return None

    return _HubProgress


def _pinned(spec: ModelSpec, filename: str) -> bool:
    return any(f.filename == filename and f.sha256 for f in spec.files)
