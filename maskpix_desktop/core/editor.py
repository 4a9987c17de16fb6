"""InstructPix2Pix engine: load the diffusers pipeline, run baseline + masked edit with progress/cancel."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskpix_desktop.core import blend, editor_families, images, masks
from maskpix_desktop.core.editor_memory import MemorySettings, next_lighter
from maskpix_desktop.core.errors import (
    Cancelled,
    MaskPixError,
    MissingWeightsError,
    OutOfMemoryError,
    WeightsError,
)
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, str], None]
"""on_step(done, total, stage) — called after every denoising step, and once as each later stage begins
(``POST_STAGES``: done unchanged), so a progress bar never sits at "step N/N" unlabelled."""

#: Stages after the denoising steps, in order: resize to full size (after each run), blend, seam.
POST_STAGES = ("resize", "blend", "seam")

NO_MASK_INPUT = (
    "the loaded editor does not take a mask; load a MaskPix mask checkpoint (docs/TRAINING.md) "
    "to use mask mode 'trained'"
)


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass
class _Progress:
    total: int
    on_step: StepCallback | None
    cancel: threading.Event | None
    done: int = 0

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("Edit cancelled.")

    def stage(self, name: str) -> None:
        """Report that a stage after the denoising steps begins (``POST_STAGES``)."""
        self.check()
        if self.on_step is not None:
            self.on_step(self.done, self.total, name)

    def callback(self, stage: str) -> Callable[[Any, int, Any, dict], dict]:
        """A diffusers ``callback_on_step_end`` reporting progress and raising :class:`Cancelled`."""

        def cb(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            self.done += 1
            if self.on_step is not None:
                self.on_step(self.done, self.total, stage)
            self.check()
            return {}

        return cb


def _takes_mask(pipe: Any) -> bool:
    """True for a :class:`~.maskcond.pipeline.MaskPix2PixPipeline` whose UNet reads the mask channel."""
    from maskpix_desktop.core.maskcond.pipeline import MaskPix2PixPipeline

    return isinstance(pipe, MaskPix2PixPipeline) and getattr(pipe.unet.config, "in_channels", 8) == 9


def _family_of(pipe: Any) -> str:
    """The editor family of a pipeline object, from its class (or a base class) name."""
    for cls in type(pipe).__mro__:
        if cls.__name__ in editor_families.CLASS_FAMILY:
            return editor_families.CLASS_FAMILY[cls.__name__]
    return "ip2p"


class Editor:
    """Owns one InstructPix2Pix pipeline; ndarray in, :class:`EditResult` out.

    ``family`` (core/editor_families): ``ip2p`` is ``StableDiffusionInstructPix2PixPipeline`` (SD 1.5),
    ``ip2p_xl`` is ``StableDiffusionXLInstructPix2PixPipeline`` (sdxl-instructpix2pix, CosXL-Edit), whose
    call takes a legacy ``callback(step, t, latents)`` and an explicit output size.

    ``takes_mask``: the pipeline is a mask checkpoint's :class:`~.maskcond.pipeline.MaskPix2PixPipeline`
    (a 9-channel UNet), so mask mode ``trained`` can give it the mask.

    Load one with :func:`~.editor_loader.load_editor`; the flow-matching families (``kontext``,
    ``qwen_edit``) load as :class:`~.editor_flow.FlowEditor`.
    """

    #: Working sizes are multiples of this (the VAE's downsampling; flow editors also pack 2x2 patches).
    size_multiple = 8

    def __init__(self, pipe: Any, *, model_id: str = "custom", fingerprint: str = ""):
        import torch

        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        # With CPU offload the modules sit on the CPU; the pipeline runs on its execution device.
        self.device = str(getattr(pipe, "_execution_device", pipe.device))
        #: How the weights are kept (core/editor_memory.place_pipeline's answer); set by load_editor.
        self.memory = "full"
        #: The concrete settings that text describes (None: placed by the caller, e.g. in tests).
        self.memory_settings: MemorySettings | None = None
        self.dtype = (pipe.unet if hasattr(pipe, "unet") else pipe.transformer).dtype
        self.model_id = model_id
        self.fingerprint = fingerprint
        self._torch = torch
        self.takes_mask = _takes_mask(pipe)
        self.family = _family_of(pipe)
        self.last_latent_blend: blend.LatentBlender | None = None  # kept for tests and the benchmark

    # ------------------------------------------------------------------ running
    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def encode_image(self, image: np.ndarray) -> Any:
        """Unscaled VAE posterior mode of ``image`` (HxWx3 uint8), exactly as the pipeline computes it.

        SDXL's fp16 VAE overflows, so for ``ip2p_xl`` it encodes in float32 as the XL pipeline does.
        """
        torch = self._torch
        pipe = self.pipe
        vae = pipe.vae
        x = pipe.image_processor.preprocess(images.to_pil(image))
        x = x.to(device=self.device, dtype=pipe.text_encoder.dtype)
        upcast = (
            self.family == "ip2p_xl"
            and vae.dtype == torch.float16
            and bool(getattr(vae.config, "force_upcast", False))
        )
        if not upcast:
            return vae.encode(x).latent_dist.mode()
        vae.to(dtype=torch.float32)
        try:
            return vae.encode(x.float()).latent_dist.mode().to(torch.float16)
        finally:
            vae.to(dtype=torch.float16)

    def source_latents(self, mode: Any) -> Any:
        """The denoiser's latent space for a posterior mode: what the pipeline's decode inverts."""
        cfg = self.pipe.vae.config
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        if mean is None or std is None:
            return mode * cfg.scaling_factor
        shape = (1, len(mean), 1, 1)
        m = self._torch.tensor(mean).view(shape).to(mode.device, mode.dtype)
        s = self._torch.tensor(std).view(shape).to(mode.device, mode.dtype)
        return (mode - m) * cfg.scaling_factor / s

    def _generator(self, seed: int) -> Any:
        return self._torch.Generator(device="cpu").manual_seed(int(seed))

    def _ip2p(
        self,
        image_latents: Any,
        p: EditParams,
        callback: Callable,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, bool]:
        """One pipeline call on precomputed image latents; returns (uint8 image, nsfw flag).

        ``mask`` (float in [0, 1], any size) goes to a mask pipeline; None is its "no mask".
        """
        extra: dict[str, Any] = {}
        if self.takes_mask:
            extra["mask"] = mask
        elif mask is not None:
            raise MaskPixError(NO_MASK_INPUT)
        if self.family == "ip2p_xl":  # no callback_on_step_end; the size must be given (default 1024)
            f = self.pipe.vae_scale_factor
            h, w = int(image_latents.shape[-2]) * f, int(image_latents.shape[-1]) * f
            extra.update(height=h, width=w, callback=self._legacy_callback(callback), callback_steps=1)
        else:
            extra["callback_on_step_end"] = callback
        out = self.pipe(
            prompt=p.instruction,
            image=image_latents,
            num_inference_steps=p.steps,
            guidance_scale=p.text_scale,
            image_guidance_scale=p.image_scale,
            negative_prompt=p.negative_prompt or None,
            generator=self._generator(p.seed),
            output_type="np",
            **extra,
        )
        arr = np.clip(np.rint(out.images[0] * 255), 0, 255).astype(np.uint8)
        flags = getattr(out, "nsfw_content_detected", None)
        return arr, bool(flags and any(flags))

    def _legacy_callback(self, cb: Callable) -> Callable[[int, Any, Any], None]:
        """Adapt a ``callback_on_step_end`` to the XL pipeline's ``callback(step, t, latents)``.

        Latents the callback returns are copied into the pipeline's tensor in place (the loop keeps it).
        """
        pipe = self.pipe

        def legacy(i: int, t: Any, latents: Any) -> None:
            new = cb(pipe, i, t, {"latents": latents}).get("latents")
            if new is not None and new is not latents:
                latents.copy_(new)

        return legacy

    def _edit_at(
        self, image: np.ndarray, p: EditParams, prog: _Progress, stage: str, mask=None, pipe_mask=None
    ):
        """Run IP2P on ``image`` at working size; optional latent blend with ``mask``, or ``pipe_mask``
        (float, image size) given to a mask pipeline; back to full size."""
        torch = self._torch
        h, w = image.shape[:2]
        work = images.working_image(image, p.long_side, multiple=8)
        wh, ww = work.shape[:2]
        with torch.inference_mode():
            lat = self.encode_image(work)
        if pipe_mask is not None:
            m_work = masks.resize_mask(masks.as_float(pipe_mask), (wh, ww), mode="area")
            arr, nsfw = self._ip2p(lat, p, prog.callback(stage), mask=np.clip(m_work, 0.0, 1.0))
        elif mask is None:
            arr, nsfw = self._ip2p(lat, p, prog.callback(stage))
        else:
            from diffusers.utils.torch_utils import randn_tensor

            m_work = masks.resize_mask(masks.as_bool(mask), (wh, ww))
            m_lat = blend.latent_mask(m_work, (lat.shape[-2], lat.shape[-1]), dilate_px=p.latent_dilate)
            if self.family == "ip2p_xl" and getattr(self.pipe.scheduler, "order", 1) != 1:
                raise MaskPixError(
                    f"latent mode needs a first-order scheduler; {type(self.pipe.scheduler).__name__} "
                    "is not one. Use pixel or crop mode."
                )
            src = self.source_latents(lat)
            noise = randn_tensor(
                tuple(src.shape), generator=self._generator(p.seed + 1), device=src.device, dtype=src.dtype
            )
            blender = blend.LatentBlender(src, noise, m_lat, inner=prog.callback(stage))
            self.last_latent_blend = blender
            arr, nsfw = self._ip2p(lat, p, blender)
        prog.stage("resize")
        full = images.resize_image(arr, (h, w), resample="lanczos")
        return full, nsfw, (wh, ww)

    def run(
        self,
        req: EditRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> EditResult:
        """Baseline (unmasked IP2P) plus the blended result for the request's mask mode."""
        try:
            return self._run(req, on_step, cancel)
        except (Cancelled, MissingWeightsError, WeightsError):
            raise
        except Exception as exc:
            if _is_oom(exc):
                if self.device.startswith("cuda"):
                    self._torch.cuda.empty_cache()
                h, w = req.image.shape[:2]
                lighter = next_lighter(self.memory_settings) if self.memory_settings else None
                step = f", choose the memory setting {lighter.label()} (Model settings)" if lighter else ""
                raise OutOfMemoryError(
                    f"The GPU ran out of memory editing a {w}x{h} image at working size "
                    f"{req.params.long_side}. Lower the working size{step} or close other GPU programs."
                ) from exc
            raise

    def _run(self, req: EditRequest, on_step: StepCallback | None, cancel: threading.Event | None):
        p = req.params
        orig = req.image
        h, w = orig.shape[:2]
        user_mask = np.ones((h, w), bool) if req.mask is None else req.mask
        if user_mask.shape != (h, w):
            raise ValueError(f"mask {user_mask.shape} does not match image {(h, w)}")
        m_used = blend.prepare_mask(user_mask, dilate=p.dilate, feather=p.feather)
        hard = masks.as_bool(user_mask)
        empty, full_mask = not hard.any(), bool(hard.all())
        trained = p.mask_mode == "trained" and req.mask is not None and not empty
        if p.mask_mode == "trained" and not self.takes_mask:
            raise MaskPixError(NO_MASK_INPUT)
        needs_second = trained or (p.mask_mode in ("latent", "crop") and not empty and not full_mask)
        reuse = req.baseline is not None
        if reuse and req.baseline.shape != orig.shape:
            raise ValueError(f"baseline {req.baseline.shape} does not match image {orig.shape}")
        runs = int(needs_second) + int(not reuse)
        prog = _Progress(total=p.steps * max(runs, 1), on_step=on_step, cancel=cancel)
        prog.check()
        timings: dict[str, float] = {}

        self._sync()
        t0 = time.perf_counter()
        if reuse:
            baseline, nsfw = req.baseline, False
            work_hw = images.working_size(h, w, p.long_side, multiple=self.size_multiple)
        else:
            baseline, nsfw, work_hw = self._edit_at(orig, p, prog, "baseline")
        self._sync()
        timings["baseline_s"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        if empty:
            edit = orig.copy()
        elif trained:  # one mask-pipeline call, then the pixel composite (exact outside a hard mask)
            edit, nsfw2, _ = self._edit_at(orig, p, prog, "trained", pipe_mask=m_used)
            nsfw = nsfw or nsfw2
        elif p.mask_mode in ("pixel", "trained") or full_mask:
            edit = baseline
        elif p.mask_mode == "latent":
            edit, nsfw2, _ = self._edit_at(orig, p, prog, "latent", mask=m_used > 0)
            nsfw = nsfw or nsfw2
        else:  # crop
            win = blend.CropWindow.around(m_used > 0, pad=p.crop_pad)
            assert win is not None
            patch, nsfw2, _ = self._edit_at(win.cut(orig), p, prog, "crop")
            edit = win.paste(orig, patch)
            nsfw = nsfw or nsfw2
        prog.stage("blend")
        blended = blend.composite(orig, edit, m_used)
        if p.seam == "poisson" and not empty:
            prog.stage("seam")
            blended = blend.poisson_seam(orig, blended, m_used)
        self._sync()
        timings["blend_s"] = time.perf_counter() - t1
        timings["total_s"] = time.perf_counter() - t0
        return EditResult(
            request=req,
            baseline=baseline,
            blended=blended,
            edit=edit,
            mask_used=m_used,
            working_size=work_hw,
            timings=timings,
            model={
                "ip2p": self.model_id,
                "ip2p_fingerprint": self.fingerprint,
                "editor_family": self.family,
                "device": self.device,
                "memory": self.memory,
                "dtype": str(self.dtype).replace("torch.", ""),
            },
            nsfw=nsfw,
        )
