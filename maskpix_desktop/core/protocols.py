"""The engine interfaces: what the pipeline, the worker and the auto mask need of a segmenter, an editor
and the model service. Real engines (``Segmenter``, ``Sam2Segmenter``, ``Editor``, ``ModelService``) and
the tests' fakes (``tests/fakes.py``) implement them; nothing here imports torch or Qt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from maskpix_desktop.core.jobs import EditRequest, EditResult
    from maskpix_desktop.core.metrics import ClipScorer
    from maskpix_desktop.core.segmenter import SegmentResult

#: ``progress(done, total, stage)``, called by an editor after every denoising step.
Progress = Callable[[int, int, str], None]


@runtime_checkable
class SegmentEngine(Protocol):
    """Click-to-mask: one encode per image, then decoder-only predictions."""

    def set_image(self, image: np.ndarray) -> bool:
        """Make ``image`` (HxWx3 uint8) current; True when it had to be encoded."""
        ...

    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool | None = None,
    ) -> SegmentResult:
        """Candidates for the prompts (points in image pixels, labels 1 keep / 0 exclude, box x0 y0 x1 y1)."""
        ...


@runtime_checkable
class EditEngine(Protocol):
    """An instruction editor: baseline and masked result for one request."""

    def run(
        self, req: EditRequest, on_step: Progress | None = None, cancel: threading.Event | None = None
    ) -> EditResult:
        """Run ``req``; ``on_step`` reports progress; raises ``Cancelled`` once ``cancel`` is set."""
        ...


@runtime_checkable
class ModelProvider(Protocol):
    """Owns the loaded models (``core.service.ModelService``); used from the model thread only."""

    device: str

    def check(self, *, sam: bool = True, ip2p: bool = True) -> None:
        """Raise ``MissingWeightsError`` naming every model that is not on disk."""
        ...

    def segmenter(self) -> SegmentEngine: ...

    def editor(self) -> EditEngine: ...

    def clip(self) -> ClipScorer | None: ...

    def unload(self) -> None: ...

    def model_info(self) -> dict[str, str]: ...
