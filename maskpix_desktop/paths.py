"""Every folder MaskPix reads or writes, in one place (Qt-free and torch-free).

Environment overrides: ``MASKPIX_DATA_DIR`` (data: autosave, models by default), ``MASKPIX_MODELS`` (models).
None of these functions creates the folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_DATA_DIR = "MASKPIX_DATA_DIR"
ENV_MODELS_DIR = "MASKPIX_MODELS"
ENV_COMPILE_CACHE = "MASKPIX_COMPILE_CACHE"
APP_NAME = "maskpix"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """The per-user data folder (``$MASKPIX_DATA_DIR`` overrides it, e.g. for tests)."""
    env = _env_path(ENV_DATA_DIR)
    if env is not None:
        return env
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def autosave_dir() -> Path:
    """Where autosaves and their lock markers live."""
    return data_dir() / "autosave"


def models_dir(override: str | os.PathLike | None = None) -> Path:
    """The model folder: ``override`` > ``$MASKPIX_MODELS`` > the per-user data folder's ``models``."""
    if override:
        return Path(override).expanduser()
    env = _env_path(ENV_MODELS_DIR)
    if env is not None:
        return env
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False) / "models"


def compile_cache_dir() -> Path:
    """torch.compile's persistent cache (``$MASKPIX_COMPILE_CACHE`` overrides the per-user cache folder)."""
    env = _env_path(ENV_COMPILE_CACHE)
    if env is not None:
        return env
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME, appauthor=False) / "torch-compile"


def log_dir() -> Path:
    """The per-user log folder (``maskpix.log``, the bundle's ``self-test.txt``)."""
    import platformdirs

    return platformdirs.user_log_path(APP_NAME, appauthor=False)


def resources_dir() -> Path:
    """``resources/`` beside the package (source checkout) or inside a frozen bundle."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"
