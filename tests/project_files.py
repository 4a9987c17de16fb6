"""Builders shared by the project-file tests: a deterministic EditResult and a zip-member rewriter."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult


def sample_result(
    image: np.ndarray, *, seed: int, mask: np.ndarray | None, mask_used: np.ndarray
) -> EditResult:
    """A deterministic result (noise images from ``seed``, fixed params, timings and metrics)."""
    rng = np.random.default_rng(seed)
    baseline = rng.integers(0, 256, image.shape, dtype=np.uint8)
    blended = rng.integers(0, 256, image.shape, dtype=np.uint8)
    params = EditParams(
        "make it gold", steps=7, text_scale=7.25, image_scale=1.35, seed=seed, mask_mode="latent",
        feather=1.5, negative_prompt="blurry", crop_pad=0.2,
    )  # fmt: skip
    return EditResult(
        request=EditRequest(image=image, mask=mask, params=params, job_id=seed),
        baseline=baseline,
        blended=blended,
        edit=baseline,
        mask_used=mask_used,
        working_size=(40, 56),
        timings={"baseline_s": 0.125, "total_s": 0.5},
        model={"ip2p": "tiny", "ip2p_fingerprint": "abc123", "device": "cpu"},
        nsfw=seed % 2 == 1,
        metrics={
            "baseline": {"leakage_mean": 3.5, "bg_psnr": 21.25, "miou": None},
            "blended": {"leakage_mean": 0.0, "bg_psnr": math.inf, "bg_ssim": math.nan, "pie_mse": 0},
        },
    )


def rewrite_member(path: Path, member: str, change) -> None:
    """Rewrite one member of a zip (``change(bytes) -> bytes | None``; None drops it)."""
    with zipfile.ZipFile(path) as zf:
        items = [(info.filename, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items:
            if name == member:
                data = change(data)
            if data is not None:
                zf.writestr(name, data)
