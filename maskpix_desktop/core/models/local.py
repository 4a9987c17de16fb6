"""The local model folder: where each model lives, whether it is complete, the fetch command, ``require``,
offline mode and the resolution of a user's InstructPix2Pix choice."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import MissingWeightsError, WeightsError
from maskpix_desktop.core.models.registry import (
    _FOLDER_KINDS,
    CLIP_FOLDER,
    DEFAULT_IP2P,
    GROUNDING_FOLDER,
    IP2P_FOLDER,
    REGISTRY,
    WEIGHT_SUFFIXES,
    get_spec,
)

log = logging.getLogger(__name__)

ENV_MODELS_DIR = "MASKPIX_MODELS"
ENV_OFFLINE = "MASKPIX_OFFLINE"


def models_dir(override: str | Path | None = None) -> Path:
    """Model folder: ``override`` > env ``MASKPIX_MODELS`` > the per-user data folder. Not created."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_MODELS_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_data_path("maskpix", appauthor=False) / "models"


def ensure_models_dir(override: str | Path | None = None) -> Path:
    """``models_dir(override)``, created if missing."""
    d = models_dir(override)
    d.mkdir(parents=True, exist_ok=True)
    return d


def local_path(name: str, models_dir: str | Path | None = None) -> Path:
    """Where ``name`` lives locally: a file for sam/clip, a diffusers folder for ip2p."""
    spec = get_spec(name)
    root = _models_root(models_dir)
    if spec.kind == "ip2p":
        return root / IP2P_FOLDER
    if spec.kind == "grounding":
        return root / GROUNDING_FOLDER
    if spec.kind in ("sam2", "dino", "editor"):
        return root / str(spec.hf_repo).split("/")[-1]
    if spec.kind == "clip":
        return root / CLIP_FOLDER / spec.files[0].filename
    return root / spec.files[0].filename


def _models_root(override: str | Path | None) -> Path:
    # Functions below take a parameter named ``models_dir`` that shadows the function of that name.
    return models_dir(override)


def is_present(name: str, models_dir: str | Path | None = None) -> bool:
    """True when the weights are on disk and complete (file size checked where the registry knows it)."""
    spec = get_spec(name)
    path = local_path(name, models_dir)
    if spec.kind in ("ip2p", "editor"):
        return diffusers_folder_complete(path)
    if spec.kind == "grounding":
        return transformers_folder_complete(path)
    if spec.kind == "sam2":
        return sam2_folder_complete(path)
    if spec.kind == "dino":
        return vit_folder_complete(path)
    return _file_matches_size(path, spec.files[0].size_bytes)


def _file_matches_size(path: Path, size: int | None) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return path.is_file() and (size is None or st.st_size == size)


def diffusers_folder_complete(folder: str | Path) -> bool:
    """True for ``model_index.json`` plus a non-empty subfolder per listed component (weights for models).

    The safety checker is not required (MaskPix loads with ``safety_checker=None``). A download cut short by
    huggingface_hub leaves its partial files under ``.cache/``, so a missing weight file means incomplete.
    """
    import json

    folder = Path(folder)
    index = folder / "model_index.json"
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(components, dict):
        return False
    for key, value in components.items():
        if key.startswith("_") or key == "safety_checker":
            continue
        if not (isinstance(value, list) and len(value) == 2 and value[0]):
            continue
        sub = folder / key
        if not sub.is_dir() or not any(sub.iterdir()):
            return False
        if key in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2") and not any(
            p.suffix in WEIGHT_SUFFIXES for p in sub.iterdir() if p.is_file()
        ):
            return False
    return True


