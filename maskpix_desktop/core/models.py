"""Model registry (ids, files, sha256, pinned revisions), local model folder, downloader, device/dtype choice.

No Qt and no torch at import time: torch is imported inside the device functions, huggingface_hub inside
the functions that need it. Every failure a user can meet raises a typed error from ``core.errors``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maskpix_desktop import __version__
from maskpix_desktop.core.errors import DownloadError, MissingWeightsError, WeightsError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int | None], None]

#: Seconds a connect or a single read may stall before the attempt counts as failed.
DOWNLOAD_TIMEOUT_S = 30.0
#: Attempts per file (network errors and 5xx answers are retried, resuming from the ``.part`` file).
DOWNLOAD_RETRIES = 3
#: Pause before retry n is ``RETRY_BACKOFF_S * n`` seconds (interrupted by the cancel event).
RETRY_BACKOFF_S = 1.0
#: Bytes read per chunk; progress and cancel are checked once per chunk.
DOWNLOAD_CHUNK = 1 << 20

ENV_MODELS_DIR = "MASKPIX_MODELS"
ENV_OFFLINE = "MASKPIX_OFFLINE"

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: local name (relative path inside a folder model), source URL, pinned hash."""

    filename: str
    url: str
    sha256: str | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry. ``kind`` is "sam", "sam2", "ip2p", "clip" or "grounding"."""

    name: str
    kind: str
    description: str
    files: tuple[ModelFile, ...]
    hf_repo: str | None = None
    hf_revision: str | None = None
    model_type: str | None = None
    #: diffusers weight variant stored on disk ("fp16" -> ``*.fp16.safetensors``); pass to from_pretrained.
    variant: str | None = None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    #: OpenAI CLIP weights were trained with QuickGELU: load with ``force_quick_gelu=True``.
    clip_quick_gelu: bool = False

    @property
    def size_bytes(self) -> int | None:
        """Total download size, or None when any file's size is unknown."""
        sizes = [f.size_bytes for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


_SAM_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"


def _sam(name: str, model_type: str, filename: str, sha256: str, size: int, label: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind="sam",
        description=f"Segment Anything {label} (Meta, Apache-2.0)",
        files=(ModelFile(filename, _SAM_BASE + filename, sha256, size),),
        model_type=model_type,
    )


_IP2P_REPO = "timbrooks/instruct-pix2pix"
# Commit of timbrooks/instruct-pix2pix seen as the snapshot folder in many public diffusers caches
# (models--timbrooks--instruct-pix2pix/snapshots/31519b5...); main carries the fp16 variant files below.
# Not checked against the live hub (no network here): if a download finds the files missing, the
# DownloadError says so and this pin is the first thing to re-check.
_IP2P_REVISION = "31519b5cb02a7fd89b906d88731cd4d6a7bbf88d"


def _hf_file(repo: str, revision: str, filename: str, sha256: str | None = None) -> ModelFile:
    return ModelFile(filename, f"https://huggingface.co/{repo}/resolve/{revision}/{filename}", sha256)


# The diffusers folder, fp16 variant only (about 2 GB). The safety checker (1.2 GB) is left out: load with
# ``safety_checker=None, requires_safety_checker=False, variant="fp16"``. The weight hashes are the hub's
# LFS sha256 of the files on main (from public pinned manifests); download() checks them after the snapshot.
_IP2P_FILES = tuple(
    _hf_file(_IP2P_REPO, _IP2P_REVISION, f, sha)
    for f, sha in (
        ("model_index.json", None),
        ("scheduler/scheduler_config.json", None),
        ("feature_extractor/preprocessor_config.json", None),
        ("tokenizer/merges.txt", None),
        ("tokenizer/special_tokens_map.json", None),
        ("tokenizer/tokenizer_config.json", None),
        ("tokenizer/vocab.json", None),
        ("text_encoder/config.json", None),
        (
            "text_encoder/model.fp16.safetensors",
            "77795e2023adcf39bc29a884661950380bd093cf0750a966d473d1718dc9ef4e",
        ),
        ("unet/config.json", None),
        (
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "0d6bbc0a95dd125196d327a660b43d24c56f433eb30d2776f1327fb86bd38f78",
        ),
        ("vae/config.json", None),
        (
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "4fbcf0ebe55a0984f5a5e00d8c4521d52359af7229bb4d81890039d2aa16dd7c",
        ),
    )
)

# open_clip.pretrained.get_pretrained_cfg("ViT-B-32", "openai") gives hf_hub
# "timm/vit_base_patch32_clip_224.openai/" (and OpenAI's TorchScript URL); open_clip prefers the hub copy
# and its safetensors file, which needs no pickle. Revision, sha256 and size from public pinned manifests.
_CLIP_REPO = "timm/vit_base_patch32_clip_224.openai"
_CLIP_REVISION = "a6f597a30f7b82c51704746581f9a4e41421e878"
_CLIP_FILE = ModelFile(
    "open_clip_model.safetensors",
    f"https://huggingface.co/{_CLIP_REPO}/resolve/{_CLIP_REVISION}/open_clip_model.safetensors",
    "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31",
    605_143_284,
)

# GroundingDINO (Swin-T) for the auto mask's text grounding, loaded with transformers
# AutoModelForZeroShotObjectDetection from a local folder. The revision is the commit several public
# download scripts pin for IDEA-Research/grounding-dino-tiny; model.safetensors is about 689 MB
# (689,359,096 bytes per a public model catalog). No sha256 was found in a public source we could read,
# so the files are unpinned (None): download() then logs "no sha256 pinned" — pin them from the hub's LFS
# metadata on a connected machine. Not checked against the live hub (no network here).
_GROUNDING_REPO = "IDEA-Research/grounding-dino-tiny"
_GROUNDING_REVISION = "a2bb814dd30d776dcf7e30523b00659f4f141c71"
_GROUNDING_FILES = tuple(
    _hf_file(_GROUNDING_REPO, _GROUNDING_REVISION, f, None)
    for f in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "added_tokens.json",
    )
)

