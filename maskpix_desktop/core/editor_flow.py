"""Flow-matching instruction editors: FLUX.1 Kontext (``kontext``) and Qwen-Image-Edit (``qwen_edit``).

Same contract as the InstructPix2Pix editor (core/editor.py, whose ``run`` drives this one): the baseline
is the diffusers pipeline's own call; pixel and crop modes composite with core/blend; latent mode pins the
background latents step by step. These pipelines denoise *packed* latents (2x2 latent patches become one
token of 4x the channels) with ``FlowMatchEulerDiscreteScheduler``, so the latent blend is the flow-matching
one on packed tensors: after step ``i`` the latents sit at ``sigmas[i+1]``, and outside the mask they are
replaced by ``(1 - sigma) * x0 + sigma * eps`` (``scheduler.scale_noise``'s formula at the next sigma); after
the last step by ``x0`` itself. ``x0`` is the pipeline's own normalised VAE latents of the working image
(``_encode_vae_image``), packed with the pipeline's ``_pack_latents``; the mask is packed the same way.

Family parameters (EditParams; docs/MODELS.md): ``guidance`` is Kontext's ``guidance_scale`` (the
distilled guidance input), ``true_cfg_scale`` Qwen-Image-Edit's (with ``negative_prompt``, or " " when
empty, as Qwen's examples do); ``text_scale`` and ``image_scale`` are the IP2P families' and not used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from maskpix_desktop.core import blend, images, masks
from maskpix_desktop.core.editor import Editor, _Progress
from maskpix_desktop.core.jobs import EditParams

#: Families this module runs, and their diffusers pipeline classes (tried in order for a folder's class).
FLOW_FAMILIES: dict[str, tuple[str, ...]] = {
    "kontext": ("FluxKontextPipeline",),
    "qwen_edit": ("QwenImageEditPipeline", "QwenImageEditPlusPipeline"),
}
LABELS = {"kontext": "FLUX.1 Kontext", "qwen_edit": "Qwen-Image-Edit"}


def pack(pipe: Any, x: Any) -> Any:
    """``x`` (1, C, [1,] h, w) packed into 2x2-patch tokens (1, h*w/4, 4C) by the pipeline's own code."""
    c, h, w = int(x.shape[1]), int(x.shape[-2]), int(x.shape[-1])
    return pipe._pack_latents(x.reshape(1, c, h, w), 1, c, h, w)


class FlowLatentBlender:
    """``callback_on_step_end`` pinning packed latents outside the mask to the source noised to the next
    sigma: ``bg = (1 - sigma[i+1]) * src + sigma[i+1] * noise``; after the last step ``bg = src``.

    ``src``, ``noise`` and ``m`` are packed (1, N, 4C); ``final`` holds the last blended latents.
    """

    def __init__(self, src: Any, noise: Any, m: Any, inner: Callable | None = None):
        self.src, self.noise, self.m = src, noise, m
        self.inner = inner  # progress / cancel, run first
        self.final: Any = None

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
        import torch

        out = dict(self.inner(pipe, i, t, kwargs)) if self.inner is not None else {}
        lat = kwargs["latents"]
        sched = pipe.scheduler
        if i + 1 < len(sched.timesteps):
            sigma = sched.sigmas[i + 1].to(device=self.src.device, dtype=self.src.dtype)
            bg = sigma * self.noise + (1.0 - sigma) * self.src  # scheduler.scale_noise at sigma[i+1]
        else:
            bg = self.src
        with torch.no_grad():
            m = self.m.to(lat.dtype)
            lat = m * lat + (1 - m) * bg.to(lat.dtype)
        self.final = lat
        out["latents"] = lat
        return out


