"""Training-time mask handling: jitter (dilate / erode / shift), latent regions, conditioning dropout.

All randomness comes from an explicit ``torch.Generator`` so a training step is a pure function of
its seed (what makes resume exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def dilate(m: torch.Tensor, px: int) -> torch.Tensor:
    """Grow (``px > 0``) or shrink (``px < 0``) a ``(B,1,H,W)`` mask in [0, 1] by ``|px|`` pixels."""
    if px == 0:
        return m
    k = 2 * abs(px) + 1
    if px > 0:
        return F.max_pool2d(m, k, stride=1, padding=abs(px))
    return -F.max_pool2d(-m, k, stride=1, padding=abs(px))


def shift(m: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate a ``(B,1,H,W)`` mask by ``(dy, dx)`` pixels, filling with 0 (no wrap-around)."""
    h, w = m.shape[-2:]
    pad = F.pad(m, (abs(dx), abs(dx), abs(dy), abs(dy)))
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return pad[..., y0 : y0 + h, x0 : x0 + w]


def jitter_masks(m: torch.Tensor, gen: torch.Generator, max_px: int = 2, max_shift: int = 2) -> torch.Tensor:
    """Per item: dilate or erode by up to ``max_px`` pixels, then shift by up to ``max_shift``."""
    out = []
    for i in range(m.shape[0]):
        px = int(torch.randint(-max_px, max_px + 1, (1,), generator=gen)) if max_px else 0
        dy, dx = (
            torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist() if max_shift else (0, 0)
        )
        mi = shift(dilate(m[i : i + 1], px), int(dy), int(dx))
        out.append(mi if mi.sum() > 0 else m[i : i + 1])  # never jitter a mask away
    return torch.cat(out)


def latent_cover(m: torch.Tensor, latent_hw: tuple[int, int], margin: int = 0) -> torch.Tensor:
    """Hard latent region: a latent cell is inside when any pixel of it is, grown by ``margin`` cells."""
    h, w = m.shape[-2:]
    cov = F.adaptive_max_pool2d((m > 0).float(), latent_hw) if (h, w) != latent_hw else (m > 0).float()
    return F.max_pool2d(cov, 2 * margin + 1, stride=1, padding=margin) if margin else cov


@dataclass(frozen=True)
class Dropout:
    """Which items of a batch lose their text, image and mask conditioning."""

    text: torch.Tensor
    image: torch.Tensor
    mask: torch.Tensor


def conditioning_dropout(batch: int, gen: torch.Generator, p: float = 0.05, p_mask: float = 0.1) -> Dropout:
    """InstructPix2Pix's scheme (``r < 2p``: no text; ``p <= r < 3p``: no image; both for ``p <= r < 2p``)
    plus an independent mask dropout with probability ``p_mask``."""
    r = torch.rand(batch, generator=gen)
    rm = torch.rand(batch, generator=gen)
    return Dropout(text=r < 2 * p, image=(r >= p) & (r < 3 * p), mask=rm < p_mask)
