"""The document: image, prompts, mask, parameters and result history; ``.maskpix`` project files, autosave
and crash recovery, and re-running an exported result from its metadata.

No Qt here (the main window snapshots its widgets into a :class:`Session` and restores from one).

Project file (``.maskpix``): a zip written atomically (temp file + rename) holding

* ``manifest.json`` -- ``{"format": "maskpix-project", "version": 1, ...}`` with the image's name and path,
  the mask layers, the current result and one entry per history result;
* ``image.png`` -- the original image, lossless;
* ``layers/mask.png`` -- the mask (8-bit, soft edges kept);
* ``prompts.json`` and ``params.json``;
* ``history/NNN/metadata.json`` plus that result's images (``baseline.png``, ``blended.png``, ``edit.png``,
  ``mask_used`` and ``request_mask``). Identical arrays are stored once (a later reference points at the
  first file). Float masks that are exact multiples of 1/255 are PNGs with ``"scale": 255``; any other
  array is stored as a compressed ``.npz`` (key ``array``), so that every array reads back bit for bit.

Autosave: one :class:`Autosaver` per window writes ``<data dir>/autosave/session.maskpix`` (another running
instance gets ``session-2`` and so on); its arrays live beside it in ``session.blobs/``, one file per
distinct array named by its hash, written once, so an autosave after a brush stroke writes the new mask
and a few kilobytes of JSON however many results the session holds. The Autosaver holds an OS lock on
the matching ``.lock`` marker for as long as the window is open; a clean exit removes the marker. The OS
drops the lock when a process dies (crash, kill, power loss), so a marker that can be locked belongs to
a dead session: :func:`find_recoverable` lists those and the app offers to restore them.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import ImageLoadError, ImageSaveError, MaskPixError, ProjectError
from maskpix_desktop.core.export import json_safe
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.core.project_reader import (
    BLOB_PATTERN,
    MAX_JSON_BYTES,
    Fields,
    ProjectReader,
    describe_value,
)
from maskpix_desktop.core.project_records import (
    manifest_fields,
    params_from,
    prompts_from,
    result_from_record,
)
from maskpix_desktop.paths import autosave_dir, data_dir

__all__ = [
    "AUTOSAVE_NAME",
    "FORMAT",
    "PROJECT_SUFFIX",
    "VERSION",
    "Autosaver",
    "ProjectError",
    "Recoverable",
    "Resolution",
    "SaveCache",
    "Session",
    "autosave_dir",
    "data_dir",
    "discard_recoverable",
    "embed_project",
    "find_recoverable",
    "load_project",
    "project_summary",
    "rerun_from_sidecar",
    "resolve_recoverable",
    "save_project",
]

log = logging.getLogger(__name__)

FORMAT = "maskpix-project"
VERSION = 1
PROJECT_SUFFIX = ".maskpix"
AUTOSAVE_NAME = "session"
PREVIOUS_NAME = "previous"  # a declined autosave is kept once under this name
UNREADABLE_PREFIX = "unreadable-"  # an autosave that cannot be read is kept as unreadable-<time>.maskpix
BLOB_SUFFIX = ".blobs"  # session.maskpix keeps its arrays in session.blobs/ (written once each)

_LOCK_OFFSET = 1 << 20  # Windows locks a byte range; lock one far beyond the marker's text


# ------------------------------------------------------------------------------------------ document


@dataclass(eq=False)
class Session:
    """Everything the user would lose: the image, SAM prompts, the mask, the parameters and the results.

    ``mask`` is ``HxW`` uint8 (0..255; brush edges are soft); prompts are in image pixels (``labels``: 1 keep,
    0 exclude; ``box``: x0, y0, x1, y1). ``history`` holds the results in order, ``current`` the one shown.
    """

    image: np.ndarray | None = None
    image_name: str = ""
    image_path: str | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None
    params: EditParams = field(default_factory=lambda: EditParams(""))
    history: list[EditResult] = field(default_factory=list)
    current: int = -1

    def is_empty(self) -> bool:
        """True when there is nothing worth saving (no image and no result)."""
        return self.image is None and not self.history


# ------------------------------------------------------------------------------------------ arrays


class SaveCache:
    """Encoded arrays kept between saves of the same session (autosave): an unchanged array is not
    encoded again, and a read-only one (the canvas image, frozen results) is not even hashed again.

    A writable array is always hashed (it may have changed in place since the last save).
    """

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self._keys: dict[int, tuple[np.ndarray, str]] = {}
        #: blob files this cache wrote: name -> (size, mtime_ns, sha256 of the bytes), to verify before reuse
        self.files: dict[str, tuple[int, int, str]] = {}

    def __len__(self) -> int:
        return len(self.blobs)

    def key(self, a: np.ndarray) -> str:
        hit = self._keys.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        k = images.image_hash(a)
        if not a.flags.writeable:
            self._keys[id(a)] = (a, k)
        return k

    def prune(self, used: set[str]) -> None:
        """Forget what the last save did not use."""
        self.blobs = {k: v for k, v in self.blobs.items() if k in used}
        self._keys = {i: (a, k) for i, (a, k) in self._keys.items() if k in used}
        self.files = {n: v for n, v in self.files.items() if n.split(".")[0] in used}

    def blob_intact(self, path: Path) -> bool:
        """True when ``path`` is a blob this cache wrote and it still holds exactly those bytes (its size
        and time unchanged, or else its content hash). An unknown or damaged blob is written again."""
        known = self.files.get(path.name)
        if known is None:
            return False
        try:
            st = path.stat()
            if st.st_size != known[0]:
                return False
            if st.st_mtime_ns == known[1]:
                return True
            same = hashlib.sha256(path.read_bytes()).hexdigest() == known[2]
        except OSError:
            return False
        if same:
            self.files[path.name] = (known[0], st.st_mtime_ns, known[2])
        return same

    def wrote_blob(self, path: Path, data: bytes) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        self.files[path.name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())


class _ArrayWriter:
    """Puts arrays into the zip, each distinct array once; returns the reference stored in the JSON."""

    def __init__(
        self, zf: zipfile.ZipFile, compress_level: int, cache: SaveCache | None, blob_dir: Path | None
    ):
        self.zf = zf
        self.level = compress_level
        self.cache = cache
        self.blob_dir = blob_dir
        self.used: set[str] = set()
        self._written: dict[str, dict[str, Any]] = {}

    def put(self, name: str, arr: np.ndarray | None) -> dict[str, Any] | None:
        """Store ``arr`` as ``name`` + ``.png`` (8-bit exact) or ``.npz`` (anything else); None stays None."""
        if arr is None:
            return None
        a = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        key = self.cache.key(a) if self.cache is not None else images.image_hash(a)
        if key in self._written:
            return dict(self._written[key])
        self.used.add(key)
        ref: dict[str, Any] = {"dtype": a.dtype.str, "shape": list(a.shape)}
        pixels = _png_pixels(a)
        ext = ".png" if pixels is not None else ".npz"
        ref["file"] = name + ext
        if pixels is not None and pixels[1]:
            ref["scale"] = pixels[1]
        if self.blob_dir is not None:
            # Autosave: each array is a file of its own beside the project, written once; the zip refers
            # to it, so an autosave after a brush stroke writes the mask and a few kilobytes of JSON.
            blob = self.blob_dir / f"{key}{ext}"
            ref["blob"] = f"{self.blob_dir.name}/{blob.name}"
            if self.cache is None or not self.cache.blob_intact(blob):  # never reuse a damaged file
                data = self._encode(a, pixels)
                images.atomic_write_bytes(blob, data)
                if self.cache is not None:
                    self.cache.wrote_blob(blob, data)
        else:
            data = self.cache.blobs.get(key) if self.cache is not None else None
            if data is None:
                data = self._encode(a, pixels)
            if self.cache is not None:
                self.cache.blobs[key] = data
            self.zf.writestr(ref["file"], data, compress_type=zipfile.ZIP_STORED)  # already compressed
        self._written[key] = ref
        return dict(ref)

    def _encode(self, a: np.ndarray, pixels: tuple[np.ndarray, int] | None) -> bytes:
        buf = io.BytesIO()
        if pixels is not None:
            images.to_pil(pixels[0]).save(buf, format="PNG", compress_level=self.level)
        else:
            np.savez_compressed(buf, array=np.ascontiguousarray(a))
        return buf.getvalue()


def _png_pixels(a: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(uint8 pixels, scale)`` when ``a`` round-trips exactly through an 8-bit PNG, else None."""
    if a.size == 0:
        return None
    if a.dtype == np.uint8 and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        return a, 0
    if a.dtype == np.bool_ and a.ndim == 2:
        return a.astype(np.uint8) * 255, 0
    if a.dtype in (np.float32, np.float64) and a.ndim == 2:
        with np.errstate(invalid="ignore"):
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                return None
            u = np.rint(a * 255.0).astype(np.uint8)
        back = u.astype(a.dtype) / 255.0
        if back.dtype == a.dtype and np.array_equal(back, a):
            return u, 255
    return None


