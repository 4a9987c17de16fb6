"""Typed errors the engine raises; every message is meant to be shown to a user as is."""

from __future__ import annotations

from pathlib import Path


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
