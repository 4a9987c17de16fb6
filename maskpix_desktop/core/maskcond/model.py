"""The mask UNet: ``conv_in`` grown from 8 to 9 channels, its conditioning JSON, save and load.

Input channel layout (the order the pipeline and the trainer both use)::

    0-3  noisy latents (scaled by the VAE's scaling factor, as in Stable Diffusion)
    4-7  source-image latents (VAE posterior mode, unscaled, as InstructPix2Pix feeds them)
    8    the mask at latent resolution, *signed*: 2*m - 1 in [-1, 1] (1 = edit, -1 = keep) and
         exactly 0 for "no mask given" (the value mask dropout trains and maskless edits use)

The new input weights start at zero, so an untrained mask UNet computes exactly what the IP2P UNet
it was grown from computes, whatever the mask. Conditioning types: ``concat`` (the 9th channel into
``conv_in``), ``attention`` (the mask reaches the UNet only through the attention branch of
:mod:`.attention`) and ``both``; every type keeps the 9-channel input layout.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.maskcond import CONDITIONING_FILE

FORMAT_VERSION = 1
LORA_FILE = "maskpix_lora.safetensors"
"""A LoRA checkpoint's weights: the adapter (``lora.*``), ``conv_in.*`` and the attention branch, if any."""
TYPES = ("concat", "attention", "both")
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
    attention_tokens: int = 16  # attention / both: mask tokens (a square number)
    attention_dim: int = 64  # attention / both: token width
    format: int = FORMAT_VERSION
    base_model: str = ""  # the base IP2P folder, absolute (or a hub id)
    # a LoRA checkpoint: the base folder relative to the checkpoint folder ("/"-separated; empty when
    # there is none, e.g. another drive); the fallback when base_model is gone (folders moved together)
    base_model_rel: str = ""
    training: dict | None = None
    lora: dict | None = None  # a LoRA checkpoint: {"rank", "alpha", "targets", "vae_scaling_factor"}

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
    for name in ("attention_tokens", "attention_dim"):
        value = getattr(cond, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _bad(path, name, f"is {value!r}; expected a positive integer")
    if cond.base_channels != 8:
        raise _bad(path, "base_channels", f"is {cond.base_channels!r}; expected 8 (an IP2P UNet)")
    if cond.lora is not None:
        lora = cond.lora
        ok = isinstance(lora, dict) and isinstance(lora.get("rank"), int) and lora["rank"] > 0
        ok = ok and isinstance(lora.get("alpha"), int | float) and isinstance(lora.get("targets"), list)
        if not ok or not isinstance(lora.get("vae_scaling_factor"), int | float):
            raise _bad(path, "lora", "needs rank (> 0), alpha, targets (a list) and vae_scaling_factor")
        if not cond.base_model:
            raise _bad(path, "base_model", "is empty; a LoRA checkpoint loads on top of its base IP2P")
    if not isinstance(cond.base_model_rel, str):
        raise _bad(path, "base_model_rel", f"is {cond.base_model_rel!r}; expected a relative path")
    return cond


def uses_attention(kind: str) -> bool:
    """True for the conditioning types with the attention branch (``attention``, ``both``)."""
    return kind in ("attention", "both")


def is_mask_checkpoint(folder: str | Path) -> bool:
    """True when ``folder`` carries a ``maskpix_conditioning.json`` and either a diffusers pipeline (a full
    checkpoint) or ``maskpix_lora.safetensors`` (a LoRA checkpoint, loaded on top of its base IP2P; it
    also carries the base's ``model_index.json`` so that it passes wherever an IP2P folder does)."""
    folder = Path(folder)
    if not (folder / CONDITIONING_FILE).is_file():
        return False
    return (folder / "model_index.json").is_file() or (folder / LORA_FILE).is_file()


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


def _branch_fields(unet: Any) -> dict:
    """The conditioning fields that describe ``unet``'s attention branch (none: ``concat``)."""
    from maskpix_desktop.core.maskcond.attention import ATTR, has_mask_attention

    if not has_mask_attention(unet):
        return {}
    branch = getattr(unet, ATTR)
    enc = branch.encoder
    return {
        "type": "both" if branch.concat else "attention",
        "attention_tokens": enc.side * enc.side,
        "attention_dim": enc.proj.out_features,
    }


def save_mask_checkpoint(pipe: Any, folder: str | Path, cond: MaskConditioning | None = None) -> Path:
    """``pipe.save_pretrained(folder)`` (safetensors) plus the conditioning JSON, written last."""
    from maskpix_desktop.core.maskcond.attention import detached, has_mask_attention, save_mask_attention

    folder = Path(folder)
    cond = cond or MaskConditioning(
        mask_in_uncond=getattr(pipe, "mask_in_uncond", True), **_branch_fields(pipe.unet)
    )
    if pipe.unet.config.in_channels != 8 + cond.mask_channels:
        raise ValueError(f"UNet has {pipe.unet.config.in_channels} input channels, expected 9")
    if has_mask_attention(pipe.unet) != uses_attention(cond.type):
        raise ValueError(f"conditioning type {cond.type!r} and the UNet's attention branch disagree")
    with detached(pipe.unet):
        pipe.save_pretrained(folder, safe_serialization=True)
    if uses_attention(cond.type):
        save_mask_attention(pipe.unet, folder / "unet")
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
    if (folder / LORA_FILE).is_file():
        return _load_lora_pipeline(folder, device=device, dtype=dtype)
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
    if uses_attention(cond.type):
        from maskpix_desktop.core.maskcond.attention import load_mask_attention

        kw = dict(tokens=cond.attention_tokens, dim=cond.attention_dim, concat=cond.type == "both")
        load_mask_attention(pipe.unet, folder / "unet", **kw)
    pipe.mask_in_uncond = cond.mask_in_uncond
    pipe.conditioning = cond
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def mask_pipeline_from_ip2p(
    ip2p: Any,
    *,
    mask_in_uncond: bool = True,
    copy_unet: bool = True,
    conditioning: str = "concat",
    attention_tokens: int = 16,
    attention_dim: int = 64,
) -> Any:
    """A :class:`~.pipeline.MaskPix2PixPipeline` sharing ``ip2p``'s VAE, text encoder, tokenizer and
    scheduler, with a 9-channel UNet (a grown copy of ``ip2p.unet``; grown in place if not ``copy_unet``);
    ``conditioning`` "attention" / "both" also installs the zero-initialised attention branch.
    """
    import copy

    from maskpix_desktop.core.maskcond.pipeline import MaskPix2PixPipeline

    unet = copy.deepcopy(ip2p.unet) if copy_unet else ip2p.unet
    if unet.config.in_channels == 8:
        grow_conv_in(unet)
    if conditioning not in TYPES:
        raise ValueError(f"conditioning must be one of {list(TYPES)}, got {conditioning!r}")
    if uses_attention(conditioning):
        from maskpix_desktop.core.maskcond.attention import has_mask_attention, install_mask_attention

        if not has_mask_attention(unet):
            concat = conditioning == "both"
            install_mask_attention(unet, tokens=attention_tokens, dim=attention_dim, concat=concat)
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


def save_lora_checkpoint(unet: Any, folder: str | Path, cond: MaskConditioning) -> Path:
    """A LoRA checkpoint of a mask UNet still carrying its (unmerged) peft adapter:
    ``maskpix_lora.safetensors`` (adapter, ``conv_in``, attention branch) plus the conditioning JSON
    (``cond.lora`` and ``cond.base_model`` set; ``base_model_rel``, the base relative to ``folder``, is
    filled in here). Megabytes instead of a whole pipeline; :func:`load_mask_pipeline` applies it to the
    base at run time, found at ``base_model`` or else at ``base_model_rel`` (:func:`find_base`)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from maskpix_desktop.core.maskcond.attention import ATTR, has_mask_attention

    if cond.lora is None or not cond.base_model:
        raise ValueError("a LoRA checkpoint needs cond.lora and cond.base_model")
    state = {f"lora.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    state.update({f"conv_in.{k}": v for k, v in unet.conv_in.state_dict().items()})
    if has_mask_attention(unet):
        state.update({f"{ATTR}.{k}": v for k, v in getattr(unet, ATTR).state_dict().items()})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cond = replace(cond, base_model_rel=relative_base(cond.base_model, folder))
    tmp = folder / (LORA_FILE + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(folder / LORA_FILE)
    # The base's model_index.json too: every place that takes an IP2P folder (the Models dialog, --ip2p,
    # load_editor's family check) then takes this one; load_mask_pipeline sees LORA_FILE and applies it.
    shutil.copyfile(Path(cond.base_model) / "model_index.json", folder / "model_index.json")
    (folder / CONDITIONING_FILE).write_text(cond.to_json(), encoding="utf-8")
    return folder


def relative_base(base: str, folder: str | Path) -> str:
    """``base`` relative to ``folder``, "/"-separated (portable between systems); "" when ``base`` is not
    a folder or has no relative path from ``folder`` (another Windows drive)."""
    if not base or not Path(base).is_dir():
        return ""
    try:
        rel = os.path.relpath(os.path.abspath(base), os.path.abspath(folder))
    except ValueError:  # Windows: base and folder on different drives
        return ""
    return Path(rel).as_posix()


def find_base(folder: str | Path, cond: MaskConditioning) -> str:
    """The base IP2P of the LoRA checkpoint in ``folder``: ``cond.base_model`` when it is a diffusers folder
    there, else ``cond.base_model_rel`` resolved against ``folder`` (the two folders moved together, e.g.
    a project copied to another machine). :class:`WeightsError` naming both paths when neither is."""
    folder = Path(folder)
    base = cond.base_model
    if (Path(base) / "model_index.json").is_file():
        return base
    tried = f"field 'base_model' is {base!r}"
    if cond.base_model_rel:
        moved = (folder / cond.base_model_rel).resolve()
        if (moved / "model_index.json").is_file():
            return str(moved)
        tried += f" and field 'base_model_rel' {cond.base_model_rel!r} resolves to {str(moved)!r}"
        where = "at one of these paths (move or copy the adapter and base folders together, keeping "
        where += "their relative layout)"
    else:
        tried += " (no 'base_model_rel': written before MaskPix stored the base's relative path)"
        where = "there"
    raise WeightsError(
        f"{folder / CONDITIONING_FILE}: the LoRA adapter's base InstructPix2Pix is missing: {tried}, "
        f"and no diffusers folder (model_index.json) is there. Put the base folder {where}, or set "
        "'base_model' in that file to the base folder's path on this machine."
    )


def _load_lora_pipeline(folder: Path, *, device: str, dtype: Any) -> Any:
    """Base IP2P (:func:`find_base`) + grown ``conv_in`` + branch + the adapter, unmerged (run-time LoRA)."""
    import torch
    from safetensors.torch import load_file

    from maskpix_desktop.core.maskcond.attention import ATTR

    cond = read_conditioning(folder)
    path = folder / CONDITIONING_FILE
    if cond.lora is None:
        raise _bad(path, "lora", f"is missing, but {LORA_FILE} is there")
    try:
        from peft import LoraConfig
        from peft.utils import set_peft_model_state_dict
    except ImportError as exc:
        raise WeightsError(f"{folder}: a LoRA checkpoint needs the peft package (pip install peft)") from exc
    base = find_base(folder, cond)
    ip2p = _from_pretrained(base, torch.float32)
    if ip2p.unet.config.in_channels != 8:
        n = ip2p.unet.config.in_channels
        raise _bad(path, "base_model", f"names {base!r}, whose UNet has {n} input channels, not 8 (IP2P)")
    pipe = mask_pipeline_from_ip2p(
        ip2p,
        copy_unet=False,
        mask_in_uncond=cond.mask_in_uncond,
        conditioning=cond.type,
        attention_tokens=cond.attention_tokens,
        attention_dim=cond.attention_dim,
    )
    unet, lora = pipe.unet, cond.lora
    try:
        state = load_file(str(folder / LORA_FILE))
        unet.add_adapter(LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], target_modules=lora["targets"]))
        adapter = {k[5:]: v for k, v in state.items() if k.startswith("lora.")}
        result = set_peft_model_state_dict(unet, adapter)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"unexpected adapter keys {result.unexpected_keys[:3]}")
        unet.conv_in.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("conv_in.")})
        if cond.type in ("attention", "both"):
            prefix = ATTR + "."
            getattr(unet, ATTR).load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
    except Exception as exc:  # safetensors, peft and shape errors
        raise WeightsError(f"{folder / LORA_FILE}: does not fit the base {base} ({exc})") from exc
    unet.requires_grad_(False)
    pipe.vae.register_to_config(scaling_factor=float(lora["vae_scaling_factor"]))
    pipe.conditioning = cond
    return pipe.to(device=device, dtype=dtype or torch.float32)


def _from_pretrained(folder: str, dtype: Any) -> Any:
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from diffusers.pipelines import pipeline_utils

    key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"  # renamed
    try:
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            folder, **{key: dtype}, safety_checker=None, requires_safety_checker=False
        )
    except Exception as exc:  # diffusers raises many types for broken folders
        raise WeightsError(f"Could not load the base InstructPix2Pix {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe
