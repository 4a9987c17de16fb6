"""The relevance map for SDXL InstructPix2Pix (``ip2p_xl``): the InstructPix2Pix reading with SDXL's
conditioning.

As :func:`~.relevance.ip2p_reader`: the source ``z0 = mode * scaling_factor`` is noised with DDPM's
``add_noise`` at ``t = t_frac * T`` on the pipeline scheduler's training betas, and the UNet runs once on a
batch of two: the instruction's embeddings and the pipeline's image-only branch (its negative embeddings:
zeros when the model sets ``force_zeros_for_empty_prompt``), each with the pooled text embeddings and the
size ``time_ids`` the pipeline computes (``_get_add_time_ids`` at the working size), and the image latents
from the pipeline's ``prepare_image_latents``. CosXL-Edit's EDM v-prediction conditions the UNet on another
noise scale, so it is refused with a reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maskpix_desktop.core.automask.relevance_map import Reading, ddpm_working, unet_draw
from maskpix_desktop.core.errors import MaskPixError

COSXL_REASON = (
    "Auto mask reads a DDPM-trained InstructPix2Pix; this editor runs an EDM schedule (CosXL-Edit), whose "
    "UNet is conditioned on another noise scale. Click or draw the mask instead."
)


def ip2p_xl_reader(
    editor: Any, image: np.ndarray, instruction: str, *, t_frac: float, long_side: int, device: Any
) -> Reading:
    """SDXL InstructPix2Pix's reading for :func:`~.relevance.compute_relevance` (under
    ``torch.inference_mode``); MaskPixError for an EDM-scheduled (CosXL) editor."""
    import torch

    pipe = editor.pipe
    if "EDM" in type(pipe.scheduler).__name__ or getattr(pipe, "is_cosxl_edit", False):
        raise MaskPixError(COSXL_REASON)
    work, sched, t_int = ddpm_working(pipe, image, long_side, t_frac)
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

    def unet(x: Any) -> Any:
        return pipe.unet(x, t_int, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)[0]

    draw = unet_draw(z0, sched, t_int, cond.to(dtype), unet)
    return Reading((wh, ww), tuple(z0.shape[-2:]), t_int, draw)


def _projection_dim(pipe: Any, pooled: Any) -> int:
    """The text-projection width the pipeline passes to ``_get_add_time_ids``."""
    if pipe.text_encoder_2 is None:
        return int(pooled.shape[-1])
    return int(pipe.text_encoder_2.config.projection_dim)
