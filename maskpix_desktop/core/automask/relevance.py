"""The InstructPix2Pix relevance map ("Watch Your Steps"): UNet noise differences, normalised, thresholded."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from maskpix_desktop.core.automask.relevance_map import (
    ProgressFn,
    Reading,
    RelevanceMap,
    check_cancel,
    ddpm_scheduler,
    ddpm_working,
    default_draws,
    normalise_relevance,
    relevance_from_eps,
    unet_draw,
)
from maskpix_desktop.core.errors import MaskPixError

__all__ = [
    "ProgressFn",
    "RelevanceMap",
    "check_cancel",
    "compute_relevance",
    "ddpm_scheduler",
    "default_draws",
    "ip2p_reader",
    "normalise_relevance",
    "relevance_from_eps",
    "unsupported_reason",
]

#: Editor families whose denoiser the relevance map reads: the InstructPix2Pix UNets (SD 1.5 here, SDXL in
#: :mod:`.relevance_xl`), FLUX.1 Kontext's and Qwen-Image-Edit's transformers (:mod:`.relevance_flow`).
RELEVANCE_FAMILIES = ("ip2p", "ip2p_xl", "kontext", "qwen_edit")


def unsupported_reason(family: str) -> str | None:
    """Why auto mask cannot run with an editor of ``family`` (None when it can)."""
    if family in RELEVANCE_FAMILIES:
        return None
    return (
        "Auto mask's relevance map reads an InstructPix2Pix (SD 1.5, SDXL), FLUX.1 Kontext or "
        f"Qwen-Image-Edit denoiser; the loaded editor is {family}. Click or draw the mask instead, or load "
        "one of those (docs/MODELS.md)."
    )


def compute_relevance(
    editor: Any,
    image: np.ndarray,
    instruction: str,
    *,
    t_frac: float = 0.8,
    draws: int | None = None,
    seed: int = 0,
    long_side: int = 512,
    on_step: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    progress_offset: int = 0,
    progress_total: int | None = None,
) -> RelevanceMap:
    """The relevance map of ``instruction`` on ``image`` (HxWx3 uint8) with the editor's pipeline.

    ``draws`` seeded noises (CPU generator seeded with ``seed``, drawn in sequence) each give one reading
    of the denoiser with the instruction's and the empty prompt's embeddings; their difference
    ``R = sum_c |pred_instr - pred_empty|`` is averaged over the draws. The reading is the family's:
    :func:`ip2p_reader` here, :func:`~.relevance_flow.kontext_reader` for FLUX.1 Kontext,
    :func:`~.relevance_flow.qwen_reader` for Qwen-Image-Edit, :func:`~.relevance_xl.ip2p_xl_reader` for
    SDXL InstructPix2Pix.
    """
    import torch

    family = getattr(editor, "family", "ip2p")
    why = unsupported_reason(family)
    if why is not None:
        raise MaskPixError(why)
    pipe = editor.pipe
    device = pipe.device if family.startswith("ip2p") else pipe._execution_device
    k = int(draws) if draws is not None else default_draws(str(device))
    if k < 1:
        raise ValueError("draws must be at least 1")
    if not 0.0 < t_frac <= 1.0:
        raise ValueError("t_frac must be in (0, 1]")
    total = progress_total if progress_total is not None else k
    check_cancel(cancel)
    t0 = time.perf_counter()
    if family == "kontext":
        from maskpix_desktop.core.automask.relevance_flow import kontext_reader as reader
    elif family == "qwen_edit":
        from maskpix_desktop.core.automask.relevance_flow import qwen_reader as reader
    elif family == "ip2p_xl":
        from maskpix_desktop.core.automask.relevance_xl import ip2p_xl_reader as reader
    else:
        reader = ip2p_reader
    with torch.inference_mode():
        reading = reader(editor, image, instruction, t_frac=t_frac, long_side=long_side, device=device)
        gen = editor._generator(seed)
        acc = np.zeros(reading.latent_size, np.float64)
        for i in range(k):
            check_cancel(cancel)
            acc += reading.draw(gen)
            if on_step is not None:
                on_step(progress_offset + i + 1, total, "relevance")
            check_cancel(cancel)
    return RelevanceMap.from_raw(
        (acc / k).astype(np.float32),
        image.shape[:2],
        working_size=reading.working_size,
        timestep=reading.timestep,
        draws=k,
        seed=int(seed),
        instruction=instruction,
        seconds=time.perf_counter() - t0,
    )


def ip2p_reader(
    editor: Any, image: np.ndarray, instruction: str, *, t_frac: float, long_side: int, device: Any
) -> Reading:
    """InstructPix2Pix's reading (call under ``torch.inference_mode``).

    The image is brought to the working size (long side ``long_side``, multiple of 8) and encoded once:
    the image condition is the unscaled posterior mode (as the pipeline computes it) and
    ``z0 = mode * scaling_factor``. Each draw noises ``z0`` to ``t = t_frac * T`` (DDPM schedule, see
    :func:`ddpm_scheduler`) and runs the UNet once on a batch of two — with the instruction's and with
    the empty prompt's embeddings (``pipe._encode_prompt``, exactly the pipeline's), the image condition
    concatenated on the channels like the pipeline does.
    """
    pipe = editor.pipe
    work, sched, t_int = ddpm_working(pipe, image, long_side, t_frac)
    wh, ww = work.shape[:2]
    cond = editor.encode_image(work)  # unscaled mode, the pipeline's image condition
    z0 = cond * pipe.vae.config.scaling_factor
    embeds = pipe._encode_prompt(instruction, device, 1, True, None)[:2]  # [instruction, empty]
    dtype = pipe.unet.dtype
    embeds = embeds.to(dtype)

    def unet(x: Any) -> Any:
        return pipe.unet(x, t_int, encoder_hidden_states=embeds, return_dict=False)[0]

    draw = unet_draw(z0, sched, t_int, cond.to(dtype), unet)
    return Reading((wh, ww), tuple(z0.shape[-2:]), t_int, draw)
