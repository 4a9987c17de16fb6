"""A GGUF file as the transformer of a flow editor (FLUX.1 Kontext, Qwen-Image-Edit; issue 17).

Community GGUF files (e.g. city96's) hold only the transformer, quantised (Q8_0, Q4_K, ...). diffusers
loads one with ``<Transformer>.from_single_file(file, quantization_config=GGUFQuantizationConfig(...))``,
converting the original key names when needed and dequantising on the fly in each forward; the rest of
the pipeline (text encoders, VAE, scheduler) comes from the editor folder, which also gives the
transformer's config (``config=folder, subfolder="transformer"``), so nothing is fetched. Needs the
``gguf`` package (``pip install gguf``); torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import WeightsError

#: The transformer class of each family a GGUF file can replace the denoiser of.
GGUF_TRANSFORMERS = {"kontext": "FluxTransformer2DModel", "qwen_edit": "QwenImageTransformer2DModel"}


def require_family(family: str | None, source: str | Path) -> str:
    """``family`` when a GGUF file can replace its transformer; WeightsError naming the families otherwise."""
    if family not in GGUF_TRANSFORMERS:
        raise WeightsError(
            f"A GGUF file replaces the transformer of {' or '.join(GGUF_TRANSFORMERS)} editors; the "
            f"editor {source} is {family or 'of an unknown family'}."
        )
    return family


def load_gguf_transformer(
    path: str | Path, family: str, config_source: str | Path, dtype: Any, local_only: bool
) -> Any:
    """The transformer of ``family`` (checked by :func:`require_family`) with the GGUF file's (quantised)
    weights; WeightsError saying why not."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"The GGUF file {path} does not exist.")
    if importlib.util.find_spec("gguf") is None:
        raise WeightsError("Loading a GGUF file needs the gguf package: pip install gguf")
    import diffusers

    cls = getattr(diffusers, GGUF_TRANSFORMERS[family])
    try:
        return cls.from_single_file(
            str(path),
            quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=dtype),
            config=str(config_source),
            subfolder="transformer",
            torch_dtype=dtype,
            local_files_only=local_only,
        )
    except Exception as exc:  # a file of another model, a truncated file, ...: diffusers raises many types
        raise WeightsError(f"Could not load the GGUF transformer {path}: {exc}") from exc


def describe(transformer: Any) -> str:
    """``GGUF transformer (Q8_0 x29)``: the quantisation types of its GGUF weights."""
    kinds = Counter(
        getattr(p.quant_type, "name", str(p.quant_type))
        for p in transformer.parameters()
        if type(p).__name__ == "GGUFParameter"
    )
    inner = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
    return f"GGUF transformer ({inner or 'not quantised'})"
