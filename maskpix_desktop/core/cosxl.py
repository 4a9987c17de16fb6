"""CosXL-Edit (``stabilityai/cosxl``, file ``cosxl_edit.safetensors``): Stability's SDXL InstructPix2Pix,
published as ONE checkpoint file in the original layout. :func:`convert_cosxl_edit` turns it once into a
diffusers folder that the ``ip2p_xl`` family loads like any other (``--ip2p DIR``, the Models dialog):
diffusers' ``from_single_file`` with the component configs of an SDXL InstructPix2Pix folder, the EDM
v-prediction scheduler CosXL was trained with, and ``is_cosxl_edit`` (its image latents are scaled by the VAE
factor) kept in ``model_index.json`` so that ``from_pretrained`` passes it back to the pipeline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from maskpix_desktop.core.editor_families import folder_family
from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.models.registry import SDXL_IP2P_REPO

__all__ = ["COSXL_FILE", "COSXL_SCHEDULER", "CONFIG_REPO", "convert_cosxl_edit"]

COSXL_FILE = "cosxl_edit.safetensors"
#: Component configs + tokenizers of the same pipeline class, UNet with 8 input channels (a few MB of JSON
#: and vocabularies when downloaded with ``--include "*.json" "*/*.txt"``).
CONFIG_REPO = SDXL_IP2P_REPO
#: safetensors dtype names -> torch dtypes the converted folder keeps (CosXL-Edit's file is float16).
_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}
#: CosXL's "cosine-continuous EDM v-prediction" schedule as diffusers' EDMEulerScheduler expresses it.
COSXL_SCHEDULER = {
    "sigma_min": 0.002,
    "sigma_max": 120.0,
    "sigma_data": 1.0,
    "prediction_type": "v_prediction",
    "sigma_schedule": "exponential",
}
_PIPELINE = "StableDiffusionXLInstructPix2PixPipeline"


def _check_config(config: Path) -> None:
    """``config`` must be an SDXL InstructPix2Pix diffusers folder (its weights are not needed)."""
    advice = (
        f"CosXL-Edit needs the configs of an SDXL InstructPix2Pix folder ({_PIPELINE}, 8 input channels),"
        f" e.g. {CONFIG_REPO}"
    )
    try:
        family = folder_family(config)
    except WeightsError as exc:
        raise WeightsError(f"{exc} {advice}") from exc
    try:
        unet = json.loads((config / "unet" / "config.json").read_text(encoding="utf-8"))
        in_channels = unet.get("in_channels")
    except (OSError, ValueError, AttributeError) as exc:
        raise WeightsError(f"{config}: unreadable UNet config ({exc}). {advice}") from exc
    if family != "ip2p_xl" or in_channels != 8:
        raise WeightsError(f"{config} holds an {family} editor (UNet in_channels {in_channels}). {advice}")


def _checkpoint_dtype(file: Path) -> str:
    """The torch dtype name of the checkpoint's UNet weights (the converted folder keeps it: a float16 file
    stays float16 on disk and in memory while converting)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            names = [k for k in f.keys() if k.startswith("model.diffusion_model.")] or list(f.keys())
            kind = f.get_slice(names[0]).get_dtype() if names else "F32"
    except (OSError, ValueError, RuntimeError) as exc:  # not a safetensors file, a damaged header
        raise WeightsError(f"{file.name} is not a readable safetensors checkpoint: {exc}") from exc
    return _DTYPES.get(kind, "float32")


def convert_cosxl_edit(file: str | Path, config: str | Path, out: str | Path) -> Path:
    """Convert the CosXL-Edit checkpoint ``file`` into the diffusers folder ``out`` (written beside and
    renamed into place: a failure leaves no half folder); ``config``: a local SDXL InstructPix2Pix folder."""
    import torch
    from diffusers import EDMEulerScheduler, StableDiffusionXLInstructPix2PixPipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    file, config, out = Path(file), Path(config), Path(out)
    if not file.is_file():
        raise WeightsError(f"{file}: no such checkpoint file")
    if file.suffix != ".safetensors":
        raise WeightsError(f"{file}: only .safetensors checkpoints are loaded (no pickle)")
    if out.exists():
        raise WeightsError(f"{out} exists; choose a new folder")
    _check_config(config)
    dtype = getattr(torch, _checkpoint_dtype(file))
    try:
        pipe = StableDiffusionXLInstructPix2PixPipeline.from_single_file(
            str(file),
            config=str(config),
            local_files_only=True,
            is_cosxl_edit=True,
            add_watermarker=False,
            torch_dtype=dtype,
        )
    except (SingleFileComponentError, OSError, ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(f"{file.name} is not an SDXL InstructPix2Pix checkpoint: {first}") from exc
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module: torch.nn.Module = getattr(pipe, part)
        missing = [n for n, p in module.state_dict().items() if p.is_meta]
        if missing:
            raise WeightsError(
                f"{file.name} has no weights for the {part}'s {missing[0]} (and {len(missing) - 1} more)"
            )
    pipe.scheduler = EDMEulerScheduler(**COSXL_SCHEDULER)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        index = tmp / "model_index.json"
        data = json.loads(index.read_text(encoding="utf-8"))
        data["is_cosxl_edit"] = True
        index.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
