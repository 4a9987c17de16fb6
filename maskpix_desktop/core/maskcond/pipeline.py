"""``MaskPix2PixPipeline``: diffusers' InstructPix2Pix pipeline that also feeds the mask to a 9-channel UNet.

The pipeline appends the mask channel to the image latents in ``prepare_image_latents``, so diffusers'
denoising loop, schedulers, callbacks and output handling run unchanged.

Guidance branches. InstructPix2Pix runs three branches: (text + image), (image only), (neither), and
combines ``uncond + s_T (text - image) + s_I (image - uncond)``. By default the mask is fed to **all
three** branches: every guidance difference is then taken at the same mask, so the mask acts as a
condition shared by the whole prediction and is never amplified or negated by a guidance scale (with
``s_T = s_I = 1`` the result is exactly the masked text+image branch). ``mask_in_uncond=False`` (the
ablation) gives the unconditional branch the "no mask" value 0 instead, which folds the mask into the
image guidance term and so scales its effect by ``s_I``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionInstructPix2PixPipeline

MaskInput = Any  # None | HxW ndarray (bool / uint8 0-255 / float 0-1) | torch tensor (H,W) (B,1,H,W)


def ddim_from(config: Any) -> Any:
    """A DDIM scheduler for deterministic sampling from another scheduler's ``config``.

    ``clip_sample`` is off, as in Stable Diffusion's own scheduler configs: DDIM's default clips each x0
    estimate to [-1, 1], which cuts unit-variance latents (about a third of their values)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(config, clip_sample=False)


def mask_to_tensor(mask: MaskInput) -> torch.Tensor | None:
    """A mask as a float32 ``(B, 1, H, W)`` tensor in [0, 1] (uint8 is divided by 255); None stays None."""
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        t = mask.detach().float().cpu()
    else:
        arr = np.asarray(mask)
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4 or t.shape[1] != 1:
        raise ValueError(f"mask must be HxW, BxHxW or Bx1xHxW, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
        raise ValueError("mask values must be finite and lie in [0, 1]")
    return t


def mask_channel(mask: MaskInput, latent_hw: tuple[int, int], batch: int = 1) -> torch.Tensor:
    """The UNet's mask channel: area-resized to ``latent_hw``, signed (``2m - 1``); zeros for no mask."""
    t = mask_to_tensor(mask)
    h, w = latent_hw
    if t is None:
        return torch.zeros(batch, 1, h, w)
    if tuple(t.shape[-2:]) != (h, w):
        t = torch.nn.functional.interpolate(t, size=(h, w), mode="area")
    if t.shape[0] != batch:
        if batch % t.shape[0]:
            raise ValueError(f"mask batch {t.shape[0]} does not divide the image batch {batch}")
        t = t.repeat_interleave(batch // t.shape[0], dim=0)
    return 2.0 * t - 1.0


class MaskPix2PixPipeline(StableDiffusionInstructPix2PixPipeline):
    """InstructPix2Pix with a mask input: ``pipe(prompt, image, mask=m, ...)``.

    With an 8-channel UNet it is plain InstructPix2Pix (passing a mask is then an error); with a
    9-channel UNet (:func:`~.model.grow_conv_in`) the mask, or "no mask" (0) when ``mask`` is None,
    is fed as the 9th channel.
    """

    mask_in_uncond: bool = True

    def __call__(self, *args: Any, mask: MaskInput = None, mask_in_uncond: bool | None = None, **kwargs: Any):
        """Diffusers' IP2P call plus ``mask`` and ``mask_in_uncond`` (default: the pipeline's setting)."""
        takes_mask = self.unet.config.in_channels == 9
        if mask is not None and not takes_mask:
            raise ValueError(
                f"this UNet takes {self.unet.config.in_channels} input channels, not a mask (needs 9)"
            )
        self._pending = (
            mask_to_tensor(mask),
            self.mask_in_uncond if mask_in_uncond is None else mask_in_uncond,
        )
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self._pending = None

    def prepare_image_latents(
        self, image, batch_size, num_images_per_prompt, dtype, device, do_cfg, generator=None
    ):
        """IP2P's image latents ``[img, img, 0]`` (or ``[img]``) with the mask channel appended."""
        lat = super().prepare_image_latents(
            image, batch_size, num_images_per_prompt, dtype, device, do_cfg, generator
        )
        if self.unet.config.in_channels != 9:
            return lat
        mask, in_uncond = getattr(self, "_pending", None) or (None, self.mask_in_uncond)
        n = lat.shape[0] // 3 if do_cfg else lat.shape[0]
        m = mask_channel(mask, tuple(lat.shape[-2:]), n).to(device=lat.device, dtype=lat.dtype)
        if do_cfg:
            m = torch.cat([m, m, m if in_uncond else torch.zeros_like(m)], dim=0)
        return torch.cat([lat, m], dim=1)
