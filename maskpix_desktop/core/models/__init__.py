"""Model weights: the registry, the local model folder, the downloader, hashes, device/dtype choice.

No Qt and no torch at import time: torch is imported inside the device functions, huggingface_hub inside
the functions that need it. Every failure a user can meet raises a typed error from ``core.errors``.

One module per concern: ``registry`` (ids, files, pins), ``local`` (folders, presence, ``require``),
``manifest`` (``maskpix-models.json``), ``hashing`` (sha256, fingerprints), ``downloader`` and ``device``.
Settings that tests tune (``DOWNLOAD_CHUNK``, ``RETRY_BACKOFF_S``, ...) live on the module that reads them.
"""

from __future__ import annotations

from maskpix_desktop.core.models.device import default_dtype, device_label, resolve_device
from maskpix_desktop.core.models.downloader import (
    DOWNLOAD_CHUNK,
    DOWNLOAD_RETRIES,
    DOWNLOAD_TIMEOUT_S,
    RETRY_BACKOFF_S,
    ProgressFn,
    download,
)
from maskpix_desktop.core.models.hashing import file_fingerprint, sha256_file, verify
from maskpix_desktop.core.models.local import (
    ENV_MODELS_DIR,
    ENV_OFFLINE,
    detect_variant,
    diffusers_folder_complete,
    ensure_models_dir,
    fetch_command,
    is_present,
    list_models,
    local_path,
    models_dir,
    offline_mode,
    require,
    resolve_ip2p,
    sam2_folder_complete,
    transformers_folder_complete,
)
from maskpix_desktop.core.models.manifest import (
    MODELS_JSON_CLIP_KEYS,
    MODELS_JSON_MAX_BYTES,
    MODELS_JSON_PATH_KEYS,
    read_models_json,
)
from maskpix_desktop.core.models.registry import (
    CLIP_FOLDER,
    DEFAULT_CLIP,
    DEFAULT_GROUNDING,
    DEFAULT_IP2P,
    DEFAULT_SAM,
    DEFAULT_SAM_CPU,
    EDITORS,
    GROUNDING_FOLDER,
    IP2P_FOLDER,
    REGISTRY,
    WEIGHT_SUFFIXES,
    ModelFile,
    ModelSpec,
    default_sam_for,
    get_spec,
)

__all__ = [
    "CLIP_FOLDER",
    "DEFAULT_CLIP",
    "DEFAULT_GROUNDING",
    "DEFAULT_IP2P",
    "DEFAULT_SAM",
    "DEFAULT_SAM_CPU",
    "DOWNLOAD_CHUNK",
    "DOWNLOAD_RETRIES",
    "DOWNLOAD_TIMEOUT_S",
    "EDITORS",
    "ENV_MODELS_DIR",
    "ENV_OFFLINE",
    "GROUNDING_FOLDER",
    "IP2P_FOLDER",
    "MODELS_JSON_CLIP_KEYS",
    "MODELS_JSON_MAX_BYTES",
    "MODELS_JSON_PATH_KEYS",
    "REGISTRY",
    "RETRY_BACKOFF_S",
    "WEIGHT_SUFFIXES",
    "ModelFile",
    "ModelSpec",
    "ProgressFn",
    "default_dtype",
    "detect_variant",
    "device_label",
    "diffusers_folder_complete",
    "download",
    "ensure_models_dir",
    "fetch_command",
    "file_fingerprint",
    "get_spec",
    "is_present",
    "list_models",
    "local_path",
    "models_dir",
    "offline_mode",
    "read_models_json",
    "require",
    "resolve_device",
    "default_sam_for",
    "resolve_ip2p",
    "sam2_folder_complete",
    "sha256_file",
    "transformers_folder_complete",
    "verify",
]
