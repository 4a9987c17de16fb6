"""The window's document model (ui/document_model.py); the Models dialog's file pickers (ui/model_form.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog

from maskpix_desktop.core.service import ModelChoice
from maskpix_desktop.ui.model_dialog import ModelDialog


def test_new_document_announces_its_id_and_the_client_follows(window) -> None:
    doc = window.document
    seen: list[int] = []
    doc.replaced.connect(seen.append)
    first = doc.new_document()
    second = doc.new_document()
    assert seen == [first, second] and second == first + 1
    assert window.client.document == second  # the client drops the old document's messages


def test_a_change_marks_modified_once_and_counts_every_change(window) -> None:
    doc = window.document
    titles: list[int] = []
    changes: list[int] = []
    doc.titleChanged.connect(lambda: titles.append(1))
    doc.changed.connect(lambda: changes.append(1))
    doc.modified, serial = False, doc.change_serial
    doc.mark_changed()
    doc.mark_changed()
    assert doc.modified and doc.change_serial == serial + 2
    assert len(titles) == 1 and len(changes) == 2


def test_a_change_while_restoring_does_not_mark_modified(window) -> None:
    doc = window.document
    doc.modified, doc.restoring = False, True
    doc.mark_changed()
    assert not doc.modified


def test_title_names_project_image_and_recovery(window, tmp_path: Path, rng_image) -> None:
    doc = window.document
    window.opener.show_image(rng_image(16, 24, seed=1), None, name="red")
    doc.project_path, doc.modified, doc.recovered = tmp_path / "p.maskpix", True, True
    window.update_title()
    assert window.windowTitle() == "p.maskpix * — red — (recovered) — MaskPix Desktop"


def test_session_snapshot_reads_the_views(window, rng_image) -> None:
    image = rng_image(16, 24, seed=2)
    window.opener.show_image(image, None, name="red")
    mask = np.zeros((16, 24), np.uint8)
    mask[2:6, 3:9] = 255
    window.canvas.set_mask(mask)
    window.edit_panel.instruction.setText("make it blue")
    s = window.document.session()
    assert s.image_name == "red" and s.params.instruction == "make it blue"
    np.testing.assert_array_equal(s.image, image)
    np.testing.assert_array_equal(s.mask, mask)
    assert s.history == [] and s.points == [] and s.box is None


def _not_asked(name: str):
    def ask(*_args):
        raise AssertionError(f"the snapshot asked the view for its {name}")

    return ask


def test_widgets_write_into_the_document_and_the_snapshot_reads_only_it(
    window, rng_image, monkeypatch
) -> None:
    from maskpix_desktop.ui.canvas import Prompts

    doc = window.document
    image = rng_image(16, 24, seed=4)
    window.opener.show_image(image, None, name="red")
    window.canvas.set_prompts(Prompts(((3.0, 4.0), (9.0, 2.0)), (1, 0), (1.0, 1.0, 8.0, 9.0)))
    window.segments.timer.stop()
    window.edit_panel.instruction.setText("make it blue")
    window.edit_panel.steps.setValue(7)
    # The user's edits are in the document's data as they happen, not only when a snapshot is taken.
    assert doc.data.points == [(3.0, 4.0), (9.0, 2.0)] and doc.data.labels == [1, 0]
    assert doc.data.box == (1.0, 1.0, 8.0, 9.0)
    assert doc.data.params.instruction == "make it blue" and doc.data.params.steps == 7
    assert doc.data.image is window.canvas.image()
    mask = np.zeros((16, 24), np.uint8)
    mask[2:6, 3:9] = 200
    window.canvas.set_mask(mask)
    np.testing.assert_array_equal(doc.data.mask, mask)
    window.canvas.undo_stack.undo()
    assert not doc.data.mask.any()  # an undo reaches the document too
    window.canvas.undo_stack.redo()
    # The snapshot reads the document: the views are not asked.
    for widget, name in (
        (window.canvas, "mask"),
        (window.canvas, "prompts"),
        (window.edit_panel, "params"),
        (window.results, "history"),
    ):
        monkeypatch.setattr(widget, name, _not_asked(name))
    s = doc.session()
    assert s.points == [(3.0, 4.0), (9.0, 2.0)] and s.labels == [1, 0] and s.params.steps == 7
    np.testing.assert_array_equal(s.image, image)
    np.testing.assert_array_equal(s.mask, mask)
    assert s.history == [] and s.current == -1


def test_browse_buttons_put_the_chosen_file_or_folder_in_their_field(
    qtbot, tmp_path: Path, monkeypatch
) -> None:
    dlg = ModelDialog(ModelChoice(models_dir=str(tmp_path)))
    qtbot.addWidget(dlg)
    titles: list[str] = []
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda parent, title, *a: titles.append(title) or (f"/x/{title}", "")
    )
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", lambda parent, title, *a: titles.append(title) or "/d"
    )
    dlg.sam_combo.setCurrentIndex(dlg.sam_combo.findData("custom"))
    dlg.clip_combo.setCurrentIndex(1)
    for button in (dlg.sam_browse, dlg.ip2p_browse, dlg.clip_weights_browse, dlg.clip_config_browse):
        button.click()
    assert dlg.sam_path_edit.text() == "/x/SAM checkpoint" and dlg.ip2p_edit.text() == "/d"
    assert dlg.clip_weights_edit.text() == "/x/CLIP weights"
    assert dlg.clip_config_edit.text() == "/x/CLIP model config"
    dlg.folder_browse.click()
    assert dlg.folder_edit.text() == "/d"
    assert titles[-1] == "Models folder"
