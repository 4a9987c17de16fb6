"""What a model choice still lacks, all at once: every missing model with its size and one fetch command.

Qt-free and torch-free (file checks only), so the window, the start screen and the CLI can ask before any
load. A models folder's ``maskpix-models.json`` counts: a model it names is needed instead of the
registry one.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import MissingWeightsError, WeightsError
from maskpix_desktop.core.service import ModelChoice

#: Download sizes the registry does not know file by file (Hugging Face folders), as the README gives them;
#: the editors' are parameters x 2 bytes (bf16/fp16; docs/MODELS.md), not measured downloads.
APPROX_SIZES = {
    "ip2p": "~2 GB",
    "grounding_dino": "~690 MB",
    "sam2.1_hiera_tiny": "~160 MB",
    "sam2.1_hiera_small": "~185 MB",
    "sam2.1_hiera_base_plus": "~325 MB",
    "sam2.1_hiera_large": "~900 MB",
    "sdxl-instructpix2pix": "~7 GB+",
    "flux-kontext-dev": "~34 GB",
    "qwen-image-edit": "~55 GB",
    "qwen-image-edit-2509": "~55 GB",
}


@dataclass(frozen=True)
class MissingModel:
    """A needed model that is not on disk: ``name`` (a registry name, or the role for a custom path),
    ``path`` where it was looked for, ``size`` for people, ``registry`` True when ``models download``
    can fetch it."""

    role: str
    name: str
    path: Path
    size: str
    registry: bool


def format_size(size: int | None) -> str:
    """Bytes as "2.4 GB" / "358 MB" (binary units, like the registry's descriptions); None -> "?"."""
    if size is None:
        return "?"
    value, units = float(size), ("B", "KB", "MB", "GB", "TB")
    i = 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.1f} {units[i]}" if i >= 3 else f"{value:.0f} {units[i]}"


def registry_size(name: str) -> str:
    """The download size of a registry model for people ("2.4 GB", "~2 GB", "?")."""
    spec = models.REGISTRY.get(name)
    if spec is not None and spec.size_bytes is not None:
        return format_size(spec.size_bytes)
    return APPROX_SIZES.get(name, "?")


def _missing(role: str, exc: MissingWeightsError) -> MissingModel:
    registry = exc.name in models.REGISTRY
    size = registry_size(exc.name) if registry else "?"
    return MissingModel(role, exc.name, exc.path, size, registry)


def missing_models(choice: ModelChoice) -> list[MissingModel]:
    """Every model ``choice`` needs (SAM, InstructPix2Pix, CLIP) that is absent, in that order.

    A malformed ``maskpix-models.json`` raises its :class:`WeightsError` (naming the file and key).
    """
    c = choice.with_manifest()
    found: list[MissingModel] = []
    try:
        c.sam_checkpoint()
    except MissingWeightsError as exc:
        found.append(_missing("sam", exc))
    except WeightsError:
        pass  # present but wrong (e.g. another variant's size): the load explains it
    try:
        models.resolve_ip2p(c.ip2p, c.models_dir)
    except MissingWeightsError as exc:
        found.append(_missing("ip2p", exc))
    except WeightsError:
        pass
    if c.clip is None:
        try:
            models.require(models.DEFAULT_CLIP, c.models_dir)
        except MissingWeightsError as exc:
            found.append(_missing("clip", exc))
        except (WeightsError, ValueError):
            pass
    else:
        weights = c.clip.get("pretrained", "")
        looks_like_path = any(sep in weights for sep in ("/", "\\")) or Path(weights).suffix
        if weights and looks_like_path and not Path(weights).expanduser().exists():
            found.append(MissingModel("clip", "clip", Path(weights), "?", False))
    return found


def fetch_command(names: list[str], models_dir: str | Path | None) -> str:
    """One command that downloads every registry model in ``names`` into the folder."""
    root = str(models.models_dir(models_dir))
    quoted = subprocess.list2cmdline([root]) if sys.platform == "win32" else shlex.quote(root)
    return f"maskpix-cli models download {' '.join(names)} --models-dir {quoted}"


def missing_message(missing: list[MissingModel], models_dir: str | Path | None) -> tuple[str, str]:
    """(text, command): one message naming every missing model with its size and where it was looked for,
    and the command that fetches the registry ones ("" when none can be fetched)."""
    if not missing:
        return "", ""
    folder = models.models_dir(models_dir)
    items = "; ".join(f"{m.name} ({m.size}, expected at {m.path})" for m in missing)
    noun = "model is" if len(missing) == 1 else f"{len(missing)} models are"
    text = f"{noun[0].upper()}{noun[1:]} missing in {folder}: {items}."
    fetchable = [m.name for m in missing if m.registry]
    command = fetch_command(fetchable, models_dir) if fetchable else ""
    if command:
        text += f" Fetch {'it' if len(fetchable) == 1 else 'them'} on a connected machine with: {command}"
    custom = [m.name for m in missing if not m.registry]
    if custom:
        text += f" Choose existing files for {', '.join(custom)} in Model settings."
    return text, command
