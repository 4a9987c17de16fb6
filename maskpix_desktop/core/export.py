"""Writing results: images with PNG text chunks, a comparison grid, metrics CSV and a JSON sidecar.

Used by the CLI and the GUI's export dialog alike. Nothing is overwritten silently. An export is a
set: every file is first written into a hidden staging folder beside the targets, then all are renamed
into place; a failure at any point leaves the old set or the new one, never a mix, and no temp files.
File names are made valid on Windows too (``a:b`` becomes ``a_b``), and what was changed is returned
(``PlannedPaths.renamed``) for the caller to show. JSON (sidecar and the ``maskpix`` PNG text chunk)
is strict: non-finite numbers (an untouched background has an infinite PSNR) are written as the
strings "inf", "-inf" and "nan", as in the CSV, and ``float()`` reads them back.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images, masks, metric_catalog
from maskpix_desktop.core.errors import ImageSaveError
from maskpix_desktop.core.jobs import EditResult

EXPORT_ITEMS = ("original", "mask", "baseline", "blended", "grid", "metrics_csv", "json")
IMAGE_FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
OVERLAY_COLOR = (255, 40, 90)
_FILE_ITEM = {"metrics_csv": "metrics", "json": "metadata"}


def mask_overlay(image: np.ndarray, mask: np.ndarray, color=OVERLAY_COLOR, alpha: float = 0.5) -> np.ndarray:
    """The image with the mask tinted in ``color`` (soft masks tint proportionally)."""
    m = masks.as_float(mask)[..., None] * alpha
    out = image.astype(np.float32) * (1 - m) + np.asarray(color, np.float32) * m
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def comparison_grid(
    panels: Sequence[np.ndarray], labels: Sequence[str] | None = None, *, max_side: int = 512
) -> np.ndarray:
    """Panels side by side (each scaled to the same height, at most ``max_side``), labelled on top."""
    from PIL import Image, ImageDraw

    h, w = panels[0].shape[:2]
    scale = min(1.0, max_side / max(h, w))
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    bar = 22 if labels else 0
    gap = 4
    grid = Image.new("RGB", (len(panels) * pw + (len(panels) - 1) * gap, ph + bar), (32, 32, 36))
    draw = ImageDraw.Draw(grid)
    for i, panel in enumerate(panels):
        if panel.ndim == 2:
            panel = np.repeat((masks.as_float(panel) * 255).astype(np.uint8)[..., None], 3, axis=2)
        tile = images.to_pil(images.resize_image(panel, (ph, pw), resample="area"))
        x = i * (pw + gap)
        grid.paste(tile, (x, bar))
        if labels:
            draw.text((x + 6, 5), labels[i], fill=(235, 235, 235))
    return np.asarray(grid)


def metrics_csv(metrics: dict[str, dict[str, Any]]) -> str:
    """CSV text with one row per variant (baseline, blended) and one column per metric.

    Columns are the metric keys in :data:`core.metric_catalog.CATALOG` order, then uncatalogued keys.
    """
    keys = metric_catalog.ordered(k for row in metrics.values() for k in row)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variant", *keys])
    for variant, row in metrics.items():
        writer.writerow([variant, *(_fmt(row.get(k)) for k in keys)])
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def png_text(metadata: dict[str, Any]) -> dict[str, str]:
    """PNG text chunks: the full JSON under ``maskpix`` plus the most asked-for fields on their own."""
    p = metadata.get("params", {})
    text = {"maskpix": to_json(metadata, indent=None)}
    for key in ("instruction", "seed", "steps", "text_scale", "image_scale", "mask_mode"):
        if key in p:
            text[key] = str(p[key])
    text["Software"] = "MaskPix Desktop"
    return text


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars made plain, paths as strings and non-finite floats as "inf"/"-inf"/"nan"."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else _fmt(v)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def json_number(value: Any) -> Any:
    """Inverse of :func:`json_safe` for one value: "inf", "-inf" and "nan" back to floats."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text (no NaN/Infinity tokens; see :func:`json_safe`), keys sorted."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=True, allow_nan=False)


