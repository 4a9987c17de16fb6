"""Frozen request/result objects shared by the GUI, the CLI, export sidecars and project files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from maskpix_desktop.core.blend import MASK_MODES, SEAM_MODES


@dataclass(frozen=True)
class EditParams:
    """Every scalar that determines an edit (images and masks travel beside it)."""

    instruction: str
    steps: int = 20
    text_scale: float = 7.5
    image_scale: float = 1.5
    seed: int = 0
    mask_mode: str = "pixel"
    long_side: int = 512
    dilate: int = 0
    feather: float = 0.0
    seam: str = "none"
    negative_prompt: str = ""
    latent_dilate: int = 8
    crop_pad: float = 0.15

    def __post_init__(self) -> None:
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f"mask mode must be one of {MASK_MODES}, not {self.mask_mode!r}")
        if self.seam not in SEAM_MODES:
            raise ValueError(f"seam must be one of {SEAM_MODES}, not {self.seam!r}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.image_scale < 1:
            raise ValueError("image guidance scale must be at least 1 (InstructPix2Pix requirement)")
        if self.long_side < 64:
            raise ValueError("working size must be at least 64 pixels")
        if self.dilate < 0 or self.feather < 0 or self.latent_dilate < 0:
            raise ValueError("dilate and feather must not be negative")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditParams:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, eq=False)
class EditRequest:
    """One edit job: the image (HxWx3 uint8), the user's mask (HxW bool/float; None = everywhere)."""

    image: np.ndarray
    mask: np.ndarray | None
    params: EditParams
    job_id: int = 0
    #: The unmasked result of an earlier run with the same image, instruction, seed, steps, scales and
    #: working size (only the mask mode may differ): the editor reuses it instead of running it again.
    baseline: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class EditResult:
    """What an edit produced, at the input image's size."""

    request: EditRequest
    baseline: np.ndarray
    blended: np.ndarray
    edit: np.ndarray
    mask_used: np.ndarray
    working_size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)
    model: dict[str, str] = field(default_factory=dict)
    nsfw: bool = False
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-able record of every parameter, model and timing: enough to re-run the edit exactly."""
        h, w = self.request.image.shape[:2]
        return {
            "params": self.request.params.to_dict(),
            "image_size": [h, w],
            "working_size": list(self.working_size),
            "model": dict(self.model),
            "timings": dict(self.timings),
            "metrics": self.metrics,
            "nsfw": self.nsfw,
        }
