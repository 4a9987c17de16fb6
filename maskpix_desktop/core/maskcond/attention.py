"""The attention branch: a light mask encoder whose tokens every cross-attention layer also attends to.

A small strided-conv encoder turns the UNet's mask channel (channel 8 of its input, signed, at latent
resolution; see :mod:`.model`) into ``K`` tokens (a ``sqrt(K) x sqrt(K)`` grid plus a learned position
embedding). Each cross-attention layer (``attn2``) keeps its own computation and adds a decoupled
attention over those tokens, IP-Adapter style::

    out = attn2(h, text) + W_out · softmax(q kᵀ / √d) v,  q = attn2.to_q(h), k, v = key(tok), value(tok)

``W_out`` (weight and bias) starts at zero, so at initialisation the UNet computes exactly what it
computed before, bit for bit. ``concat=False`` ("attention" conditioning) zeroes channel 8 before
``conv_in``: the mask then reaches the UNet only through attention and ``conv_in``'s mask weights get no
gradient; ``concat=True`` ("both") keeps the channel too.

The branch is the submodule ``unet.maskpix_attention`` (so optimizers, DDP, EMA and accelerate's
checkpoints see it); a forward pre-hook encodes the mask; its weights are saved beside the UNet as
``unet/maskpix_mask_attention.safetensors``, never inside diffusers' own weight file.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskpix_desktop.core.errors import WeightsError

ATTENTION_FILE = "maskpix_mask_attention.safetensors"
"""The branch's weights, in the checkpoint's ``unet/`` folder."""
ATTR = "maskpix_attention"


class MaskEncoder(nn.Module):
    """Signed latent-resolution mask ``(B, 1, h, w)`` -> ``(B, K, dim)`` tokens."""

    def __init__(self, tokens: int, dim: int, channels: int = 32) -> None:
        super().__init__()
        side = math.isqrt(tokens)
        if side * side != tokens or tokens < 1:
            raise ValueError(f"attention tokens must be a square number (4, 16, 64, ...), got {tokens}")
        self.side = side
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.proj = nn.Linear(channels, dim)
        self.pos = nn.Parameter(torch.randn(tokens, dim) * 0.02)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv2(F.silu(self.conv1(mask))))
        x = F.adaptive_avg_pool2d(x, self.side).flatten(2).transpose(1, 2)  # (B, K, C)
        return self.proj(x) + self.pos


class MaskAttentionLayer(nn.Module):
    """One cross-attention layer's key / value projections of the mask tokens and its zero output."""

    def __init__(self, dim: int, inner: int, query_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(dim, inner, bias=False)  # names unlike to_k / to_v: LoRA must not adapt them
        self.value = nn.Linear(dim, inner, bias=False)
        self.out = nn.Linear(inner, query_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)


class MaskAttention(nn.Module):
    """The encoder plus one :class:`MaskAttentionLayer` per cross-attention layer of a UNet."""

    def __init__(self, layer_dims: dict[str, tuple[int, int]], tokens: int, dim: int, concat: bool) -> None:
        super().__init__()
        self.encoder = MaskEncoder(tokens, dim)
        self.layers = nn.ModuleDict({k: MaskAttentionLayer(dim, *v) for k, v in layer_dims.items()})
        self.concat = concat
        self.tokens: torch.Tensor | None = None  # set by the UNet's pre-hook for the current forward

    def output_params(self) -> list[nn.Parameter]:
        """The zero-initialised output projections (weight and bias of every layer)."""
        return [p for layer in self.layers.values() for p in layer.out.parameters()]


class MaskAttnProcessor:
    """Runs a layer's own processor, then adds the decoupled attention over the mask tokens."""

    def __init__(self, base: Any, branch: MaskAttention, key: str) -> None:
        self.base, self.branch, self.key = base, branch, key

    def __call__(self, attn: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base(attn, hidden_states, *args, **kwargs)
        tokens = self.branch.tokens
        if tokens is None:
            return out
        if hidden_states.ndim != 3:
            raise ValueError(
                f"mask attention expects (B, N, C) hidden states, got {tuple(hidden_states.shape)}"
            )
        layer = self.branch.layers[self.key]
        b, heads = hidden_states.shape[0], attn.heads
        tokens = tokens.to(hidden_states.dtype)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, heads, x.shape[-1] // heads).transpose(1, 2)

        q = split(attn.to_q(hidden_states))
        att = F.scaled_dot_product_attention(q, split(layer.key(tokens)), split(layer.value(tokens)))
        att = att.transpose(1, 2).reshape(b, -1, heads * q.shape[-1])
        return out + layer.out(att) / attn.rescale_output_factor


def _key(name: str) -> str:
    return name.removesuffix(".processor").replace(".", "__")  # ModuleDict keys may not hold dots


def _pre_hook(unet: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    branch: MaskAttention = getattr(unet, ATTR)
    sample = args[0] if args else kwargs["sample"]
    if sample.shape[1] != 9:
        raise ValueError(
            f"mask attention needs the 9-channel input (mask in channel 8), got {sample.shape[1]}"
        )
    mask = sample[:, 8:9]
    branch.tokens = branch.encoder(mask.to(branch.encoder.pos.dtype))
    if not branch.concat:  # the mask reaches the UNet through attention only
        sample = torch.cat([sample[:, :8], torch.zeros_like(mask)], dim=1)
        if args:
            args = (sample, *args[1:])
        else:
            kwargs = {**kwargs, "sample": sample}
    return args, kwargs


def has_mask_attention(unet: Any) -> bool:
    """True when ``unet`` carries the attention branch."""
    return isinstance(getattr(unet, ATTR, None), MaskAttention)


def install_mask_attention(
    unet: Any, *, tokens: int = 16, dim: int = 64, concat: bool = False, seed: int = 0
) -> MaskAttention:
    """Give a 9-channel mask UNet the attention branch (in place; weights drawn from ``seed``); return it.

    At initialisation the UNet's output is bit-equal to what it was (zero output projections).
    """
    if unet.config.in_channels != 9:
        raise ValueError(
            f"mask attention needs a 9-channel mask UNet (grow_conv_in), got {unet.config.in_channels}"
        )
    if has_mask_attention(unet):
        raise ValueError("this UNet already has the mask attention branch")
    modules = dict(unet.named_modules())
    procs = {k: p for k, p in unet.attn_processors.items() if k.endswith("attn2.processor")}
    dims = {}
    for name in procs:
        attn = modules[name.removesuffix(".processor")]
        dims[_key(name)] = (attn.inner_dim, attn.to_q.in_features)
    if not dims:
        raise ValueError("this UNet has no cross-attention layers")
    ref = unet.conv_in.weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        branch = MaskAttention(dims, tokens, dim, concat).to(device=ref.device, dtype=ref.dtype)
    unet.add_module(ATTR, branch)
    new = {
        k: MaskAttnProcessor(p, branch, _key(k)) if k in procs else p for k, p in unet.attn_processors.items()
    }
    unet.set_attn_processor(new)
    branch._hook = unet.register_forward_pre_hook(_pre_hook, with_kwargs=True)
    return branch


@contextmanager
def detached(unet: Any):
    """Temporarily take the branch off ``unet``'s submodules (for diffusers' ``save_pretrained``)."""
    branch = unet._modules.pop(ATTR, None)
    try:
        yield branch
    finally:
        if branch is not None:
            unet.add_module(ATTR, branch)


def save_mask_attention(unet: Any, unet_dir: str | Path) -> Path:
    """Write the branch's weights to ``unet_dir/maskpix_mask_attention.safetensors``."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in getattr(unet, ATTR).state_dict().items()}
    path = Path(unet_dir) / ATTENTION_FILE
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    return path


def load_mask_attention(unet: Any, unet_dir: str | Path, *, tokens: int, dim: int, concat: bool) -> None:
    """Install the branch on ``unet`` and load its weights; a missing or mismatched file is a WeightsError."""
    from safetensors.torch import load_file

    path = Path(unet_dir) / ATTENTION_FILE
    if not path.is_file():
        raise WeightsError(f"{path}: missing (the conditioning JSON names an attention branch)")
    branch = install_mask_attention(unet, tokens=tokens, dim=dim, concat=concat)
    try:
        state = load_file(str(path))
        branch.load_state_dict(state, strict=True)
    except Exception as exc:  # safetensors / shape errors
        raise WeightsError(f"{path}: does not fit this UNet's mask attention ({exc})") from exc