# ------------------------------------------------------------------------------------------ file names
#: Characters Windows refuses in file names (plus both path separators: a name never leaves its folder).
_WINDOWS_BAD_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
#: Device names Windows reserves, with any extension ("CON.png" cannot be created there).
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in (*"123456789", "¹", "²", "³")}
)
#: Longest name part in UTF-8 bytes: with an extension and the temp-file prefix/suffix it stays below
#: the 255-byte file-name limit of every common file system.
MAX_NAME_BYTES = 200


def windows_safe_name(name: str) -> tuple[str, str | None]:
    """``(safe, why)``: ``name`` (without extension) made a valid file name on Windows, macOS and Linux,
    and why it was changed (None when unchanged). Bad characters become ``_``; trailing dots and spaces
    go; a device name gets ``_`` appended to its first part; an over-long name is cut."""
    why = None
    safe = _WINDOWS_BAD_CHARS.sub("_", name)
    if safe != name:
        why = "is not a valid file name on Windows"
    stripped = safe.rstrip(" .")
    if stripped != safe:
        why, safe = "is not a valid file name on Windows", stripped
    head, dot, tail = safe.partition(".")
    if head.rstrip(" ").upper() in WINDOWS_RESERVED:
        why, safe = "is a device name on Windows", f"{head}_{dot}{tail}"
    if len(safe.encode("utf-8")) > MAX_NAME_BYTES:
        safe = safe.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip(" .")
        why = why or "is too long for a file name"
    if not safe:
        why, safe = "is not a valid file name", "_"
    return safe, why


class PlannedPaths(dict):
    """Target path per export item (a ``dict[str, Path]``), plus ``renamed``: one message per file whose
    name was changed to be valid everywhere, e.g. "Saved as 'a_b.png' ('a:b.png' is not a valid file
    name on Windows)"."""

    def __init__(self, paths: dict[str, Path] | None = None, renamed: list[str] | None = None):
        super().__init__(paths or {})
        self.renamed: list[str] = list(renamed or [])


def planned_paths(
    out_dir: Path, items: Iterable[str], *, pattern: str = "{item}", fmt: str = "png", **fields: str
) -> PlannedPaths:
    """Target path per item; ``pattern`` may use {item}, {stem}, {seed}, {mode} and any ``fields``.

    Names are made Windows-safe (:func:`windows_safe_name`); ``.renamed`` says what was changed.
    """
    ext = IMAGE_FORMATS[fmt]
    paths = PlannedPaths()
    for item in items:
        if item not in EXPORT_ITEMS:
            raise ValueError(f"unknown export item {item!r}; choose from {EXPORT_ITEMS}")
        try:
            name = pattern.format(item=_FILE_ITEM.get(item, item), **fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"bad file name pattern {pattern!r}: {exc!r}; use {{item}}, {{stem}}, ..."
            ) from None
        suffix = ".csv" if item == "metrics_csv" else ".json" if item == "json" else ext
        safe, why = windows_safe_name(name)
        if why is not None:
            wanted = name if len(name) <= 60 else name[:57] + "..."
            paths.renamed.append(f"Saved as '{safe}{suffix}' ('{wanted}{suffix}' {why})")
        path = out_dir / f"{safe}{suffix}"
        if path in paths.values():
            raise ValueError(
                f"pattern {pattern!r} gives two items the same file name {path.name}; add {{item}}"
            )
        paths[item] = path
    return paths


def _staged(out_dir: Path) -> Path:
    """A hidden staging folder in ``out_dir`` (same file system: the final renames are atomic)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".maskpix-export-", dir=out_dir))
    except OSError as exc:
        raise images._save_error(out_dir, exc) from None


def _place(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``, which must not exist (a hard link refuses to replace a file that
    appeared meanwhile; file systems without hard links fall back to a rename)."""
    try:
        os.link(new, target)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", str(target)) from None
        os.replace(new, target)
    else:
        os.unlink(new)


