"""The relevance map for SDXL InstructPix2Pix (``ip2p_xl``): the InstructPix2Pix reading with SDXL's
conditioning.

As :func:`~.relevance.ip2p_reader`: the source ``z0 = mode * scaling_factor`` is noised with DDPM's
``add_noise`` at ``t = t_frac * T`` on the pipeline scheduler's training betas, and the UNet runs once on a
batch of two: the instruction's embeddings and the pipeline's image-only branch (its negative embeddings:
zeros when the model sets ``force_zeros_for_empty_prompt``), each with the pooled text embeddings and the
size ``time_ids`` the pipeline computes (``_get_add_time_ids`` at the working size), and the image latents
from the pipeline's ``prepare_image_latents``.

CosXL-Edit runs an EDM schedule (``EDMEulerScheduler``, v-prediction): its UNet takes ``c_in(sigma) x_t``
with ``x_t = z0 + sigma eps`` and the timestep ``c_noise(sigma)``, and its output becomes the denoised
latents through ``precondition_outputs``. The reading noises the source at the sigma whose signal-to-noise
ratio is DDPM's at ``t`` on Stable Diffusion's training schedule (``sqrt((1 - abar_t) / abar_t)``, about 5.1
at t = 800), conditions the UNet with the pipeline scheduler's own ``precondition_inputs`` /
``precondition_noise``, and compares the two branches' implied noise ``(x_t - denoised) / sigma``, so the map
reads the same quantity as the DDPM readings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maskpix_desktop.core.automask.relevance_map import Reading, ddpm_working, relevance_from_eps, unet_draw

#: Stable Diffusion's (and SDXL's) DDPM training schedule, for the EDM reading's noise level.
SD_TRAINING_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def ip2p_xl_reader(
    editor: Any, image: np.ndarray, instruction: str, *, t_frac: float, long_side: int, device: Any
) -> Reading:
    """SDXL InstructPix2Pix's reading for :func:`~.relevance.compute_relevance` (under
    ``torch.inference_mode``); an EDM-scheduled editor (CosXL-Edit) is read at the equivalent noise level."""
    import torch

    pipe = editor.pipe
    edm = is_edm(pipe.scheduler)
    work, sched, t_int = ddpm_working(
        pipe, image, long_side, t_frac, config=SD_TRAINING_SCHEDULE if edm else None
    )
    wh, ww = work.shape[:2]
    mode = editor.encode_image(work)
    z0 = editor.source_latents(mode)
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        prompt=instruction, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True
    )
    dtype = pipe.unet.dtype
    cond = pipe.prepare_image_latents(mode, 1, 1, embeds.dtype, device, False)
    time_ids = pipe._get_add_time_ids(
        (wh, ww),
        (0, 0),
        (wh, ww),
        dtype=embeds.dtype,
        text_encoder_projection_dim=_projection_dim(pipe, pooled),
    )
    text = torch.cat([embeds, negative]).to(dtype)
    added = {"text_embeds": torch.cat([pooled, negative_pooled]), "time_ids": torch.cat([time_ids, time_ids])}

    def unet(x: Any, t: Any = t_int) -> Any:
        return pipe.unet(x, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)[0]

    if edm:
        draw = edm_draw(z0, pipe.scheduler, equivalent_sigma(sched, t_int), cond.to(dtype), unet)
    else:
        draw = unet_draw(z0, sched, t_int, cond.to(dtype), unet)
    return Reading((wh, ww), tuple(z0.shape[-2:]), t_int, draw)


def is_edm(scheduler: Any) -> bool:
    """True for an EDM-preconditioned scheduler (diffusers' ``EDM*Scheduler``: CosXL-Edit's)."""
    return all(hasattr(scheduler, f"precondition_{k}") for k in ("inputs", "noise", "outputs"))


def equivalent_sigma(ddpm: Any, t_int: int) -> float:
    """The EDM noise level with the signal-to-noise ratio of DDPM's ``t_int``: ``sqrt((1 - abar) / abar)``."""
    abar = float(ddpm.alphas_cumprod[t_int])
    return ((1.0 - abar) / abar) ** 0.5


def edm_draw(z0: Any, scheduler: Any, sigma: float, cond: Any, unet: Any) -> Any:
    """An EDM reading's ``draw(gen)``: ``x_t = z0 + sigma eps``, the UNet on ``c_in(sigma) x_t`` (both
    branches, with the image condition ``cond``) at timestep ``c_noise(sigma)``, each output turned into
    denoised latents and then into its implied noise ``(x_t - denoised) / sigma``; their difference."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    s = torch.tensor(sigma, dtype=torch.float32, device=z0.device)
    t = scheduler.precondition_noise(s)
    cond2 = torch.cat([cond, cond])

    def draw(gen: Any) -> np.ndarray:
        noise = randn_tensor(tuple(z0.shape), generator=gen, device=z0.device, dtype=z0.dtype)
        xt = torch.cat([z0 + s * noise] * 2)
        out = unet(torch.cat([scheduler.precondition_inputs(xt, s).to(cond2.dtype), cond2], dim=1), t)
        eps = (xt - scheduler.precondition_outputs(xt, out.float(), s)) / s
        return relevance_from_eps(eps[0:1], eps[1:2])

    return draw


def _projection_dim(pipe: Any, pooled: Any) -> int:
    """The text-projection width the pipeline passes to ``_get_add_time_ids``."""
    if pipe.text_encoder_2 is None:
        return int(pooled.shape[-1])
    return int(pipe.text_encoder_2.config.projection_dim)
