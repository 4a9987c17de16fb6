"""Start-up: the window shows before torch is imported; unexpected errors are logged and shown."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from maskpix_desktop.ui import app as app_module

CHILD = textwrap.dedent(
    """
    import sys, time
    t0 = time.perf_counter()
    from PySide6.QtCore import QSettings
    from maskpix_desktop.ui.app import create_app
    app = create_app()
    from maskpix_desktop.ui.main_window import MainWindow
    w = MainWindow(load_models=False, settings=QSettings(sys.argv[1], QSettings.Format.IniFormat))
    w.show()
    app.processEvents()
    shown = time.perf_counter() - t0
    print("heavy", sorted(m for m in ("torch", "diffusers", "transformers", "open_clip") if m in sys.modules))
    print("visible", w.isVisible(), "seconds", round(shown, 3))
    w.close()
    """
)


def test_window_shows_before_torch_is_imported(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MASKPIX_MODELS": str(tmp_path / "models")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "s.ini")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "heavy []" in proc.stdout
    assert "visible True" in proc.stdout


def test_excepthook_logs_traceback_and_shows_dialog(monkeypatch, tmp_path, qapp):
    monkeypatch.setattr(app_module, "log_dir", lambda: tmp_path / "logs")
    shown: list[str] = []
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append(self.text()) or 0)
    root = logging.getLogger()
    before = list(root.handlers)
    old_hook = sys.excepthook
    try:
        path = app_module.setup_logging()
        app_module.install_excepthook(path)
        try:
            raise ValueError("boom in a slot")
        except ValueError:
            sys.excepthook(*sys.exc_info())
        for h in root.handlers:
            h.flush()
        text = path.read_text(encoding="utf-8")
    finally:
        sys.excepthook = old_hook
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
                h.close()
    assert path == tmp_path / "logs" / "maskpix.log"
    assert "Unexpected error" in text and "ValueError: boom in a slot" in text and "Traceback" in text
    assert shown == ["Unexpected error: boom in a slot"]


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_windowed_build_streams_are_redirected(monkeypatch, stream):
    monkeypatch.setattr(sys, stream, None)
    app_module._redirect_missing_streams()
    replaced = getattr(sys, stream)
    assert replaced is not None
    replaced.write("tqdm would write here\n")
    replaced.close()