class _UndoFailed(ImageSaveError):
    """A failed export whose undo failed too: the old files are kept in the staging folder."""


def _publish_set(staged: list[tuple[Path, Path]], stage: Path, overwrite: bool) -> None:
    """Move every staged file onto its target; on any failure undo every move, so the old set is back.

    Raises :class:`ImageSaveError` (or ``FileExistsError``); if even the undo fails, the old files are
    left in ``stage`` and the message says where.
    """
    backups: list[tuple[Path, Path]] = []  # (old file moved aside, its target)
    placed: list[Path] = []
    try:
        for i, (new, target) in enumerate(staged):
            if os.path.lexists(target):
                if not overwrite:
                    raise FileExistsError(errno.EEXIST, "File exists", str(target))
                backup = stage / f".old-{i}"
                os.replace(target, backup)
                backups.append((backup, target))
            _place(new, target)
            placed.append(target)
    except BaseException as exc:
        try:
            for target in placed:
                target.unlink()
            for backup, target in backups:
                os.replace(backup, target)
        except OSError as undo:
            raise _UndoFailed(
                f"Export to '{stage.parent}' failed ({exc}) and could not be undone ({undo}): the "
                f"previous files are in '{stage}'."
            ) from None
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise images._save_error(target, exc) from None
        raise


def export_result(
    result: EditResult,
    out_dir: str | Path,
    *,
    items: Iterable[str] = EXPORT_ITEMS,
    pattern: str = "{item}",
    fmt: str = "png",
    quality: int = 95,
    overwrite: bool = False,
    stem: str = "image",
) -> PlannedPaths:
    """Write the chosen items as one set; refuses (FileExistsError, nothing written) if any target exists.

    Every file is written to a staging folder first, then all are renamed into place: a failure leaves
    the old files (or none), never some old and some new. Returns the paths, with ``.renamed`` saying
    which names were changed to be valid on Windows.
    """
    out_dir = Path(out_dir)
    p = result.request.params
    paths = planned_paths(
        out_dir, items, pattern=pattern, fmt=fmt, stem=stem, seed=str(p.seed), mode=p.mask_mode
    )
    for path in paths.values():
        if path.is_dir():
            raise ImageSaveError(f"Could not save '{path}': a folder of that name is in the way.")
    if not overwrite:
        clash = [str(path) for path in paths.values() if os.path.lexists(path)]
        if clash:
            raise FileExistsError("These files exist already: " + ", ".join(clash))
    meta = result.metadata()
    meta["files"] = {k: v.name for k, v in paths.items()}
    text = png_text(meta)
    orig = result.request.image
    mask = result.request.mask if result.request.mask is not None else result.mask_used
    pictures = {
        "original": lambda: orig,
        "mask": lambda: masks.as_bool(mask),
        "baseline": lambda: result.baseline,
        "blended": lambda: result.blended,
        "grid": lambda: comparison_grid(
            [orig, mask_overlay(orig, mask), result.baseline, result.blended],
            ["Original", "Mask", "Baseline (IP2P)", f"Blended ({p.mask_mode})"],
        ),
    }
    stage = _staged(out_dir)
    keep_stage = False
    try:
        staged: list[tuple[Path, Path]] = []
        for item, path in paths.items():
            new = stage / path.name
            if item in pictures:
                images.save_image(new, pictures[item](), text=text, quality=quality, overwrite=False)
            elif item == "metrics_csv":
                images.atomic_write_text(new, metrics_csv(result.metrics), overwrite=False)
            elif item == "json":
                images.atomic_write_text(new, to_json(meta), overwrite=False)
            staged.append((new, path))
        try:
            _publish_set(staged, stage, overwrite)
        except _UndoFailed:
            keep_stage = True
            raise
    finally:
        if not keep_stage:
            shutil.rmtree(stage, ignore_errors=True)
    return paths
