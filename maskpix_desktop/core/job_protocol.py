"""The job protocol between the GUI and the model-service thread: tasks, message kinds, jobs and messages.

Qt-free data only (the thread and its signals live in ``ui/worker.py``). Every field is typed: code that
reacts to a message branches on :class:`Task`, :class:`MessageKind` and :class:`JobError` fields, never on
text. The enums are ``str``-valued, so logs and old comparisons with plain strings stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from maskpix_desktop.core.errors import ErrorKind, JobError, TextEnum

if TYPE_CHECKING:
    from maskpix_desktop.core.automask import AutoMaskResult
    from maskpix_desktop.core.jobs import EditResult
    from maskpix_desktop.core.segmenter import SegmentResult

__all__ = [
    "AutoMaskJob",
    "ErrorKind",
    "JobError",
    "JobMessage",
    "JobResult",
    "LoadResult",
    "MessageKind",
    "SegmentJob",
    "Task",
]


class Task(TextEnum):
    """What a job does."""

    LOAD = "load"
    SEGMENT = "segment"
    ENCODE = "encode"  # SAM embedding of a newly opened image: never superseded by a click's segment job
    EDIT = "edit"
    AUTOMASK = "automask"
    RETHRESHOLD = "rethreshold"


class MessageKind(TextEnum):
    """One event in a job's life; every job ends with exactly one terminal kind (or, superseded, silently)."""

    STARTED = "started"
    PROGRESS = "progress"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (MessageKind.FINISHED, MessageKind.CANCELLED, MessageKind.FAILED)


@dataclass(frozen=True)
class LoadResult:
    """What a model load produced: the device and which models are ready (``clip``: the scorer's name)."""

    device: str
    device_label: str
    sam: bool
    ip2p: bool
    clip: str | None = None
    clip_error: str | None = None  # why CLIP metrics are unavailable (CLIP was asked for but failed)
    editor_takes_mask: bool = False  # the loaded IP2P is a mask checkpoint: mask mode "trained" works
    editor_family: str = ""  # the loaded editor's family (core/editor_families; "" when none was loaded)
    editor_memory: str = ""  # how its weights are kept, e.g. "model_offload + VAE tiling (auto: ...)"


#: A finished job's result: load -> LoadResult; segment -> SegmentResult (None for an encode-only job);
#: edit -> EditResult; automask and rethreshold -> AutoMaskResult.
JobResult = Union["LoadResult", "SegmentResult", "EditResult", "AutoMaskResult", None]


@dataclass(frozen=True)
class JobMessage:
    """One event in a job's life: started / progress / finished / cancelled / failed."""

    job_id: int
    task: Task
    kind: MessageKind
    done: int = 0
    total: int = 0
    stage: str = ""
    result: JobResult = None  # finished messages only
    error: JobError | None = None  # failed messages only
    detail: str = ""  # traceback text for the log
    seconds: float = 0.0  # wall time of the job (terminal messages)
    eta_s: float | None = None  # progress: estimated seconds left
    doc: int = 0  # the document the job was made for (0: none, e.g. a model load)

    def __post_init__(self) -> None:  # plain strings are accepted and become the enums
        object.__setattr__(self, "task", Task(self.task))
        object.__setattr__(self, "kind", MessageKind(self.kind))

    @property
    def final(self) -> bool:
        """True for the job's last message (finished, cancelled or failed)."""
        return self.kind.terminal


@dataclass(frozen=True)
class SegmentJob:
    """A SAM request: the image (re-encoded only when it changes) and the prompts."""

    image: np.ndarray
    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    mask_input: np.ndarray | None = None
    multimask: bool | None = None


@dataclass(frozen=True)
class AutoMaskJob:
    """An auto-mask request: propose the edit region of ``instruction`` on ``image`` (see core.automask).

    ``tau``: relevance threshold; ``long_side``: working size of the relevance map (the UNet runs there);
    ``draws``: noise draws (None: 1 on CPU, 4 on CUDA); ``grounding``: use GroundingDINO when present.
    """

    image: np.ndarray
    instruction: str
    seed: int = 0
    tau: float = 0.5
    long_side: int = 512
    draws: int | None = None
    grounding: bool = True
