"""Frozen request/result objects shared by the GUI, the CLI, export sidecars and project files."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from maskpix_desktop.core.blend import MASK_MODES, SEAM_MODES

#: Inclusive (low, high) per numeric edit parameter: the one copy of these numbers. EditParams checks
#: them when it is built (so the app, CLI cases, projects, sidecars and the evaluation share them) and
#: the edit panel's spin boxes take their limits from here. Upper limits sit far beyond any real use
#: and below the values that hang, exhaust memory or overflow:
PARAM_RANGES: dict[str, tuple[float, float]] = {
    # The scheduler is trained on 1000 timesteps; more steps only repeat them (5000 runs for hours).
    "steps": (1, 1000),
    # Text guidance s_T: the paper explores 3..10. 100 keeps guided noise (~s * O(1)) far below fp16's
    # 65504; infinite or NaN scales turn every latent to NaN and the result black.
    "text_scale": (0.0, 100.0),
    # Image guidance s_I: at least 1 (InstructPix2Pix requirement); the paper explores 1..2.5.
    "image_scale": (1.0, 100.0),
    # FLUX.1 Kontext's distilled guidance (a model input, not CFG; its examples use 2.5) and
    # Qwen-Image-Edit's true CFG scale (<= 1 turns CFG off; its examples use 4): bounded as text_scale.
    "guidance": (0.0, 100.0),
    "true_cfg_scale": (0.0, 100.0),
    # Seeds are shown by a Qt spin box (signed 32-bit); every seed a file holds can be shown and re-run.
    "seed": (0, 2**31 - 1),
    # Working long side: 4x SD 1.5's 512 training size; attention memory grows with its 4th power.
    "long_side": (64, 2048),
    # Mask grow (image pixels) and its latent-mode twin (working pixels): the distance transform's cost
    # does not depend on the radius; 1000 px covers any mask a screen can show.
    "dilate": (0, 1000),
    "latent_dilate": (0, 1000),
    # Feather = Gaussian sigma in pixels: the kernel is ~6 sigma wide (sigma 1e7 dies in bad_alloc,
    # inf allocates without end); 200 px already blurs a 1200 px band.
    "feather": (0.0, 200.0),
    # Crop padding, a fraction of the mask box per side: 2 makes the crop 5x the box, past any image.
    "crop_pad": (0.0, 2.0),
}
#: Longest instruction / negative prompt: CLIP reads 77 tokens (~300 characters); a 1 MB string in a
#: project would only slow every widget that shows it.
MAX_TEXT_CHARS = 10_000
_CHOICES: dict[str, tuple[str, ...]] = {"mask_mode": MASK_MODES, "seam": SEAM_MODES}


class ParamError(ValueError):
    """An edit parameter has the wrong type or lies outside :data:`PARAM_RANGES`; names the field."""


def _fmt_range(name: str) -> str:
    """``"0..200"``: whole numbers without a decimal point, others as written."""
    return "..".join(str(int(v)) if float(v).is_integer() else str(v) for v in PARAM_RANGES[name])


def _show(value: Any) -> str:
    """``repr(value)``, cut to 60 characters (a hostile value may be a megabyte long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_param(name: str, kind: str, value: Any) -> Any:
    """``value`` for field ``name`` of annotated type ``kind`` ("int", "float", "str"), normalised to a
    plain Python int/float/str; :class:`ParamError` naming the field otherwise."""
    if kind == "str":
        if not isinstance(value, str):
            raise ParamError(f"{name} must be a string, not {_show(value)}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ParamError(f"{name} must be one of {_CHOICES[name]}, not {_show(value)}")
        if len(value) > MAX_TEXT_CHARS:
            raise ParamError(f"{name} must be at most {MAX_TEXT_CHARS:,} characters, not {len(value):,}")
        return value
    lo, hi = PARAM_RANGES[name]
    if kind == "int":
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        if not ok or not lo <= value <= hi:
            raise ParamError(f"{name} must be an integer in {_fmt_range(name)}, not {_show(value)}")
        return int(value)
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    try:
        number = float(value) if ok else math.nan
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not (math.isfinite(number) and lo <= number <= hi):
        raise ParamError(f"{name} must be a finite number in {_fmt_range(name)}, not {_show(value)}")
    return number


@dataclass(frozen=True)
class EditParams:
    """Every scalar that determines an edit (images and masks travel beside it).

    Built only from valid values: types (ints are ints, not bools; floats accept ints; strings are
    strings) and :data:`PARAM_RANGES` are checked here, and a :class:`ParamError` names the field.

    Family parameters (core/editor_families): ``text_scale`` and ``image_scale`` drive the InstructPix2Pix
    families (``ip2p``, ``ip2p_xl``), ``guidance`` FLUX.1 Kontext, ``true_cfg_scale`` Qwen-Image-Edit
    (with ``negative_prompt``, which the IP2P families also take). Each family ignores the others'.
    """

    instruction: str
    steps: int = 20
    text_scale: float = 7.5
    image_scale: float = 1.5
    seed: int = 0
    mask_mode: str = "pixel"  # one of core.blend.MASK_MODES ("trained" needs a mask checkpoint)
    long_side: int = 512
    dilate: int = 0
    feather: float = 0.0
    seam: str = "none"
    negative_prompt: str = ""
    latent_dilate: int = 8
    crop_pad: float = 0.15
    guidance: float = 2.5
    true_cfg_scale: float = 4.0

    def __post_init__(self) -> None:
        for f in fields(self):
            # Normalised: numpy scalars become plain, ints given for floats become floats.
            object.__setattr__(self, f.name, check_param(f.name, str(f.type), getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditParams:
        """Parameters from a JSON object; keys this version does not know are ignored (newer files)."""
        if not isinstance(data, dict):
            raise ParamError(f"edit parameters must be a JSON object, not {type(data).__name__}")
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
