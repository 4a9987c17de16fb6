"""Training data in memory: quadruplets encoded once by the frozen VAE and text encoder, and the
deterministic order in which a run visits them.

An item is anything with ``image`` / ``target`` (HxWx3 uint8), ``mask`` (HxW bool or float in [0, 1])
and ``instruction`` (str) attributes, e.g. :class:`~.synthetic.SyntheticItem`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class EncodedSet:
    """``src`` / ``tgt``: unscaled VAE posterior modes ``(N,4,h,w)``; ``mask``: ``(N,1,H,W)`` in [0, 1];
    ``embeds[prompt_idx[i]]`` is item ``i``'s text embedding; ``embeds[-1]`` is the empty prompt's."""

    src: torch.Tensor
    tgt: torch.Tensor
    mask: torch.Tensor
    prompt_idx: torch.Tensor
    embeds: torch.Tensor
    prompts: list[str]

    def __len__(self) -> int:
        return int(self.src.shape[0])

    @property
    def null_index(self) -> int:
        return int(self.embeds.shape[0]) - 1

    def latent_std(self) -> float:
        """Standard deviation of the source latents (what a VAE scaling factor normalises)."""
        return float(self.src.float().std())


def _check_item(i: int, item: Any) -> None:
    for name in ("image", "target"):
        arr = getattr(item, name, None)
        if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"item {i}: field '{name}' must be an HxWx3 uint8 array")
    if item.target.shape != item.image.shape:
        raise ValueError(f"item {i}: field 'target' {item.target.shape} != image {item.image.shape}")
    m = np.asarray(item.mask)
    if m.shape != item.image.shape[:2]:
        raise ValueError(f"item {i}: field 'mask' {m.shape} != image size {item.image.shape[:2]}")
    if not isinstance(item.instruction, str) or not item.instruction.strip():
        raise ValueError(f"item {i}: field 'instruction' must be a non-empty string")


@torch.no_grad()
def encode_items(pipe: Any, items: Sequence[Any], batch: int = 32) -> EncodedSet:
    """Encode every item with ``pipe``'s VAE (posterior mode) and text encoder; CPU tensors out."""
    items = [items[i] for i in range(len(items))]
    for i, it in enumerate(items):
        _check_item(i, it)
    dev = pipe.vae.device
    srcs, tgts = [], []
    for lo in range(0, len(items), batch):
        chunk = [items[j] for j in range(lo, min(lo + batch, len(items)))]
        both = np.stack([it.image for it in chunk] + [it.target for it in chunk])
        x = torch.from_numpy(both).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
        x = x.to(dev, pipe.vae.dtype)
        z = pipe.vae.encode(x).latent_dist.mode().float().cpu()
        srcs.append(z[: len(chunk)])
        tgts.append(z[len(chunk) :])
    masks = [np.asarray(items[i].mask, dtype=np.float32) for i in range(len(items))]
    prompts = sorted({items[i].instruction for i in range(len(items))})
    where = {p: k for k, p in enumerate(prompts)}
    tok = pipe.tokenizer(
        prompts + [""],
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    embeds = pipe.text_encoder(tok.input_ids.to(pipe.text_encoder.device))[0].float().cpu()
    return EncodedSet(
        src=torch.cat(srcs),
        tgt=torch.cat(tgts),
        mask=torch.from_numpy(np.stack(masks))[:, None],
        prompt_idx=torch.tensor([where[items[i].instruction] for i in range(len(items))]),
        embeds=embeds,
        prompts=prompts,
    )


def sample_indices(n: int, seed: int, start: int, count: int) -> list[int]:
    """Items ``start .. start+count`` of the run's infinite visiting order (a fresh permutation per epoch)."""
    out = []
    for g in range(start, start + count):
        epoch, pos = divmod(g, n)
        out.append(int(_perm(n, seed, epoch)[pos]))
    return out


_PERMS: dict[tuple[int, int, int], np.ndarray] = {}


def _perm(n: int, seed: int, epoch: int) -> np.ndarray:
    key = (n, seed, epoch)
    if key not in _PERMS:
        if len(_PERMS) > 64:
            _PERMS.clear()
        _PERMS[key] = np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
    return _PERMS[key]


def step_generator(seed: int, step: int, micro: int = 0, rank: int = 0) -> torch.Generator:
    """The generator for one micro-batch: a pure function of (seed, step, micro-batch, process rank)."""
    state = np.random.SeedSequence([seed, step, micro, rank]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
