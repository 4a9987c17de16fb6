"""An SDXL (InstructPix2Pix) pipeline's weights as ONE checkpoint file in the original Stability (LDM) layout,
as CosXL-Edit is published: what diffusers' ``from_single_file`` converts back. Tests only: it lets the real
single-file loading code run offline on a tiny random model.

Key layout (the inverse of diffusers' ``single_file_utils`` converters, driven by the model configs):
``model.diffusion_model.`` UNet (``input_blocks`` / ``middle_block`` / ``output_blocks``),
``first_stage_model.`` VAE (``encoder.down.{i}.block.{j}``, ``decoder.up.{n-1-i}``, 1x1-conv attention),
``conditioner.embedders.0.transformer.`` CLIP-L (Hugging Face names), ``conditioner.embedders.1.model.``
OpenCLIP-bigG (``transformer.resblocks``, fused ``in_proj``, transposed ``text_projection``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_RESNET = (  # diffusers -> LDM, inside a UNet resnet
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)


def _unet(sd: dict[str, Any], cfg: Any) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = {
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"],
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"],
    }
    per = cfg["layers_per_block"] + 1
    prefixes: list[tuple[str, str]] = [
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    n = len(cfg["block_out_channels"])
    for b in range(n):
        for j in range(cfg["layers_per_block"]):
            prefixes.append((f"down_blocks.{b}.resnets.{j}.", f"input_blocks.{1 + b * per + j}.0."))
            prefixes.append((f"down_blocks.{b}.attentions.{j}.", f"input_blocks.{1 + b * per + j}.1."))
        prefixes.append((f"down_blocks.{b}.downsamplers.0.conv.", f"input_blocks.{(b + 1) * per}.0.op."))
        has_attn = any(k.startswith(f"up_blocks.{b}.attentions.") for k in sd)
        for j in range(per):
            prefixes.append((f"up_blocks.{b}.resnets.{j}.", f"output_blocks.{b * per + j}.0."))
            prefixes.append((f"up_blocks.{b}.attentions.{j}.", f"output_blocks.{b * per + j}.1."))
        up = f"output_blocks.{b * per + per - 1}.{2 if has_attn else 1}.conv."
        prefixes.append((f"up_blocks.{b}.upsamplers.0.conv.", up))
    out = {}
    for key, value in sd.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        for new, old in prefixes:
            if key.startswith(new):
                rest = key[len(new) :]
                if ".resnets." in new:
                    for d, ldm in _RESNET:
                        rest = rest.replace(d, ldm)
                out[old + rest] = value
                break
        else:
            raise KeyError(f"no LDM name for UNet weight {key}")
    return out


def _vae(sd: dict[str, Any], cfg: Any) -> dict[str, Any]:
    n = len(cfg["up_block_types"])
    attn = (
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    )
    out = {}
    for key, value in sd.items():
        k = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        for i in range(n):
            k = k.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            k = k.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            k = k.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block.")
            k = k.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.")
        for i in range(2):
            k = k.replace(f"mid_block.resnets.{i}.", f"mid.block_{i + 1}.")
        if "mid_block.attentions.0." in k:
            k = k.replace("mid_block.attentions.0.", "mid.attn_1.")
            for d, ldm in attn:
                k = k.replace(d, ldm)
            if value.ndim == 2:  # LDM keeps these as 1x1 convolutions
                value = value[:, :, None, None]
        out[k] = value
    return out


def _open_clip(sd: dict[str, Any]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    qkv: dict[str, dict[str, Any]] = {}
    for key, value in sd.items():
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
            continue
        k = key.replace("text_model.embeddings.position_embedding.weight", "positional_embedding")
        k = k.replace("text_model.embeddings.token_embedding.weight", "token_embedding.weight")
        k = k.replace("text_model.final_layer_norm.", "ln_final.")
        k = k.replace("text_model.encoder.layers.", "transformer.resblocks.")
        k = k.replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
        k = k.replace(".fc1.", ".c_fc.").replace(".fc2.", ".c_proj.").replace(".self_attn.", ".attn.")
        fused = re.fullmatch(r"(.*\.attn)\.([qkv])_proj\.(weight|bias)", k)  # OpenCLIP fuses q, k, v
        if fused:
            qkv.setdefault(f"{fused[1]}.in_proj_{fused[3]}", {})[fused[2]] = value
        else:
            out[k] = value
    for k, parts in qkv.items():
        out[k] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def _clip_l(sd: dict[str, Any]) -> dict[str, Any]:
    """CLIP-L keeps Hugging Face names with their ``text_model.`` level (transformers >= 5.6 dropped it)."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in sd.items()}


def sdxl_single_file_state(pipe: Any) -> dict[str, Any]:
    """The pipeline's UNet, VAE and both text encoders under their single-file (LDM) names."""
    state: dict[str, Any] = {}
    parts = (
        ("model.diffusion_model.", _unet(pipe.unet.state_dict(), pipe.unet.config)),
        ("first_stage_model.", _vae(pipe.vae.state_dict(), pipe.vae.config)),
        ("conditioner.embedders.0.transformer.", _clip_l(pipe.text_encoder.state_dict())),
        ("conditioner.embedders.1.model.", _open_clip(pipe.text_encoder_2.state_dict())),
    )
    for prefix, sd in parts:
        state.update({prefix + k: v.detach().clone().contiguous() for k, v in sd.items()})
    return state


def save_sdxl_single_file(pipe: Any, path: str | Path) -> Path:
    """Write :func:`sdxl_single_file_state` as one safetensors file; return its path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sdxl_single_file_state(pipe), str(path))
    return path


def save_tiny_cosxl(root: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """A tiny SDXL InstructPix2Pix as CosXL-Edit ships (``root/cosxl_edit.safetensors``) plus a config
    folder of the same pipeline (``root/config``); returns (file, config folder)."""
    from maskpix_desktop.testing.tiny_ip2p_xl import build_tiny_ip2p_xl

    root = Path(root)
    pipe = build_tiny_ip2p_xl(seed, width_2=48)  # diffusers tells the encoders apart by their widths
    pipe.save_pretrained(root / "config", safe_serialization=True)
    return save_sdxl_single_file(pipe, root / "cosxl_edit.safetensors"), root / "config"
