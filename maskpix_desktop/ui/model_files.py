"""The model table's rows: what a models folder holds (registry models and a ``maskpix-models.json``).

Qt-free helpers for :mod:`maskpix_desktop.ui.model_dialog`: sizes on disk, the manifest's rows, the
status words, and the offline explanations.
"""

from __future__ import annotations

import logging
from pathlib import Path

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.service import MANIFEST

log = logging.getLogger(__name__)

COLUMNS = ("Name", "Description", "Size", "Status")
PRESENT, MISSING, NOT_NEEDED = "Present", "Missing", "Not needed"
#: Manifest key -> the registry kinds it replaces.
MANIFEST_KINDS = {"sam": ("sam", "sam2"), "ip2p": ("ip2p",), "clip": ("clip",), "grounding": ("grounding",)}
MANIFEST_ROW = "manifest:"  # user-role prefix of the manifest's rows


def disk_size(path: Path) -> int | None:
    """Bytes of a file, or of every file under a folder; None when absent."""
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        pass
    return None


def manifest_rows(folder: Path) -> list[dict[str, object]]:
    """One table row per model a ``maskpix-models.json`` in ``folder`` names (WeightsError when malformed)."""
    path = folder / MANIFEST
    if not path.is_file():
        return []
    data = models.read_models_json(path)
    rows = []
    for key, value in data.items():
        target = value.get("pretrained", "") if isinstance(value, dict) else value
        where = Path(target).expanduser() if target else folder
        if target and not where.is_absolute():
            where = folder / where
        present = where.exists() if target else True
        label = value.get("model_name", "") if isinstance(value, dict) else ""
        rows.append(
            {
                "name": f"{MANIFEST_ROW}{key}",
                "label": f"{key} ({MANIFEST})",
                "description": f"{label} {target}".strip() + " (named by the manifest)",
                "size": disk_size(where) if target else None,
                "present": present,
                "path": str(where),
                "status": PRESENT if present else MISSING,
            }
        )
    return rows


def offline_message(folder: Path | str, name: str = "NAME") -> str:
    """What to do when this machine cannot download."""
    return (
        f"This machine is offline: copy the files to {folder} (see README 'Models') or run "
        f"`maskpix-cli models download {name}` on a connected machine."
    )


def is_network_error(message: str) -> bool:
    """True for DownloadError messages about an unreachable network or offline mode."""
    text = message.lower()
    return "offline" in text or "could not download" in text or "connection" in text


def table_rows(folder: Path, folder_text: str | None) -> tuple[list[dict[str, object]], str]:
    """The manifest's rows then the registry's, each with a status; plus a problem to show (or "")."""
    problem = ""
    try:
        extra = manifest_rows(folder)
    except WeightsError as exc:  # a malformed manifest: say so, list the registry as it is
        extra, problem = [], str(exc)
    try:
        rows = models.list_models(folder_text)
    except Exception as exc:  # a bad path must not break the dialog
        log.warning("cannot list models: %s", exc)
        rows, problem = [], f"Cannot read the models folder: {exc}"
    supplied = {k for row in extra for k in MANIFEST_KINDS.get(str(row["name"])[len(MANIFEST_ROW) :], ())}
    for row in rows:
        row["label"] = row["name"]
        if row["present"]:
            row["status"] = PRESENT
        else:
            row["status"] = NOT_NEEDED if row["kind"] in supplied else MISSING
    return [*extra, *rows], problem
