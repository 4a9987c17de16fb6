"""The relevance map itself: what both denoiser readings produce (``sum_c |pred_instr - pred_empty|``),
its normalisation and thresholds, and the helpers they share (:mod:`.relevance`: InstructPix2Pix's UNet;
:mod:`.relevance_flow`: FLUX.1 Kontext's transformer)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from maskpix_desktop.core import masks
from maskpix_desktop.core.errors import Cancelled

__all__ = [
    "ProgressFn",
    "Reading",
    "RelevanceMap",
    "check_cancel",
    "ddpm_scheduler",
    "ddpm_working",
    "default_draws",
    "normalise_relevance",
    "relevance_from_eps",
    "unet_draw",
]

ProgressFn = Callable[[int, int, str], None]
"""on_step(done, total, stage) — stage is "relevance", "grounding" or "sam"."""


def relevance_from_eps(eps_instr: Any, eps_empty: Any) -> np.ndarray:
    """``R = sum_c |eps_instr - eps_empty|`` of (C, h, w) or (1, C, h, w) predictions, (h, w) float32."""
    a = _to_numpy(eps_instr).astype(np.float32)
    b = _to_numpy(eps_empty).astype(np.float32)
    if a.shape != b.shape:
        raise ValueError(f"noise predictions differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError("relevance_from_eps takes one image at a time")
        a, b = a[0], b[0]
    if a.ndim != 3:
        raise ValueError(f"noise predictions must be (C, h, w), got {a.shape}")
    return np.abs(a - b).sum(axis=0)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return x.detach().float().cpu().numpy()


def normalise_relevance(raw: np.ndarray) -> np.ndarray:
    """Clip at ``Q3 + 1.5 IQR`` (outliers), then min-max normalise to [0, 1] (float32).

    When the quartiles collapse (IQR = 0 and the clip would flatten everything above Q3, e.g. a small
    region of change on an exactly constant background), the clip is skipped. A constant map gives zeros.
    """
    r = np.asarray(raw, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"a relevance map is 2-D, got {r.shape}")
    q1, q3 = np.percentile(r, [25.0, 75.0])
    hi = q3 + 1.5 * (q3 - q1)
    lo = float(r.min())
    if hi <= lo or (q3 == q1 and r.max() > hi):
        hi = float(r.max())
    r = np.minimum(r, hi)
    span = float(r.max()) - lo  # min-max of the clipped map (hi itself when something was clipped)
    if span <= 0:
        return np.zeros(r.shape, np.float32)
    return ((r - lo) / span).astype(np.float32)


@dataclass(frozen=True, eq=False)
class RelevanceMap:
    """The continuous relevance map; thresholds are applied later, so tau changes never re-run the UNet.

    ``values``: (h, w) float32 in [0, 1] at latent resolution (working size / 8); ``raw``: the K-averaged
    ``sum_c |eps_instr - eps_empty|`` before clipping; ``image_size``: (H, W) of the user's image.
    """

    values: np.ndarray
    raw: np.ndarray
    image_size: tuple[int, int]
    working_size: tuple[int, int] = (0, 0)
    timestep: int = 0
    draws: int = 1
    seed: int = 0
    instruction: str = ""
    seconds: float = 0.0
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_raw(cls, raw: np.ndarray, image_size: Sequence[int], **kw: Any) -> RelevanceMap:
        """Normalise ``raw`` (see :func:`normalise_relevance`) and wrap it."""
        h, w = (int(v) for v in image_size)
        return cls(values=normalise_relevance(raw), raw=np.asarray(raw, np.float32), image_size=(h, w), **kw)

    def heatmap(self) -> np.ndarray:
        """(H, W) float32 in [0, 1]: ``values`` bilinearly upsampled to the image size (cached)."""
        hit = self._cache.get("heat")
        if hit is None:
            hit = masks.resize_mask(self.values, self.image_size, mode="bilinear")
            self._cache["heat"] = hit
        return hit

    def mask(self, tau: float = 0.5) -> np.ndarray:
        """(H, W) bool: ``values > tau`` at latent resolution, then upsampled (nearest) to the image size.

        Thresholding before upsampling keeps the result exact: a 0/1 map comes back as its 1-region,
        pixel for pixel, for any tau. (SAM smooths the blocky edges in the fused mask.)
        """
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {tau}")
        return masks.resize_mask(self.values > np.float32(tau), self.image_size, mode="nearest")

    def heatmap_rgb(self, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
        """(H, W, 3) uint8 RGB colour rendering of the heatmap for an overlay."""
        u8 = np.clip(np.rint(self.heatmap() * 255.0), 0, 255).astype(np.uint8)
        return cv2.cvtColor(cv2.applyColorMap(u8, colormap), cv2.COLOR_BGR2RGB)


def check_cancel(cancel: threading.Event | None, what: str = "Auto mask cancelled.") -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(what)


def default_draws(device: str) -> int:
    """K noise draws: 1 on CPU (and MPS), 4 on CUDA."""
    return 4 if str(device).startswith("cuda") else 1


@dataclass(frozen=True)
class Reading:
    """One family's way of reading its denoiser for the relevance map, set up for one image: the working
    size, the latent grid the map lives on, the timestep reported, and ``draw(generator)``, one noise
    draw's ``sum_c |pred_instr - pred_empty|`` on that grid."""

    working_size: tuple[int, int]
    latent_size: tuple[int, int]
    timestep: int
    draw: Callable[[Any], np.ndarray]


