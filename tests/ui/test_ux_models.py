"""Issue 19.3: model set-up. One message lists every missing model; the table honours the manifest; the
banner clears when the models load; --models-dir > MASKPIX_MODELS > saved folder > default, shown in the
dialog; Download with nothing selected fetches everything missing; model-failure banners offer settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialog

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import ErrorKind, JobError
from maskpix_desktop.core.job_protocol import JobMessage, MessageKind, Task
from maskpix_desktop.core.model_setup import registry_size
from maskpix_desktop.core.service import SOURCE_CLI, SOURCE_ENV, SOURCE_SAVED, ModelChoice
from maskpix_desktop.ui.main_window import MainWindow
from maskpix_desktop.ui.model_dialog import MISSING, NOT_NEEDED, PRESENT, ModelDialog

#: The SAM a default ``ModelChoice`` needs here: vit_h with CUDA, SAM 2.1 tiny without.
DEFAULT_SAM = models.default_sam_for(models.resolve_device("auto"))


@pytest.fixture(autouse=True)
def _no_models_env(monkeypatch):
    monkeypatch.delenv(models.ENV_MODELS_DIR, raising=False)


def _window(qtbot, tmp_path: Path, **kw) -> MainWindow:
    settings = kw.pop("settings", None) or QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(device="cpu", settings=settings, autosave=False, **kw)
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    return win


def test_missing_models_are_named_in_one_message_with_sizes_and_one_command(qtbot, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    win = _window(qtbot, tmp_path, models_dir=str(empty))
    qtbot.waitUntil(lambda: win.model_label.text() == "models: missing", timeout=60_000)
    text = win.banner.label.text()
    assert win.banner.isVisible()
    for name, size in ((DEFAULT_SAM, registry_size(DEFAULT_SAM)), ("ip2p", "~2 GB"), ("clip", "577 MB")):
        assert f"{name} ({size}, expected at {empty}" in text
    assert f"maskpix-cli models download {DEFAULT_SAM} ip2p clip --models-dir {empty}" in text
    assert win.banner.action_button.isVisible() and win.banner.action_button.text() == "Model settings…"
    win.close()


def test_models_table_honours_the_manifest(qtbot, tiny_models_dir):
    dlg = ModelDialog(ModelChoice(models_dir=str(tiny_models_dir)))
    qtbot.addWidget(dlg)
    assert dlg.model_status("manifest:sam") == PRESENT
    assert dlg.model_status("manifest:ip2p") == PRESENT
    assert dlg.model_status("manifest:clip") == PRESENT
    assert dlg.table.item(0, 0).text() == "sam (maskpix-models.json)"
    for name in ("sam_vit_h", "sam2.1_hiera_tiny", "ip2p", "clip"):
        assert dlg.model_status(name) == NOT_NEEDED
    assert dlg.model_status("grounding_dino") == MISSING  # the manifest names no grounding model
    assert dlg.missing_text() == "Every model this choice needs is here."
    assert not dlg.download_button.isEnabled() and not dlg.copy_button.isEnabled()


def test_dialog_lists_every_missing_model_and_copies_the_command(qtbot, tmp_path):
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path)))
    qtbot.addWidget(dlg)
    text = dlg.missing_text()
    assert text.startswith(f"3 models are missing in {tmp_path}: {DEFAULT_SAM} ({registry_size(DEFAULT_SAM)}")
    dlg.copy_button.click()
    from PySide6.QtGui import QGuiApplication

    expected = f"maskpix-cli models download {DEFAULT_SAM} ip2p clip --models-dir {tmp_path}"
    assert QGuiApplication.clipboard().text() == expected
    dlg.sam_combo.setCurrentIndex(dlg.sam_combo.findData("vit_b"))  # the list follows the choice
    assert "sam_vit_b (358 MB" in dlg.missing_text() and DEFAULT_SAM not in dlg.missing_text()


def test_banner_clears_when_the_models_load(qtbot, tmp_path, tiny_models_dir, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("models/choice", json.dumps({"models_dir": str(empty)}))
    win = _window(qtbot, tmp_path, settings=settings)
    qtbot.waitUntil(lambda: win.model_label.text() == "models: missing", timeout=60_000)
    assert win.banner.isVisible() and win.models_source == SOURCE_SAVED

    def choose_tiny(dlg: ModelDialog) -> int:
        dlg.folder_edit.setText(str(tiny_models_dir))
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ModelDialog, "exec", choose_tiny)
    win.banner.action_button.click()  # "Model settings…"
    qtbot.waitUntil(lambda: "ready" in win.model_label.text(), timeout=60_000)
    assert not win.banner.isVisible()
    assert json.loads(settings.value("models/choice"))["models_dir"] == str(tiny_models_dir)
    win.close()


def test_environment_variable_beats_the_saved_folder_and_the_dialog_says_so(qtbot, tmp_path, monkeypatch):
    saved, env, cli = tmp_path / "saved", tmp_path / "env", tmp_path / "cli"
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("models/choice", json.dumps({"models_dir": str(saved), "sam": "vit_b"}))
    monkeypatch.setenv(models.ENV_MODELS_DIR, str(env))
    win = _window(qtbot, tmp_path, settings=settings, load_models=False)
    assert (win.choice.models_dir, win.models_source, win.choice.sam) == (str(env), SOURCE_ENV, "vit_b")
    seen = {}

    def look(dlg: ModelDialog) -> int:
        seen["read_only"] = dlg.folder_edit.isReadOnly() and not dlg.folder_browse.isEnabled()
        seen["source"] = dlg.source_label.text()
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ModelDialog, "exec", look)
    win.open_model_settings()
    assert seen["read_only"] and f"In effect: {env}" in seen["source"] and "MASKPIX_MODELS" in seen["source"]
    assert json.loads(settings.value("models/choice"))["models_dir"] == str(saved)  # kept for later
    assert win.choice.models_dir == str(env)
    win.close()

    first = _window(qtbot, tmp_path, settings=settings, load_models=False, models_dir=str(cli))
    assert (first.choice.models_dir, first.models_source) == (str(cli), SOURCE_CLI)
    first.close()


def test_a_folder_chosen_in_the_dialog_says_where_it_comes_from(qtbot, tmp_path):
    dlg = ModelDialog(ModelChoice())
    qtbot.addWidget(dlg)
    assert "the default per-user folder" in dlg.source_label.text()
    dlg.folder_edit.setText(str(tmp_path))
    assert dlg.source_label.text() == f"In effect: {tmp_path} — chosen here."


class RecordingDownload:
    """Stands in for models.download: records names and writes nothing."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name, models_dir=None, *, progress=None, cancel=None):
        self.names.append(name)
        progress(1, 1)
        return Path(models_dir or ".") / name