# SAM 2.1 (Meta, Apache-2.0) in the Hugging Face format, read by transformers' Sam2Model
# (core/sam2_segmenter.py): a folder with these files. UNPINNED: no revision commit, file size or sha256
# of these repositories was available here (no network), so the revision is "main" and no hash is
# checked (download() logs "no sha256 pinned"); pin them from the hub's LFS metadata on a connected
# machine. The sizes in the descriptions are parameter counts of the image model (Sam2Model built from
# the official configs, core/sam2_arch.py), not file sizes.
_SAM2_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def _sam2(size: str, label: str, params: str) -> ModelSpec:
    repo = f"facebook/sam2.1-hiera-{size.replace('_', '-')}"
    return ModelSpec(
        name=f"sam2.1_hiera_{size}",
        kind="sam2",
        description=f"SAM 2.1 hiera {label} ({params} parameters; Meta, Apache-2.0; unpinned)",
        files=tuple(_hf_file(repo, "main", f) for f in _SAM2_FILES),
        hf_repo=repo,
        hf_revision="main",
        model_type=f"sam2_hiera_{size}",
    )


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _sam(
            "sam_vit_h",
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            2_564_550_879,
            "ViT-H (2.4 GB)",
        ),
        _sam(
            "sam_vit_l",
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            1_249_524_607,
            "ViT-L (1.2 GB)",
        ),
        _sam(
            "sam_vit_b",
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375_042_383,
            "ViT-B (358 MB)",
        ),
        _sam2("tiny", "tiny", "31 M"),
        _sam2("small", "small", "39 M"),
        _sam2("base_plus", "base+", "73 M"),
        _sam2("large", "large", "217 M"),
        ModelSpec(
            name="ip2p",
            kind="ip2p",
            description="InstructPix2Pix (timbrooks/instruct-pix2pix, diffusers, fp16, ~2 GB)",
            files=_IP2P_FILES,
            hf_repo=_IP2P_REPO,
            hf_revision=_IP2P_REVISION,
            variant="fp16",
        ),
        ModelSpec(
            name="clip",
            kind="clip",
            description="OpenAI CLIP ViT-B/32 for CLIP scores (open_clip, 577 MB)",
            files=(_CLIP_FILE,),
            hf_repo=_CLIP_REPO,
            hf_revision=_CLIP_REVISION,
            model_type="ViT-B-32",
            clip_model="ViT-B-32",
            clip_pretrained="openai",
            clip_quick_gelu=True,
        ),
        ModelSpec(
            name="grounding_dino",
            kind="grounding",
            description="GroundingDINO tiny for Auto mask grounding (IDEA-Research, Apache-2.0, ~690 MB)",
            files=_GROUNDING_FILES,
            hf_repo=_GROUNDING_REPO,
            hf_revision=_GROUNDING_REVISION,
        ),
    )
}

