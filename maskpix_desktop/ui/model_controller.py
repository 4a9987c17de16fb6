"""The models: the saved choice, loading and its progress, Model settings, failures in the banner."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMainWindow

from maskpix_desktop.core import models
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.service import ModelChoice, models_dir_in_effect
from maskpix_desktop.ui.model_editor import editor_choices
from maskpix_desktop.ui.start_screen import models_state
from maskpix_desktop.ui.worker import ErrorKind, JobMessage, LoadResult, MessageKind

__all__ = ["ModelController", "error_text"]


def error_text(msg: JobMessage) -> str:
    """The user-facing text of a failed job's typed error."""
    return msg.error.message if msg.error is not None else "unknown error"


class ModelController(QObject):
    """Loads the models on the window's client and shows their state (status bar, start screen, banner).

    ``factory_for(choice)`` builds the service factory of a choice (Model settings swaps it).
    """

    def __init__(
        self,
        win: QMainWindow,
        models_dir: str | None,
        device: str | None,
        load: bool,
        factory_for: Callable[[ModelChoice], Any],
    ):
        super().__init__(win)
        self.win = win
        self.factory_for = factory_for
        self.want = load
        self.ready = False
        self.closed = False
        self.load_job = 0
        self.banner_text = ""  # the banner's text when it reports a model failure
        self.choice = self._load_choice(models_dir, device)

    # ------------------------------------------------------------------ settings
    def _load_choice(self, models_dir: str | None, device: str | None) -> ModelChoice:
        raw = self.win.settings.value("models/choice")
        data: dict[str, Any] = {}
        if raw:
            try:
                data = json.loads(raw)
            except (TypeError, ValueError):
                data = {}
        fields = {k: v for k, v in data.items() if k in ModelChoice.__dataclass_fields__ and k != "extra"}
        # --models-dir > MASKPIX_MODELS > the folder saved in Model settings > the default (README)
        self.cli_models_dir = models_dir
        saved = fields.get("models_dir")
        self.saved_models_dir = saved if isinstance(saved, str) and saved.strip() else None
        fields["models_dir"], self.source = models_dir_in_effect(models_dir, self.saved_models_dir)
        if device:
            fields["device"] = device
        return ModelChoice(**fields)

    def _save_choice(self) -> None:
        data = asdict(self.choice)
        data.pop("extra", None)
        data["models_dir"] = self.saved_models_dir  # never the folder --models-dir or the variable set
        self.win.settings.setValue("models/choice", json.dumps(data))

    # ------------------------------------------------------------------ loading
    def start(self) -> None:
        if self.closed:
            return  # closed before the start-up timer fired
        win = self.win
        win.client.start()
        if not self.want:
            win.model_label.setText("models: load on first use")
            return
        win.model_label.setText("models: loading…")
        self.load_job = win.client.load_models()
        win.cancel_load_action.setEnabled(True)

    def cancel_loading(self) -> None:
        """Stop a model load between models; models then load on first use."""
        if self.load_job:
            self.win.client.cancel(self.load_job)
            self.win.model_label.setText("models: cancelling…")

    def open_settings(self) -> None:
        from maskpix_desktop.ui.model_dialog import ModelDialog

        dlg = ModelDialog(self.choice, self.win, source=self.source)
        if dlg.exec():
            choice = dlg.choice()
            if not dlg.locked:  # a folder chosen in the dialog: saved, in effect unless overridden
                self.saved_models_dir = choice.models_dir
            folder, self.source = models_dir_in_effect(self.cli_models_dir, self.saved_models_dir)
            self._apply(replace(choice, models_dir=folder))

    def choose_editor(self, value: str) -> None:
        """The edit panel's Editor pick: a registry name (the default IP2P: ``ip2p`` None) or a folder."""
        ip2p = None if value == models.DEFAULT_IP2P else value
        if ip2p != self.choice.ip2p:
            self._apply(replace(self.choice, ip2p=ip2p))

    def editor_value(self) -> str:
        """The edit panel's value of the chosen editor."""
        return self.choice.ip2p or models.DEFAULT_IP2P

    def _apply(self, choice: ModelChoice) -> None:
        """Save ``choice``, swap the service and load it."""
        self.choice = choice
        self._save_choice()
        self.win.client.set_service_factory(self.factory_for(self.choice))
        self.want = True
        self.ready = False
        panel = self.win.edit_panel
        panel.set_editor_takes_mask(False)  # until the new editor says it takes a mask
        panel.set_editors(editor_choices(), self.editor_value())
        self.start()

    def on_message(self, msg: JobMessage) -> None:
        """A load job's progress, cancellation, success (device, CLIP, editor kind) or failure."""
        win = self.win
        if msg.final and msg.job_id == self.load_job:
            win.cancel_load_action.setEnabled(False)
        if msg.kind is MessageKind.PROGRESS:
            win.model_label.setText(f"models: loading {msg.stage} ({msg.done}/{msg.total})")
        elif msg.kind is MessageKind.CANCELLED:
            win.model_label.setText("models: load on first use")
            win.statusBar().showMessage("Model loading cancelled: models load when first needed.", 6000)
        elif msg.kind is MessageKind.FINISHED and isinstance(msg.result, LoadResult):
            info = msg.result
            self.ready = True
            win.device_label.setText(info.device_label or info.device)
            win.model_label.setText(f"models: ready ({info.clip or 'no CLIP'})")
            if info.ip2p:
                win.edit_panel.set_editor_takes_mask(info.editor_takes_mask)
                win.edit_panel.set_editor_family(info.editor_family)
                win.automasks.set_editor_family(info.editor_family)
                memory = info.editor_memory
                win.model_label.setToolTip(f"Editor memory: {memory}" if memory else "")
                if memory and not info.clip_error:
                    win.statusBar().showMessage(f"Models ready; editor memory: {memory}", 8000)
            if win.banner.isVisible() and win.banner.label.text() == self.banner_text:
                win.banner.hide()  # the models are here now: the "missing" message is out of date
            if info.clip_error:
                win.statusBar().showMessage(f"CLIP scores unavailable: {info.clip_error}", 10000)
        elif msg.kind is MessageKind.FAILED:
            missing = msg.error is not None and msg.error.kind is ErrorKind.MISSING_WEIGHTS
            win.model_label.setText("models: missing" if missing else "models: failed to load")
            win.device_label.setText("device: none (no model loaded)")
            self.show_failure("", msg, "warning")

    # ------------------------------------------------------------------ failures
    def missing_models_text(self) -> str:
        """One message naming every model the current choice lacks, with sizes and the fetch command."""
        from maskpix_desktop.core.model_setup import missing_message, missing_models

        try:
            missing = missing_models(self.choice)
        except MaskPixError as exc:  # e.g. a malformed maskpix-models.json: its own clear message
            return str(exc)
        return missing_message(missing, self.choice.models_dir)[0]

    def show_failure(self, prefix: str, msg: JobMessage, level: str = "error") -> None:
        """A failed job in the banner with "Model settings…"; missing weights list every missing model."""
        text = error_text(msg)
        if msg.error is not None and msg.error.kind is ErrorKind.MISSING_WEIGHTS:
            text = self.missing_models_text() or text
        self.banner_text = prefix + text
        self.win.banner.show_message(self.banner_text, level, "Model settings…", self.open_settings)

    # ------------------------------------------------------------------ start screen, busy cursor
    def sync_start_screen(self, msg: Any = None) -> None:
        """The start screen shows the models' state of the status bar; a finished load or segmentation
        ends the busy cursor of :meth:`busy_while_loading`."""
        win = self.win
        win.start_screen.set_models_state(*models_state(win.model_label.text()))
        if msg is not None and getattr(msg, "final", False) and msg.task in ("load", "segment"):
            win.canvas.viewport().unsetCursor()
            win.canvas.viewport().setCursor(Qt.CursorShape.CrossCursor)

    def busy_while_loading(self) -> None:
        """A click while the models still load waits for them: show a busy cursor meanwhile."""
        c = self.win.canvas
        if not self.ready and c.has_image() and not c.prompts().is_empty():
            c.viewport().setCursor(Qt.CursorShape.BusyCursor)
