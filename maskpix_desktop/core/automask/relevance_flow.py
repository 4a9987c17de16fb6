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

from collections.abc import Callable
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

    pipe = editor.pipe
    work = images.working_image(image, long_side, multiple=pipe.vae_scale_factor * 2)
    wh, ww = work.shape[:2]
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

    def velocity(xt: Any, branch: tuple) -> Any:
        embeds, pooled, text_ids = branch
        return transformer(
            hidden_states=torch.cat([xt, x0], dim=1),
            timestep=sigma,
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=ids,
            return_dict=False,
        )[0]

    draw = _flow_draw(
        x0, t_frac, texts, velocity, lambda p: pipe._unpack_latents(p, wh, ww, pipe.vae_scale_factor)
    )
    side = pipe.vae_scale_factor * 2
    latent = (2 * (wh // side), 2 * (ww // side))
    return Reading((wh, ww), latent, int(round(float(t_frac) * 1000)), draw)


def qwen_reader(
    editor: Any, image: np.ndarray, instruction: str, *, t_frac: float, long_side: int, device: Any
) -> Reading:
    """Qwen-Image-Edit's reading (``QwenImageEditPipeline`` or its Plus variant), as :func:`kontext_reader`:
    ``x0`` is the source's packed latents at the working size (the editor's ``source_latents_of``, what the
    latent blend pins), the condition image and its latents are built as the pipeline's ``__call__`` builds
    them (about 1 MP for the VAE; the Plus variant's vision input at 384x384 area), each prompt encoded with
    the condition image (``pipe.encode_prompt``), and each draw runs the transformer once per prompt."""
    import torch
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit

    from maskpix_desktop.core.editor_flow import pack

    pipe = editor.pipe
    f = int(pipe.vae_scale_factor)
    work = images.working_image(image, long_side, multiple=f * 2)
    wh, ww = work.shape[:2]
    pil = images.to_pil(work)
    x0 = pack(pipe, editor.source_latents_of(work))
    transformer = pipe.transformer
    dtype = transformer.dtype
    if type(pipe).__name__ == "QwenImageEditPlusPipeline":
        from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus

        cw, ch = plus.calculate_dimensions(plus.CONDITION_IMAGE_SIZE, ww / wh)
        vw, vh = plus.calculate_dimensions(plus.VAE_IMAGE_SIZE, ww / wh)
        prompt_image: Any = [pipe.image_processor.resize(pil, ch, cw)]
        vae_input: Any = [pipe.image_processor.preprocess(pil, vh, vw).unsqueeze(2)]
    else:
        vw, vh, _ = edit.calculate_dimensions(1024 * 1024, ww / wh)
        prompt_image = pipe.image_processor.resize(pil, vh, vw)
        vae_input = pipe.image_processor.preprocess(prompt_image, vh, vw).unsqueeze(2)
    texts = [pipe.encode_prompt(image=prompt_image, prompt=p, device=device) for p in (instruction, "")]
    channels = transformer.config.in_channels // 4
    throwaway = torch.Generator("cpu").manual_seed(0)  # prepare_latents also draws noise: not ours
    _, cond = pipe.prepare_latents(vae_input, 1, channels, wh, ww, texts[0][0].dtype, device, throwaway, None)
    img_shapes = [[(1, wh // f // 2, ww // f // 2), (1, vh // f // 2, vw // f // 2)]]
    sigma = torch.full([1], float(t_frac), device=device, dtype=dtype)

    def velocity(xt: Any, branch: tuple) -> Any:
        embeds, mask = branch
        return transformer(
            hidden_states=torch.cat([xt, cond], dim=1).to(dtype),
            timestep=sigma,
            guidance=None,
            encoder_hidden_states_mask=mask,
            encoder_hidden_states=embeds,
            img_shapes=img_shapes,
            return_dict=False,
        )[0]

    draw = _flow_draw(x0, t_frac, texts, velocity, lambda p: pipe._unpack_latents(p, wh, ww, f)[:, :, 0])
    return Reading((wh, ww), (wh // f, ww // f), int(round(float(t_frac) * 1000)), draw)


def _flow_draw(x0: Any, t_frac: float, branches: list, velocity: Callable, unpack: Callable) -> Callable:
    """A reading's ``draw(gen)``: ``x0`` (packed) noised to ``x_t = (1 - s) x0 + s eps`` with the draw's
    noise, the velocity of the instruction's and the empty prompt's ``branches`` (its first ``x_t`` tokens,
    unpacked to (1, C, h, w)), and their difference."""

    def draw(gen: Any) -> np.ndarray:
        from diffusers.utils.torch_utils import randn_tensor

        noise = randn_tensor(tuple(x0.shape), generator=gen, device=x0.device, dtype=x0.dtype)
        xt = (1.0 - float(t_frac)) * x0 + float(t_frac) * noise
        instr, empty = (unpack(velocity(xt, branch)[:, : xt.shape[1]]) for branch in branches)
        return relevance_from_eps(instr, empty)

    return draw
