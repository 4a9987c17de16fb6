"""``torch.compile`` of an editor's denoiser with a persistent compile cache (issue 17).

Inductor keeps compiled FX graphs and kernels in ``TORCHINDUCTOR_CACHE_DIR``; pointing it at a per-user
folder (``paths.compile_cache_dir``) that outlives the process means the second start of the same model,
shapes and torch version loads its kernels instead of compiling again. The compiled module is the one
``torch.compile`` returns (it forwards ``config``, ``dtype`` and the rest to the original), so the editor
and diffusers use it unchanged. Torch is imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from maskpix_desktop.core.editor_memory import DENOISER

log = logging.getLogger(__name__)

#: Environment variable inductor reads for its cache folder (FX graph cache and generated kernels).
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def use_cache(folder: str | os.PathLike) -> Path:
    """Make ``folder`` inductor's persistent cache (created) and switch the FX graph cache on."""
    import torch._inductor.config as inductor_config

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[INDUCTOR_CACHE_ENV] = str(path)
    inductor_config.fx_graph_cache = True
    return path


def compile_denoiser(pipe: Any, family: str | None, cache: str | os.PathLike, device: str = "cpu") -> str:
    """Replace the pipeline's denoiser (UNet or transformer) by its ``torch.compile`` module; returns what
    was done, e.g. ``torch.compile unet (cache /home/u/.cache/maskpix-desktop/torch-compile)``. On CUDA
    without ``triton`` (inductor's GPU compiler; the lab bundle leaves it out) nothing is compiled and the
    text says so."""
    import torch

    name = DENOISER.get(family or "ip2p", "unet")
    if str(device).startswith("cuda") and importlib.util.find_spec("triton") is None:
        log.warning("torch.compile on CUDA needs triton, which is not installed: running eager")
        return f"eager {name} (torch.compile needs triton on CUDA)"
    folder = use_cache(cache)
    setattr(pipe, name, torch.compile(getattr(pipe, name)))
    log.info("compiling the %s on its first call; cache %s", name, folder)
    return f"torch.compile {name} (cache {folder})"
