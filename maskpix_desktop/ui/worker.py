"""The model-service worker: one QThread owns every torch model; the GUI talks to it through queued signals.

``ModelClient`` (GUI thread) numbers jobs, posts them to a ``_Worker`` living on its own QThread and
re-emits the worker's :class:`JobMessage` objects on the GUI thread. Every job ends with exactly one of
"finished", "cancelled" or "failed", except a segment job superseded by a newer one, which ends
silently (its messages are dropped as stale). Cancel is a ``threading.Event`` per job; the editor
checks it after every denoising step. The thread is never terminated: ``shutdown()`` cancels, quits
and waits.

Document identity: every job except a model load carries the number of the document it was made for
(:meth:`ModelClient.set_document`; the window starts a new one for every image, project or re-run it
opens). Changing the document cancels the old document's jobs, waiting or running, and drops every
message of theirs still on its way: nothing computed for one image ever lands on another.

Arrays inside jobs (images, masks, prompts) are handed over, not copied: do not mutate them afterwards.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from maskpix_desktop.core.errors import (
    Cancelled,
    ErrorKind,
    JobError,
    MaskPixError,
    WeightsError,
    free_cuda_memory,
    is_out_of_memory,
)
from maskpix_desktop.core.job_protocol import (
    AutoMaskJob,
    JobMessage,
    JobResult,
    LoadResult,
    MessageKind,
    SegmentJob,
    Task,
)
from maskpix_desktop.core.jobs import EditRequest, EditResult

if TYPE_CHECKING:
    from maskpix_desktop.core.automask import AutoMaskResult
    from maskpix_desktop.core.segmenter import SegmentResult
    from maskpix_desktop.core.service import ModelService

__all__ = [
    "AutoMaskJob",
    "ErrorKind",
    "JobError",
    "JobMessage",
    "LoadResult",
    "MessageKind",
    "ModelClient",
    "SegmentJob",
    "Task",
    "preload_model_libraries",
]

log = logging.getLogger(__name__)

TERMINAL = frozenset({MessageKind.FINISHED, MessageKind.CANCELLED, MessageKind.FAILED})
PROGRESS_INTERVAL_S = 1 / 30  # at most ~30 progress messages a second (first, last and stage changes always)
_QUEUED = Qt.ConnectionType.QueuedConnection


@dataclass(frozen=True)
class _RethresholdJob:
    image: np.ndarray
    result: AutoMaskResult
    tau: float


# ------------------------------------------------------------------------------------ shared job state

_WAITING, _RUNNING, _DONE = "waiting", "running", "done"


class _Job:
    """A job as both threads see it; ``state`` changes only under the table's lock."""

    __slots__ = ("job_id", "task", "doc", "payload", "cancel", "state")

    def __init__(self, job_id: int, task: Task, doc: int = 0):
        self.job_id = job_id
        self.task = task
        self.doc = doc
        self.payload: Any = None
        self.cancel = threading.Event()
        self.state = _WAITING


@dataclass(frozen=True)
class _SetFactory:
    """Control item: unload the current service; the next job builds one with ``factory``."""

    factory: Callable[[], ModelService]


class _Stale(Exception):
    """A segment job was superseded while it ran; it ends without a message."""