def transformers_folder_complete(folder: str | Path) -> bool:
    """True for a transformers model folder: ``config.json``, weights, tokenizer and processor files."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    weights = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    if not weights or any(p.stat().st_size == 0 for p in weights):
        return False
    return any(
        (folder / n).is_file() for n in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
    ) and any((folder / n).is_file() for n in ("preprocessor_config.json", "processor_config.json"))


def sam2_folder_complete(folder: str | Path) -> bool:
    """True for a SAM 2 Hugging Face folder: ``config.json`` and a non-empty ``model.safetensors``."""
    folder = Path(folder)
    weights = folder / "model.safetensors"
    return (folder / "config.json").is_file() and weights.is_file() and weights.stat().st_size > 0


def vit_folder_complete(folder: str | Path) -> bool:
    """True for a transformers ViT folder (DINO): ``config.json`` and a non-empty weights file."""
    folder = Path(folder)
    weights = [folder / n for n in ("model.safetensors", "pytorch_model.bin")]
    return (folder / "config.json").is_file() and any(p.is_file() and p.stat().st_size > 0 for p in weights)


def detect_variant(folder: str | Path) -> str | None:
    """Return "fp16" when a diffusers folder holds only ``*.fp16.*`` UNet weights, else None."""
    unet = Path(folder) / "unet"
    if not unet.is_dir():
        return None
    names = [p.name for p in unet.iterdir()]
    plain = any(n.startswith("diffusion_pytorch_model.") and n.count(".") == 1 for n in names)
    fp16 = any(n.startswith("diffusion_pytorch_model.fp16.") for n in names)
    return "fp16" if fp16 and not plain else None


def fetch_command(name: str, models_dir: str | Path | None = None) -> str:
    """The shell command that downloads ``name`` into the given model folder."""
    root = str(_models_root(models_dir))
    quoted = subprocess.list2cmdline([root]) if sys.platform == "win32" else shlex.quote(root)
    return f"maskpix-cli models download {name} --models-dir {quoted}"


def require(name: str, models_dir: str | Path | None = None) -> Path:
    """Local path of ``name``; MissingWeightsError (with the fetch command) when absent or truncated."""
    path = local_path(name, models_dir)
    if is_present(name, models_dir):
        return path
    fetch = fetch_command(name, models_dir)
    spec = get_spec(name)
    expected = spec.files[0].size_bytes if spec.kind not in _FOLDER_KINDS else None
    if path.is_file() and expected is not None:
        size = path.stat().st_size
        other = next(
            (s for s in REGISTRY.values() if s.kind == spec.kind and s.name != name and s.size_bytes == size),
            None,
        )
        if other is not None:  # e.g. the vit_b checkpoint saved under vit_h's file name
            raise WeightsError(
                f"'{path.name}' in {path.parent} has the size of {other.description} ('{other.name}'), "
                f"not of '{name}' ({spec.description}). Choose {other.model_type or other.name} in Model "
                f"settings, or put the right file there: {fetch}"
            )
        log.warning("%s has %d bytes, the registry says %d; treating it as missing", path, size, expected)
        detail = (
            f"The file there is incomplete ({size:,} of {expected:,} bytes)."
            if size < expected
            else f"The file there has {size:,} bytes, not the {expected:,} of the official file."
        )
        raise MissingWeightsError(name, path, fetch_command=fetch, detail=detail)
    raise MissingWeightsError(name, path, fetch_command=fetch)


def list_models(models_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per registry entry: name, kind, present, path, size (expected bytes or None), description."""
    rows = []
    for name, spec in REGISTRY.items():
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "present": is_present(name, models_dir),
                "path": str(local_path(name, models_dir)),
                "size": spec.size_bytes,
                "description": spec.description,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------- device


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def offline_mode() -> bool:
    """True when ``MASKPIX_OFFLINE`` or ``HF_HUB_OFFLINE`` asks for no network access."""
    return _env_true(ENV_OFFLINE) or _env_true("HF_HUB_OFFLINE")


_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_ip2p(
    source: str | None, models_dir: str | Path | None = None, *, cache_dir: str | Path | None = None
) -> tuple[str, bool]:
    """Turn a user's IP2P choice into ``(path_or_hub_id, local_files_only)`` for ``from_pretrained``.

    None -> the registry folder (MissingWeightsError if absent). A folder with ``model_index.json`` -> itself.
    A registry editor name (``ip2p``, ``flux-kontext-dev``, ...) -> its folder in the models folder
    (MissingWeightsError with the fetch command when absent). A hub id -> the registry folder when it
    is the registry repo and present; else the hub id, local-only when huggingface_hub's cache
    (``cache_dir``, default the HF cache) holds it; MissingWeightsError when not cached and offline.
    """
    spec = get_spec(DEFAULT_IP2P)
    if source is None or not str(source).strip():
        return str(require(DEFAULT_IP2P, models_dir)), True

    source = str(source).strip()
    named = REGISTRY.get(source)
    if named is not None and named.kind in ("ip2p", "editor"):  # a registry name: its local folder
        return str(require(source, models_dir)), True
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir() and (path / "model_index.json").is_file():
            return str(path), True
        raise WeightsError(
            f"{path} is not a diffusers model folder (no model_index.json). Give the folder that holds "
            f"model_index.json, unet/, vae/, text_encoder/ ..., or a Hugging Face id like {spec.hf_repo}."
        )
    if not _HF_ID.match(source) or source.startswith(("~", ".")):
        raise MissingWeightsError(source, path)

    if source == spec.hf_repo and is_present(DEFAULT_IP2P, models_dir):
        return str(local_path(DEFAULT_IP2P, models_dir)), True

    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "model_index.json", cache_dir=cache_dir)
    if isinstance(cached, str):
        return source, True
    if offline_mode():
        hint = (
            fetch_command(DEFAULT_IP2P, models_dir)
            if source == spec.hf_repo
            else f"huggingface-cli download {source}"
        )
        where = Path(cache_dir) if cache_dir else _hf_cache_dir()
        raise MissingWeightsError(
            source, where / ("models--" + source.replace("/", "--")), fetch_command=hint
        )
    return source, False


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
