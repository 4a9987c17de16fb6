"""Writing results: images with PNG text chunks, a comparison grid, metrics CSV and a JSON sidecar.

Used by the CLI and the GUI's export dialog alike. Nothing is overwritten silently and every file is
written atomically (temp file + rename), so a full disk leaves no partial file; a failed export removes
the files it had created. JSON (sidecar and the ``maskpix`` PNG text chunk) is strict: non-finite
numbers (an untouched background has an infinite PSNR) are written as the strings "inf", "-inf" and
"nan", as in the CSV, and ``float()`` reads them back.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images, masks
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
    """CSV text with one row per variant (baseline, blended) and one column per metric."""
    keys: list[str] = []
    for row in metrics.values():
        keys += [k for k in row if k not in keys]
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


def planned_paths(
    out_dir: Path, items: Iterable[str], *, pattern: str = "{item}", fmt: str = "png", **fields: str
) -> dict[str, Path]:
    """Target path per item; ``pattern`` may use {item}, {stem}, {seed}, {mode} and any ``fields``."""
    ext = IMAGE_FORMATS[fmt]
    paths = {}
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
        path = out_dir / f"{name}{suffix}"
        if path in paths.values():
            raise ValueError(
                f"pattern {pattern!r} gives two items the same file name {path.name}; add {{item}}"
            )
        paths[item] = path
    return paths


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
) -> dict[str, Path]:
    """Write the chosen items; refuses (FileExistsError, nothing written) if any target exists."""
    out_dir = Path(out_dir)
    p = result.request.params
    paths = planned_paths(
        out_dir, items, pattern=pattern, fmt=fmt, stem=stem, seed=str(p.seed), mode=p.mask_mode
    )
    if not overwrite:
        clash = [str(path) for path in paths.values() if path.exists()]
        if clash:
            raise FileExistsError("These files exist already: " + ", ".join(clash))
    out_dir.mkdir(parents=True, exist_ok=True)
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
    existed = {item for item, path in paths.items() if path.exists()}
    written: list[Path] = []
    try:
        for item, path in paths.items():
            if item in pictures:
                images.save_image(path, pictures[item](), text=text, quality=quality, overwrite=overwrite)
            elif item == "metrics_csv":
                images.atomic_write_text(path, metrics_csv(result.metrics), overwrite=overwrite)
            elif item == "json":
                images.atomic_write_text(path, to_json(meta), overwrite=overwrite)
            if item not in existed:
                written.append(path)
    except BaseException:
        for path in written:  # all or nothing for the files this call created
            path.unlink(missing_ok=True)
        raise
    return paths