# ------------------------------------------------------------------------------------------ save / load


def _result_record(result: EditResult, index: int, put: Callable[..., Any]) -> dict[str, Any]:
    folder = f"history/{index:03d}"
    req = result.request
    meta = json_safe(result.metadata())
    meta["job_id"] = int(req.job_id)
    meta["arrays"] = {
        "original": put(f"{folder}/original", req.image),
        "request_mask": put(f"{folder}/request_mask", req.mask),
        "baseline": put(f"{folder}/baseline", result.baseline),
        "blended": put(f"{folder}/blended", result.blended),
        "edit": put(f"{folder}/edit", result.edit),
        "mask_used": put(f"{folder}/mask_used", result.mask_used),
    }
    return meta


def save_project(
    path: str | os.PathLike,
    session: Session,
    *,
    compress_level: int = 6,
    cache: SaveCache | None = None,
    blob_dir: str | os.PathLike | None = None,
) -> Path:
    """Write ``session`` to a ``.maskpix`` zip atomically (a failure leaves any old file untouched).

    ``cache`` (a :class:`SaveCache` kept between saves, as the autosave does) skips re-encoding
    unchanged arrays; what this save did not use is dropped from it. With ``blob_dir`` (a folder beside
    ``path``; the autosave uses it) the arrays are files in that folder, each written once and referred
    to from the zip, and the files this save does not use are removed after it; such a project needs
    its folder (:func:`load_project` finds it; :func:`embed_project` makes it self-contained).
    Raises :class:`ImageSaveError` when the file cannot be written (disk full, read-only folder, ...).
    """
    from maskpix_desktop import __version__

    target = Path(path)
    blobs = Path(blob_dir) if blob_dir is not None else None
    if blobs is not None:
        if blobs.parent.resolve() != target.parent.resolve():
            raise ValueError("blob_dir must be a folder beside the project file")
        try:
            blobs.mkdir(exist_ok=True)
        except OSError as exc:
            raise ImageSaveError(f"Could not save '{target}': {exc.strerror or exc}.") from None
    with images.atomic_path(target, overwrite=True) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            writer = _ArrayWriter(zf, compress_level, cache, blobs)
            layers = []
            if session.image is not None:
                image_ref = writer.put("image", session.image)
            else:
                image_ref = None
            if session.mask is not None:
                layers.append({"name": "mask", "kind": "mask", **writer.put("layers/mask", session.mask)})
            history = []
            for i, result in enumerate(session.history):
                name = f"history/{i:03d}/metadata.json"
                zf.writestr(name, _dumps(_result_record(result, i, writer.put)))
                history.append(name)
            prompts = {
                "points": [[float(x), float(y)] for x, y in session.points],
                "labels": [int(v) for v in session.labels],
                "box": None if session.box is None else [float(v) for v in session.box],
            }
            zf.writestr("prompts.json", _dumps(prompts))
            zf.writestr("params.json", _dumps(session.params.to_dict()))
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "app": f"MaskPix Desktop {__version__}",
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "image": None
                if image_ref is None
                else {"name": _image_name(session), "path": _absolute(session.image_path), **image_ref},
                "layers": layers,
                "prompts": "prompts.json",
                "params": "params.json",
                "history": history,
                "current": int(session.current),
            }
            zf.writestr("manifest.json", _dumps(manifest))
    if cache is not None:
        cache.prune(writer.used)
    if blobs is not None:
        for old in blobs.iterdir():
            if BLOB_PATTERN.match(f"x/{old.name}") and old.name.split(".")[0] not in writer.used:
                _unlink_quietly(old)
    return target


