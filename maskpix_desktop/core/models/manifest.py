"""A models folder's ``maskpix-models.json``: read and checked, every refusal naming the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import WeightsError

#: Keys of a models folder's ``maskpix-models.json``: the path keys name a file or folder (relative to the
#: models folder); ``clip`` holds keyword arguments of ``ClipScorer.load``.
MODELS_JSON_PATH_KEYS = ("sam", "ip2p", "grounding")
MODELS_JSON_CLIP_KEYS = ("model_name", "pretrained", "config_path", "cache_dir")
MODELS_JSON_MAX_BYTES = 1 << 20


def _unknown_key(path: Path, key: str, where: str, valid: tuple[str, ...]) -> WeightsError:
    import difflib

    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return WeightsError(f"{path}: unknown key '{where}{key}'{hint}; valid keys: {', '.join(valid)}.")


def read_models_json(path: str | Path) -> dict[str, Any]:
    """A models folder's ``maskpix-models.json``, checked: an object whose ``sam`` / ``ip2p`` / ``grounding``
    are non-empty paths (text) and whose ``clip`` is an object of text values with known keys.

    Raises :class:`WeightsError` naming the file and the key for anything else (not JSON, a list, a
    number where a path belongs, an unknown key with the closest valid one).
    """
    import json

    p = Path(path)
    try:
        if p.stat().st_size > MODELS_JSON_MAX_BYTES:
            raise WeightsError(f"{p} is too large for a models manifest ({p.stat().st_size:,} bytes).")
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise WeightsError(f"{p} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        raise WeightsError(f'{p} must hold a JSON object such as {{"sam": "my_sam.pth"}}, not a {kind}.')
    valid = (*MODELS_JSON_PATH_KEYS, "clip")
    for key, value in data.items():
        if key not in valid:
            raise _unknown_key(p, key, "", valid)
        if key == "clip":
            continue
        if not isinstance(value, str) or not value.strip():
            raise WeightsError(f"{p}: '{key}' must be a path (text), not {json.dumps(value)[:40]}.")
    clip = data.get("clip")
    if clip is not None:
        if not isinstance(clip, dict):
            raise WeightsError(
                f'{p}: \'clip\' must be an object such as {{"model_name": ..., "pretrained": ...}}, '
                f"not {json.dumps(clip)[:40]}."
            )
        for key, value in clip.items():
            if key not in MODELS_JSON_CLIP_KEYS:
                raise _unknown_key(p, key, "clip.", MODELS_JSON_CLIP_KEYS)
            if not isinstance(value, str) or not value.strip():
                raise WeightsError(f"{p}: 'clip.{key}' must be text, not {json.dumps(value)[:40]}.")
    return data
