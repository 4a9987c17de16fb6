"""The rating dialog (offscreen, pytest-qt): make -> rate with keys 1..5, Back, close and reopen resumes ->
report; the layout fits 1366x768; unreadable answers are never overwritten; a failed save loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from maskpix_desktop.cli import main
from maskpix_desktop.core.errors import ImageSaveError
from maskpix_desktop.core.study import load_study, make_study
from maskpix_desktop.testing.study_data import make_fake_eval, study_key
from maskpix_desktop.ui.qimage import from_qimage
from maskpix_desktop.ui.study_dialog import StudyDialog, open_study_dialog

METHODS = ("baseline", "pixel", "latent")
#: what the simulated raters answer, by the (hidden) method: (region, instruction)
RULE = {"baseline": (1, 4), "pixel": (5, 2), "latent": (3, 5)}


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    ev = make_fake_eval(tmp_path / "run", n_items=4, modes=METHODS, size=96)
    make_study(ev, METHODS, tmp_path / "study", raters=2, seed=5)
    return tmp_path / "study"


def press(qtbot, dialog: StudyDialog, *keys: Qt.Key) -> None:
    for key in keys:
        qtbot.keyClick(dialog, key)


DIGIT = {v: getattr(Qt.Key, f"Key_{v}") for v in range(1, 6)}


def rate_current(qtbot, dialog: StudyDialog, key: dict[str, str]) -> None:
    """Answer both questions of the shown candidate by the rule, with the keys a rater would press."""
    item, code = dialog.current()
    region, instruction = RULE[key[f"{item}/{code}"]]
    press(qtbot, dialog, DIGIT[region], DIGIT[instruction])


def saved(study_dir: Path, rater: str) -> dict[str, dict[str, int]]:
    return json.loads((study_dir / f"answers-{rater}.json").read_text(encoding="utf-8"))["answers"]


def test_round_trip_make_rate_with_keys_back_resume_report(qtbot, study_dir: Path) -> None:
    key = study_key(study_dir)
    dialog = open_study_dialog(None, study_dir)  # deletes itself on close: not handed to qtbot
    assert dialog is not None and dialog.isVisible()
    assert dialog.stack.currentIndex() == 0  # asks for the rater first
    dialog.rater_box.setCurrentText("r1")
    assert "0 / 12 rated" in dialog.rater_info.text()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert dialog.rater == "r1" and dialog.progress_text() == "1 / 12"
    first = dialog.current()
    assert first == load_study(study_dir).orders["r1"][0]
    assert dialog.instruction.text().startswith("Instruction: “")
    assert dialog.rows[0].is_current and not dialog.rows[1].is_current

    press(qtbot, dialog, Qt.Key.Key_4)  # question 1 answered, question 2 highlighted, same image
    assert dialog.current() == first and dialog.rows[1].is_current
    assert saved(study_dir, "r1") == {f"{first[0]}/{first[1]}": {"region": 4}}  # saved at once
    press(qtbot, dialog, Qt.Key.Key_2)
    assert dialog.progress_text() == "2 / 12" and dialog.current() != first
    press(qtbot, dialog, Qt.Key.Key_Backspace)  # back to question 2 of the first image
    assert dialog.current() == first and dialog.rows[1].is_current
    assert dialog.rows[0].value() == 4 and dialog.rows[1].value() == 2
    qtbot.mouseClick(dialog.back_button, Qt.MouseButton.LeftButton)  # and to its question 1
    assert dialog.rows[0].is_current
    region, instruction = RULE[key[f"{first[0]}/{first[1]}"]]
    press(qtbot, dialog, DIGIT[region], DIGIT[instruction])  # a second thought replaces the answers
    assert saved(study_dir, "r1")[f"{first[0]}/{first[1]}"] == {"region": region, "instruction": instruction}
    for _ in range(4):
        rate_current(qtbot, dialog, key)
    press(qtbot, dialog, DIGIT[3])  # half of the 6th image, then the rater stops
    assert dialog.progress_text() == "6 / 12"
    dialog.close()

    again = StudyDialog(load_study(study_dir), rater="r1")
    qtbot.addWidget(again)
    assert again.progress_text() == "6 / 12" and again.rows[1].is_current  # resumes at the open question
    assert again.rows[0].value() == 3
    item, code = again.current()
    region, instruction = RULE[key[f"{item}/{code}"]]
    again.rows[0].buttons[region].click()  # a click fixes question 1; question 2 stays highlighted
    assert again.current() == (item, code) and again.rows[1].is_current
    press(qtbot, again, DIGIT[instruction])
    assert again.progress_text() == "7 / 12"
    while not again.finished():
        rate_current(qtbot, again, key)
    assert again.progress_text() == "12 / 12" and again.instruction.text() == "All done — thank you!"
    assert not any(row.isVisibleTo(again) for row in again.rows)
    again.close()

    r2 = StudyDialog(load_study(study_dir), rater="r2")
    qtbot.addWidget(r2)
    while not r2.finished():
        rate_current(qtbot, r2, key)
    r2.close()

    assert main(["study", "report", str(study_dir)]) == 0
    summary = json.loads((study_dir / "report" / "report.json").read_text(encoding="utf-8"))
    means = {(r["question"], r["method"]): r["mean"] for r in summary["means"]}
    for method, (region, instruction) in RULE.items():
        assert means[("region", method)] == region and means[("instruction", method)] == instruction
    assert all(row["alpha_ordinal"] == pytest.approx(1.0) for row in summary["agreement"])
    assert summary["progress"]["r1"]["complete"] == summary["progress"]["r2"]["complete"] == 12


def test_outline_toggles_on_both_images(qtbot, study_dir: Path) -> None:
    dialog = StudyDialog(load_study(study_dir), rater="r1")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.outline_shown()
    with_outline = [from_qimage(p.pixmap().toImage()) for p in (dialog.original_pane, dialog.candidate_pane)]
    press(qtbot, dialog, Qt.Key.Key_O)
    assert not dialog.outline_shown()
    plain = [from_qimage(p.pixmap().toImage()) for p in (dialog.original_pane, dialog.candidate_pane)]
    for a, b in zip(with_outline, plain, strict=True):
        assert a.shape == b.shape and (np.abs(a.astype(int) - b).sum(axis=2) > 60).mean() > 0.005
    dialog.outline_box.click()
    assert dialog.outline_shown()


def _inside(widget, window) -> bool:
    rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
    return QRect(QPoint(0, 0), window.size()).contains(rect)


def test_layout_fits_1366x768(qtbot, study_dir: Path) -> None:
    dialog = StudyDialog(load_study(study_dir))
    qtbot.addWidget(dialog)
    dialog.resize(1366, 700)  # 768 less the task bar and title bar
    dialog.show()
    qtbot.waitExposed(dialog)
    assert _inside(dialog.start_button, dialog) and _inside(dialog.rater_box, dialog)
    assert dialog.start("r2")
    QApplication.processEvents()
    assert (dialog.width(), dialog.height()) == (1366, 700)
    widgets = [dialog.instruction, dialog.progress_label, dialog.back_button, dialog.next_button]
    widgets += [b for row in dialog.rows for b in row.buttons.values()] + [r.label for r in dialog.rows]
    for w in widgets:
        assert w.isVisible() and _inside(w, dialog), w
    for pane in (dialog.original_pane, dialog.candidate_pane):
        assert pane.width() >= 400 and pane.height() >= 280
        assert min(pane.shown_size()) >= 280  # the 96 px images are scaled up to the pane


def test_unknown_rater_and_unreadable_answers_are_refused_without_writing(qtbot, study_dir: Path) -> None:
    dialog = StudyDialog(load_study(study_dir))
    qtbot.addWidget(dialog)
    assert not dialog.start("mallory")
    assert "not a rater of this study" in dialog.rater_info.text() and dialog.stack.currentIndex() == 0
    broken = study_dir / "answers-r1.json"
    broken.write_text('{"format": "maskpix-study-answers", "version": 1, "answ', encoding="utf-8")
    assert not dialog.start("r1")
    assert "answers-r1.json" in dialog.rater_info.text() and "nothing was changed" in dialog.rater_info.text()
    press(qtbot, dialog, Qt.Key.Key_3)
    assert broken.read_text(encoding="utf-8").endswith('"answ')


def test_a_failed_save_keeps_the_answer_and_the_next_save_writes_it(
    qtbot, study_dir: Path, monkeypatch
) -> None:
    import maskpix_desktop.ui.study_dialog as sd

    real = sd.save_answers

    def fail(*_a, **_k):
        raise ImageSaveError("Could not save 'answers-r1.json': disk full.")

    dialog = StudyDialog(load_study(study_dir), rater="r1")
    qtbot.addWidget(dialog)
    first = dialog.current()
    monkeypatch.setattr(sd, "save_answers", fail)
    press(qtbot, dialog, Qt.Key.Key_2)
    assert "Not saved" in dialog.status.text() and dialog.unsaved
    assert not (study_dir / "answers-r1.json").exists()
    asked: list[str] = []
    answer = QMessageBox.StandardButton.No
    monkeypatch.setattr(QMessageBox, "question", lambda _p, _t, text: asked.append(text) or answer)
    dialog.show()
    dialog.close()  # the X: a last save fails too, so it asks; No keeps the window
    press(qtbot, dialog, Qt.Key.Key_Escape)
    assert dialog.isVisible() and len(asked) == 2 and "could not be saved" in asked[0]
    monkeypatch.setattr(sd, "save_answers", real)
    press(qtbot, dialog, Qt.Key.Key_5)
    assert saved(study_dir, "r1") == {f"{first[0]}/{first[1]}": {"region": 2, "instruction": 5}}
    assert not dialog.unsaved and dialog.status.text() == "Saved."
    dialog.close()
    assert not dialog.isVisible() and len(asked) == 2  # everything saved: closes without asking


def test_a_missing_candidate_image_cannot_be_rated_but_can_be_skipped(qtbot, study_dir: Path) -> None:
    study = load_study(study_dir)
    item, code = study.orders["r1"][0]
    (study_dir / study.items[item].candidates[code]).unlink()
    dialog = StudyDialog(study, rater="r1")
    qtbot.addWidget(dialog)
    assert not dialog.candidate_pane.has_image() and "Cannot open" in dialog.candidate_pane.text()
    press(qtbot, dialog, Qt.Key.Key_4)
    assert dialog.current() == (item, code) and dialog.rows[0].value() is None
    assert not (study_dir / "answers-r1.json").exists()
    press(qtbot, dialog, Qt.Key.Key_Right)
    assert dialog.progress_text() == "2 / 12" and dialog.candidate_pane.has_image()


def test_open_study_dialog_refuses_a_folder_that_is_no_study(qtbot, tmp_path: Path, monkeypatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    assert open_study_dialog(None, tmp_path) is None
    assert shown and "study.json" in shown[0] and "not found" in shown[0]


def test_file_menu_rates_a_study(qtbot, window, study_dir: Path, monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(study_dir))
    assert window.rate_study_action.text() == "Rate a s&tudy…"
    window.rate_study_action.trigger()
    dialogs = [w for w in window.findChildren(StudyDialog) if w.isVisible()]
    assert len(dialogs) == 1 and dialogs[0].study.folder == load_study(study_dir).folder
    dialogs[0].close()
