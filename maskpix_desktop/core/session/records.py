"""A project's JSON records as typed values: manifest fields, prompts, edit parameters, history results.

Every wrong type, non-finite number or mismatched size raises a :class:`ProjectError` naming the project
file, the member and the field, so :func:`codec.load_project` and :func:`rerun.rerun_from_sidecar` build a
document whole or not at all. No Qt here.
"""

from __future__ import annotations

import re
from dataclasses import fields as dataclass_fields
from typing import Any

import numpy as np

from maskpix_desktop.core.errors import ProjectError
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.core.session.reader import Fields, ProjectReader

__all__ = ["manifest_fields", "params_from", "prompts_from", "result_from_record"]

MAX_HISTORY = 10_000  # results one project may list (each is a few images; real sessions hold dozens)
MAX_LAYERS = 64
MAX_PROMPT_POINTS = 10_000


def manifest_fields(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """The manifest's fields, each of the right type (``image``, ``layers``, ``history``, ``current``...)."""
    f = Fields(where, "manifest.json")
    image = manifest.get("image")
    if image is not None:
        f.obj(image, "image")
        f.str(image.get("name") or "", "image.name")
        f.str(image.get("path"), "image.path", optional=True)
    layers = f.list(manifest.get("layers") or [], "layers", max_len=MAX_LAYERS)
    for i, layer in enumerate(layers):
        f.obj(layer, f"layers[{i}]")
    history = f.list(manifest.get("history") or [], "history", max_len=MAX_HISTORY)
    for i, name in enumerate(history):
        f.str(name, f"history[{i}]")
    current = manifest.get("current")
    if "current" in manifest:  # always written as an integer; anything else is damage
        f.int(current, "current")
    return {
        "image": image,
        "layers": layers,
        "history": history,
        "current": current,
        "prompts": f.str(manifest.get("prompts", "prompts.json"), "prompts"),
        "params": f.str(manifest.get("params", "params.json"), "params"),
    }


def result_from_record(reader: ProjectReader, meta: Any, member: str) -> EditResult:
    """One history entry, every field checked (the arrays must fit together: the window relies on it)."""
    f = Fields(reader.where, member)
    if not isinstance(meta, dict):
        raise ProjectError(f"'{reader.where}' is damaged: '{member}' is not a JSON object.")
    refs = f.obj(meta.get("arrays"), "arrays")
    arrays = {k: reader.array(refs.get(k), f, f"arrays.{k}") for k in _RESULT_ARRAYS}
    for key in ("original", "baseline", "blended", "edit", "mask_used"):
        if arrays[key] is None:
            raise ProjectError(f"'{reader.where}' is damaged: '{member}' lacks its {key} image.")
    original = arrays["original"]
    if original.ndim != 3 or original.shape[2] != 3 or original.dtype != np.uint8:
        raise f.error("arrays.original", "an RGB uint8 image", f"{original.dtype} {original.shape}")
    for key in ("baseline", "blended", "edit"):
        if arrays[key].shape != original.shape or arrays[key].dtype != np.uint8:
            raise f.error(f"arrays.{key}", f"uint8 {original.shape} like the original", arrays[key].shape)
    for key in ("mask_used", "request_mask"):
        if arrays[key] is not None and arrays[key].shape != original.shape[:2]:
            raise f.error(f"arrays.{key}", f"a {original.shape[:2]} mask", arrays[key].shape)
    params = params_from(meta.get("params"), reader.where, member)
    working = meta.get("working_size")
    if working is None:
        working = list(original.shape[:2])
    working = [f.int(v, "working_size", lo=1) for v in f.list(working, "working_size")]
    if len(working) != 2:
        raise f.error("working_size", "two integers", f"{len(working)} numbers")
    timings = f.obj(meta.get("timings") or {}, "timings")
    model = f.obj(meta.get("model") or {}, "model")
    for k, v in model.items():
        if isinstance(v, (dict, list)):
            raise f.error(f"model.{k}", "text", v)
    job_id = meta.get("job_id", 0)
    return EditResult(
        request=EditRequest(
            image=original,
            mask=arrays["request_mask"],
            params=params,
            job_id=f.int(job_id, "job_id") if job_id is not None else 0,
        ),
        baseline=arrays["baseline"],
        blended=arrays["blended"],
        edit=arrays["edit"],
        mask_used=arrays["mask_used"],
        working_size=(working[0], working[1]),
        timings={str(k): f.number(v, f"timings.{k}", allow_nonfinite=True) for k, v in timings.items()},
        model={str(k): str(v) for k, v in model.items()},
        nsfw=f.bool(meta.get("nsfw", False), "nsfw"),
        metrics=_metrics_from_json(meta.get("metrics"), f),
    )


_RESULT_ARRAYS = ("original", "request_mask", "baseline", "blended", "edit", "mask_used")


def _metrics_from_json(metrics: Any, f: Fields) -> dict[str, dict[str, Any]]:
    if metrics is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for kind, row in f.obj(metrics, "metrics").items():
        out[kind] = {
            name: None if v is None else f.number(v, f"metrics.{kind}.{name}", allow_nonfinite=True)
            for name, v in f.obj(row, f"metrics.{kind}").items()
        }
    return out


_PARAM_TYPES = {f.name: f.type for f in dataclass_fields(EditParams)}


def params_from(data: Any, where: str, member: str = "", prefix: str = "params") -> EditParams:
    """:class:`EditParams` from JSON: each known field of the right JSON type, then EditParams' own checks;
    any failure is a ProjectError naming ``where`` and ``<prefix>.<field>``."""
    f = Fields(where, member)
    if data is None:
        raise ProjectError(f"'{where}' is damaged: the edit parameters ('{prefix}') are missing.")
    data = f.obj(data, prefix)
    values: dict[str, Any] = {"instruction": ""}
    for name, kind in _PARAM_TYPES.items():
        if name not in data:
            continue
        value, label = data[name], f"{prefix}.{name}"
        if kind in ("str", str):
            f.str(value, label)
        elif kind in ("int", int):
            f.int(value, label)
        elif kind in ("float", float):
            f.number(value, label)
        values[name] = value
    try:
        return EditParams.from_dict(values)
    except Exception as exc:  # EditParams raises ValueError/TypeError; any other failure is refused too
        text = str(exc)
        hits = ((m.start(), n) for n in _PARAM_TYPES if (m := re.search(rf"\b{re.escape(n)}\b", text)))
        named = [n for _, n in sorted(hits)]  # the field the message names first
        field_name = f" '{prefix}.{named[0]}'" if named else f" '{prefix}'"
        inside = f"{member}, " if member else ""
        raise ProjectError(
            f"'{where}' holds invalid edit parameters: {inside}field{field_name}: {text}"
        ) from None


def prompts_from(data: Any, where: str, member: str = "prompts.json"):
    """Points (finite x, y), labels (0 or 1, one per point) and the box (four finite numbers or null)."""
    f = Fields(where, member)
    if not isinstance(data, dict):
        raise ProjectError(f"'{where}' is damaged: '{member}' is not a JSON object.")
    points = []
    for i, pt in enumerate(f.list(data.get("points") or [], "points", max_len=MAX_PROMPT_POINTS)):
        xy = f.list(pt, f"points[{i}]")
        if len(xy) != 2:
            raise f.error(f"points[{i}]", "two numbers [x, y]", f"{len(xy)} numbers")
        points.append((f.number(xy[0], f"points[{i}]"), f.number(xy[1], f"points[{i}]")))
    labels = [
        f.int(v, f"labels[{i}]", lo=0, hi=1) for i, v in enumerate(f.list(data.get("labels") or [], "labels"))
    ]
    if len(points) != len(labels):
        raise ProjectError(
            f"'{where}' is damaged: {member} holds {len(points)} prompt points but {len(labels)} labels."
        )
    box = data.get("box")
    if box is not None:
        box = tuple(f.number(v, "box") for v in f.list(box, "box"))
        if len(box) != 4:
            raise f.error("box", "four numbers [x0, y0, x1, y1]", f"{len(box)} numbers")
    return points, labels, box
