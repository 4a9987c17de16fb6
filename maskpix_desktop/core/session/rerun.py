"""Re-running an exported result: the :class:`EditRequest` rebuilt from its sidecar or image metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import ImageLoadError, ProjectError
from maskpix_desktop.core.jobs import EditRequest
from maskpix_desktop.core.session.reader import MAX_JSON_BYTES, Fields
from maskpix_desktop.core.session.records import params_from

__all__ = ["rerun_from_sidecar"]


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
