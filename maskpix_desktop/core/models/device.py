"""Device and dtype choice; torch is imported inside the functions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


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
