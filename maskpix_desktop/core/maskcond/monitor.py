"""What a training run shows while it runs: TensorBoard scalars (accelerate's tracker) and validation
images every N steps.

Validation samples the first ``validation_items`` training items with the current weights (DDIM, a
fixed seed per item, no gradients) and writes ``output_dir/validation/step-NNNNNNN.png``: one row per
item, columns source | mask | edit with the mask | edit without a mask (the mask UNet's "no mask"
value) | target. With ``log_with="tensorboard"`` the same grid goes to TensorBoard as ``validation``.
It draws no numbers from the training's generators and changes no weight, so exact resume holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TRACKERS = ("", "tensorboard")
VALIDATION_STEPS = 10


def check_tracker(log_with: str) -> str | None:
    """``log_with`` as accelerate wants it (None for no tracker); a missing package is a ValueError."""
    if log_with not in TRACKERS:
        raise ValueError(f"log_with must be one of {list(TRACKERS)}, got {log_with!r}")
    if not log_with:
        return None
    try:
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise ValueError("log_with='tensorboard' needs tensorboard: pip install tensorboard") from exc
    return log_with


def tracker_config(cfg: dict) -> dict:
    """The run's options as TensorBoard hyper-parameters (scalars and strings only)."""
    return {k: v for k, v in cfg.items() if isinstance(v, int | float | str | bool)}


def _rgb(mask: Any, hw: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask, dtype=np.float32)
    m = m / 255.0 if m.max(initial=0.0) > 1.0 else m
    return np.repeat((np.clip(m, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2).reshape(*hw, 3)


def validation_grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of equally sized HxWx3 uint8 images as one image."""
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


def validate(acc: Any, pipe: Any, unet: Any, items: Any, cfg: Any, step: int) -> Path:
    """Sample the validation items with ``unet`` (restored to train mode after); write and log the grid."""
    import torch
    from PIL import Image

    from maskpix_desktop.core.maskcond.pipeline import MaskPix2PixPipeline, ddim_from

    sampler = MaskPix2PixPipeline(
        unet=unet,
        scheduler=ddim_from(pipe.scheduler.config),
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    sampler.set_progress_bar_config(disable=True)
    takes_mask = cfg.conditioning != "none"
    rows = []
    unet.eval()
    try:
        for i in range(min(cfg.validation_items, len(items))):
            item = items[i]
            img = np.asarray(item.image, dtype=np.uint8)
            hw = img.shape[:2]
            outs = []
            for mask in (item.mask, None) if takes_mask else (None,):
                with torch.no_grad(), acc.autocast():
                    res = sampler(
                        prompt=item.instruction,
                        image=img,
                        mask=mask,
                        num_inference_steps=VALIDATION_STEPS,
                        guidance_scale=1.0,
                        image_guidance_scale=1.0,
                        generator=torch.Generator().manual_seed(cfg.seed + i),
                        output_type="np",
                    )
                outs.append((np.clip(res.images[0], 0, 1) * 255).round().astype(np.uint8))
            if not takes_mask:
                outs.append(outs[0])
            target = np.asarray(item.target, dtype=np.uint8)
            rows.append([img, _rgb(item.mask, hw), *outs, target])
    finally:
        unet.train()
    grid = validation_grid(rows)
    folder = Path(cfg.output_dir) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.png"
    Image.fromarray(grid).save(path)
    if cfg.log_with == "tensorboard":
        acc.get_tracker("tensorboard", unwrap=True).add_image("validation", grid, step, dataformats="HWC")
    return path
