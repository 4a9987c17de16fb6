"""The one edit path: edit, metrics of both views, provenance.

The app's model-service worker, ``maskpix-cli run`` and ``maskpix-cli eval`` all call :func:`run_edit`,
so one request gives the same images, the same metrics and the same provenance everywhere.
Qt-free; torch is only touched through the editor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from maskpix_desktop.core.editor import POST_STAGES
from maskpix_desktop.core.errors import Cancelled, free_cuda_memory, is_out_of_memory
from maskpix_desktop.core.jobs import EditRequest, EditResult
from maskpix_desktop.core.protocols import EditEngine, Progress

if TYPE_CHECKING:
    from maskpix_desktop.core.metrics import ClipScorer

log = logging.getLogger(__name__)

#: The stage reported as the metrics begin; ``FINISHING_STAGES``: every stage after the denoising steps.
METRICS_STAGE = "metrics"
FINISHING_STAGES = (*POST_STAGES, METRICS_STAGE)


def run_edit(
    editor: EditEngine,
    request: EditRequest,
    *,
    clip: ClipScorer | Callable[[], ClipScorer | None] | None = None,
    captions: tuple[str, str] | None = None,
    metrics: bool = True,
    model_info: Callable[[], Mapping[str, object]] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    strict: bool = False,
) -> EditResult:
    """Run ``request`` and return its result with ``metrics`` (``{"baseline": ..., "blended": ...}`` from
    :func:`core.metrics.compare`, CLIP text = the instruction) and provenance in ``model``.

    ``clip``: the CLIP scorer, or a function returning it (e.g. ``ModelService.clip``: called after the
    edit, its errors count as metrics errors), or None (no CLIP metrics). ``captions``: (source, target)
    captions for the CLIP direction score. ``metrics=False``: the edit only. ``model_info``: returns facts
    about the loaded models (e.g. ``ModelService.model_info``; called after the metrics, so it names the
    CLIP model loaded for them), added to ``model`` as strings. A metrics
    failure never loses the edit: it is logged and recorded as ``model["metrics_error"]``, unless
    ``strict`` (then it raises). Raises :class:`Cancelled` when ``cancel`` is set once the edit returns.
    """
    last = [0, 0]  # the editor's last (done, total): the "metrics" stage reports the same numbers

    def on_step(done: int, total: int, stage: str) -> None:
        last[:] = [done, total]
        if progress is not None:
            progress(done, total, stage)

    result = editor.run(request, on_step=on_step, cancel=cancel)
    if cancel is not None and cancel.is_set():
        raise Cancelled("Edit cancelled.")
    if not metrics:
        return result
    if progress is not None:
        progress(last[0], last[1], METRICS_STAGE)
    from maskpix_desktop.core.metrics import compare, metrics_provenance

    model = dict(result.model)
    req = result.request
    mask = req.mask if req.mask is not None else np.ones(req.image.shape[:2], bool)
    src, tgt = captions if captions is not None else (None, None)
    scorer = None
    try:
        scorer = clip() if callable(clip) else clip
        scores = compare(
            req.image,
            result.baseline,
            result.blended,
            mask,
            text=req.params.instruction,
            clip=scorer,
            src_caption=src,
            tgt_caption=tgt,
        )
    except Exception as exc:
        if is_out_of_memory(exc):
            free_cuda_memory()
        if strict:
            raise
        log.exception("metrics failed for edit job %d", req.job_id)
        model["metrics_error"] = f"{type(exc).__name__}: {exc}"
        return replace(result, model=model)
    if model_info is not None:
        model.update({k: str(v) for k, v in model_info().items()})
    model.update(metrics_provenance(scorer))
    return replace(result, metrics=scores, model=model)
