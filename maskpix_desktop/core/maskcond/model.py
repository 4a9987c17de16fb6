"""The mask UNet: ``conv_in`` grown from 8 to 9 channels, its conditioning JSON, save and load.

Input channel layout (the order the pipeline and the trainer both use)::

    0-3  noisy latents (scaled by the VAE's scaling factor, as in Stable Diffusion)
    4-7  source-image latents (VAE posterior mode, unscaled, as InstructPix2Pix feeds them)
    8    the mask at latent resolution, *signed*: 2*m - 1 in [-1, 1] (1 = edit, -1 = keep) and
         exactly 0 for "no mask given" (the value mask dropout trains and maskless edits use)

The new input weights start at zero, so an untrained mask UNet computes exactly what the IP2P UNet
it was grown from computes, whatever the mask.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.maskcond import CONDITIONING_FILE

FORMAT_VERSION = 1
TYPES = ("concat",)
ENCODINGS = ("signed",)


@dataclass(frozen=True)
class MaskConditioning:
    """What ``maskpix_conditioning.json`` holds; every field is validated on read."""

    type: str = "concat"
    mask_channels: int = 1
    mask_encoding: str = "signed"
    latent_resize: str = "area"
    mask_in_uncond: bool = True
    base_channels: int = 8
    format: int = FORMAT_VERSION
    base_model: str = ""
    training: dict | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def _bad(path: Path, field: str, why: str) -> WeightsError:
    return WeightsError(f"{path}: field '{field}' {why}")


def read_conditioning(folder: str | Path) -> MaskConditioning:
    """Parse and validate ``folder/maskpix_conditioning.json``; errors name the file and the field."""
    path = Path(folder) / CONDITIONING_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: missing (not a mask-conditioned checkpoint)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise WeightsError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    known = {f.name for f in fields(MaskConditioning)}
    kwargs = {k: v for k, v in raw.items() if k in known}
    cond = MaskConditioning(**kwargs)
    if not isinstance(cond.format, int) or cond.format > FORMAT_VERSION:
        raise _bad(path, "format", f"is {cond.format!r}; this MaskPix reads up to {FORMAT_VERSION}")
    if cond.type not in TYPES:
        raise _bad(path, "type", f"is {cond.type!r}; expected one of {list(TYPES)}")
    if cond.mask_channels != 1:
        raise _bad(path, "mask_channels", f"is {cond.mask_channels!r}; expected 1")
    if cond.mask_encoding not in ENCODINGS:
        raise _bad(path, "mask_encoding", f"is {cond.mask_encoding!r}; expected one of {list(ENCODINGS)}")
    if not isinstance(cond.mask_in_uncond, bool):
        raise _bad(path, "mask_in_uncond", f"is {cond.mask_in_uncond!r}; expected true or false")
    if cond.base_channels != 8:
        raise _bad(path, "base_channels", f"is {cond.base_channels!r}; expected 8 (an IP2P UNet)")
    return cond


def is_mask_checkpoint(folder: str | Path) -> bool:
    """True when ``folder`` is a diffusers folder carrying a ``maskpix_conditioning.json``."""
    folder = Path(folder)
    return (folder / CONDITIONING_FILE).is_file() and (folder / "model_index.json").is_file()


def grow_conv_in(unet: Any, extra_channels: int = 1) -> Any:
    """Give an IP2P UNet ``extra_channels`` more zero-initialised input channels, in place; return it.

    The old weights and bias are copied exactly; ``unet.config.in_channels`` is updated so
    ``save_pretrained`` writes the new shape.
    """
    import torch

    old = unet.conv_in
    if unet.config.in_channels != 8:
        raise ValueError(f"expected an InstructPix2Pix UNet with 8 input channels, got {old.in_channels}")
    new = torch.nn.Conv2d(
        old.in_channels + extra_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)
    return unet


def mask_weight_norm(unet: Any) -> float:
    """L2 norm of the ``conv_in`` weights that read the mask channel (0 for an untrained mask UNet)."""
    return float(unet.conv_in.weight[:, 8:].detach().float().norm())


def save_mask_checkpoint(pipe: Any, folder: str | Path, cond: MaskConditioning | None = None) -> Path:
    """``pipe.save_pretrained(folder)`` (safetensors) plus the conditioning JSON, written last."""
    folder = Path(folder)
    cond = cond or MaskConditioning(mask_in_uncond=getattr(pipe, "mask_in_uncond", True))
    if pipe.unet.config.in_channels != 8 + cond.mask_channels:
        raise ValueError(f"UNet has {pipe.unet.config.in_channels} input channels, expected 9")
    pipe.save_pretrained(folder, safe_serialization=True)
    tmp = folder / (CONDITIONING_FILE + ".tmp")
    tmp.write_text(cond.to_json(), encoding="utf-8")
    tmp.replace(folder / CONDITIONING_FILE)
    return folder


def load_mask_pipeline(folder: str | Path, *, device: str = "cpu", dtype: Any = None) -> Any:
    """Load a mask checkpoint folder as a :class:`~.pipeline.MaskPix2PixPipeline`.

    Raises :class:`WeightsError` naming the file (and field) when the folder is not a valid checkpoint.
    """
    import torch

    from maskpix_desktop.core.maskcond.pipeline import MaskPix2PixPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise WeightsError(f"{folder / 'model_index.json'}: missing (not a diffusers folder)")
    cond = read_conditioning(folder)
    try:
        from diffusers.pipelines import pipeline_utils

        dtype_key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"  # renamed
        pipe = MaskPix2PixPipeline.from_pretrained(
            str(folder),
            **{dtype_key: dtype or torch.float32},
            safety_checker=None,
            requires_safety_checker=False,
        )
    except Exception as exc:  # diffusers raises many types for broken folders
        raise WeightsError(f"Could not load the mask checkpoint {folder}: {exc}") from exc
    want = 8 + cond.mask_channels
    if pipe.unet.config.in_channels != want:
        raise WeightsError(
            f"{folder / 'unet' / 'config.json'}: field 'in_channels' is {pipe.unet.config.in_channels}; "
            f"{CONDITIONING_FILE} says {want}"
        )
    pipe.mask_in_uncond = cond.mask_in_uncond
    pipe.conditioning = cond
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def mask_pipeline_from_ip2p(ip2p: Any, *, mask_in_uncond: bool = True, copy_unet: bool = True) -> Any:
    """A :class:`~.pipeline.MaskPix2PixPipeline` sharing ``ip2p``'s VAE, text encoder, tokenizer and
    scheduler, with a 9-channel UNet (a grown copy of ``ip2p.unet``; grown in place if not ``copy_unet``).
    """
    import copy

    from maskpix_desktop.core.maskcond.pipeline import MaskPix2PixPipeline

    unet = copy.deepcopy(ip2p.unet) if copy_unet else ip2p.unet
    if unet.config.in_channels == 8:
        grow_conv_in(unet)
    pipe = MaskPix2PixPipeline(
        unet=unet,
        scheduler=ip2p.scheduler,
        vae=ip2p.vae,
        text_encoder=ip2p.text_encoder,
        tokenizer=ip2p.tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.mask_in_uncond = mask_in_uncond
    pipe.set_progress_bar_config(disable=True)
    return pipe
