"""Typed errors the engine raises; every message is meant to be shown to a user as is."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

log = logging.getLogger(__name__)


class MaskPixError(Exception):
    """Base class for errors with a user-facing message."""


class ImageLoadError(MaskPixError):
    """A file could not be read as an image (not an image, truncated, too large, ...)."""


class ImageSaveError(MaskPixError):
    """An image or file could not be written (disk full, read-only folder, ...)."""


class WeightsError(MaskPixError):
    """A weights file exists but is unusable (corrupt, wrong architecture, unsafe pickle)."""


class MissingWeightsError(MaskPixError):
    """Model weights are not present locally."""

    def __init__(
        self, name: str, path: Path | str, fetch_command: str | None = None, detail: str | None = None
    ):
        self.name = name
        self.path = Path(path)
        self.fetch_command = fetch_command
        msg = f"Model weights for '{name}' are missing: expected {self.path}."
        if detail:
            msg += f" {detail}"
        if fetch_command:
            msg += f" Fetch them on a connected machine with: {fetch_command}"
        super().__init__(msg)


class DownloadError(MaskPixError):
    """A download failed or its checksum did not match; nothing partial is left behind."""


class OutOfMemoryError(MaskPixError):
    """The device ran out of memory during a run."""


class Cancelled(MaskPixError):
    """A job was cancelled by the user; raised from inside a step callback."""


class ProjectError(MaskPixError):
    """A project file (.maskpix) or an export's metadata cannot be read (damaged, incomplete, too new)."""


# ------------------------------------------------------------------------- errors as data (thread boundary)


class TextEnum(str, Enum):
    """A ``str``-valued enum that prints as its value (logs and old string comparisons stay readable)."""

    def __str__(self) -> str:
        return self.value


class ErrorKind(TextEnum):
    """What went wrong, for code that must react (the message is for people)."""

    MISSING_WEIGHTS = "missing_weights"
    WEIGHTS = "weights"
    OUT_OF_MEMORY = "out_of_memory"
    CANCELLED = "cancelled"
    IMAGE = "image"
    OTHER = "other"


OUT_OF_MEMORY_MESSAGE = (
    "The device ran out of memory. Lower the working size or the number of steps, "
    "or close other programs that use the GPU, then run again."
)


@dataclass(frozen=True)
class JobError:
    """A failure as data: ``message`` for the user; ``kind`` to branch on; for missing weights ``model``
    (the missing model's name) and ``fetch_command`` (the command that fetches it, "" when none)."""

    message: str
    kind: ErrorKind = ErrorKind.OTHER
    model: str = ""
    fetch_command: str = ""

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobError:
        """The typed error of ``exc``: a :class:`MaskPixError` keeps its message, an out-of-memory error
        from a library gets the standard advice, anything else is an "Unexpected error"."""
        if isinstance(exc, MissingWeightsError):
            return cls(str(exc), ErrorKind.MISSING_WEIGHTS, exc.name, exc.fetch_command or "")
        if is_out_of_memory(exc):
            text = str(exc) if isinstance(exc, MaskPixError) else OUT_OF_MEMORY_MESSAGE
            return cls(text, ErrorKind.OUT_OF_MEMORY)
        if isinstance(exc, Cancelled):
            return cls(str(exc), ErrorKind.CANCELLED)
        if isinstance(exc, (WeightsError, DownloadError)):
            return cls(str(exc), ErrorKind.WEIGHTS)
        if isinstance(exc, (ImageLoadError, ImageSaveError)):
            return cls(str(exc), ErrorKind.IMAGE)
        if isinstance(exc, MaskPixError):
            return cls(str(exc))
        return cls(f"Unexpected error: {type(exc).__name__}: {exc}")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for :class:`OutOfMemoryError` and torch's CUDA out-of-memory error (torch is not imported)."""
    if isinstance(exc, OutOfMemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return isinstance(oom, type) and isinstance(exc, oom)


def free_cuda_memory() -> None:
    """Release cached CUDA blocks after an out-of-memory error (only if torch is already imported)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # cleanup must never turn a failure report into a crash
        log.exception("torch.cuda.empty_cache() failed")
