"""The menu bar: one builder per menu. New menu actions go in the builder of their menu.

Actions call the window's public methods (``win.open_image``, ``win.save_project``…), which hand the
work to the controllers; the Help menu's small dialogs live here too.
"""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QMenuBar

from maskpix_desktop.paths import resources_dir

__all__ = ["build_menus", "open_log_folder", "rate_study", "show_about", "show_shortcuts"]


def build_menus(win: QMainWindow) -> None:
    """File, Edit, View, Models and Help, in that order."""
    mb = win.menuBar()
    build_file_menu(win, mb)
    build_edit_menu(win, mb)
    build_view_menu(win, mb)
    build_models_menu(win, mb)
    build_help_menu(win, mb)


def build_file_menu(win: QMainWindow, mb: QMenuBar) -> QMenu:
    """Open, recent, samples, close image, save, export, re-run, evaluation results, rate a study, quit."""
    file = mb.addMenu("&File")
    file.addAction("&Open image…", QKeySequence.StandardKey.Open, win.open_dialog)
    file.addAction("Open &project…", QKeySequence("Ctrl+Shift+O"), win.open_project_dialog)
    win.recent_menu = file.addMenu("Open &recent")
    win.samples_menu = file.addMenu("&Samples")
    for path in sorted(resources_dir().glob("samples/*.jpg")):
        win.samples_menu.addAction(path.stem, lambda p=path: win.open_image(p))
    win.close_image_action = file.addAction("&Close image", QKeySequence("Ctrl+W"), win.close_image)
    file.addSeparator()
    win.save_project_action = file.addAction(
        "&Save project", QKeySequence.StandardKey.Save, lambda: win.save_project(wait=False)
    )
    win.save_project_as_action = file.addAction(
        "Save project &as…", QKeySequence("Ctrl+Shift+S"), lambda: win.save_project_as(wait=False)
    )
    file.addSeparator()
    win.export_action = file.addAction("&Export result…", QKeySequence("Ctrl+E"), win.export_current)
    win.rerun_file_action = file.addAction("Re-run from e&xported file…", win.rerun_dialog)
    file.addAction("Open e&valuation results…", win.open_eval_results)
    win.rate_study_action = file.addAction("Rate a s&tudy…", lambda: rate_study(win))
    file.addSeparator()
    file.addAction("&Quit", QKeySequence.StandardKey.Quit, win.close)
    return file


def rate_study(win: QMainWindow) -> None:
    """File > Rate a study…: pick a folder made by ``maskpix-cli study make``, open its rating window."""
    from maskpix_desktop.ui.study_dialog import open_study_dialog

    open_study_dialog(win)


def build_edit_menu(win: QMainWindow, mb: QMenuBar) -> QMenu:
    """Undo / redo of the mask, clear prompts, run, auto mask."""
    edit = mb.addMenu("&Edit")
    undo = win.canvas.undo_group.createUndoAction(win, "&Undo")
    undo.setShortcut(QKeySequence.StandardKey.Undo)
    undo.setToolTip("Undo the last mask change (Ctrl+Z)")
    redo = win.canvas.undo_group.createRedoAction(win, "&Redo")
    # Exactly these two: StandardKey.Redo already holds Ctrl+Shift+Z on Linux, and a key bound
    # twice is an "ambiguous shortcut overload" that does nothing.
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    redo.setToolTip("Redo (Ctrl+Shift+Z or Ctrl+Y)")
    edit.addAction(undo)
    edit.addAction(redo)
    win.undo_action, win.redo_action = undo, redo
    edit.addSeparator()
    edit.addAction("Clear prompts", win.canvas.clear_prompts)
    edit.addAction("Run edit", QKeySequence("Ctrl+Return"), win.run_edit)
    edit.addAction(win.automask_action)
    return edit


def build_view_menu(win: QMainWindow, mb: QMenuBar) -> QMenu:
    """Fit, 100%, and the Mask / Results tabs."""
    view = mb.addMenu("&View")
    view.addAction(win.canvas.fit_action)
    view.addAction(win.canvas.actual_size_action)
    view.addAction("Mask canvas", QKeySequence("Ctrl+Shift+1"), lambda: win.tabs.setCurrentIndex(0))
    view.addAction("Results", QKeySequence("Ctrl+Shift+2"), lambda: win.tabs.setCurrentIndex(1))
    return view


def build_models_menu(win: QMainWindow, mb: QMenuBar) -> QMenu:
    """Model settings, reload, cancel a load."""
    models = mb.addMenu("&Models")
    models.addAction("Model &settings…", win.open_model_settings)
    models.addAction("&Reload models", win.models.start)
    win.cancel_load_action = models.addAction("&Cancel loading", win.cancel_loading)
    win.cancel_load_action.setEnabled(False)
    return models


def build_help_menu(win: QMainWindow, mb: QMenuBar) -> QMenu:
    """Keyboard shortcuts, log folder, about."""
    help_menu = mb.addMenu("&Help")
    win.shortcuts_action = help_menu.addAction(
        "&Keyboard shortcuts", QKeySequence("F1"), lambda: show_shortcuts(win)
    )
    help_menu.addAction("Log folder…", lambda: open_log_folder(win))
    help_menu.addAction("About MaskPix", lambda: show_about(win))
    return help_menu


def open_log_folder(win: QMainWindow) -> None:
    """Help > Log folder: the path with Copy and Open (opening may do nothing without a desktop)."""
    from maskpix_desktop.paths import log_dir
    from maskpix_desktop.ui.help_dialogs import LogFolderDialog

    win.log_dialog = LogFolderDialog(log_dir(), win)
    win.log_dialog.show()


def show_shortcuts(win: QMainWindow) -> None:
    """Help > Keyboard shortcuts (F1): every key and mouse gesture."""
    from maskpix_desktop.ui.help_dialogs import ShortcutsDialog

    win.shortcuts_dialog = ShortcutsDialog(win)
    win.shortcuts_dialog.show()


def show_about(win: QMainWindow) -> None:
    from PySide6.QtWidgets import QMessageBox

    from maskpix_desktop import __version__

    QMessageBox.about(
        win,
        "About MaskPix Desktop",
        f"<b>MaskPix Desktop {__version__}</b><p>Segment Anything masks + InstructPix2Pix edits, "
        "blended only where you want them, with leakage metrics.</p>",
    )