class _JobTable:
    """Thread-safe registry of undelivered jobs, the latest segment id and the closed flag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._next_id = 0
        self.latest_segment = 0
        self.closed = False

    def add(self, task: Task, doc: int = 0) -> _Job:
        with self._lock:
            self._next_id += 1
            job = _Job(self._next_id, task, doc)
            self._jobs[job.job_id] = job
            if task is Task.SEGMENT:
                self.latest_segment = job.job_id
            return job

    def is_stale(self, job: _Job) -> bool:
        return job.task is Task.SEGMENT and job.job_id < self.latest_segment

    def begin(self, job: _Job) -> bool:
        """Worker: waiting -> running; False for a job already reported cancelled or superseded."""
        with self._lock:
            if self.closed or job.state != _WAITING:
                return False
            if self.is_stale(job):
                job.state = _DONE
                self._jobs.pop(job.job_id, None)
                return False
            job.state = _RUNNING
            return True

    def finish(self, job: _Job, *, silent: bool = False) -> None:
        """Worker: the job is over; a silent end (no terminal message coming) forgets it at once."""
        with self._lock:
            job.state = _DONE
            if silent:
                self._jobs.pop(job.job_id, None)

    def cancel(self, job_id: int | None) -> list[_Job]:
        """Set cancel events; return the waiting jobs that are now over (the caller reports them)."""
        with self._lock:
            if job_id is None:
                targets = list(self._jobs.values())
            else:
                targets = [self._jobs[job_id]] if job_id in self._jobs else []
            ended = []
            for job in targets:
                job.cancel.set()
                if job.state == _WAITING:
                    job.state = _DONE
                    ended.append(job)
            return ended

    def cancel_other_documents(self, doc: int) -> list[_Job]:
        """Cancel every job made for a document other than ``doc`` (loads are for none); return the
        waiting ones, now over."""
        with self._lock:
            ended = []
            for job in self._jobs.values():
                if job.doc and job.doc != doc:
                    job.cancel.set()
                    if job.state == _WAITING:
                        job.state = _DONE
                        ended.append(job)
            return ended

    def close(self) -> None:
        """Cancel everything for good: waiting jobs never start, the running one stops at its next check."""
        with self._lock:
            self.closed = True
            for job in self._jobs.values():
                job.cancel.set()
                if job.state == _WAITING:
                    job.state = _DONE
            self._jobs.clear()

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def busy(self) -> bool:
        with self._lock:
            return any(job.task in (Task.EDIT, Task.LOAD) for job in self._jobs.values())


# -------------------------------------------------------------------------------------- worker thread


_HEAVY_IMPORTS = (
    ("torch", None),
    ("maskpix_desktop.core.segmenter", None),  # segment_anything
    ("diffusers", "StableDiffusionInstructPix2PixPipeline"),  # lazy modules: touch the class itself
    ("transformers", "CLIPTextModel"),
    ("open_clip", None),
)
_imports_lock = threading.Lock()
_imports_done = False


def preload_model_libraries(cancel: threading.Event | None = None) -> None:
    """Import the model libraries once, with the cyclic GC paused, then ``gc.freeze()`` what exists.

    The worker calls this before building its first service. These imports create hundreds of thousands
    of objects, and the full collections they trigger hold the GIL long enough to freeze the GUI thread.
    Module objects live as long as the process, so freezing them only keeps later full collections short
    (frozen objects are still freed by reference counting). ``import torch`` itself holds the GIL in its C
    initialisation; to avoid even that hitch, call this on the GUI thread at start-up, before the main
    window shows.
    """
    global _imports_done
    with _imports_lock:
        if _imports_done:
            return
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for module, attr in _HEAVY_IMPORTS:
                if cancel is not None and cancel.is_set():
                    return  # e.g. the app is quitting: importing during interpreter shutdown can crash
                try:
                    mod = importlib.import_module(module)
                    if attr is not None:
                        getattr(mod, attr)
                except Exception as exc:  # the job that needs it reports the real error
                    if cancel is not None and cancel.is_set():
                        return
                    log.warning("could not import %s: %s", module, exc)
            _imports_done = True
        finally:
            gc.freeze()
            if was_enabled:
                gc.enable()


class _Worker(QObject):
    """Lives on the model-service QThread; owns the service; runs one job at a time."""

    message = Signal(object)

    def __init__(self, factory: Callable[[], ModelService], table: _JobTable):
        super().__init__()
        self._factory = factory
        self._table = table
        self._service: ModelService | None = None

    def _service_now(self, job: _Job) -> ModelService:
        if self._service is None:
            preload_model_libraries(job.cancel)
            self._check(job, "Loading")
            self._service = self._factory()
        return self._service

    def _emit(self, job: _Job, kind: MessageKind, **fields: Any) -> None:
        self.message.emit(JobMessage(job.job_id, job.task, kind, doc=job.doc, **fields))

    @Slot(object)
    def run(self, item: Any) -> None:
        """Entry point of every queued item (a job or a control item)."""
        if isinstance(item, _SetFactory):
            self._replace_factory(item.factory)
            return
        job: _Job = item
        if not self._table.begin(job):
            return
        t0 = time.perf_counter()
        silent = False
        try:
            handler: Callable[[_Job, float], JobResult] = {
                Task.LOAD: self._load,
                Task.SEGMENT: self._segment,
                Task.ENCODE: self._segment,  # a SegmentJob without prompts: set_image only
                Task.EDIT: self._edit,
                Task.AUTOMASK: self._automask,
                Task.RETHRESHOLD: self._rethreshold,
            }[job.task]
            result = handler(job, t0)
        except _Stale:
            silent = True
        except Cancelled:
            self._emit(job, MessageKind.CANCELLED, seconds=time.perf_counter() - t0)
        except Exception as exc:
            self._emit_failure(job, exc, time.perf_counter() - t0)
        else:
            self._emit(job, MessageKind.FINISHED, result=result, seconds=time.perf_counter() - t0)
        finally:
            self._table.finish(job, silent=silent)

    def _emit_failure(self, job: _Job, exc: Exception, seconds: float) -> None:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = JobError.from_exception(exc)
        if is_out_of_memory(exc):
            free_cuda_memory()
        if isinstance(exc, MaskPixError):
            log.warning("%s job %d failed: %s", job.task, job.job_id, error)
        elif is_out_of_memory(exc):  # e.g. torch.cuda.OutOfMemoryError from a step the engines do not wrap
            log.warning("%s job %d ran out of memory: %s", job.task, job.job_id, exc)
        else:
            log.exception("%s job %d failed", job.task, job.job_id)
        self._emit(job, MessageKind.FAILED, error=error, detail=detail, seconds=seconds)

    def _replace_factory(self, factory: Callable[[], ModelService]) -> None:
        old, self._service, self._factory = self._service, None, factory
        if old is not None:
            try:
                old.unload()
            except Exception:
                log.exception("unloading the previous model service failed")

    @staticmethod
    def _check(job: _Job, what: str) -> None:
        if job.cancel.is_set():
            raise Cancelled(f"{what} cancelled.")

    # ---------------------------------------------------------------- jobs
    def _load(self, job: _Job, t0: float) -> LoadResult:
        from maskpix_desktop.core.models import device_label

        wanted: dict[str, bool] = job.payload
        names = [name for name in ("sam", "ip2p", "clip") if wanted[name]]
        self._emit(job, MessageKind.STARTED, total=len(names), stage=names[0] if names else "")
        service = self._service_now(job)
        service.check(sam=wanted["sam"], ip2p=wanted["ip2p"])  # fail fast, before any slow load
        clip = None
        takes_mask, family, memory = False, "", ""
        for i, name in enumerate(names):
            self._check(job, "Loading")
            if name == "sam":
                service.segmenter()
            elif name == "ip2p":
                editor = service.editor()
                takes_mask = bool(getattr(editor, "takes_mask", False))
                family = str(getattr(editor, "family", ""))
                memory = str(getattr(editor, "memory", ""))
            else:
                clip = service.clip()
            self._emit(job, MessageKind.PROGRESS, done=i + 1, total=len(names), stage=name)
        self._check(job, "Loading")
        device = str(service.device)
        return LoadResult(
            device=device,
            device_label=device_label(device),
            sam=wanted["sam"],
            ip2p=wanted["ip2p"],
            clip=None if clip is None else str(clip.name),
            clip_error=getattr(service, "clip_error", None) if wanted["clip"] else None,
            editor_takes_mask=takes_mask,
            editor_family=family,
            editor_memory=memory,
        )

    def _segment(self, job: _Job, t0: float) -> SegmentResult | None:
        seg: SegmentJob = job.payload
        self._emit(job, MessageKind.STARTED)
        segmenter = self._service_now(job).segmenter()
        segmenter.set_image(seg.image)  # the slow part when the image is new (thin images: padded there)
        if self._table.is_stale(job):
            raise _Stale
        self._check(job, "Segmentation")
        if seg.points is None and seg.box is None and seg.mask_input is None:
            return None  # encode only: the first click then runs just the decoder
        return segmenter.predict(seg.points, seg.labels, seg.box, seg.mask_input, seg.multimask)

    def _edit(self, job: _Job, t0: float) -> EditResult:
        """The one edit path (:func:`core.pipeline.run_edit`); CLIP loads after the edit, on first use."""
        from maskpix_desktop.core.pipeline import run_edit

        request, want_metrics = job.payload
        self._emit(job, MessageKind.STARTED)  # the step total arrives with the first progress message
        service = self._service_now(job)
        result = run_edit(
            service.editor(),
            request,
            clip=service.clip,
            metrics=want_metrics,
            model_info=service.model_info,
            progress=self._progress(job, t0),
            cancel=job.cancel,
        )
        self._check(job, "Edit")
        return result

    def _progress(self, job: _Job, t0: float) -> Callable[[int, int, str], None]:
        """An ``on_step(done, total, stage)`` that emits rate-limited progress messages with an ETA."""
        last = {"t": 0.0, "stage": ""}

        def on_step(done: int, total: int, stage: str) -> None:
            now = time.perf_counter()
            if done < total and stage == last["stage"] and now - last["t"] < PROGRESS_INTERVAL_S:
                return
            last["t"], last["stage"] = now, stage
            eta = (now - t0) / done * (total - done) if done > 0 else None
            self._emit(job, MessageKind.PROGRESS, done=done, total=total, stage=stage, eta_s=eta)

        return on_step

    def _automask(self, job: _Job, t0: float) -> AutoMaskResult:
        """Relevance map (one batched UNet call per draw) + grounding when present, fused with SAM.

        Missing GroundingDINO weights only turn grounding off (``AutoMasker.from_service`` logs it and the
        result notes it); so does a grounding folder that fails to load (noted in the result too).
        """
        from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams

        req: AutoMaskJob = job.payload
        self._emit(job, MessageKind.STARTED)
        service = self._service_now(job)
        editor, segmenter = service.editor(), service.segmenter()  # their errors fail the job
        self._check(job, "Auto mask")
        extra: list[str] = []
        try:
            masker = AutoMasker.from_service(service, grounding=req.grounding)
        except WeightsError as exc:  # a broken grounding folder: go on without grounding
            log.warning("auto mask without text grounding: %s", exc)
            masker = AutoMasker(editor=editor, segmenter=segmenter, detector=None)
            extra.append(f"GroundingDINO could not be loaded ({exc}); text grounding was skipped.")
        params = AutoMaskParams(tau=req.tau, seed=req.seed, long_side=req.long_side, draws=req.draws)
        on_step = self._progress(job, t0)
        result = masker.run(req.image, req.instruction, params, on_step=on_step, cancel=job.cancel)
        self._check(job, "Auto mask")
        if extra:
            result = replace(result, notes=(*result.notes, *extra))
        return result

    def _rethreshold(self, job: _Job, t0: float) -> AutoMaskResult:
        """The same auto-mask proposal at another tau: SAM decoding on the cached embedding, no UNet."""
        from maskpix_desktop.core.automask import AutoMasker

        req: _RethresholdJob = job.payload
        self._emit(job, MessageKind.STARTED)
        segmenter = self._service_now(job).segmenter()
        self._check(job, "Re-threshold")
        masker = AutoMasker(editor=None, segmenter=segmenter, detector=None)  # no UNet, no grounding
        return masker.rethreshold(req.image, req.result, req.tau)


# ---------------------------------------------------------------------------------------- GUI side

_LIVE: dict[int, tuple[QThread, _Worker, _JobTable]] = {}  # threads not yet seen to stop


@atexit.register
def _stop_live_threads() -> None:
    """Safety net for clients dropped without shutdown(): never let Python destroy a running QThread."""
    for thread, _worker, table in list(_LIVE.values()):
        table.close()
        thread.quit()
        thread.wait(15000)
    _LIVE.clear()


class ModelClient(QObject):
    """GUI-side handle of the model service: submit jobs, cancel them, receive :class:`JobMessage`."""

    message = Signal(object)  # JobMessage on the GUI thread; stale segment / other-document ones never are
    _submit = Signal(object)
    _local = Signal(object)

    def __init__(self, service_factory: Callable[[], ModelService], parent: QObject | None = None):
        super().__init__(parent)
        self._factory = service_factory
        self._table = _JobTable()
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self._closed = False
        self._document = 0
        self._local.connect(self._deliver, _QUEUED)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Create the model-service thread and its worker (the service is built at the first job)."""
        if self._closed:
            raise RuntimeError("ModelClient was shut down")
        if self._thread is not None:
            return
        thread = QThread()
        thread.setObjectName("maskpix-model-service")
        worker = _Worker(self._factory, self._table)
        worker.moveToThread(thread)
        self._submit.connect(worker.run, _QUEUED)
        worker.message.connect(self._deliver, _QUEUED)
        thread.finished.connect(worker.deleteLater)
        self._thread, self._worker = thread, worker
        _LIVE[id(thread)] = (thread, worker, self._table)
        thread.start()

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Cancel everything, let the current job stop, quit the thread and wait; True if it stopped."""
        self._closed = True
        self._table.close()
        thread = self._thread
        if thread is None:
            return True
        thread.quit()
        if not thread.wait(max(0, int(timeout_ms))):
            log.warning("model-service thread still busy after %d ms; it stops after its job", timeout_ms)
            return False
        _LIVE.pop(id(thread), None)
        self._thread = self._worker = None
        return True

    def is_running(self) -> bool:
        """True while the worker thread exists and has not stopped."""
        return self._thread is not None and self._thread.isRunning()

    # ---------------------------------------------------------------- jobs
    def _post(self, task: Task, make_payload: Callable[[int], Any]) -> int:
        if self._closed:
            raise RuntimeError("ModelClient was shut down")
        self.start()
        job = self._table.add(task, 0 if task is Task.LOAD else self._document)
        job.payload = make_payload(job.job_id)
        self._submit.emit(job)
        return job.job_id

    def load_models(self, *, sam: bool = True, ip2p: bool = True, clip: bool = True) -> int:
        """Load the chosen models now (one progress message per model, stage "sam"/"ip2p"/"clip")."""
        return self._post(Task.LOAD, lambda _id: {"sam": sam, "ip2p": ip2p, "clip": clip})

    def segment(self, job: SegmentJob) -> int:
        """Queue a SAM prediction; older segment jobs are skipped and their messages dropped."""
        return self._post(Task.SEGMENT, lambda _id: job)

    def encode(self, image: np.ndarray) -> int:
        """Queue the SAM encode of ``image``; it always runs and reports (a click queued behind reuses it)."""
        return self._post(Task.ENCODE, lambda _id: SegmentJob(image, None, None, None))

    def edit(self, request: EditRequest, *, metrics: bool = True) -> int:
        """Queue an IP2P edit; the result's ``request.job_id`` is the returned id."""
        return self._post(Task.EDIT, lambda job_id: (replace(request, job_id=job_id), metrics))

    def automask(self, job: AutoMaskJob) -> int:
        """Queue an auto mask (started / progress with stages "relevance", "grounding", "sam" / finished with
        an ``AutoMaskResult``, or cancelled / failed). Missing grounding weights do not fail it."""
        return self._post(Task.AUTOMASK, lambda _id: job)

    def rethreshold(self, image: np.ndarray, result: AutoMaskResult, tau: float) -> int:
        """Queue a re-threshold of an ``AutoMaskResult`` at ``tau`` (SAM decoding only, never the UNet)."""
        return self._post(Task.RETHRESHOLD, lambda _id: _RethresholdJob(image, result, float(tau)))

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job, or every unfinished one (None); waiting jobs report "cancelled" at once."""
        for job in self._table.cancel(job_id):
            self._local.emit(JobMessage(job.job_id, job.task, MessageKind.CANCELLED, doc=job.doc))

    @property
    def document(self) -> int:
        """The document new jobs are made for (0 until :meth:`set_document` is first called)."""
        return self._document

    def set_document(self, doc: int) -> None:
        """Jobs from now on belong to ``doc``: the other documents' jobs are cancelled (waiting ones never
        start, a running one stops at its next check) and none of their messages is delivered again."""
        self._document = int(doc)
        for job in self._table.cancel_other_documents(self._document):
            self._local.emit(JobMessage(job.job_id, job.task, MessageKind.CANCELLED, doc=job.doc))

    def set_service_factory(self, factory: Callable[[], ModelService]) -> None:
        """Model settings changed: the worker unloads the current service; the next job builds a new one."""
        self._factory = factory
        if self._thread is not None and not self._closed:
            self._submit.emit(_SetFactory(factory))

    def is_busy(self) -> bool:
        """True while an edit or load job is waiting or running (until its last message is delivered)."""
        return self._table.busy()

    @property
    def latest_segment_id(self) -> int:
        return self._table.latest_segment

    # ---------------------------------------------------------------- delivery (GUI thread)
    @Slot(object)
    def _deliver(self, msg: JobMessage) -> None:
        if self._closed:
            return
        if msg.kind in TERMINAL:
            self._table.forget(msg.job_id)
        if msg.task is Task.SEGMENT and msg.job_id < self._table.latest_segment:
            return
        if msg.doc and msg.doc != self._document:
            return  # made for a document that is no longer open
        self.message.emit(msg)
