"""The main window: lays out the widgets, builds the document model and the controllers, and wires them.

The document (:mod:`~maskpix_desktop.ui.document_model`) lives outside the widgets; each controller has
one job: :mod:`~maskpix_desktop.ui.open_controller` (images, drops, recent files),
:mod:`~maskpix_desktop.ui.project_controller` (projects, re-runs, atomic apply),
:mod:`~maskpix_desktop.ui.autosave_controller`, :mod:`~maskpix_desktop.ui.segment_controller` (SAM),
:mod:`~maskpix_desktop.ui.automask_controller`, :mod:`~maskpix_desktop.ui.edit_controller` (Run / Cancel),
:mod:`~maskpix_desktop.ui.export_controller` and :mod:`~maskpix_desktop.ui.model_controller` (loading,
Model settings, failures). Layout is in :mod:`~maskpix_desktop.ui.window_layout`, the menus in
:mod:`~maskpix_desktop.ui.menus`. The window's public names (``open_image``, ``project_path``…) forward
to them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QMainWindow, QMessageBox, QTabWidget, QVBoxLayout, QWidget

from maskpix_desktop.core.service import ModelChoice
from maskpix_desktop.paths import resources_dir
from maskpix_desktop.ui import menus, questions
from maskpix_desktop.ui.automask_controller import AutomaskController
from maskpix_desktop.ui.autosave_controller import AutosaveController
from maskpix_desktop.ui.canvas import ImageCanvas
from maskpix_desktop.ui.document_model import DocumentModel
from maskpix_desktop.ui.edit_controller import EditController
from maskpix_desktop.ui.edit_panel import EditPanel
from maskpix_desktop.ui.export_controller import ExportController
from maskpix_desktop.ui.file_jobs import FileJobs
from maskpix_desktop.ui.filmstrip import Filmstrip
from maskpix_desktop.ui.model_controller import ModelController
from maskpix_desktop.ui.model_editor import editor_choices
from maskpix_desktop.ui.open_controller import OpenController
from maskpix_desktop.ui.project_controller import ProjectController
from maskpix_desktop.ui.results import ResultsPanel
from maskpix_desktop.ui.segment_controller import SegmentController
from maskpix_desktop.ui.start_screen import StartScreen
from maskpix_desktop.ui.strip_controller import StripController
from maskpix_desktop.ui.window_layout import Banner, build_automask_row, build_status_bar, build_tools_dock
from maskpix_desktop.ui.worker import JobMessage, ModelClient, Task


def _service_factory(choice: ModelChoice):
    def build():
        from maskpix_desktop.core.service import ModelService

        return ModelService(choice)

    return build


def _ask_discard(parent: QWidget) -> bool:
    """Default question before replacing a modified session (Yes = go ahead)."""
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    answer = QMessageBox.question(
        parent,
        "Replace the current session?",
        "The current session has changes that are not saved in a project file. Replace it?",
        buttons,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class _Forward:
    """``window.name`` is ``window.<part>.<attr>`` (read and write): public names stay on the window."""

    def __init__(self, part: str, attr: str):
        self.part, self.attr = part, attr

    def __get__(self, win: Any, owner: type | None = None) -> Any:
        return self if win is None else getattr(getattr(win, self.part), self.attr)

    def __set__(self, win: Any, value: Any) -> None:
        setattr(getattr(win, self.part), self.attr, value)


class MainWindow(QMainWindow):
    """MaskPix's window. ``service_factory`` lets tests inject a fake model service.

    The session autosaves (see :mod:`~maskpix_desktop.ui.autosave_controller`) into ``autosave_dir``
    (default: :func:`maskpix_desktop.core.session.autosave_dir`); ``autosave=False`` turns that off.
    """

    #: Replaceable (class or instance) for tests: asked before a project replaces a modified session.
    ask_discard = staticmethod(_ask_discard)
    #: Replaceable: Save / Discard / Cancel ("save", "discard", "cancel") before unsaved work is replaced.
    ask_save_changes = staticmethod(questions.ask_save_changes)
    #: Replaceable: asked before a run with an empty mask edits the whole image (True = run).
    ask_run_without_mask = staticmethod(questions.ask_run_without_mask)

    # the document
    image_path = _Forward("document", "image_path")
    project_path = _Forward("document", "project_path")
    modified = _Forward("document", "modified")
    automask_result = _Forward("document", "automask_result")
    session = _Forward("document", "session")
    has_unsaved_work = _Forward("document", "has_unsaved_work")
    # images and projects
    open_dialog = _Forward("opener", "open_dialog")
    open_image = _Forward("opener", "open_image")
    open_dropped = _Forward("opener", "open_dropped")
    open_images = _Forward("opener", "open_images")
    switch_image = _Forward("strip", "switch_to")
    close_image = _Forward("strip", "close_current")
    keep_work_before = _Forward("opener", "keep_work_before")
    open_project_dialog = _Forward("projects", "open_project_dialog")
    open_project = _Forward("projects", "open_project")
    restore_session = _Forward("projects", "restore_session")
    save_project = _Forward("projects", "save_project")
    save_project_as = _Forward("projects", "save_project_as")
    write_project = _Forward("projects", "write_project")
    rerun_dialog = _Forward("projects", "rerun_dialog")
    rerun_from_file = _Forward("projects", "rerun_from_file")
    autosaver = _Forward("autosaves", "autosaver")
    autosave_now = _Forward("autosaves", "save_now")
    # jobs
    run_edit = _Forward("edits", "run")
    cancel_edit = _Forward("edits", "cancel")
    run_automask = _Forward("automasks", "run")
    cancel_automask = _Forward("automasks", "cancel")
    tau = _Forward("automasks", "tau")
    export_current = _Forward("exports", "export_current")
    open_eval_results = _Forward("exports", "open_eval_results")
    # models
    choice = _Forward("models", "choice")
    models_source = _Forward("models", "source")
    open_model_settings = _Forward("models", "open_settings")
    cancel_loading = _Forward("models", "cancel_loading")
    missing_models_text = _Forward("models", "missing_models_text")
    show_model_failure = _Forward("models", "show_failure")

    def __init__(
        self,
        *,
        models_dir: str | None = None,
        device: str | None = None,
        load_models: bool = True,
        service_factory: Any = None,
        settings: QSettings | None = None,
        autosave: bool = True,
        autosave_dir: str | Path | None = None,
    ):
        super().__init__()
        self.setWindowTitle("MaskPix Desktop")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.log_path: Path | None = None
        self._closed = False
        self._close_when_idle = False  # quitting waits for a save in flight
        self._build_layout()

        self.document = DocumentModel(self.canvas, self.edit_panel, self.results, self)
        self.models = ModelController(self, models_dir, device, load_models, lambda c: _service_factory(c))
        self.client = ModelClient(service_factory or _service_factory(self.choice), self)
        self.document.replaced.connect(self.client.set_document)  # first: the old jobs' messages drop
        self.segments = SegmentController(self)
        self.automasks = AutomaskController(self)
        self.edits = EditController(self)
        self.opener = OpenController(self)
        self.projects = ProjectController(self)
        self.autosaves = AutosaveController(self, autosave, autosave_dir)
        self.strip = StripController(self)  # after the autosaves: each open image keeps its own
        self.exports = ExportController(self)
        menus.build_menus(self)
        self._wire()

        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        QTimer.singleShot(0, self.models.start)
        QTimer.singleShot(0, self.models.sync_start_screen)

    # ------------------------------------------------------------------ layout
    def _build_layout(self) -> None:
        """Banner, the Mask / Results tabs, the prompt bar; the tools dock; the status bar."""
        self.banner = Banner()
        self.canvas = ImageCanvas()
        self.results = ResultsPanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.canvas, "Mask")
        self.tabs.addTab(self.results, "Results")
        self.tabs.setTabToolTip(0, "Click points (left keep, right exclude), drag a box, paint with B / E")
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.empty_hint = self.start_screen = StartScreen(self.canvas.viewport())
        self.edit_panel = EditPanel()
        self.filmstrip = Filmstrip()  # the open images (shown from two on)
        lay.addWidget(self.filmstrip)
        lay.addWidget(self.edit_panel.prompt_bar)  # instruction, Run, Cancel, progress: always in view
        build_automask_row(self)
        build_tools_dock(self)
        self.file_jobs = FileJobs(self)
        build_status_bar(self)

    # ------------------------------------------------------------------ wiring
    def _wire(self) -> None:
        """Widgets -> controllers, client -> controllers, document -> window."""
        c, doc = self.canvas, self.document
        self.file_jobs.changed.connect(self._on_file_jobs_changed)
        self.client.message.connect(self._on_message)
        self.client.message.connect(self.models.sync_start_screen)  # after _on_message: reads its label
        self.start_screen.openRequested.connect(self.open_dialog)
        self.start_screen.fileChosen.connect(self.open_image)
        self.start_screen.setupModelsRequested.connect(self.open_model_settings)
        self.start_screen.set_samples(sorted(resources_dir().glob("samples/*.jpg")))
        self.opener.refresh_recent()
        c.promptsChanged.connect(self.segments.timer.start)
        c.filesDropped.connect(self.open_dropped)
        c.promptsChanged.connect(self.models.busy_while_loading)
        c.cursorMoved.connect(lambda x, y: self.cursor_label.setText(f"{x}, {y}"))
        self.candidate_list.currentRowChanged.connect(self.segments.choose)
        self.automask_action.triggered.connect(self.automasks.clicked)
        self.automask_button.clicked.connect(self.automasks.clicked)
        self.tau_slider.valueChanged.connect(self.automasks.on_tau_changed)
        self.show_relevance.toggled.connect(self.automasks.update_heatmap)
        self.edit_panel.set_editors(editor_choices(), self.models.editor_value())
        self.edit_panel.editorChosen.connect(self.models.choose_editor)
        self.edit_panel.runRequested.connect(self.run_edit)
        self.edit_panel.cancelRequested.connect(self.cancel_edit)
        self.results.exportRequested.connect(self.export_current)
        self.results.rerunRequested.connect(self.edits.use_params)
        c.maskEdited.connect(doc.mark_changed)
        c.promptsChanged.connect(doc.mark_changed)
        self.edit_panel.paramsChanged.connect(doc.mark_changed)
        doc.titleChanged.connect(self.update_title)

    def _on_message(self, msg: JobMessage) -> None:
        """Every model-thread message to the controller of its task (each checks its job id)."""
        handlers = {
            Task.LOAD: self.models.on_message,
            Task.SEGMENT: self.segments.on_message,
            Task.ENCODE: self.segments.on_encode_message,
            Task.EDIT: self.edits.on_message,
            Task.AUTOMASK: self.automasks.on_message,
            Task.RETHRESHOLD: self.automasks.on_tau_message,
        }
        handler = handlers.get(msg.task)
        if handler is not None:
            handler(msg)

    def _on_file_jobs_changed(self) -> None:
        busy = self.file_jobs.busy()
        self.file_progress.setVisible(busy)
        self.file_label.setText(self.file_jobs.label() if busy else "")
        if not busy and self._close_when_idle:
            QTimer.singleShot(0, self.close)

    def update_title(self) -> None:
        self.setWindowTitle(self.document.title())

    def hook(self, name: str):
        """A replaceable question (``ask_*``), set on the class or on this window."""
        hook = inspect.getattr_static(self, name)
        return hook.__func__ if isinstance(hook, staticmethod) else hook

    # ------------------------------------------------------------------ tools and help
    def set_tool(self, name: str) -> None:
        self.canvas.set_tool(name)
        self.tool_actions[name].setChecked(True)
        self.tabs.setCurrentIndex(0)

    def show_shortcuts(self) -> None:
        """Help > Keyboard shortcuts (F1): every key and mouse gesture."""
        menus.show_shortcuts(self)

    def _open_log_folder(self) -> None:
        menus.open_log_folder(self)

    # ------------------------------------------------------------------ Qt events
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        from maskpix_desktop.ui.canvas import dropped_paths

        self.open_dropped(dropped_paths(event.mimeData()))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.empty_hint.resize(self.canvas.viewport().size())

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.empty_hint.resize(self.canvas.viewport().size())
        self.empty_hint.setVisible(not self.canvas.has_image())

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self._close_when_idle and not self.strip.keep_all_before("quitting"):
            event.ignore()  # Cancel (or a save that failed): MaskPix stays open, nothing lost
            return
        if self.file_jobs.busy():  # never quit half-way through writing the user's project
            event.ignore()
            self._close_when_idle = True
            what = self.file_jobs.label().rstrip("…") or "Saving"
            self.statusBar().showMessage(f"{what}: MaskPix quits when it is done.")
            self.banner.show_message(f"{what}… MaskPix will quit as soon as it is finished.", "info")
            return
        self.settings.setValue("window/geometry", self.saveGeometry())
        self._closed = self.models.closed = True
        self.autosaves.stop()
        self.segments.timer.stop()
        self.client.shutdown()
        self.autosaves.close()  # clean exit: the next launch offers nothing
        super().closeEvent(event)
