"""The tests' one set of fake engines, implementing ``core/protocols.py`` (checked in test_protocols.py).

Fast and deterministic: the editor inverts the image inside the mask, the segmenter returns a 10x10
square around the first point (or the box's corner). Delays and scripted errors drive the thread tests.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import numpy as np

from maskpix_desktop.core import masks
from maskpix_desktop.core.errors import Cancelled
from maskpix_desktop.core.jobs import EditRequest, EditResult
from maskpix_desktop.core.segmenter import SegmentResult


class FakeEditor:
    """Steps with ``delay`` seconds each, checks cancel after each step; ``errors`` are raised by the next
    runs, one per run. Records the requests, their job ids and the threads it ran on."""

    def __init__(self, delay: float = 0.0, errors: list[BaseException] | None = None):
        self.delay = delay
        self.errors = list(errors or [])
        self.requests: list[EditRequest] = []
        self.runs: list[int] = []
        self.threads: set[int] = set()

    def run(
        self, req: EditRequest, on_step: Callable | None = None, cancel: threading.Event | None = None
    ) -> EditResult:
        self.requests.append(req)
        self.runs.append(req.job_id)
        self.threads.add(threading.get_ident())
        if self.errors:
            raise self.errors.pop(0)
        for i in range(1, req.params.steps + 1):
            time.sleep(self.delay)
            if on_step is not None:
                on_step(i, req.params.steps, "baseline")
            if cancel is not None and cancel.is_set():
                raise Cancelled("Edit cancelled.")
        img = req.image
        edit = (255 - img).astype(np.uint8)
        mask = np.ones(img.shape[:2], np.float32) if req.mask is None else masks.as_float(req.mask)
        blended = np.where(mask[..., None] > 0.5, edit, img).astype(np.uint8)
        return EditResult(req, edit, blended, edit, mask, img.shape[:2], {"total_s": 0.01}, {"ip2p": "fake"})


class FakeSegmenter:
    """One candidate: a 10x10 square around the first point (or the box's top-left corner), at the size
    of the current image. ``delay`` is spent in ``set_image``; ``predicted`` records the points and
    ``calls`` every prompt. With ``candidates`` (and their ``scores``) it returns those designed masks.
    With ``cache`` the image just encoded is served at once, as ``Segmenter``'s embedding cache does;
    ``encodes`` counts the real (slow) encodes either way."""

    def __init__(
        self,
        delay: float = 0.0,
        candidates: list[np.ndarray] | None = None,
        scores: list[float] | None = None,
        cache: bool = False,
    ) -> None:
        self.delay = delay
        self.cache = cache
        self.encodes = 0
        self._key: bytes | None = None
        self.shape: tuple[int, int] = (1, 1)
        self.predicted: list[np.ndarray | None] = []
        self.calls: list[dict] = []
        self.images = 0
        self.candidates = None if candidates is None else np.stack(candidates)
        self.scores = None if scores is None else np.asarray(scores, np.float32)

    def set_image(self, image: np.ndarray) -> bool:
        self.images += 1
        key = hashlib.blake2b(image.tobytes(), digest_size=16).digest() + bytes(str(image.shape), "ascii")
        if self.cache and key == self._key:
            return False
        time.sleep(self.delay)
        self.shape = image.shape[:2]
        self._key = key
        self.encodes += 1
        return True

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=None) -> SegmentResult:
        self.predicted.append(points)
        self.calls.append({"points": points, "labels": labels, "box": box, "multimask": multimask})
        if self.candidates is not None:
            k = len(self.candidates)
            scores = self.scores if self.scores is not None else np.ones(k, np.float32)
            logits = np.arange(k, dtype=np.float32)[:, None, None] * np.ones((k, 16, 16), np.float32)
            return SegmentResult(masks=self.candidates.copy(), scores=scores.copy(), logits=logits)
        m = np.zeros(self.shape, bool)
        anchor = points[0] if points is not None and len(points) else (box[:2] if box is not None else (0, 0))
        x, y = (int(v) for v in anchor)
        m[max(0, y - 5) : y + 5, max(0, x - 5) : x + 5] = True
        return SegmentResult(m[None], np.ones(1, np.float32), np.zeros((1, 8, 8), np.float32))


class FakeService:
    """The model service with the fakes above; ``load_delay`` is spent in every getter (a slow load)."""

    device = "cpu"
    clip_error = None

    def __init__(
        self,
        editor: FakeEditor | None = None,
        segmenter: FakeSegmenter | None = None,
        load_delay: float = 0.0,
    ):
        self._editor = editor or FakeEditor()
        self._segmenter = segmenter or FakeSegmenter()
        self.load_delay = load_delay
        self.thread = threading.get_ident()
        self.unloaded = False

    def check(self, *, sam: bool = True, ip2p: bool = True) -> None:
        pass

    def segmenter(self) -> FakeSegmenter:
        time.sleep(self.load_delay)
        return self._segmenter

    def editor(self) -> FakeEditor:
        time.sleep(self.load_delay)
        return self._editor

    def clip(self) -> None:
        time.sleep(self.load_delay)
        return None

    def unload(self) -> None:
        self.unloaded = True

    def model_info(self) -> dict[str, str]:
        return {"device": "cpu"}
