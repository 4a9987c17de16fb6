"""Export: the result on show through the Export dialog (files written on the file thread), and the
evaluation results browser."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMainWindow

from maskpix_desktop.ui import folders

__all__ = ["ExportController"]


class ExportController(QObject):
    """File > Export result… and File > Open evaluation results…."""

    def __init__(self, win: QMainWindow):
        super().__init__(win)
        self.win = win

    def export_current(self) -> None:
        win = self.win
        result = win.results.current_result()
        if result is None:
            win.banner.show_message("Nothing to export yet: run an edit first.", "info")
            return
        from maskpix_desktop.ui.export_dialog import ExportDialog

        path = win.document.image_path
        stem = path.stem if path is not None else "image"
        dlg = ExportDialog(result, folders.export_dir(win.settings), win, stem=stem)
        if dlg.exec() and dlg.exported_paths:
            folder = next(iter(dlg.exported_paths.values())).parent
            folders.remember(win.settings, folders.EXPORT_KEY, folder)
            text = f"Exported {len(dlg.exported_paths)} files to {folder}"
            win.statusBar().showMessage(text, 8000)
            win.banner.show_message(text, "info", "Open folder", lambda: folders.open_folder(folder))

    def open_eval_results(self) -> None:
        """Pick a ``maskpix-cli eval`` output folder and browse it in its own window."""
        from maskpix_desktop.ui.results_browser import open_results_browser

        open_results_browser(self.win)