def ddpm_scheduler(pipe: Any, config: dict[str, Any] | None = None) -> Any:
    """A ``DDPMScheduler`` with the pipeline scheduler's training schedule (betas -> alphas_cumprod), or
    with ``config`` where the pipeline's scheduler has none (an EDM one).

    The UNet was trained with the DDPM forward process ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps``.
    The IP2P pipeline ships EulerAncestral, whose ``add_noise`` works in sigma space and needs
    ``scale_model_input`` afterwards; ``(z0 + sigma eps) / sqrt(sigma^2 + 1)`` is the same tensor, so we
    noise with DDPM's ``add_noise`` on the same betas (``beta_start``, ``beta_end``, ``beta_schedule``,
    ``num_train_timesteps`` from ``pipe.scheduler.config``) and feed the UNet directly.
    """
    from diffusers import DDPMScheduler

    if config is not None:
        return DDPMScheduler(**config)
    cfg = {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    return DDPMScheduler.from_config(cfg)


def unet_draw(z0: Any, sched: Any, t_int: int, cond: Any, unet: Callable[[Any], Any]) -> Callable:
    """An InstructPix2Pix reading's ``draw(gen)``: ``z0`` noised by DDPM's ``add_noise`` at ``t_int`` with the
    draw's noise, ``unet`` called once on the batch of two (noisy latents + the image condition ``cond``,
    both in its dtype), and the difference of its two predictions."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    t = torch.tensor([t_int], device=z0.device, dtype=torch.long)
    cond2 = torch.cat([cond, cond])

    def draw(gen: Any) -> np.ndarray:
        noise = randn_tensor(tuple(z0.shape), generator=gen, device=z0.device, dtype=z0.dtype)
        zt = sched.add_noise(z0, noise, t)
        eps = unet(torch.cat([torch.cat([zt, zt]).to(cond2.dtype), cond2], dim=1))
        return relevance_from_eps(eps[0:1], eps[1:2])

    return draw


def ddpm_working(
    pipe: Any, image: np.ndarray, long_side: int, t_frac: float, *, config: dict[str, Any] | None = None
) -> tuple[np.ndarray, Any, int]:
    """An InstructPix2Pix reading's set-up: the working image (long side ``long_side``, multiple of 8,
    area-resized), :func:`ddpm_scheduler` (``config`` as there) and the integer timestep ``t_frac * T``."""
    from maskpix_desktop.core import images

    sched = ddpm_scheduler(pipe, config)
    n_train = int(sched.config.num_train_timesteps)
    t_int = min(n_train - 1, int(round(t_frac * n_train)))
    return images.working_image(image, long_side, multiple=8), sched, t_int
