"""A tiny GGUF file of a tiny flow editor's transformer, for tests (needs the ``gguf`` package).

Weights in diffusers' key names (``from_single_file`` then loads them without conversion): 2-D weights
whose rows are a multiple of 32 values as Q8_0, every other tensor as F32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def save_tiny_gguf(folder: str | Path, out: str | Path, component: str = "transformer") -> Path:
    """Write the transformer of the diffusers folder ``folder`` to the GGUF file ``out``; returns it."""
    import gguf
    from diffusers import FluxTransformer2DModel, QwenImageTransformer2DModel

    folder, out = Path(folder), Path(out)
    cls = {
        "FluxTransformer2DModel": FluxTransformer2DModel,
        "QwenImageTransformer2DModel": QwenImageTransformer2DModel,
    }
    name = json.loads((folder / component / "config.json").read_text(encoding="utf-8"))["_class_name"]
    model = cls[name].from_pretrained(folder, subfolder=component)
    writer = gguf.GGUFWriter(str(out), arch="flux" if name.startswith("Flux") else "qwen_image")
    for key, tensor in model.state_dict().items():
        a = tensor.float().numpy()
        if a.ndim == 2 and a.shape[1] % 32 == 0:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(key, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(key, a.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
