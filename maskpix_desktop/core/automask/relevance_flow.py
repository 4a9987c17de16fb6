"""The relevance map for FLUX.1 Kontext: the same "Watch Your Steps" difference, on a flow transformer.

The source latents ``x0`` (the pipeline's own normalised, packed VAE latents of the working image, which
are also the image condition) are noised to ``x_t = (1 - s) x0 + s eps`` at ``s = t_frac``
(flow matching), and the transformer predicts the velocity twice: with the instruction's and with the
empty prompt's embeddings (``pipe.encode_prompt``), the condition tokens appended as the pipeline appends
them (``prepare_latents``' image latents and ids). ``R = sum_c |v_instr - v_empty|`` after unpacking the
2x2 patches (``pipe._unpack_latents``), averaged over the draws: a map at latent resolution, exactly like
the InstructPix2Pix one (:mod:`.relevance`), so thresholds, grounding and SAM fusion are shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.automask.relevance_map import Reading, relevance_from_eps

#: Kontext's distilled guidance input for both branches (its examples' value; only the text differs).
GUIDANCE = 2.5


def kontext_reader(
    editor: Any, image: np.ndarray, instruction: str, *, t_frac: float, long_side: int, device: Any
) -> Reading:
    """FLUX.1 Kontext's reading for :func:`~.relevance.compute_relevance` (under
    ``torch.inference_mode``): the working image (sides multiples of ``vae_scale_factor * 2``), its
    packed latents and ids and both prompts' embeddings, computed once; each draw two transformer calls."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    pipe = editor.pipe
    h, w = image.shape[:2]
    wh, ww = images.working_size(h, w, long_side, multiple=pipe.vae_scale_factor * 2)
    work = images.resize_image(image, (wh, ww), resample="area")
    transformer = pipe.transformer
    dtype = transformer.dtype
    channels = transformer.config.in_channels // 4
    x = pipe.image_processor.preprocess(images.to_pil(work), wh, ww)
    *_, x0, latent_ids, image_ids = pipe.prepare_latents(x, 1, channels, wh, ww, dtype, device, None)
    ids = torch.cat([latent_ids, image_ids], dim=0)
    texts = [pipe.encode_prompt(prompt=p, prompt_2=None, device=device) for p in (instruction, "")]
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full([1], GUIDANCE, device=device, dtype=torch.float32)
    sigma = torch.full([1], float(t_frac), device=device, dtype=dtype)

    def draw(gen: Any) -> np.ndarray:
        noise = randn_tensor(tuple(x0.shape), generator=gen, device=x0.device, dtype=x0.dtype)
        xt = (1.0 - float(t_frac)) * x0 + float(t_frac) * noise
        v = [
            transformer(
                hidden_states=torch.cat([xt, x0], dim=1),
                timestep=sigma,
                guidance=guidance,
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=text_ids,
                img_ids=ids,
                return_dict=False,
            )[0][:, : xt.shape[1]]
            for embeds, pooled, text_ids in texts
        ]
        unpacked = [pipe._unpack_latents(p, wh, ww, pipe.vae_scale_factor) for p in v]
        return relevance_from_eps(unpacked[0], unpacked[1])

    side = pipe.vae_scale_factor * 2
    latent = (2 * (wh // side), 2 * (ww // side))
    return Reading((wh, ww), latent, int(round(float(t_frac) * 1000)), draw)
