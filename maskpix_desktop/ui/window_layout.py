"""The main window's layout: the banner, the tools dock, the auto mask row and the status bar.

Each ``build_*`` creates widgets, lays them out and names them on the window; widget-to-widget links
(sliders to the canvas) are made here, links to controllers in :mod:`maskpix_desktop.ui.main_window`.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QDockWidget,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.ui.widgets import ValueSlider

__all__ = ["Banner", "build_automask_row", "build_status_bar", "build_tools_dock"]


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


def build_tools_dock(win: QMainWindow) -> None:
    c = win.canvas
    tools = QGroupBox("Mask tools")
    grid = QGridLayout(tools)
    win.tool_group = QActionGroup(win)
    win.tool_actions: dict[str, QAction] = {}
    win.tool_buttons: dict[str, QToolButton] = {}
    for col, (name, label, key, tip) in enumerate(
        (
            ("prompt", "Points / box", "P", "Left click keep, right click exclude, drag a box (P)"),
            ("brush", "Brush", "B", "Paint the mask (B); [ and ] change the size"),
            ("eraser", "Eraser", "E", "Erase the mask (E)"),
        )
    ):
        act = QAction(label, win, checkable=True, shortcut=QKeySequence(key), toolTip=tip)
        act.triggered.connect(lambda _=False, n=name: win.set_tool(n))
        win.tool_group.addAction(act)
        win.tool_actions[name] = act
        btn = QToolButton()
        btn.setDefaultAction(act)
        win.tool_buttons[name] = btn
        btn.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        grid.addWidget(btn, 0, col)
    win.tool_actions["prompt"].setChecked(True)
    win.addActions(list(win.tool_actions.values()))

    win.brush_slider = QSlider(Qt.Orientation.Horizontal, minimum=1, maximum=400, value=c.brush_size)
    win.brush_slider.valueChanged.connect(lambda v: setattr(c, "brush_size", v))
    win.brush_slider.setToolTip("Brush diameter in image pixels ([ smaller, ] larger)")
    c.brushSizeChanged.connect(win.brush_slider.setValue)  # [ and ] move the slider too
    win.hardness_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=80)
    win.hardness_slider.valueChanged.connect(lambda v: setattr(c, "brush_hardness", v / 100))
    win.opacity_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=50)
    win.opacity_slider.valueChanged.connect(lambda v: c.set_overlay_opacity(v / 100))
    colour = QPushButton("Colour…")
    colour.clicked.connect(lambda: _pick_overlay_colour(win))
    win.show_overlay = QCheckBox("Show mask", checked=True)
    win.show_overlay.toggled.connect(c.set_overlay_visible)
    win.show_prompts = QCheckBox("Show prompts", checked=True)
    win.show_prompts.toggled.connect(c.set_prompts_visible)
    form = QFormLayout()
    form.addRow("Brush size", ValueSlider(win.brush_slider, lambda v: f"{v} px"))
    form.addRow("Hardness", ValueSlider(win.hardness_slider, lambda v: f"{v}%"))
    form.addRow("Overlay", ValueSlider(win.opacity_slider, lambda v: f"{v}%"))
    row = QHBoxLayout()
    row.addWidget(win.show_overlay)
    row.addWidget(win.show_prompts)
    win.outline_overlay = QCheckBox("Outline")
    win.outline_overlay.setToolTip("Draw only the mask's outline, to see the image under it")
    win.outline_overlay.toggled.connect(c.set_overlay_outline)
    row.addWidget(win.outline_overlay)
    row.addWidget(colour)
    form.addRow(row)
    grid.addLayout(form, 1, 0, 1, 3)
    ops = QHBoxLayout()
    for name in ("dilate", "erode", "feather", "invert", "clear"):
        b = QPushButton(name.capitalize())
        b.setToolTip(f"{name.capitalize()} the mask (undoable)")
        b.clicked.connect(lambda _=False, n=name: win.canvas.apply_mask_op(n))
        ops.addWidget(b)
    grid.addLayout(ops, 2, 0, 1, 3)
    clear_prompts = QPushButton("Clear prompts (Esc)")
    clear_prompts.clicked.connect(win.canvas.clear_prompts)
    grid.addWidget(clear_prompts, 3, 0, 1, 3)

    cands = QGroupBox("SAM candidates")
    cl = QVBoxLayout(cands)
    win.candidate_list = QListWidget()
    win.candidate_list.setMaximumHeight(84)
    win.candidate_list.setToolTip("A single click gives three masks; pick one (predicted IoU shown)")
    cl.addWidget(win.candidate_list)

    side = QWidget()
    sl = QVBoxLayout(side)
    sl.addWidget(tools)
    sl.addWidget(cands)
    edit_box = QGroupBox("Edit")
    el = QVBoxLayout(edit_box)
    el.setContentsMargins(4, 4, 4, 4)
    el.addWidget(win.edit_panel)
    sl.addWidget(edit_box, 1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(side)
    scroll.setMinimumWidth(340)
    dock = QDockWidget("Tools", win)
    dock.setObjectName("tools_dock")
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
    dock.setWidget(scroll)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)


#: The Auto mask button's tooltip while the loaded editor supports it.
AUTOMASK_TIP = (
    "Propose the mask from the image and the instruction alone (Ctrl+M): the editor's "
    "relevance map and text grounding, refined with SAM. Click or paint to refine it."
)


def build_automask_row(win: QMainWindow) -> None:
    """Auto mask controls, right under the instruction: button (Ctrl+M), tau slider, heatmap toggle."""
    win.automask_action = QAction("Auto mask", win, shortcut=QKeySequence("Ctrl+M"))
    win.automask_action.setToolTip("Propose the mask from the image and the instruction (Ctrl+M)")
    win.addAction(win.automask_action)
    win.automask_button = QPushButton("Auto mask")
    win.automask_button.setToolTip(AUTOMASK_TIP)
    win.tau_slider = QSlider(Qt.Orientation.Horizontal, minimum=5, maximum=95, value=50)
    win.tau_slider.setSingleStep(1)
    win.tau_slider.setPageStep(5)
    win.tau_slider.setToolTip("Relevance threshold tau: higher keeps only the most relevant region")
    win.tau_label = QLabel("τ 0.50")
    win.tau_label.setMinimumWidth(44)
    win.show_relevance = QCheckBox("Show relevance")
    win.show_relevance.setToolTip("Show the auto mask's relevance map as a heatmap under the mask")
    win.automask_status = QLabel("")
    win.automask_status.setWordWrap(True)
    row = QWidget()
    grid = QGridLayout(row)
    grid.setContentsMargins(0, 0, 0, 0)
    grid.addWidget(win.automask_button, 0, 0)
    grid.addWidget(win.tau_slider, 0, 1)
    grid.addWidget(win.tau_label, 0, 2)
    grid.addWidget(win.show_relevance, 1, 0)
    grid.addWidget(win.automask_status, 1, 1, 1, 2)
    grid.setColumnStretch(1, 1)
    win.edit_panel.layout().insertWidget(0, row)  # at the top of the Edit box


def build_status_bar(win: QMainWindow) -> None:
    sb = win.statusBar()
    win.device_label = QLabel("device: starting…")
    win.model_label = QLabel("models: not loaded")
    win.cursor_label = QLabel("")
    win.cursor_label.setMinimumWidth(90)
    win.zoom_label = QLabel("")
    win.zoom_label.setMinimumWidth(48)
    win.zoom_label.setToolTip("Zoom (Ctrl+0 fits, Ctrl+1 is 100%, the wheel zooms)")
    win.canvas.zoomChanged.connect(lambda s: win.zoom_label.setText(f"{s:.0%}"))
    win.file_label = QLabel("")  # "Saving x.maskpix…" while the file thread works
    win.file_progress = QProgressBar(maximumWidth=90, maximumHeight=14, textVisible=False)
    win.file_progress.setRange(0, 0)  # busy indicator
    win.file_progress.hide()
    for w in (
        win.file_label,
        win.file_progress,
        win.cursor_label,
        win.zoom_label,
        win.model_label,
        win.device_label,
    ):
        sb.addPermanentWidget(w)


def _pick_overlay_colour(win: QMainWindow) -> None:
    colour = QColorDialog.getColor(QColor(255, 40, 90), win, "Mask colour")
    if colour.isValid():
        win.canvas.set_overlay_color(colour)