class FlowEditor(Editor):
    """An :class:`Editor` over a ``FluxKontextPipeline`` or ``QwenImageEdit(Plus)Pipeline``.

    Works at the working size (long side ``long_side``, sides multiples of ``vae_scale_factor * 2``):
    Kontext gets ``max_area = h * w`` and ``_auto_resize=False`` so it neither snaps to its preferred 1 MP
    sizes nor resizes the condition image; Qwen-Image-Edit resizes its condition image to about 1 MP itself
    (its own rule) and outputs the working size.
    """

    @property
    def size_multiple(self) -> int:
        return int(self.pipe.vae_scale_factor) * 2

    def source_latents_of(self, work: np.ndarray) -> Any:
        """The pipeline's normalised VAE latents of ``work`` (working size, HxWx3 uint8), unpacked:
        Kontext ``(mode - shift) * scale`` (1, C, h, w); Qwen ``(mode - mean) / std`` (1, C, 1, h, w)."""
        pipe = self.pipe
        h, w = work.shape[:2]
        pil = pipe.image_processor.resize(images.to_pil(work), h, w)
        x = pipe.image_processor.preprocess(pil, h, w)
        enc = pipe.text_encoder_2 if self.family == "kontext" else pipe.text_encoder
        x = x.to(device=self.device, dtype=enc.dtype)  # the pipeline encodes in the prompt embeds' dtype
        if self.family == "qwen_edit":
            x = x.unsqueeze(2)
        with self._torch.inference_mode():
            return pipe._encode_vae_image(image=x, generator=None)

    def encode_image(self, image: np.ndarray) -> Any:
        """For flow editors: the normalised latents the pipeline computes (``source_latents_of``)."""
        return self.source_latents_of(image)

    def source_latents(self, mode: Any) -> Any:
        return mode  # encode_image already gives the denoiser's latent space

    def _flow_call(self, work: np.ndarray, p: EditParams, callback: Callable) -> np.ndarray:
        """One pipeline call on the working image; the uint8 result at the working size."""
        h, w = work.shape[:2]
        kwargs: dict[str, Any] = {}
        if self.family == "kontext":
            kwargs.update(guidance_scale=p.guidance, max_area=h * w, _auto_resize=False)
        else:
            kwargs.update(true_cfg_scale=p.true_cfg_scale, negative_prompt=p.negative_prompt or " ")
        out = self.pipe(
            prompt=p.instruction,
            image=images.to_pil(work),
            height=h,
            width=w,
            num_inference_steps=p.steps,
            generator=self._generator(p.seed),
            output_type="np",
            callback_on_step_end=callback,
            **kwargs,
        )
        return np.clip(np.rint(out.images[0] * 255), 0, 255).astype(np.uint8)

    def latent_blender(self, work: np.ndarray, mask: np.ndarray, p: EditParams, inner: Callable):
        """A :class:`FlowLatentBlender` for ``mask`` (bool, working size) on ``work``."""
        from diffusers.utils.torch_utils import randn_tensor

        src = self.source_latents_of(work)
        m_lat = blend.latent_mask(mask, (int(src.shape[-2]), int(src.shape[-1])), dilate_px=p.latent_dilate)
        m = self._torch.from_numpy(np.ascontiguousarray(m_lat, dtype=np.float32))
        m = m[None, None].expand(1, int(src.shape[1]), *m_lat.shape).to(src.device, src.dtype)
        noise = randn_tensor(
            tuple(src.shape), generator=self._generator(p.seed + 1), device=src.device, dtype=src.dtype
        )
        return FlowLatentBlender(pack(self.pipe, src), pack(self.pipe, noise), pack(self.pipe, m), inner)

    def _edit_at(
        self, image: np.ndarray, p: EditParams, prog: _Progress, stage: str, mask=None, pipe_mask=None
    ):
        """Run the editor on ``image`` at working size (latent blend with ``mask`` if given); full size."""
        h, w = image.shape[:2]
        work = images.working_image(image, p.long_side, multiple=self.size_multiple)
        wh, ww = work.shape[:2]
        callback = prog.callback(stage)
        if mask is not None:
            m_work = masks.resize_mask(masks.as_bool(mask), (wh, ww))
            callback = self.latent_blender(work, m_work, p, callback)
            self.last_latent_blend = callback
        arr = self._flow_call(work, p, callback)
        prog.stage("resize")
        return images.resize_image(arr, (h, w), resample="lanczos"), False, (wh, ww)


def pipeline_class(family: str, source: Any) -> Any:
    """The diffusers pipeline class for a flow family: the ``_class_name`` of the folder's (or a cached hub
    id's) ``model_index.json`` when it is one of the family's classes, else the family's first class."""
    import json
    from pathlib import Path

    import diffusers

    name = FLOW_FAMILIES[family][0]
    index: Any = Path(str(source)) / "model_index.json"
    if not index.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            index = try_to_load_from_cache(str(source), "model_index.json")
        except Exception:  # not a valid hub id: from_pretrained reports it
            index = None
    if isinstance(index, (str, Path)) and Path(index).is_file():
        found = json.loads(Path(index).read_text(encoding="utf-8")).get("_class_name")
        if found in FLOW_FAMILIES[family]:
            name = found
    return getattr(diffusers, name)