def test_download_with_nothing_selected_fetches_every_missing_model(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "offline_mode", lambda: False)
    fake = RecordingDownload()
    monkeypatch.setattr(models, "download", fake)
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path)))
    qtbot.addWidget(dlg)
    assert dlg.selected_model() is None
    assert dlg.download_button.isEnabled() and dlg.download_button.text() == "Download missing (3)"
    dlg.download_button.click()
    qtbot.waitUntil(lambda: len(fake.names) == 3 and not dlg.is_downloading(), timeout=10_000)
    assert fake.names == [DEFAULT_SAM, "ip2p", "clip"]


def test_cancel_stops_the_rest_of_the_queue(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "offline_mode", lambda: False)
    fake = RecordingDownload()
    monkeypatch.setattr(models, "download", fake)
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path)))
    qtbot.addWidget(dlg)
    dlg.start_download()
    dlg.cancel_download()
    qtbot.waitUntil(lambda: not dlg.is_downloading(), timeout=10_000)
    qtbot.wait(50)
    assert fake.names == [DEFAULT_SAM]


@pytest.mark.parametrize(
    ("task", "prefix"),
    [(Task.EDIT, "The edit failed: "), (Task.SEGMENT, "Segmentation failed: ")],
)
def test_every_model_failure_banner_offers_model_settings(tiny_window, task, prefix):
    win = tiny_window
    job = 99
    win.edits.job = win.segments.job = job
    error = JobError("The GPU ran out of memory.", ErrorKind.OUT_OF_MEMORY)
    win._on_message(JobMessage(job, task, MessageKind.FAILED, error=error))
    assert win.banner.isVisible() and win.banner.label.text() == prefix + "The GPU ran out of memory."
    assert win.banner.action_button.isVisible() and win.banner.action_button.text() == "Model settings…"


def test_a_missing_model_at_edit_time_lists_them_all(tiny_window, monkeypatch, tmp_path):
    win = tiny_window
    win.choice = ModelChoice(models_dir=str(tmp_path))  # as if the folder had emptied meanwhile
    win.edits.job = 7
    error = JobError("Model weights for 'ip2p' are missing", ErrorKind.MISSING_WEIGHTS, "ip2p")
    win._on_message(JobMessage(7, Task.EDIT, MessageKind.FAILED, error=error))
    text = win.banner.label.text()
    assert text.startswith("The edit failed: 3 models are missing") and DEFAULT_SAM in text and "clip" in text