def _absolute(path: str | None) -> str | None:
    """An image path as stored in a project: absolute (a relative one would depend on the working folder)."""
    return os.path.abspath(path) if path else None


def _image_name(session: Session) -> str:
    """The image's display name (the file's own name when none was given)."""
    return session.image_name or (Path(session.image_path).name if session.image_path else "")


def embed_project(path: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy a project to ``target`` as one self-contained zip (arrays inside; e.g. an autosave)."""
    return save_project(target, load_project(path))


def _dumps(obj: Any) -> str:
    return json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path, "r")
    except FileNotFoundError:
        raise ProjectError(f"Cannot open '{path}': the file does not exist.") from None
    except PermissionError:
        raise ProjectError(f"Cannot open '{path}': permission denied.") from None
    except IsADirectoryError:
        raise ProjectError(f"Cannot open '{path}': it is a folder, not a project file.") from None
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise ProjectError(
            f"Cannot open '{path}': it is not a MaskPix project, or the file is damaged or truncated."
        ) from None
    except OSError as exc:
        raise ProjectError(f"Cannot open '{path}': {exc.strerror or exc}.") from None


def _check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ProjectError(f"'{where}' is not a MaskPix project (its manifest names no maskpix format).")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProjectError(
            f"'{where}' is damaged: its format version {describe_value(version)} is not valid."
        )
    if version > VERSION:
        raise ProjectError(
            f"'{where}' was made by a newer MaskPix (format {version}); this version reads format "
            f"{VERSION}. Update MaskPix Desktop to open it."
        )
    return manifest


def project_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a project (reads only ``manifest.json``, every field type checked).

    ProjectError when unusable."""
    p = Path(path)
    where = str(p)
    try:
        with _open_zip(p) as zf:
            manifest = _check_manifest(ProjectReader(zf, where).json("manifest.json"), where)
            manifest_fields(manifest, where)
            return manifest
    except ProjectError:
        raise
    except Exception as exc:  # never let a hostile file escape as anything but a ProjectError
        raise ProjectError(f"'{where}' is damaged ({type(exc).__name__}: {exc}).") from None


def load_project(path: str | os.PathLike, *, budget: int | None = None) -> Session:
    """Read a ``.maskpix`` project back into a :class:`Session` (every array bit for bit).

    Every field is checked before the Session is built, so a Session is returned whole or not at all.
    Reading is budgeted (``budget`` bytes unpacked in all, default :func:`project_reader.default_budget`;
    see :mod:`maskpix_desktop.core.project_reader`). Raises :class:`ProjectError` with a message for the
    user (file and field) when the file is missing, not a project, damaged, incomplete, too large or
    written by a newer MaskPix; never any other exception.
    """
    p = Path(path)
    where = str(p)
    try:
        with _open_zip(p) as zf:
            reader = ProjectReader(zf, where, budget=budget)
            fields = manifest_fields(_check_manifest(reader.json("manifest.json"), where), where)
            f = Fields(where, "manifest.json")
            image_info = fields["image"]
            image = reader.array(image_info, f, "image") if image_info else None
            mask = None
            for i, layer in enumerate(fields["layers"]):
                if layer.get("name") == "mask":
                    mask = reader.array(layer, f, f"layers[{i}]")
            prompts = reader.json(fields["prompts"])
            params = params_from(reader.json(fields["params"]), where, fields["params"], prefix="params")
            results: dict[str, EditResult] = {}  # a record listed twice is read once (the same result)
            for name in fields["history"]:
                if name not in results:
                    results[name] = result_from_record(reader, reader.json(name), name)
            history = [results[name] for name in fields["history"]]
            points, labels, box = prompts_from(prompts, where, fields["prompts"])
    except ProjectError:
        raise
    except MemoryError:
        raise ProjectError(f"Not enough memory to open '{where}'.") from None
    except RecursionError:
        raise ProjectError(f"'{where}' is damaged: it is nested too deeply.") from None
    except Exception as exc:  # a safety net: a hostile file must never escape as anything else
        log.exception("unexpected failure reading %s", where)
        raise ProjectError(f"'{where}' is damaged ({type(exc).__name__}: {exc}).") from None
    if image is not None and (image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8):
        raise ProjectError(f"'{where}' is damaged: its image is {image.dtype} {image.shape}, not RGB.")
    if mask is not None and (image is None or mask.shape != image.shape[:2] or mask.dtype != np.uint8):
        raise ProjectError(f"'{where}' is damaged: its mask does not match the image.")
    current = fields["current"]
    if current is None:
        current = len(history) - 1
    return Session(
        image=image,
        image_name=str((image_info or {}).get("name") or ""),
        image_path=(image_info or {}).get("path"),
        points=points,
        labels=labels,
        box=box,
        mask=mask,
        params=params,
        history=history,
        current=current if -1 <= current < len(history) else len(history) - 1,
    )


# ------------------------------------------------------------------------------------------ re-run


def _sidecar_metadata(p: Path) -> dict[str, Any]:
    if p.suffix.lower() == ".json":
        try:
            if p.stat().st_size > MAX_JSON_BYTES:
                raise ProjectError(f"Cannot re-run from '{p}': it is far larger than MaskPix metadata.")
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProjectError(f"Cannot re-run from '{p}': the file does not exist.") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProjectError(f"Cannot re-run from '{p}': it is not MaskPix metadata ({exc}).") from None
    else:
        try:
            text = images.read_image_text(p).get("maskpix")
        except ImageLoadError as exc:
            raise ProjectError(f"Cannot re-run from '{p}': {exc}") from None
        if text is None:
            raise ProjectError(
                f"Cannot re-run from '{p}': it carries no MaskPix metadata (was it exported by MaskPix?)."
            )
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ProjectError(f"Cannot re-run from '{p}': its metadata is damaged ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise ProjectError(f"Cannot re-run from '{p}': it holds no edit parameters.")
    return data


def rerun_from_sidecar(path: str | os.PathLike) -> EditRequest:
    """The :class:`EditRequest` an exported result was made from, rebuilt from its JSON sidecar or the
    ``maskpix`` text chunk of any exported image.

    The export's ``original`` and ``mask`` files (named in ``metadata["files"]``, looked for beside
    ``path``) supply the image and the mask; the parameters (instruction, seed, steps, scales, mask mode,
    ...) come from the metadata. Running the request on the same models and device reproduces the
    baseline and blended images exactly (the original must have been exported losslessly: PNG, TIFF or
    WebP at quality 100). Raises :class:`ProjectError` (naming the file and the field) when something
    needed is missing or of the wrong type.
    """
    p = Path(path)
    meta = _sidecar_metadata(p)
    f = Fields(str(p))
    params = params_from(meta["params"], str(p))
    files = f.obj(meta.get("files") or {}, "files")
    needed = {}
    for item, label in (("original", "original image"), ("mask", "mask")):
        name = f.str(files.get(item) or "", f"files.{item}")
        if not name:
            raise ProjectError(
                f"Cannot re-run from '{p.name}': the export did not include the {label}; export again "
                f"with '{item}' checked."
            )
        where = p.parent / Path(name).name
        if not where.is_file():
            raise ProjectError(f"Cannot re-run from '{p.name}': '{where.name}' is not beside it.")
        needed[item] = where
    size = meta.get("image_size")
    if size is not None:
        size = [f.int(v, "image_size", lo=1) for v in f.list(size, "image_size")]
        if len(size) != 2:
            raise f.error("image_size", "two integers [height, width]", f"{len(size)} numbers")
    try:
        image = images.load_image(needed["original"])
    except ImageLoadError as exc:
        raise ProjectError(f"Cannot re-run from '{p.name}': {exc}") from None
    if size and list(image.shape[:2]) != size:
        raise ProjectError(
            f"Cannot re-run from '{p.name}': '{needed['original'].name}' is "
            f"{image.shape[1]}x{image.shape[0]}, but the edit was made on a {size[1]}x{size[0]} image."
        )
    try:
        mask = images.load_mask(needed["mask"])
    except ImageLoadError as exc:
        raise ProjectError(f"Cannot re-run from '{p.name}': {exc}") from None
    if mask.shape != image.shape[:2]:
        raise ProjectError(f"Cannot re-run from '{p.name}': the mask and the original differ in size.")
    return EditRequest(image=image, mask=mask, params=params)


# ------------------------------------------------------------------------------------------ folders


# ------------------------------------------------------------------------------------------ OS locks


def _try_lock(fd: int) -> bool:
    """Non-blocking exclusive lock on an open file; released by the OS when the process dies."""
    try:
        if os.name == "nt":  # pragma: no cover - exercised on Windows only
            import msvcrt

            os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            return False
        raise


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def _stale_lock(lock: Path):
    """Yield True while holding ``lock`` when nobody else holds it (its owner is gone), else False."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        yield False
        return
    try:
        yield _try_lock(fd) and _same_file(fd, lock)
    finally:
        os.close(fd)


def _read_marker(lock: Path) -> dict[str, Any]:
    try:
        with open(lock, "rb") as fh:
            data = json.loads(fh.read(4096).decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):  # a marker is a hint only: never fatal
        return {}


# ------------------------------------------------------------------------------------------ recovery


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
            with _stale_lock(lock) as stale:
                if not stale:
                    continue
                marker = _read_marker(lock)
                if not path.is_file():
                    _unlink_quietly(lock)
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
    ``previous.maskpix`` beside it when it can be read, else moved aside, with its blobs folder, to
    ``unreadable-<time>.maskpix`` (never overwriting an earlier one), so the next autosave cannot touch
    it. Never raises for a damaged autosave.
    """
    result = Resolution()
    with _stale_lock(rec.lock) as stale:
        if not stale:
            return result  # someone else took it over meanwhile
        blobs = rec.path.with_suffix(BLOB_SUFFIX)
        if keep_copy:
            previous = rec.path.with_name(PREVIOUS_NAME + PROJECT_SUFFIX)
            try:  # self-contained: the blobs folder will be reused and pruned by the next autosave
                embed_project(rec.path, previous)
                _unlink_quietly(rec.path)
                result = Resolution(kept=previous)
            except MaskPixError as exc:
                log.warning("keeping the unreadable autosave aside: %s", exc)
                result = Resolution(kept=_set_aside(rec.path), problem=str(exc))
            except Exception as exc:  # e.g. the disk is full while writing previous.maskpix
                log.exception("could not copy the autosave %s", rec.path)
                result = Resolution(kept=_set_aside(rec.path), problem=f"{type(exc).__name__}: {exc}")
        _remove_temp_files(rec.path)
        if result.problem is None:  # else the blobs went aside with the autosave
            shutil.rmtree(blobs, ignore_errors=True)
        if os.name != "nt":
            _unlink_quietly(rec.lock)
    if os.name == "nt":  # pragma: no cover - an open file cannot be removed on Windows
        _unlink_quietly(rec.lock)
    return result


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


def _remove_temp_files(path: Path) -> None:
    """Remove what interrupted writes of ``path`` (an autosave slot) left: ``.<name>.*.tmp`` beside it
    and any temp file in its blobs folder. Only called by the slot's owner, so none is in use."""
    candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    blobs = path.with_suffix(BLOB_SUFFIX)
    with contextlib.suppress(OSError):
        candidates += list(blobs.glob(".*.tmp"))
    for tmp in candidates:
        _unlink_quietly(tmp)


def discard_recoverable(rec: Recoverable) -> Resolution:
    """Declined: keep the autosave as ``previous.maskpix`` (or set it aside if unreadable); forget the
    marker."""
    return resolve_recoverable(rec, keep_copy=True)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# ------------------------------------------------------------------------------------------ autosave


class Autosaver:
    """Writes the latest :class:`Session` it was given to ``<folder>/session.maskpix`` on a background
    thread (the newest request wins; a save never blocks the caller), holding the ``.lock`` marker that
    tells the next launch whether this session ended cleanly.

    ``on_error(message)`` and ``on_saved(path)`` are called on the writer thread (a Qt caller should emit a
    signal from them). :meth:`close` is the clean exit: it waits for the last write and removes the marker.
    """

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        *,
        name: str = AUTOSAVE_NAME,
        on_error: Callable[[str], None] | None = None,
        on_saved: Callable[[Path], None] | None = None,
        compress_level: int = 1,
    ):
        self.folder = Path(folder) if folder is not None else autosave_dir()
        self.name = name
        self.on_error = on_error
        self.on_saved = on_saved
        self.compress_level = compress_level
        self.path: Path | None = None
        self.lock_path: Path | None = None
        self.last_error: str | None = None
        self.saves = 0
        self._fd: int | None = None
        self._cond = threading.Condition()
        self._pending: Session | None = None
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._cache = SaveCache()

    # ------------------------------------------------------------------ slot
    def _acquire(self) -> None:
        """Take the first free slot: ``session``, ``session-2``, ... (caller holds ``_cond``)."""
        if self._fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, 100):
            stem = self.name if i == 1 else f"{self.name}-{i}"
            lock = self.folder / f"{stem}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd) or not _same_file(fd, lock):
                    os.close(fd)  # a live session holds it (or it was just removed): next slot
                    continue
                size = os.fstat(fd).st_size
                path = lock.with_suffix(PROJECT_SUFFIX)
                if size > 0 and path.exists():
                    os.close(fd)  # a crashed session nobody has answered for yet: keep it for the offer
                    continue
                marker = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, json.dumps(marker).encode("utf-8"))
            except BaseException:
                os.close(fd)
                raise
            self._fd, self.lock_path, self.path = fd, lock, path
            _remove_temp_files(path)  # left by a write this slot's previous owner did not finish
            return
        raise OSError(errno.EBUSY, f"no free autosave slot in {self.folder}")

    # ------------------------------------------------------------------ API
    def save(self, session: Session) -> None:
        """Queue ``session`` (replacing any queued one) for writing on the background thread."""
        with self._cond:
            if self._closed:
                return
            self._pending = session
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maskpix-autosave", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def save_now(self, session: Session) -> bool:
        """Write ``session`` on the calling thread (after any write in progress); True on success."""
        self.flush()
        with self._cond:
            if self._closed:
                return False
            self._busy = True
        try:
            return self._write(session)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every queued session is written; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Clean exit: finish the last write, stop the thread, release and remove the marker."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            fd, self._fd = self._fd, None
        if fd is not None:
            if os.name != "nt" and self.lock_path is not None:
                _unlink_quietly(self.lock_path)
            os.close(fd)
            if os.name == "nt" and self.lock_path is not None:  # pragma: no cover
                _unlink_quietly(self.lock_path)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ writer thread
    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed and self._pending is None:
                    return
                session, self._pending = self._pending, None
                self._busy = True
            try:
                self._write(session)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, session: Session) -> bool:
        try:
            with self._cond:
                self._acquire()
            assert self.path is not None
            save_project(
                self.path,
                session,
                compress_level=self.compress_level,
                cache=self._cache,
                blob_dir=self.path.with_suffix(BLOB_SUFFIX),
            )
        except (MaskPixError, OSError) as exc:
            message = str(exc) if isinstance(exc, MaskPixError) else f"{self.folder}: {exc.strerror or exc}"
            log.warning("autosave failed: %s", message)
            self.last_error = message
            self._notify(self.on_error, message)
            return False
        except Exception as exc:  # never let autosave take the app down
            log.exception("autosave failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._notify(self.on_error, self.last_error)
            return False
        self.saves += 1
        self.last_error = None
        self._notify(self.on_saved, self.path)
        return True

    @staticmethod
    def _notify(callback: Callable[[Any], None] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("autosave callback failed")


def sessions_equal(a: Session, b: Session) -> bool:
    """True when two sessions hold the same state (arrays bit for bit, NaN metrics equal)."""

    def same(x: Any, y: Any) -> bool:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return (
                isinstance(x, np.ndarray)
                and isinstance(y, np.ndarray)
                and x.dtype == y.dtype
                and np.array_equal(x, y)
            )
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, Sequence) and isinstance(y, Sequence) and not isinstance(x, str):
            return len(x) == len(y) and all(same(i, j) for i, j in zip(x, y, strict=True))
        return x == y

    def result(r: EditResult, s: EditResult) -> bool:
        return (
            same(r.request.image, s.request.image)
            and same(r.request.mask, s.request.mask)
            and r.request.params == s.request.params
            and all(same(getattr(r, k), getattr(s, k)) for k in ("baseline", "blended", "edit", "mask_used"))
            and tuple(r.working_size) == tuple(s.working_size)
            and same(r.timings, s.timings)
            and r.model == s.model
            and r.nsfw == s.nsfw
            and same(r.metrics, s.metrics)
        )

    return (
        same(a.image, b.image)
        and a.image_name == b.image_name
        and a.image_path == b.image_path
        and same([tuple(p) for p in a.points], [tuple(p) for p in b.points])
        and list(a.labels) == list(b.labels)
        and same(a.box, b.box)
        and same(a.mask, b.mask)
        and a.params == b.params
        and a.current == b.current
        and len(a.history) == len(b.history)
        and all(result(r, s) for r, s in zip(a.history, b.history, strict=True))
    )