DEFAULT_SAM = "sam_vit_h"
DEFAULT_IP2P = "ip2p"
DEFAULT_CLIP = "clip"
DEFAULT_GROUNDING = "grounding_dino"

#: Kinds stored as a folder of files (a Hugging Face snapshot), not a single file.
_FOLDER_KINDS = ("ip2p", "grounding", "sam2")

IP2P_FOLDER = "instruct-pix2pix"
CLIP_FOLDER = "clip"
GROUNDING_FOLDER = "grounding-dino-tiny"


# --------------------------------------------------------------------------------------------- paths


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; ValueError naming the known ids otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}") from None


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
    if spec.kind == "sam2":
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
    if spec.kind == "ip2p":
        return diffusers_folder_complete(path)
    if spec.kind == "grounding":
        return transformers_folder_complete(path)
    if spec.kind == "sam2":
        return sam2_folder_complete(path)
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
        if key in ("unet", "vae", "text_encoder") and not any(
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
    A hub id -> the registry folder when it is the registry repo and present; else the hub id, local-only
    when huggingface_hub's cache (``cache_dir``, default the HF cache) holds it; MissingWeightsError when
    not cached and offline mode is on.
    """
    spec = get_spec(DEFAULT_IP2P)
    if source is None or not str(source).strip():
        return str(require(DEFAULT_IP2P, models_dir)), True

    source = str(source).strip()
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


# --------------------------------------------------------------------------------------------- hashing


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_FINGERPRINTS: dict[tuple[Any, ...], str] = {}
_FINGERPRINT_LOCK = threading.Lock()
_EDGE = 1 << 20


def file_fingerprint(path: str | Path) -> str:
    """Hash that identifies model weights for result sidecars; cached per (path, mtime, size).

    A file: its full sha256 (equals the registry hash). A folder: sha256 over each weight file's relative
    path, size, first and last MiB (cheap, and stable across copies of the same folder).
    """
    p = Path(path).expanduser().resolve()
    if p.is_file():
        st = p.stat()
        key: tuple[Any, ...] = ("file", str(p), st.st_mtime_ns, st.st_size)
        with _FINGERPRINT_LOCK:
            hit = _FINGERPRINTS.get(key)
        if hit is None:
            hit = sha256_file(p)
            with _FINGERPRINT_LOCK:
                _FINGERPRINTS[key] = hit
        return hit
    if not p.is_dir():
        raise FileNotFoundError(f"No model file or folder at {p}")
    files = sorted(
        (f for f in p.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES and ".cache" not in f.parts),
        key=lambda f: f.relative_to(p).as_posix(),
    )
    stats = [(f, f.stat()) for f in files]
    key = ("dir", str(p), tuple((f.relative_to(p).as_posix(), s.st_mtime_ns, s.st_size) for f, s in stats))
    with _FINGERPRINT_LOCK:
        hit = _FINGERPRINTS.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    for f, st in stats:
        h.update(f.relative_to(p).as_posix().encode() + b"\0" + str(st.st_size).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(fh.read(_EDGE))
            if st.st_size > _EDGE:
                fh.seek(max(_EDGE, st.st_size - _EDGE))
                h.update(fh.read(_EDGE))
    hit = h.hexdigest()
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[key] = hit
    return hit


def verify(name: str, models_dir: str | Path | None = None) -> bool:
    """Full check of local weights against the registry sha256 (slow for big files); False if absent."""
    spec = get_spec(name)
    if not is_present(name, models_dir):
        return False
    path = local_path(name, models_dir)
    folder = spec.kind in _FOLDER_KINDS
    files = [(path / f.filename, f) for f in spec.files] if folder else [(path, spec.files[0])]
    return all(f.sha256 is None or sha256_file(p) == f.sha256 for p, f in files)


# --------------------------------------------------------------------------------------------- download


class _Retryable(Exception):
    """A transient failure: the next attempt resumes from the .part file."""


class _CancelledDownload(Exception):
    pass


_PATH_LOCKS: dict[str, threading.Lock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(str(path.resolve()), threading.Lock())


def download(
    name: str,
    models_dir: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    url_override: str | None = None,
) -> Path:
    """Fetch ``name`` into the model folder and return its local path; returns at once if already present.

    Single files stream into ``<file>.part`` (resumed with a Range request, ``DOWNLOAD_RETRIES`` attempts),
    are checked against the registry sha256 and only then renamed into place. ``progress(done, total)``
    gets bytes; ``cancel`` is checked between chunks. Every failure raises DownloadError and leaves no
    final file; a ``.part`` survives only a network failure, so the next try resumes.
    """
    spec = get_spec(name)
    dest = local_path(name, models_dir)
    if is_present(name, models_dir):
        return dest
    if _env_true(ENV_OFFLINE):
        raise DownloadError(
            f"Cannot download '{name}': offline mode is on ({ENV_OFFLINE}). Copy the weights to {dest} "
            f"or run '{fetch_command(name, models_dir)}' on a connected machine."
        )
    if spec.kind in _FOLDER_KINDS:
        return _download_snapshot(spec, dest, progress=progress, cancel=cancel)
    mf = spec.files[0]
    url = url_override or mf.url
    with _lock_for(dest):
        if is_present(name, models_dir):  # another thread finished it meanwhile
            return dest
        _download_file(name, mf, url, dest, progress=progress, cancel=cancel)
    return dest


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _download_file(
    name: str,
    mf: ModelFile,
    url: str,
    dest: Path,
    *,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    last: BaseException | None = None
    for attempt in range(1, DOWNLOAD_RETRIES + 1):
        try:
            if cancel is not None and cancel.is_set():
                raise _CancelledDownload
            _fetch_into(url, part, mf.size_bytes, progress, cancel)
            break
        except _CancelledDownload:
            _remove(part)
            raise DownloadError(f"Download of '{name}' was cancelled; nothing was kept.") from None
        except _Retryable as exc:
            last = exc.__cause__ or exc
            log.warning("download %s attempt %d/%d failed: %s", url, attempt, DOWNLOAD_RETRIES, last)
            if attempt < DOWNLOAD_RETRIES and RETRY_BACKOFF_S > 0:
                if cancel is not None and cancel.wait(RETRY_BACKOFF_S * attempt):
                    _remove(part)
                    raise DownloadError(f"Download of '{name}' was cancelled; nothing was kept.") from None
                if cancel is None:
                    time.sleep(RETRY_BACKOFF_S * attempt)
    else:
        raise DownloadError(
            f"Could not download '{name}' from {url} after {DOWNLOAD_RETRIES} attempts: {last}. "
            f"Are you offline? MaskPix runs offline once the weights are present: copy {mf.filename} "
            f"to {dest}, or retry later (the partial file is kept and the download resumes)."
        ) from last

    size = part.stat().st_size
    if mf.size_bytes is not None and size != mf.size_bytes:
        _remove(part)
        raise DownloadError(
            f"Download of '{name}' from {url} has {size} bytes, expected {mf.size_bytes}; discarded."
        )
    if mf.sha256:
        actual = sha256_file(part)
        if actual != mf.sha256.lower():
            _remove(part)
            raise DownloadError(
                f"Checksum mismatch for '{name}' from {url}: expected sha256 {mf.sha256}, got {actual}. "
                "The file was discarded; the source may be corrupt or changed."
            )
    else:
        log.warning("no sha256 pinned for %s; saved without a checksum check", mf.filename)
    os.replace(part, dest)
    log.info("downloaded %s -> %s", url, dest)


def _content_range_total(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from a ``Content-Range: bytes a-b/total`` header."""
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _fetch_into(
    url: str,
    part: Path,
    expected_size: int | None,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    """One attempt: append to (206) or rewrite (200) ``part``; raises _Retryable on transient failures."""
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:
        _remove(part)
        offset = 0
    if offset and expected_size is not None and offset == expected_size:
        return  # complete already; the caller verifies the hash
    req = urllib.request.Request(url, headers={"User-Agent": f"maskpix-desktop/{__version__}"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            if expected_size is None:
                return  # the server says the part already holds everything; the hash decides
            _remove(part)
            raise _Retryable("server refused the resume range; restarting") from exc
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code}") from exc
        raise DownloadError(f"Download from {url} failed: HTTP {exc.code} {exc.reason}.") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(str(exc)) from exc

    with resp:
        status = resp.getcode()
        length_hdr = resp.headers.get("Content-Length")
        length = int(length_hdr) if length_hdr and length_hdr.isdigit() else None
        start, range_total = _content_range_total(resp.headers.get("Content-Range"))
        if offset and status == 206 and start == offset:
            mode, done = "ab", offset
        else:  # 200 (or a file:// URL): the server sends everything, start over
            mode, done = "wb", 0
        total = expected_size or range_total or (done + length if length is not None else None)
        received = 0
        with open(part, mode) as fh:
            if progress is not None:
                progress(done, total)
            while True:
                if cancel is not None and cancel.is_set():
                    raise _CancelledDownload
                try:
                    chunk = resp.read(DOWNLOAD_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retryable(f"connection lost after {done} bytes: {exc}") from exc
                if not chunk:
                    break
                fh.write(chunk)
                done += len(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(done, total)
    if length is not None and received < length:
        raise _Retryable(f"connection closed after {done} bytes (expected {done - received + length})")


def _download_snapshot(
    spec: ModelSpec, dest: Path, *, progress: ProgressFn | None, cancel: threading.Event | None
) -> Path:
    """huggingface_hub snapshot of the registry files into ``dest``; then our own sha256 check.

    Byte progress and cancel go through a tqdm class handed to huggingface_hub; a cancel stops at the next
    progress update and keeps the partial files (huggingface_hub resumes them on the next try).
    """
    if cancel is not None and cancel.is_set():
        raise DownloadError(f"Download of '{spec.name}' was cancelled.")
    total = spec.size_bytes
    if progress is not None:
        progress(0, total)
    try:
        from huggingface_hub import snapshot_download

        with _lock_for(dest):
            snapshot_download(
                repo_id=spec.hf_repo,
                revision=spec.hf_revision,
                local_dir=str(dest),
                allow_patterns=[f.filename for f in spec.files],
                etag_timeout=DOWNLOAD_TIMEOUT_S,
                tqdm_class=_hub_tqdm_class(progress, cancel, total),
            )
    except _CancelledDownload:
        raise DownloadError(
            f"Download of '{spec.name}' was cancelled; the partial files in {dest} resume next time."
        ) from None
    except Exception as exc:  # any hub or network failure becomes a DownloadError
        raise DownloadError(
            f"Could not download '{spec.name}' ({spec.hf_repo}@{spec.hf_revision}) into {dest}: {exc}. "
            "Are you offline? A later try resumes where this one stopped."
        ) from exc
    missing = [f.filename for f in spec.files if not (dest / f.filename).is_file()]
    # Weights (hash-pinned) and model_index.json are essential; a missing small config is left for
    # diffusers_folder_complete() below and for diffusers itself to judge.
    essential = [m for m in missing if m == "model_index.json" or _pinned(spec, m)]
    if essential:
        raise DownloadError(
            f"The snapshot of {spec.hf_repo}@{spec.hf_revision} lacks {', '.join(essential)}; "
            "the pinned revision may not carry these files."
        )
    if missing:
        log.warning("snapshot of %s lacks optional files: %s", spec.hf_repo, ", ".join(missing))
    done = 0
    for f in spec.files:
        p = dest / f.filename
        if not p.is_file():
            continue
        if f.sha256:
            actual = sha256_file(p)
            if actual != f.sha256:
                _remove(p)
                raise DownloadError(
                    f"Checksum mismatch for {spec.name}/{f.filename}: expected sha256 {f.sha256}, got "
                    f"{actual}. The file was discarded."
                )
        done += p.stat().st_size
    if progress is not None:
        progress(done, done)
    complete = {"grounding": transformers_folder_complete, "sam2": sam2_folder_complete}.get(
        spec.kind, diffusers_folder_complete
    )
    if not complete(dest):
        raise DownloadError(f"{dest} is still incomplete after the download of '{spec.name}'.")
    return dest


def _hub_tqdm_class(progress: ProgressFn | None, cancel: threading.Event | None, total: int | None) -> type:
    """A silent tqdm class that forwards byte counts to ``progress`` and raises when ``cancel`` is set."""
    from tqdm.auto import tqdm as base_tqdm

    lock = threading.Lock()
    best = [0]

    class _HubProgress(base_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            self._is_bytes = kwargs.get("unit") == "B"
            self._count = int(kwargs.get("initial") or 0)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if cancel is not None and cancel.is_set():
                raise _CancelledDownload
            if self._is_bytes and n and progress is not None:
                with lock:
                    self._count += int(n)
                    best[0] = max(best[0], self._count)
                    done = best[0]
                progress(done, total)
            return None

    return _HubProgress


def _pinned(spec: ModelSpec, filename: str) -> bool:
    return any(f.filename == filename and f.sha256 for f in spec.files)


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


def resolve_device(pref: str = "auto") -> str:
    """Pick "cuda", "mps" or "cpu" for "auto"; an unavailable explicit device falls back to cpu (warned)."""
    import torch

    pref = (pref or "auto").strip().lower()
    cuda_ok = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps_backend is not None and mps_backend.is_available())
    if pref == "auto":
        return "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
    if pref == "cpu":
        return "cpu"
    if pref == "cuda" or pref.startswith("cuda:"):
        if not cuda_ok:
            log.warning("device %r requested but CUDA is not available; using cpu", pref)
            return "cpu"
        if ":" in pref:
            idx = pref.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                count = torch.cuda.device_count()
                log.warning("device %r does not exist (%d CUDA devices); using cuda:0", pref, count)
                return "cuda:0"
        return pref
    if pref == "mps":
        if not mps_ok:
            log.warning("device 'mps' requested but not available; using cpu")
            return "cpu"
        return "mps"
    raise ValueError(f"Unknown device {pref!r}; use auto, cuda, cuda:N, mps or cpu")


_DTYPES = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def default_dtype(device: str, precision: str = "auto") -> torch.dtype:
    """For "auto": float16 on CUDA, float32 on cpu/mps; "fp32", "fp16" or "bf16" as asked."""
    import torch

    precision = (precision or "auto").strip().lower()
    if precision == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    try:
        return getattr(torch, _DTYPES[precision])
    except KeyError:
        raise ValueError(f"Unknown precision {precision!r}; use auto, fp32, fp16 or bf16") from None


def device_label(device: str) -> str:
    """Human label such as "CUDA: <GPU name>", "MPS: Apple GPU" or "CPU"."""
    device = str(device)
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            idx = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            return f"CUDA: {torch.cuda.get_device_name(idx)}"
        return "CUDA (unavailable)"
    if device.startswith("mps"):
        return "MPS: Apple GPU"
    return "CPU"
