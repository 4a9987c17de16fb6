"""The ``.maskpix`` project file: :func:`save_project`, :func:`load_project`, summary and embedding.

A project is a zip written atomically (temp file + rename) holding

* ``manifest.json`` -- ``{"format": "maskpix-project", "version": 1, ...}`` with the image's name and path,
  the mask layers, the current result and one entry per history result;
* ``image.png`` -- the original image, lossless;
* ``layers/mask.png`` -- the mask (8-bit, soft edges kept);
* ``prompts.json`` and ``params.json``;
* ``history/NNN/metadata.json`` plus that result's images (``baseline.png``, ``blended.png``, ``edit.png``,
  ``mask_used`` and ``request_mask``). Identical arrays are stored once (a later reference points at the
  first file). Float masks that are exact multiples of 1/255 are PNGs with ``"scale": 255``; any other
  array is stored as a compressed ``.npz`` (key ``array``), so that every array reads back bit for bit.

With a ``blob_dir`` (the autosave) the arrays are files beside the zip instead, each written once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import ImageSaveError, ProjectError
from maskpix_desktop.core.export import json_safe
from maskpix_desktop.core.jobs import EditResult
from maskpix_desktop.core.session.arrays import ArrayWriter, SaveCache
from maskpix_desktop.core.session.document import Session
from maskpix_desktop.core.session.reader import BLOB_PATTERN, Fields, ProjectReader, describe_value
from maskpix_desktop.core.session.records import (
    manifest_fields,
    params_from,
    prompts_from,
    result_from_record,
)

__all__ = [
    "FORMAT",
    "PROJECT_SUFFIX",
    "VERSION",
    "embed_project",
    "load_project",
    "project_summary",
    "save_project",
]

log = logging.getLogger(__name__)

FORMAT = "maskpix-project"
VERSION = 1
PROJECT_SUFFIX = ".maskpix"


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
            writer = ArrayWriter(zf, compress_level, cache, blobs)
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
                with contextlib.suppress(OSError):
                    old.unlink()
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
    Reading is budgeted (``budget`` bytes unpacked in all, default :func:`reader.default_budget`;
    see :mod:`maskpix_desktop.core.session.reader`). Raises :class:`ProjectError` with a message for the
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
