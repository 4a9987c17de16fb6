"""The document and everything that keeps it: ``.maskpix`` project files, autosave, crash recovery, re-run.

No Qt here (the window's document model holds a :class:`Session` its widgets write into).
Modules: ``document`` (:class:`Session`), ``workspace`` (the open images of the filmstrip), ``arrays``
and ``codec`` (the project file), ``reader`` and
``records`` (reading a project from anywhere, budgeted and type-checked), ``rerun`` (exported results),
``locks`` (OS locks, markers), ``autosave`` (:class:`Autosaver`) and ``recovery`` (autosaves a crash left).
"""

from maskpix_desktop.core.errors import ProjectError
from maskpix_desktop.core.session.arrays import SaveCache
from maskpix_desktop.core.session.autosave import AUTOSAVE_NAME, Autosaver
from maskpix_desktop.core.session.codec import (
    FORMAT,
    PROJECT_SUFFIX,
    VERSION,
    embed_project,
    load_project,
    project_summary,
    save_project,
)
from maskpix_desktop.core.session.document import Session, sessions_equal
from maskpix_desktop.core.session.recovery import (
    Recoverable,
    Resolution,
    discard_recoverable,
    find_recoverable,
    resolve_recoverable,
)
from maskpix_desktop.core.session.rerun import rerun_from_sidecar
from maskpix_desktop.paths import autosave_dir, data_dir

__all__ = [
    "AUTOSAVE_NAME",
    "FORMAT",
    "PROJECT_SUFFIX",
    "VERSION",
    "Autosaver",
    "ProjectError",
    "Recoverable",
    "Resolution",
    "SaveCache",
    "Session",
    "autosave_dir",
    "data_dir",
    "discard_recoverable",
    "embed_project",
    "find_recoverable",
    "load_project",
    "project_summary",
    "rerun_from_sidecar",
    "resolve_recoverable",
    "save_project",
    "sessions_equal",
]
