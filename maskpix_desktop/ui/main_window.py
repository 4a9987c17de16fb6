"""The main window: canvas + tools, edit panel, results, menus, status bar; talks to the model worker."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import images
from maskpix_desktop.core import session as sessions
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.core.service import ModelChoice, models_dir_in_effect
from maskpix_desktop.paths import resources_dir
from maskpix_desktop.ui import folders, questions
from maskpix_desktop.ui.canvas import ImageCanvas, Prompts
from maskpix_desktop.ui.document import check_params, check_session
from maskpix_desktop.ui.edit_panel import EditPanel
from maskpix_desktop.ui.file_jobs import FileJob, FileJobs
from maskpix_desktop.ui.results import ResultsPanel
from maskpix_desktop.ui.start_screen import StartScreen, models_state
from maskpix_desktop.ui.widgets import ValueSlider
from maskpix_desktop.ui.worker import (
    AutoMaskJob,
    ErrorKind,
    JobMessage,
    LoadResult,
    MessageKind,
    ModelClient,
    SegmentJob,
    Task,
)

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.tif *.tiff *.bmp *.gif);;All files (*)"
PROJECT_FILTER = "MaskPix projects (*.maskpix);;All files (*)"
SIDECAR_FILTER = "MaskPix exports (*.json *.png *.jpg *.jpeg *.webp *.tif *.tiff);;All files (*)"
MAX_RECENT = 10
SEGMENT_DELAY_MS = 30
TAU_DELAY_MS = 80  # the tau slider re-thresholds the auto mask this long after it stops moving
AUTOSAVE_DELAY_MS = 2000
ENV_AUTOSAVE_MS = "MASKPIX_AUTOSAVE_MS"  # tests and power users: the autosave debounce in milliseconds
#: While changes keep coming (the debounce keeps restarting), an autosave still runs this long after the
#: first change it has not saved: continuous painting never loses more than about this much work.
AUTOSAVE_MAX_DELAY_MS = 10_000
#: The progress bar's words for the stages after the denoising steps (core.editor.POST_STAGES, metrics).
STAGE_TEXT = {
    "resize": "resizing to full size",
    "blend": "blending into the photo",
    "seam": "smoothing the seam",
    "metrics": "computing metrics",
}
ENV_AUTOSAVE_MAX_MS = "MASKPIX_AUTOSAVE_MAX_MS"


def _service_factory(choice: ModelChoice):
    def build():
        from maskpix_desktop.core.service import ModelService

        return ModelService(choice)

    return build


class Banner(QWidget):
    """A dismissible message strip at the top of the window (errors, missing models)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton()
        self.action_button.hide()
        close = QToolButton(text="✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 6, 6)
        row.addWidget(self.label, 1)
        row.addWidget(self.action_button)
        row.addWidget(close)
        self._callback = None
        self.action_button.clicked.connect(lambda: self._callback and self._callback())
        self.hide()

    def show_message(self, text: str, level: str = "error", action: str = "", callback=None) -> None:
        colours = {"error": "#5c1f24", "warning": "#5a4a1a", "info": "#1f3d5c"}
        self.setStyleSheet(f"background:{colours.get(level, colours['info'])}; color:#f2f2f2;")
        self.label.setText(text)
        self._callback = callback
        self.action_button.setVisible(bool(action))
        self.action_button.setText(action)
        self.show()


class _AutosaveBridge(QObject):
    """Carries the autosave thread's reports onto the GUI thread (queued signals)."""

    failed = Signal(str)
    saved = Signal(str)


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


def _error_text(msg: JobMessage) -> str:
    """The user-facing text of a failed job's typed error."""
    return msg.error.message if msg.error is not None else "unknown error"


def _freeze(result: Any) -> None:
    """Results are immutable: make their arrays read-only (autosave then need not re-hash them)."""
    req = getattr(result, "request", None)
    for arr in (
        getattr(result, "baseline", None),
        getattr(result, "blended", None),
        getattr(result, "edit", None),
        getattr(result, "mask_used", None),
        getattr(req, "image", None),
        getattr(req, "mask", None),
    ):
        if isinstance(arr, np.ndarray):
            arr.flags.writeable = False


def _proposal_prompts(result: Any) -> Prompts:
    """An auto mask's SAM prompts as canvas prompts (one box: the box; several: the box around them)."""
    pts = np.asarray(result.points, np.float64).reshape(-1, 2)
    labels = np.asarray(result.labels).reshape(-1)
    boxes = np.asarray(result.boxes, np.float64).reshape(-1, 4)
    box = None
    if len(boxes):
        box = (
            float(boxes[:, 0].min()),
            float(boxes[:, 1].min()),
            float(boxes[:, 2].max()),
            float(boxes[:, 3].max()),
        )
    return Prompts(
        points=tuple((float(x), float(y)) for x, y in pts),
        labels=tuple(int(v) for v in labels),
        box=box,
    )


def relevance_rgba(relevance: Any) -> np.ndarray:
    """The relevance map as an RGBA overlay: jet colours, opaque where relevant, clear where not."""
    rgb = relevance.heatmap_rgb()
    alpha = np.clip(np.rint(210.0 * relevance.heatmap()), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.dstack([rgb, alpha]))


def _env_ms(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _autosave_delay_ms() -> int:
    """The autosave debounce: this long after the last change (``$MASKPIX_AUTOSAVE_MS`` overrides it)."""
    return _env_ms(ENV_AUTOSAVE_MS, AUTOSAVE_DELAY_MS)


def _autosave_max_delay_ms() -> int:
    """The longest an unsaved change waits for its autosave (``$MASKPIX_AUTOSAVE_MAX_MS`` overrides it)."""
    return _env_ms(ENV_AUTOSAVE_MAX_MS, AUTOSAVE_MAX_DELAY_MS)


class MainWindow(QMainWindow):
    """MaskPix's window. ``service_factory`` lets tests inject a fake model service.

    The session (image, prompts, mask, parameters, results) autosaves ``AUTOSAVE_DELAY_MS`` after the
    last change, and at the latest ``AUTOSAVE_MAX_DELAY_MS`` after the first unsaved one, into
    ``autosave_dir`` (default: :func:`maskpix_desktop.core.session.autosave_dir`); pass ``autosave=False``
    to turn that off.
    """

    #: Replaceable (class or instance) for tests: asked before a project replaces a modified session.
    ask_discard = staticmethod(_ask_discard)
    #: Replaceable: Save / Discard / Cancel ("save", "discard", "cancel") before unsaved work is replaced.
    ask_save_changes = staticmethod(questions.ask_save_changes)
    #: Replaceable: asked before a run with an empty mask edits the whole image (True = run).
    ask_run_without_mask = staticmethod(questions.ask_run_without_mask)

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
        self.image_path: Path | None = None
        self.project_path: Path | None = None
        self.modified = False
        self._recovered = False
        self._restoring = False
        self._autosave_error: str | None = None
        self._closed = False
        self.choice = self._load_choice(models_dir, device)
        self._segment_job = 0
        self._edit_job = 0
        self._load_job = 0
        self._candidates: Any = None
        self._chosen_logits: np.ndarray | None = None
        self._models_ready = False
        self._model_banner_text = ""  # the banner's text when it reports a model failure
        self._automask_job = 0
        self._tau_job = 0
        self._document = 0  # incremented for every image, project or re-run opened (see _new_document)
        self._change_serial = 0  # incremented by every change (a save knows which changes it holds)
        self._close_when_idle = False  # quitting waits for a save in flight
        self.automask_result: Any = None  # the AutoMaskResult on the canvas (None after a new image)

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
        lay.addWidget(self.edit_panel.prompt_bar)  # instruction, Run, Cancel, progress: always in view
        self._build_automask_row()
        self._build_tools_dock()
        self.file_jobs = FileJobs(self)
        self._build_menus()
        self._build_status_bar()
        self.file_jobs.changed.connect(self._on_file_jobs_changed)

        self.client = ModelClient(service_factory or _service_factory(self.choice), self)
        self.client.message.connect(self._on_message)
        self.client.message.connect(self._sync_start_models)  # after _on_message: reads its label
        self.start_screen.openRequested.connect(self.open_dialog)
        self.start_screen.fileChosen.connect(self.open_image)
        self.start_screen.setupModelsRequested.connect(self.open_model_settings)
        self.start_screen.set_samples(sorted(resources_dir().glob("samples/*.jpg")))
        self._segment_timer = QTimer(self, singleShot=True, interval=SEGMENT_DELAY_MS)
        self._segment_timer.timeout.connect(self._request_segment)
        self._tau_timer = QTimer(self, singleShot=True, interval=TAU_DELAY_MS)
        self._tau_timer.timeout.connect(self._apply_tau)
        self.canvas.promptsChanged.connect(self._segment_timer.start)
        self.canvas.filesDropped.connect(self.open_dropped)
        self.canvas.promptsChanged.connect(self._busy_while_models_load)
        self.canvas.cursorMoved.connect(lambda x, y: self.cursor_label.setText(f"{x}, {y}"))
        self.edit_panel.runRequested.connect(self.run_edit)
        self.edit_panel.cancelRequested.connect(self.cancel_edit)
        self.results.exportRequested.connect(self.export_current)
        self.results.rerunRequested.connect(self._use_params)

        self._autosave_bridge = _AutosaveBridge(self)
        self._autosave_bridge.failed.connect(self._on_autosave_failed)
        self._autosave_bridge.saved.connect(self._on_autosaved)
        self.autosaver: sessions.Autosaver | None = None
        if autosave:
            self.autosaver = sessions.Autosaver(
                autosave_dir,
                on_error=self._autosave_bridge.failed.emit,
                on_saved=lambda path: self._autosave_bridge.saved.emit(str(path)),
            )
        self._autosave_timer = QTimer(self, singleShot=True, interval=_autosave_delay_ms())
        self._autosave_timer.timeout.connect(self.autosave_now)
        # Not restarted by later changes: bounds the wait while the debounce keeps restarting.
        self._autosave_deadline = QTimer(self, singleShot=True, interval=_autosave_max_delay_ms())
        self._autosave_deadline.timeout.connect(self.autosave_now)
        self.canvas.maskEdited.connect(self._changed)
        self.canvas.promptsChanged.connect(self._changed)
        self.edit_panel.paramsChanged.connect(self._changed)

        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        self._want_models = load_models
        QTimer.singleShot(0, self._start_models)
        QTimer.singleShot(0, self._sync_start_models)

    # ------------------------------------------------------------------ layout
    def _build_tools_dock(self) -> None:
        c = self.canvas
        tools = QGroupBox("Mask tools")
        grid = QGridLayout(tools)
        self.tool_group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        self.tool_buttons: dict[str, QToolButton] = {}
        for col, (name, label, key, tip) in enumerate(
            (
                ("prompt", "Points / box", "P", "Left click keep, right click exclude, drag a box (P)"),
                ("brush", "Brush", "B", "Paint the mask (B); [ and ] change the size"),
                ("eraser", "Eraser", "E", "Erase the mask (E)"),
            )
        ):
            act = QAction(label, self, checkable=True, shortcut=QKeySequence(key), toolTip=tip)
            act.triggered.connect(lambda _=False, n=name: self.set_tool(n))
            self.tool_group.addAction(act)
            self.tool_actions[name] = act
            btn = QToolButton()
            btn.setDefaultAction(act)
            self.tool_buttons[name] = btn
            btn.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            grid.addWidget(btn, 0, col)
        self.tool_actions["prompt"].setChecked(True)
        self.addActions(list(self.tool_actions.values()))

        self.brush_slider = QSlider(Qt.Orientation.Horizontal, minimum=1, maximum=400, value=c.brush_size)
        self.brush_slider.valueChanged.connect(lambda v: setattr(c, "brush_size", v))
        self.brush_slider.setToolTip("Brush diameter in image pixels ([ smaller, ] larger)")
        c.brushSizeChanged.connect(self.brush_slider.setValue)  # [ and ] move the slider too
        self.hardness_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=80)
        self.hardness_slider.valueChanged.connect(lambda v: setattr(c, "brush_hardness", v / 100))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=50)
        self.opacity_slider.valueChanged.connect(lambda v: c.set_overlay_opacity(v / 100))
        colour = QPushButton("Colour…")
        colour.clicked.connect(self._pick_overlay_colour)
        self.show_overlay = QCheckBox("Show mask", checked=True)
        self.show_overlay.toggled.connect(c.set_overlay_visible)
        self.show_prompts = QCheckBox("Show prompts", checked=True)
        self.show_prompts.toggled.connect(c.set_prompts_visible)
        form = QFormLayout()
        form.addRow("Brush size", ValueSlider(self.brush_slider, lambda v: f"{v} px"))
        form.addRow("Hardness", ValueSlider(self.hardness_slider, lambda v: f"{v}%"))
        form.addRow("Overlay", ValueSlider(self.opacity_slider, lambda v: f"{v}%"))
        row = QHBoxLayout()
        row.addWidget(self.show_overlay)
        row.addWidget(self.show_prompts)
        self.outline_overlay = QCheckBox("Outline")
        self.outline_overlay.setToolTip("Draw only the mask's outline, to see the image under it")
        self.outline_overlay.toggled.connect(c.set_overlay_outline)
        row.addWidget(self.outline_overlay)
        row.addWidget(colour)
        form.addRow(row)
        grid.addLayout(form, 1, 0, 1, 3)
        ops = QHBoxLayout()
        for name in ("dilate", "erode", "feather", "invert", "clear"):
            b = QPushButton(name.capitalize())
            b.setToolTip(f"{name.capitalize()} the mask (undoable)")
            b.clicked.connect(lambda _=False, n=name: self.canvas.apply_mask_op(n))
            ops.addWidget(b)
        grid.addLayout(ops, 2, 0, 1, 3)
        clear_prompts = QPushButton("Clear prompts (Esc)")
        clear_prompts.clicked.connect(self.canvas.clear_prompts)
        grid.addWidget(clear_prompts, 3, 0, 1, 3)

        cands = QGroupBox("SAM candidates")
        cl = QVBoxLayout(cands)
        self.candidate_list = QListWidget()
        self.candidate_list.setMaximumHeight(84)
        self.candidate_list.setToolTip("A single click gives three masks; pick one (predicted IoU shown)")
        self.candidate_list.currentRowChanged.connect(self._choose_candidate)
        cl.addWidget(self.candidate_list)

        side = QWidget()
        sl = QVBoxLayout(side)
        sl.addWidget(tools)
        sl.addWidget(cands)
        edit_box = QGroupBox("Edit")
        el = QVBoxLayout(edit_box)
        el.setContentsMargins(4, 4, 4, 4)
        el.addWidget(self.edit_panel)
        sl.addWidget(edit_box, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(side)
        scroll.setMinimumWidth(340)
        dock = QDockWidget("Tools", self)
        dock.setObjectName("tools_dock")
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _build_automask_row(self) -> None:
        """Auto mask controls, right under the instruction: button (Ctrl+M), tau slider, heatmap toggle."""
        self.automask_action = QAction("Auto mask", self, shortcut=QKeySequence("Ctrl+M"))
        self.automask_action.setToolTip("Propose the mask from the image and the instruction (Ctrl+M)")
        self.automask_action.triggered.connect(self._automask_clicked)
        self.addAction(self.automask_action)
        self.automask_button = QPushButton("Auto mask")
        self.automask_button.setToolTip(
            "Propose the mask from the image and the instruction alone (Ctrl+M): the InstructPix2Pix "
            "relevance map and text grounding, refined with SAM. Click or paint to refine it."
        )
        self.automask_button.clicked.connect(self._automask_clicked)
        self.tau_slider = QSlider(Qt.Orientation.Horizontal, minimum=5, maximum=95, value=50)
        self.tau_slider.setSingleStep(1)
        self.tau_slider.setPageStep(5)
        self.tau_slider.setToolTip("Relevance threshold tau: higher keeps only the most relevant region")
        self.tau_label = QLabel("τ 0.50")
        self.tau_label.setMinimumWidth(44)
        self.tau_slider.valueChanged.connect(self._on_tau_changed)
        self.show_relevance = QCheckBox("Show relevance")
        self.show_relevance.setToolTip("Show the auto mask's relevance map as a heatmap under the mask")
        self.show_relevance.toggled.connect(self._update_heatmap)
        self.automask_status = QLabel("")
        self.automask_status.setWordWrap(True)
        row = QWidget()
        grid = QGridLayout(row)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.automask_button, 0, 0)
        grid.addWidget(self.tau_slider, 0, 1)
        grid.addWidget(self.tau_label, 0, 2)
        grid.addWidget(self.show_relevance, 1, 0)
        grid.addWidget(self.automask_status, 1, 1, 1, 2)
        grid.setColumnStretch(1, 1)
        self.edit_panel.layout().insertWidget(0, row)  # at the top of the Edit box

    def _build_menus(self) -> None:
        mb = self.menuBar()
        file = mb.addMenu("&File")
        file.addAction("&Open image…", QKeySequence.StandardKey.Open, self.open_dialog)
        file.addAction("Open &project…", QKeySequence("Ctrl+Shift+O"), self.open_project_dialog)
        self.recent_menu = file.addMenu("Open &recent")
        self.samples_menu = file.addMenu("&Samples")
        for path in sorted(resources_dir().glob("samples/*.jpg")):
            self.samples_menu.addAction(path.stem, lambda p=path: self.open_image(p))
        file.addSeparator()
        self.save_project_action = file.addAction(
            "&Save project", QKeySequence.StandardKey.Save, lambda: self.save_project(wait=False)
        )
        self.save_project_as_action = file.addAction(
            "Save project &as…", QKeySequence("Ctrl+Shift+S"), lambda: self.save_project_as(wait=False)
        )
        file.addSeparator()
        self.export_action = file.addAction("&Export result…", QKeySequence("Ctrl+E"), self.export_current)
        self.rerun_file_action = file.addAction("Re-run from e&xported file…", self.rerun_dialog)
        file.addAction("Open e&valuation results…", self.open_eval_results)
        file.addSeparator()
        file.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)
        self._refresh_recent()

        edit = mb.addMenu("&Edit")
        undo = self.canvas.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        undo.setToolTip("Undo the last mask change (Ctrl+Z)")
        redo = self.canvas.undo_stack.createRedoAction(self, "&Redo")
        # Exactly these two: StandardKey.Redo already holds Ctrl+Shift+Z on Linux, and a key bound
        # twice is an "ambiguous shortcut overload" that does nothing.
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        redo.setToolTip("Redo (Ctrl+Shift+Z or Ctrl+Y)")
        edit.addAction(undo)
        edit.addAction(redo)
        self.undo_action, self.redo_action = undo, redo
        edit.addSeparator()
        edit.addAction("Clear prompts", self.canvas.clear_prompts)
        edit.addAction("Run edit", QKeySequence("Ctrl+Return"), self.run_edit)
        edit.addAction(self.automask_action)

        view = mb.addMenu("&View")
        view.addAction(self.canvas.fit_action)
        view.addAction(self.canvas.actual_size_action)
        view.addAction("Mask canvas", QKeySequence("Ctrl+Shift+1"), lambda: self.tabs.setCurrentIndex(0))
        view.addAction("Results", QKeySequence("Ctrl+Shift+2"), lambda: self.tabs.setCurrentIndex(1))

        models = mb.addMenu("&Models")
        models.addAction("Model &settings…", self.open_model_settings)
        models.addAction("&Reload models", self._start_models)
        self.cancel_load_action = models.addAction("&Cancel loading", self.cancel_loading)
        self.cancel_load_action.setEnabled(False)
        help_menu = mb.addMenu("&Help")
        self.shortcuts_action = help_menu.addAction(
            "&Keyboard shortcuts", QKeySequence("F1"), self.show_shortcuts
        )
        help_menu.addAction("Log folder…", self._open_log_folder)
        help_menu.addAction("About MaskPix", self._about)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.device_label = QLabel("device: starting…")
        self.model_label = QLabel("models: not loaded")
        self.cursor_label = QLabel("")
        self.cursor_label.setMinimumWidth(90)
        self.zoom_label = QLabel("")
        self.zoom_label.setMinimumWidth(48)
        self.zoom_label.setToolTip("Zoom (Ctrl+0 fits, Ctrl+1 is 100%, the wheel zooms)")
        self.canvas.zoomChanged.connect(lambda s: self.zoom_label.setText(f"{s:.0%}"))
        self.file_label = QLabel("")  # "Saving x.maskpix…" while the file thread works
        self.file_progress = QProgressBar(maximumWidth=90, maximumHeight=14, textVisible=False)
        self.file_progress.setRange(0, 0)  # busy indicator
        self.file_progress.hide()
        for w in (
            self.file_label,
            self.file_progress,
            self.cursor_label,
            self.zoom_label,
            self.model_label,
            self.device_label,
        ):
            sb.addPermanentWidget(w)

    # ------------------------------------------------------------------ settings
    def _load_choice(self, models_dir: str | None, device: str | None) -> ModelChoice:
        raw = self.settings.value("models/choice")
        data: dict[str, Any] = {}
        if raw:
            try:
                data = json.loads(raw)
            except (TypeError, ValueError):
                data = {}
        fields = {k: v for k, v in data.items() if k in ModelChoice.__dataclass_fields__ and k != "extra"}
        # --models-dir > MASKPIX_MODELS > the folder saved in Model settings > the default (README)
        self._cli_models_dir = models_dir
        saved = fields.get("models_dir")
        self._saved_models_dir = saved if isinstance(saved, str) and saved.strip() else None
        fields["models_dir"], self.models_source = models_dir_in_effect(models_dir, self._saved_models_dir)
        if device:
            fields["device"] = device
        return ModelChoice(**fields)

    def _save_choice(self) -> None:
        data = asdict(self.choice)
        data.pop("extra", None)
        data["models_dir"] = self._saved_models_dir  # never the folder --models-dir or the variable set
        self.settings.setValue("models/choice", json.dumps(data))

    # ------------------------------------------------------------------ models
    def _start_models(self) -> None:
        if self._closed:
            return  # closed before the start-up timer fired
        self.client.start()
        if not self._want_models:
            self.model_label.setText("models: load on first use")
            return
        self.model_label.setText("models: loading…")
        self._load_job = self.client.load_models()
        self.cancel_load_action.setEnabled(True)

    def cancel_loading(self) -> None:
        """Stop a model load between models; models then load on first use."""
        if self._load_job:
            self.client.cancel(self._load_job)
            self.model_label.setText("models: cancelling…")

    def open_model_settings(self) -> None:
        from maskpix_desktop.ui.model_dialog import ModelDialog

        dlg = ModelDialog(self.choice, self, source=self.models_source)
        if dlg.exec():
            self.choice = dlg.choice()
            if not dlg.locked:  # a folder chosen in the dialog: saved, in effect unless overridden
                self._saved_models_dir = self.choice.models_dir
            folder, self.models_source = models_dir_in_effect(self._cli_models_dir, self._saved_models_dir)
            self.choice = replace(self.choice, models_dir=folder)
            self._save_choice()
            self.client.set_service_factory(_service_factory(self.choice))
            self._want_models = True
            self._models_ready = False
            self.edit_panel.set_editor_takes_mask(False)  # until the new editor says it takes a mask
            self._start_models()

    # ------------------------------------------------------------------ images
    def open_dialog(self) -> None:
        if not self.keep_work_before("opening another image"):
            return
        start = str(self.image_path.parent) if self.image_path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open image", start, IMAGE_FILTER)
        if path:
            self.open_image(path, ask=False)

    def has_unsaved_work(self) -> bool:
        """Changes that exist nowhere else: a mask, prompts, results, a modified project or re-run.

        A photo just opened (nothing done to it yet) is still on disk: replacing it asks nothing.
        """
        if not self.modified or not self.canvas.has_image():
            return False
        return bool(
            self.project_path is not None
            or self.image_path is None
            or self.canvas.mask().any()
            or not self.canvas.prompts().is_empty()
            or self.results.history()
        )

    def keep_work_before(self, action: str) -> bool:
        """Save / Discard / Cancel before ``action`` replaces unsaved work; True means go ahead."""
        if not self.has_unsaved_work():
            return True
        answer = self._hook("ask_save_changes")(self, action)
        if answer == questions.SAVE:
            return self.save_project(wait=True)
        return answer == questions.DISCARD

    def open_image(self, path: str | Path, *, ask: bool = True) -> bool:
        """Load an image into the canvas; a bad file gives a message and changes nothing.

        A ``.maskpix`` path opens as a project. ``ask``: Save / Discard / Cancel first when the current
        document has unsaved work (Cancel returns False and changes nothing).
        """
        path = Path(path)
        if path.suffix.lower() == sessions.PROJECT_SUFFIX:
            return self.open_project(path, ask=ask)
        try:
            image = images.load_image(path)
        except MaskPixError as exc:
            self.banner.show_message(str(exc), "error")
            self.statusBar().showMessage(f"Could not open {path.name}", 5000)
            return False
        except MemoryError:
            self.banner.show_message(f"Cannot open '{path}': not enough memory to decode it.", "error")
            return False
        if ask and not self.keep_work_before(f"opening {path.name}"):
            return False
        self._show_image(image, path)
        h, w = image.shape[:2]
        self.statusBar().showMessage(f"Opened {path.name} ({w}×{h})", 5000)
        self.banner.hide()
        self._add_recent(path)
        return True

    def _new_document(self) -> None:
        """A new image, project or re-run replaces the document: the old one's jobs are cancelled and
        their messages dropped (see ``worker``), so no result lands on the wrong image."""
        self._document += 1
        self.client.set_document(self._document)
        self._segment_timer.stop()
        self._tau_timer.stop()
        self._segment_job = self._tau_job = 0
        if self._automask_job:
            self._automask_job = 0
            self._set_automask_running(False)
        if self._edit_job:
            self._edit_job = 0
            self.edit_panel.set_running(False)
            self.statusBar().showMessage("The running edit was cancelled: another image was opened.", 8000)

    def _show_image(self, image: np.ndarray, path: Path | None, name: str = "") -> None:
        """Put a decoded image on the canvas (empty mask, no prompts) and start its SAM encoding."""
        self._new_document()
        self.image_path = path
        self._image_name = path.name if path is not None else name
        self.canvas.set_image(image)
        self.empty_hint.hide()
        self._candidates = None
        self._chosen_logits = None
        self.candidate_list.clear()
        self.automask_result = None  # its prompts and masks belong to the previous image
        self.automask_status.setText("")
        self.tabs.setCurrentIndex(0)
        self._update_title()
        self._changed()
        self._encode_job = self.client.segment(
            SegmentJob(image=self.canvas.image(), points=None, labels=None, box=None)
        )

    def _update_title(self) -> None:
        parts = []
        if self.project_path is not None:
            parts.append(self.project_path.name + (" *" if self.modified else ""))
        name = getattr(self, "_image_name", "") or (self.image_path.name if self.image_path else "")
        if name:
            parts.append(name)
        if self._recovered:
            parts.append("(recovered)")
        self.setWindowTitle(" — ".join([*parts, "MaskPix Desktop"]))

    # ------------------------------------------------------------------ session, projects, autosave
    def session(self) -> sessions.Session:
        """A snapshot of everything the user would lose (arrays are shared read-only or copied)."""
        image = self.canvas.image()
        prompts = self.canvas.prompts()
        try:
            params = self.edit_panel.params()
        except ValueError:
            params = EditParams("")
        return sessions.Session(
            image=image,
            image_name=getattr(self, "_image_name", "") or (self.image_path.name if self.image_path else ""),
            image_path=str(self.image_path) if self.image_path is not None else None,
            points=[tuple(p) for p in prompts.points],
            labels=list(prompts.labels),
            box=prompts.box,
            mask=self.canvas.mask() if image is not None else None,
            params=params,
            history=self.results.history(),
            current=self.results.current_index(),
        )

    def restore_session(self, s: sessions.Session) -> None:
        """Show ``s`` exactly: image, prompts (no SAM run: the saved mask wins), mask, params, results.

        Not atomic on its own: callers check ``s`` first (:func:`document.check_session`) and apply it
        through :meth:`_apply_atomically`.
        """
        self._new_document()
        self._restoring = True
        try:
            for result in s.history:
                _freeze(result)
            self.results.set_history(s.history)
            if 0 <= s.current < len(s.history):
                self.results.show_result(s.current)
            if s.image is not None:
                path = Path(s.image_path) if s.image_path else None
                self._show_image(s.image, path, s.image_name)
                self._image_name = s.image_name or (path.name if path else "")
                self.canvas.set_prompts(Prompts(tuple(map(tuple, s.points)), tuple(s.labels), s.box))
                self._segment_timer.stop()
                if s.mask is not None:
                    self.canvas.set_mask(s.mask, undoable=False)
            self.edit_panel.set_params(s.params)
            self.tabs.setCurrentIndex(0)
        finally:
            self._restoring = False
        self._update_title()

    def _param_limits(self) -> dict[str, tuple[int, int]]:
        """The integer ranges the edit panel can show exactly (a spin box would clamp other values)."""
        p = self.edit_panel
        pairs = (("steps", p.steps), ("seed", p.seed), ("dilate", p.dilate))
        return {name: (w.minimum(), w.maximum()) for name, w in pairs}

    def _apply_atomically(self, where: str, apply: Callable[[], None]) -> bool:
        """Run ``apply`` (it replaces the document); if it raises, put the previous document back.

        Validation comes first (nothing is applied to an invalid file); this is the second line: a
        failure half-way never leaves a mix of two documents that the next Ctrl+S would write.
        """
        before = self._window_state()
        try:
            apply()
        except Exception as exc:
            log.exception("applying '%s' failed: the previous document is put back", where)
            self._put_back(before)
            self.banner.show_message(
                f"Cannot open '{where}': it could not be shown ({type(exc).__name__}: {exc}). "
                "Nothing was changed.",
                "error",
            )
            return False
        return True

    def _window_state(self) -> dict[str, Any]:
        return {
            "session": self.session(),
            "project_path": self.project_path,
            "image_path": self.image_path,
            "image_name": getattr(self, "_image_name", ""),
            "modified": self.modified,
            "recovered": self._recovered,
            "seed_lock": self.edit_panel.seed_lock.isChecked(),
            "automask_result": self.automask_result,
            "automask_status": self.automask_status.text(),
            "chosen_logits": self._chosen_logits,
            "tab": self.tabs.currentIndex(),
        }

    def _put_back(self, st: dict[str, Any]) -> None:
        s: sessions.Session = st["session"]
        if s.image is None:
            self.canvas.clear_image()
            self.empty_hint.setVisible(self.isVisible())
        self.restore_session(s)
        self.project_path, self.image_path = st["project_path"], st["image_path"]
        self._image_name, self.modified, self._recovered = st["image_name"], st["modified"], st["recovered"]
        self.edit_panel.seed_lock.setChecked(st["seed_lock"])
        self.automask_result, self._chosen_logits = st["automask_result"], st["chosen_logits"]
        self.automask_status.setText(st["automask_status"])
        self.tabs.setCurrentIndex(st["tab"])
        self._update_title()

    def open_project_dialog(self) -> None:
        if not self.keep_work_before("opening a project"):
            return
        start = str(self.project_path.parent if self.project_path else folders.project_dir(self.settings))
        path, _ = QFileDialog.getOpenFileName(self, "Open project", start, PROJECT_FILTER)
        if path:
            folders.remember(self.settings, folders.PROJECT_KEY, Path(path).parent)
            self.open_project(path, wait=False, ask=False)

    def open_project(
        self, path: str | Path, *, recovered: bool = False, wait: bool = True, ask: bool = True
    ) -> bool:
        """Replace the session with a ``.maskpix`` project; a bad file gives a message and changes nothing.

        ``wait=False`` (File menu, drops) reads the file on the file thread and applies it when read
        (True then means "started"), unless another document was opened meanwhile. ``ask``: Save /
        Discard / Cancel first (once the file has been read) when there is unsaved work.
        """
        path = Path(path)
        if not wait:
            doc = self._document

            def done(s: Any, error: BaseException | None) -> None:
                if error is not None:
                    self._could_not_open(path, error)
                elif doc != self._document:
                    self.statusBar().showMessage(
                        f"{path.name} was not opened: another file was opened.", 8000
                    )
                else:
                    self._show_project(path, s, recovered, ask)

            job = FileJob(f"Opening {path.name}…", lambda: sessions.load_project(path), done)
            self.file_jobs.submit(job)
            return True
        try:
            s = sessions.load_project(path)
        except MaskPixError as exc:
            self._could_not_open(path, exc)
            return False
        return self._show_project(path, s, recovered, ask)

    def _could_not_open(self, path: Path, error: BaseException) -> None:
        text = str(error) if isinstance(error, MaskPixError) else f"Cannot open '{path}': {error!r}."
        if isinstance(error, MemoryError):
            text = f"Not enough memory to open '{path}'."
        self.banner.show_message(text, "error")
        self.statusBar().showMessage(f"Could not open {path.name}", 5000)

    def _show_project(self, path: Path, s: sessions.Session, recovered: bool, ask: bool = False) -> bool:
        """Check ``s`` field by field, then show it in one step (the previous document back on failure)."""
        try:
            check_session(s, str(path), self._param_limits())
        except MaskPixError as exc:
            self._could_not_open(path, exc)
            return False
        if ask and not recovered and not self.keep_work_before(f"opening {path.name}"):
            return False

        def apply() -> None:
            self.restore_session(s)
            self._recovered = recovered
            self.project_path = None if recovered else path
            self.modified = recovered

        if not self._apply_atomically(str(path), apply):
            self.statusBar().showMessage(f"Could not open {path.name}", 5000)
            return False
        self.banner.hide()
        if recovered:
            self.statusBar().showMessage("Restored the session that did not close cleanly.", 8000)
            self._changed()
        else:
            self.statusBar().showMessage(f"Opened project {path.name}", 5000)
        self._update_title()
        return True

    def save_project(self, *, wait: bool = True) -> bool:
        """Save to the current project file (asks for one the first time); see :meth:`write_project`."""
        if self.project_path is None:
            return self.save_project_as(wait=wait)
        return self.write_project(self.project_path, wait=wait)

    def save_project_as(self, *, wait: bool = True) -> bool:
        stem = self.image_path.stem if self.image_path else "untitled"
        start = self.project_path or folders.project_dir(self.settings) / (stem + sessions.PROJECT_SUFFIX)
        path, _ = QFileDialog.getSaveFileName(self, "Save project", str(start), PROJECT_FILTER)
        if not path:
            return False
        path = Path(path)
        folders.remember(self.settings, folders.PROJECT_KEY, path.parent)
        if path.suffix.lower() != sessions.PROJECT_SUFFIX:
            path = path.with_name(path.name + sessions.PROJECT_SUFFIX)
        return self.write_project(path, wait=wait)

    def write_project(self, path: str | Path, *, wait: bool = True) -> bool:
        """Write the session to ``path`` (atomic); errors (disk full, read-only) go to the banner.

        ``wait=False`` (Ctrl+S and the File menu) snapshots the session here and writes it on the file
        thread; the window stays responsive, the status bar shows the save, and True means "started".
        """
        path = Path(path)
        snapshot, serial, doc = self.session(), self._change_serial, self._document
        if not wait:

            def done(_value: Any, error: BaseException | None) -> None:
                if error is not None:
                    self._not_saved(error)
                else:
                    self._saved(path, serial, doc)

            save = lambda: sessions.save_project(path, snapshot)  # noqa: E731
            self.file_jobs.submit(FileJob(f"Saving {path.name}…", save, done, key=f"save:{path}"))
            return True
        self.file_jobs.wait_idle()  # an older snapshot queued for this file must not land after this one
        try:
            sessions.save_project(path, snapshot)
        except MaskPixError as exc:
            self._not_saved(exc)
            return False
        self._saved(path, serial, doc)
        return True

    def _not_saved(self, error: BaseException) -> None:
        text = str(error) if isinstance(error, MaskPixError) else f"{type(error).__name__}: {error}"
        self.banner.show_message(f"The project was not saved. {text}", "error")

    def _saved(self, path: Path, serial: int, doc: int) -> None:
        """A save of the document ``doc`` as it was at change ``serial`` is on disk."""
        self.statusBar().showMessage(f"Saved project {path.name}", 5000)
        if doc != self._document:
            return  # another file was opened meanwhile: it is not this project
        self.project_path = path
        self.modified = serial != self._change_serial  # changes made during the save are not in it
        self._recovered = False
        self._update_title()

    def _on_file_jobs_changed(self) -> None:
        busy = self.file_jobs.busy()
        self.file_progress.setVisible(busy)
        self.file_label.setText(self.file_jobs.label() if busy else "")
        if not busy and self._close_when_idle:
            QTimer.singleShot(0, self.close)

    def _changed(self) -> None:
        """Something the user would miss changed: mark modified and (re)start the autosave countdown."""
        self._change_serial += 1
        if not self.modified and not self._restoring:
            self.modified = True
            self._update_title()
        if self.autosaver is not None and not self.autosaver.closed:
            self._autosave_timer.start()
            if not self._autosave_deadline.isActive():
                self._autosave_deadline.start()

    def autosave_now(self, *, wait: bool = False) -> None:
        """Hand the current session to the autosave thread (``wait``: write it before returning)."""
        self._autosave_timer.stop()
        self._autosave_deadline.stop()
        if self.autosaver is None or self.autosaver.closed:
            return
        s = self.session()
        if s.is_empty():
            return
        if wait:
            self.autosaver.save_now(s)
        else:
            self.autosaver.save(s)

    def _on_autosave_failed(self, message: str) -> None:
        if message != self._autosave_error:
            self.banner.show_message(
                f"Autosave failed: {message} Use File > Save project to keep your work.", "warning"
            )
        self._autosave_error = message

    def _on_autosaved(self, path: str) -> None:
        if self._autosave_error is not None:
            self._autosave_error = None
            self.statusBar().showMessage("Autosave works again.", 5000)

    # ------------------------------------------------------------------ re-run from an export
    def rerun_dialog(self) -> None:
        start = self.settings.value("export/dir") or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Re-run from exported file", str(start), SIDECAR_FILTER)
        if path:
            self.rerun_from_file(path)

    def rerun_from_file(self, path: str | Path) -> bool:
        """Load the image, mask and parameters an exported result was made with (Run reproduces it)."""
        path = Path(path)
        try:
            request = sessions.rerun_from_sidecar(path)
            check_params(request.params, str(path), "params", self._param_limits())
        except MaskPixError as exc:
            self.banner.show_message(str(exc), "error")
            return False
        if not self.keep_work_before(f"loading {path.name}"):
            return False

        def apply() -> None:
            self._show_image(request.image, None, name=f"{path.stem} (re-run)")
            self.canvas.set_mask(request.mask, text="Mask from export", undoable=False)
            self.edit_panel.set_params(request.params)
            self.edit_panel.seed_lock.setChecked(True)

        if not self._apply_atomically(str(path), apply):
            return False
        self.banner.show_message(
            f"Loaded the image, mask and settings of {path.name}: Run edit reproduces it "
            f"(seed {request.params.seed}).",
            "info",
        )
        return True

    def _hook(self, name: str):
        import inspect

        hook = inspect.getattr_static(self, name)
        return hook.__func__ if isinstance(hook, staticmethod) else hook

    def _add_recent(self, path: Path) -> None:
        recent = [p for p in self._recent() if p != str(path)]
        recent.insert(0, str(path))
        self.settings.setValue("files/recent", json.dumps(recent[:MAX_RECENT]))
        self._refresh_recent()

    def _recent(self) -> list[str]:
        try:
            return list(json.loads(self.settings.value("files/recent", "[]")))
        except (TypeError, ValueError):
            return []

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for p in self._recent():
            self.recent_menu.addAction(p, lambda p=p: self.open_image(p))
        self.recent_menu.setEnabled(bool(self._recent()))
        self.start_screen.set_recent(self._recent())

    def _sync_start_models(self, msg: Any = None) -> None:
        """The start screen shows the models' state of the status bar; a finished load or segmentation
        ends the busy cursor of :meth:`_busy_while_models_load`."""
        self.start_screen.set_models_state(*models_state(self.model_label.text()))
        if msg is not None and getattr(msg, "final", False) and msg.task in ("load", "segment"):
            self.canvas.viewport().unsetCursor()
            self.canvas.viewport().setCursor(Qt.CursorShape.CrossCursor)

    def _busy_while_models_load(self) -> None:
        """A click while the models still load waits for them: show a busy cursor meanwhile."""
        if not self._models_ready and self.canvas.has_image() and not self.canvas.prompts().is_empty():
            self.canvas.viewport().setCursor(Qt.CursorShape.BusyCursor)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        from maskpix_desktop.ui.canvas import dropped_paths

        self.open_dropped(dropped_paths(event.mimeData()))

    def open_dropped(self, paths: list[str]) -> bool:
        """Files dropped on the canvas or the window: the first one opens (a project as a project)."""
        if not paths:
            return False
        path = Path(paths[0])
        if path.suffix.lower() == sessions.PROJECT_SUFFIX:
            opened = self.open_project(path, wait=False)  # read on the file thread
        else:
            opened = self.open_image(path)
        if opened and len(paths) > 1:
            self.statusBar().showMessage(
                f"Opened {path.name}; the other {len(paths) - 1} dropped files were not opened "
                "(one image at a time).",
                8000,
            )
        return opened

    # ------------------------------------------------------------------ tools
    def set_tool(self, name: str) -> None:
        self.canvas.set_tool(name)
        self.tool_actions[name].setChecked(True)
        self.tabs.setCurrentIndex(0)

    def _pick_overlay_colour(self) -> None:
        colour = QColorDialog.getColor(QColor(255, 40, 90), self, "Mask colour")
        if colour.isValid():
            self.canvas.set_overlay_color(colour)

    # ------------------------------------------------------------------ SAM
    def _request_segment(self) -> None:
        image = self.canvas.image()
        if image is None:
            return
        prompts: Prompts = self.canvas.prompts()
        if prompts.is_empty():
            self._chosen_logits = None
            self._candidates = None
            self.candidate_list.clear()
            return
        pts = np.asarray(prompts.points, np.float32) if prompts.points else None
        labels = np.asarray(prompts.labels, np.int32) if prompts.points else None
        box = np.asarray(prompts.box, np.float32) if prompts.box is not None else None
        refine = self._chosen_logits if (len(prompts.points) > 1 or box is not None) else None
        if box is not None and len(prompts.points) == 0:
            refine = None
        self._segment_job = self.client.segment(
            SegmentJob(image=image, points=pts, labels=labels, box=box, mask_input=refine)
        )

    def _show_candidates(self, res: Any) -> None:
        self._candidates = res
        self.candidate_list.blockSignals(True)
        self.candidate_list.clear()
        order = np.argsort(-np.asarray(res.scores))
        for rank, i in enumerate(order):
            # Area share from the low-res logits: full-size masks are computed only when chosen.
            share = float((np.asarray(res.logits[i]) > 0).mean())
            item = QListWidgetItem(
                f"Mask {rank + 1} — IoU {float(res.scores[i]):.2f} · ~{share:.0%} of image"
            )
            item.setData(Qt.ItemDataRole.UserRole, int(i))
            self.candidate_list.addItem(item)
        self.candidate_list.blockSignals(False)
        self.candidate_list.setCurrentRow(0)
        if len(order) == 1:
            self._choose_candidate(0)

    def _choose_candidate(self, row: int) -> None:
        if self._candidates is None or row < 0:
            return
        i = self.candidate_list.item(row).data(Qt.ItemDataRole.UserRole)
        self._chosen_logits = np.asarray(self._candidates.logits[i : i + 1])
        self.canvas.set_mask(self._candidates.mask(i), text="SAM mask")

    # ------------------------------------------------------------------ auto mask
    def tau(self) -> float:
        """The relevance threshold the slider shows (0.05..0.95)."""
        return self.tau_slider.value() / 100.0

    def _automask_clicked(self) -> None:
        if self._automask_job:
            self.cancel_automask()
        else:
            self.run_automask()

    def run_automask(self) -> None:
        """Propose a mask from the image and the instruction on the worker (relevance, grounding, SAM)."""
        image = self.canvas.image()
        if image is None:
            self.banner.show_message("Open an image first.", "info")
            return
        if self._automask_job:
            return
        instruction = self.edit_panel.instruction.text().strip()
        if not instruction:
            self.banner.show_message(
                "Type an instruction first, e.g. “turn the dog into a cat”: Auto mask finds its region.",
                "info",
            )
            self.edit_panel.instruction.setFocus()
            return
        try:
            params = self.edit_panel.params()
        except ValueError as exc:
            self.banner.show_message(str(exc), "error")
            return
        self.banner.hide()
        self._tau_timer.stop()
        self._tau_job = 0
        job = AutoMaskJob(
            image=image, instruction=instruction, seed=params.seed, tau=self.tau(), long_side=params.long_side
        )
        self._automask_job = self.client.automask(job)
        self._set_automask_running(True)
        self.automask_status.setText("Auto mask: starting…")

    def cancel_automask(self) -> None:
        if self._automask_job:
            self.client.cancel(self._automask_job)
            self.automask_status.setText("Auto mask: cancelling…")

    def _set_automask_running(self, running: bool) -> None:
        self.automask_button.setText("Cancel auto mask" if running else "Auto mask")

    def _on_automask_message(self, msg: JobMessage) -> None:
        if msg.kind is MessageKind.PROGRESS:
            self.automask_status.setText(f"Auto mask: {msg.stage} {msg.done}/{msg.total}")
            return
        if not msg.final:
            return
        self._automask_job = 0
        self._set_automask_running(False)
        if msg.kind is MessageKind.FINISHED:
            self._show_automask(msg.result, "Auto mask")
            self.statusBar().showMessage(f"{self.automask_status.text()} ({msg.seconds:.1f} s)", 8000)
        elif msg.kind is MessageKind.CANCELLED:
            self.automask_status.setText("Auto mask cancelled.")
        else:
            log.error("auto mask failed: %s\n%s", msg.error, msg.detail)
            self.automask_status.setText("Auto mask failed.")
            self.show_model_failure("Auto mask failed: ", msg)

    def _show_automask(self, result: Any, text: str) -> None:
        """The proposal as ordinary prompt items plus its mask; its SAM logits refine the next click."""
        self.automask_result = result
        self.canvas.set_prompts(_proposal_prompts(result))
        self._segment_timer.stop()  # the proposal's own mask wins: no SAM run replaces it
        self._segment_job = 0  # and a SAM result still on its way is dropped
        self._candidates = None
        self.candidate_list.clear()
        self.canvas.set_mask(result.mask, text=text)
        logits = result.sam_logits
        self._chosen_logits = None if logits is None else np.asarray(logits, np.float32)
        conf = "n/a" if result.confidence is None else f"{result.confidence:.2f}"
        line = f"Auto mask from {result.source}, confidence {conf}"
        if len(result.boxes) > 1:
            line += f" ({len(result.boxes)} boxes: the prompt shows the box around them)"
        self.automask_status.setText(line)
        self.automask_status.setToolTip("\n".join((result.summary(), *result.notes)))
        self._update_heatmap()

    def _on_tau_changed(self, value: int) -> None:
        self.tau_label.setText(f"τ {value / 100:.2f}")
        self._tau_timer.start()

    def _apply_tau(self) -> None:
        """Re-threshold the current proposal at the slider's tau: SAM decoding on the worker, no UNet."""
        r, image = self.automask_result, self.canvas.image()
        if r is None or r.relevance is None or image is None or self._automask_job:
            return
        if abs(r.params.tau - self.tau()) < 1e-9:
            return
        self._tau_job = self.client.rethreshold(image, r, self.tau())

    def _on_tau_message(self, msg: JobMessage) -> None:
        if msg.kind is MessageKind.FINISHED and msg.job_id == self._tau_job:
            self._tau_job = 0
            if self.automask_result is not None:  # not replaced by a new image meanwhile
                self._show_automask(msg.result, f"Auto mask at tau {msg.result.params.tau:.2f}")
        elif msg.kind is MessageKind.FAILED and msg.job_id == self._tau_job:
            self._tau_job = 0
            log.error("re-threshold failed: %s\n%s", msg.error, msg.detail)
            self.banner.show_message(f"Changing the threshold failed: {_error_text(msg)}", "error")

    def _update_heatmap(self) -> None:
        r = self.automask_result
        if not self.show_relevance.isChecked() or r is None or r.relevance is None:
            if self.canvas.has_image():
                self.canvas.set_heatmap(None)
            if self.show_relevance.isChecked() and r is not None and r.relevance is None:
                self.statusBar().showMessage("This auto mask has no relevance map.", 5000)
            return
        self.canvas.set_heatmap(relevance_rgba(r.relevance))

    # ------------------------------------------------------------------ edit
    def run_edit(self) -> None:
        image = self.canvas.image()
        if image is None:
            self.banner.show_message("Open an image first.", "info")
            return
        if self.client.is_busy() and self._edit_job:
            return
        try:
            params = self.edit_panel.next_params()
        except ValueError as exc:
            self.banner.show_message(str(exc), "error")
            return
        if not params.instruction:
            self.banner.show_message("Type an instruction first, e.g. “make the jacket red leather”.", "info")
            self.edit_panel.instruction.setFocus()
            return
        mask = self.canvas.mask()
        if not mask.any():
            if not self._hook("ask_run_without_mask")(self):
                self.statusBar().showMessage("Not run: click the object to edit, then Run.", 6000)
                return
            self.statusBar().showMessage("The mask is empty: editing the whole image.", 6000)
            mask_arg = None
        else:
            mask_arg = mask.astype(np.float32) / 255.0
        request = EditRequest(image=image, mask=mask_arg, params=params)
        self.banner.hide()
        self.edit_panel.set_running(True)
        self._edit_job = self.client.edit(request)

    def cancel_edit(self) -> None:
        if self._edit_job:
            self.client.cancel(self._edit_job)
            self.edit_panel.progress.setFormat("cancelling…")

    def _use_params(self, params: Any) -> None:
        self.edit_panel.set_params(params)
        self.edit_panel.seed_lock.setChecked(True)
        self.tabs.setCurrentIndex(0)

    def export_current(self) -> None:
        result = self.results.current_result()
        if result is None:
            self.banner.show_message("Nothing to export yet: run an edit first.", "info")
            return
        from maskpix_desktop.ui.export_dialog import ExportDialog

        stem = self.image_path.stem if self.image_path is not None else "image"
        dlg = ExportDialog(result, folders.export_dir(self.settings), self, stem=stem)
        if dlg.exec() and dlg.exported_paths:
            folder = next(iter(dlg.exported_paths.values())).parent
            folders.remember(self.settings, folders.EXPORT_KEY, folder)
            text = f"Exported {len(dlg.exported_paths)} files to {folder}"
            self.statusBar().showMessage(text, 8000)
            self.banner.show_message(text, "info", "Open folder", lambda: folders.open_folder(folder))

    # ------------------------------------------------------------------ messages
    def _on_message(self, msg: JobMessage) -> None:
        if msg.task is Task.LOAD:
            self._on_load_message(msg)
        elif msg.task is Task.SEGMENT and msg.job_id == self._segment_job:
            if msg.kind is MessageKind.FINISHED and msg.result is not None:
                self._show_candidates(msg.result)
            elif msg.kind is MessageKind.FAILED:
                self.show_model_failure("Segmentation failed: ", msg)
        elif msg.task is Task.EDIT and msg.job_id == self._edit_job:
            self._on_edit_message(msg)
        elif msg.task is Task.AUTOMASK and msg.job_id == self._automask_job:
            self._on_automask_message(msg)
        elif msg.task is Task.RETHRESHOLD:
            self._on_tau_message(msg)

    def _on_load_message(self, msg: JobMessage) -> None:
        if msg.final and msg.job_id == self._load_job:
            self.cancel_load_action.setEnabled(False)
        if msg.kind is MessageKind.PROGRESS:
            self.model_label.setText(f"models: loading {msg.stage} ({msg.done}/{msg.total})")
        elif msg.kind is MessageKind.CANCELLED:
            self.model_label.setText("models: load on first use")
            self.statusBar().showMessage("Model loading cancelled: models load when first needed.", 6000)
        elif msg.kind is MessageKind.FINISHED and isinstance(msg.result, LoadResult):
            info = msg.result
            self._models_ready = True
            self.device_label.setText(info.device_label or info.device)
            self.model_label.setText(f"models: ready ({info.clip or 'no CLIP'})")
            if info.ip2p:
                self.edit_panel.set_editor_takes_mask(info.editor_takes_mask)
            if self.banner.isVisible() and self.banner.label.text() == self._model_banner_text:
                self.banner.hide()  # the models are here now: the "missing" message is out of date
            if info.clip_error:
                self.statusBar().showMessage(f"CLIP scores unavailable: {info.clip_error}", 10000)
        elif msg.kind is MessageKind.FAILED:
            missing = msg.error is not None and msg.error.kind is ErrorKind.MISSING_WEIGHTS
            self.model_label.setText("models: missing" if missing else "models: failed to load")
            self.device_label.setText("device: none (no model loaded)")
            self.show_model_failure("", msg, "warning")

    def missing_models_text(self) -> str:
        """One message naming every model the current choice lacks, with sizes and the fetch command."""
        from maskpix_desktop.core.model_setup import missing_message, missing_models

        try:
            missing = missing_models(self.choice)
        except MaskPixError as exc:  # e.g. a malformed maskpix-models.json: its own clear message
            return str(exc)
        return missing_message(missing, self.choice.models_dir)[0]

    def show_model_failure(self, prefix: str, msg: JobMessage, level: str = "error") -> None:
        """A failed job in the banner with "Model settings…"; missing weights list every missing model."""
        text = _error_text(msg)
        if msg.error is not None and msg.error.kind is ErrorKind.MISSING_WEIGHTS:
            text = self.missing_models_text() or text
        self._model_banner_text = prefix + text
        self.banner.show_message(self._model_banner_text, level, "Model settings…", self.open_model_settings)

    def _on_edit_message(self, msg: JobMessage) -> None:
        panel = self.edit_panel
        if msg.kind is MessageKind.STARTED:
            panel.progress.setFormat("encoding…")
        elif msg.kind is MessageKind.PROGRESS and msg.stage in STAGE_TEXT:  # after the denoising steps
            panel.set_progress(msg.done, msg.total)
            panel.progress.setFormat(f"{STAGE_TEXT[msg.stage]}… · step {msg.done}/{msg.total}")
        elif msg.kind is MessageKind.PROGRESS:
            panel.set_progress(msg.done, msg.total, msg.eta_s, msg.stage)
        elif msg.kind is MessageKind.FINISHED:
            panel.set_running(False)
            self._edit_job = 0
            # the whole job as the user waited for it (models, steps, resize, blend, seam, metrics)
            result = replace(msg.result, timings={**msg.result.timings, "job_s": msg.seconds})
            _freeze(result)
            self.results.add_result(result)
            self._changed()
            self.tabs.setCurrentIndex(1)
            note = " (safety filter triggered)" if getattr(result, "nsfw", False) else ""
            self.statusBar().showMessage(f"Edit finished in {msg.seconds:.1f} s{note}", 8000)
        elif msg.kind is MessageKind.CANCELLED:
            panel.set_running(False)
            self._edit_job = 0
            self.statusBar().showMessage("Edit cancelled.", 6000)
        elif msg.kind is MessageKind.FAILED:
            panel.set_running(False)
            self._edit_job = 0
            log.error("edit failed: %s\n%s", msg.error, msg.detail)
            if msg.error is not None and msg.error.kind is ErrorKind.IMAGE:
                self.banner.show_message(f"The edit failed: {_error_text(msg)}", "error")
            else:
                self.show_model_failure("The edit failed: ", msg)

    # ------------------------------------------------------------------ misc
    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.empty_hint.resize(self.canvas.viewport().size())

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.empty_hint.resize(self.canvas.viewport().size())
        self.empty_hint.setVisible(not self.canvas.has_image())

    def open_eval_results(self) -> None:
        """File menu: pick a ``maskpix-cli eval`` output folder and browse it in its own window."""
        from maskpix_desktop.ui.results_browser import open_results_browser

        open_results_browser(self)

    def _open_log_folder(self) -> None:
        """Help > Log folder: the path with Copy and Open (opening may do nothing without a desktop)."""
        from maskpix_desktop.paths import log_dir
        from maskpix_desktop.ui.help_dialogs import LogFolderDialog

        self.log_dialog = LogFolderDialog(log_dir(), self)
        self.log_dialog.show()

    def show_shortcuts(self) -> None:
        """Help > Keyboard shortcuts (F1): every key and mouse gesture."""
        from maskpix_desktop.ui.help_dialogs import ShortcutsDialog

        self.shortcuts_dialog = ShortcutsDialog(self)
        self.shortcuts_dialog.show()

    def _about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        from maskpix_desktop import __version__

        QMessageBox.about(
            self,
            "About MaskPix Desktop",
            f"<b>MaskPix Desktop {__version__}</b><p>Segment Anything masks + InstructPix2Pix edits, "
            "blended only where you want them, with leakage metrics.</p>",
        )

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self._close_when_idle and not self.keep_work_before("quitting"):
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
        self._closed = True
        self._autosave_timer.stop()
        self._autosave_deadline.stop()
        self._segment_timer.stop()
        self.client.shutdown()
        if self.autosaver is not None:
            self.autosaver.close()  # clean exit: the next launch offers nothing
        super().closeEvent(event)
