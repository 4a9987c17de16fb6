"""File > Rate a study…: one blinded candidate at a time beside the original, two 5-point questions.

Keys 1–5 answer the highlighted question and move on (question 1, then 2, then the next candidate);
Backspace / Left / the Back button step back; O toggles the outline of the marked region. Every answer
is written at once (atomically) to ``answers-<rater>.json``; reopening the study as the same rater
resumes at the first candidate not fully rated. The key (which method made which image) is never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QKeyEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core import images, masks
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.study.manifest import (
    QUESTIONS,
    SCALE,
    SCALE_LABELS,
    Answers,
    Study,
    load_answers,
    load_study,
    save_answers,
)
from maskpix_desktop.ui.canvas_overlay import mask_edges
from maskpix_desktop.ui.qimage import to_pixmap

OUTLINE = (255, 214, 0)
HALO = (20, 20, 20)
_KEYS = {getattr(Qt.Key, f"Key_{v}"): v for v in SCALE}


def outlined(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the mask's outline drawn in yellow on a dark halo, about 0.4% of the short side."""
    edges = mask_edges(np.where(mask, 255, 0).astype(np.uint8)) > 0
    width = max(1, round(min(mask.shape) / 250))
    out = image.copy()
    out[masks.dilate(edges, width + 1)] = HALO
    out[masks.dilate(edges, width) if width > 1 else edges] = OUTLINE
    return out


class ImagePane(QLabel):
    """A picture scaled to fit (aspect kept) whatever the pane's size; a caption above."""

    def __init__(self, caption: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.caption = caption
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(160, 120)
        self.setStyleSheet("background: #202024; color: #ddd;")

    def set_image(self, arr: np.ndarray | None, error: str = "") -> None:
        self._pixmap = to_pixmap(arr) if arr is not None else None
        if self._pixmap is None:
            self.setPixmap(QPixmap())
            self.setText(error)
        self._rescale()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def shown_size(self) -> tuple[int, int]:
        """The picture's size on screen (device-independent pixels)."""
        pm = self.pixmap()
        if pm is None or pm.isNull():
            return (0, 0)
        size = pm.deviceIndependentSize()
        return (round(size.width()), round(size.height()))

    def _rescale(self) -> None:
        if self._pixmap is not None and self.width() > 0 and self.height() > 0:
            dpr = self.devicePixelRatioF()
            scaled = self._pixmap.scaled(
                self.size() * dpr,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            scaled.setDevicePixelRatio(dpr)  # sharp on high-DPI screens
            self.setPixmap(scaled)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._rescale()


class QuestionRow(QFrame):
    """One question with its five answer buttons; ``answered(value)`` when one is clicked."""

    answered = Signal(int)

    def __init__(self, number: int, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("questionRow")
        self.label = QLabel(f"{number}. {text}")
        font = self.label.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.label.setFont(font)
        self.label.setWordWrap(True)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[int, QPushButton] = {}
        row = QHBoxLayout()
        row.setSpacing(6)
        for v in SCALE:
            b = QPushButton(f"{v}\n{SCALE_LABELS[v]}")
            b.setCheckable(True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the digit keys stay with the dialog
            b.setMinimumHeight(44)
            b.setStyleSheet("QPushButton:checked { background: #e0a800; color: black; font-weight: bold; }")
            b.setToolTip(f"Key {v}")
            self.group.addButton(b, v)
            self.buttons[v] = b
            row.addWidget(b)
        self.group.idClicked.connect(self.answered.emit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label)
        layout.addLayout(row)
        self.set_current(False)

    def set_value(self, value: int | None) -> None:
        self.group.setExclusive(False)
        for v, b in self.buttons.items():
            b.setChecked(v == value)
        self.group.setExclusive(True)

    def value(self) -> int | None:
        v = self.group.checkedId()
        return v if v in SCALE else None

    def set_current(self, current: bool) -> None:
        self.is_current = current
        look = "border: 2px solid #e0a800; border-radius: 6px; background: rgba(224,168,0,0.08);"
        self.setStyleSheet(f"#questionRow {{ {look if current else 'border: 2px solid transparent;'} }}")


class StudyDialog(QDialog):
    """Rate a study as one rater. ``rater`` starts at once; otherwise the first page asks for the id."""

    def __init__(self, study: Study, parent: QWidget | None = None, rater: str | None = None):
        super().__init__(parent)
        self.study = study
        self.rater: str | None = None
        self.answers: Answers | None = None
        self.order: list[tuple[str, str]] = []
        self.index = 0
        self.question = 0
        self.unsaved = False
        self._loaded_for: tuple[str, str] | None = None
        self.setWindowTitle(f"Rate a study — {study.folder.name}")
        self.stack = QStackedWidget()
        self.stack.addWidget(self._start_page())
        self.stack.addWidget(self._rating_page())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.stack)
        screen = QApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        w, h = (
            (1240, 700) if avail is None else (min(1240, avail.width() - 40), min(700, avail.height() - 40))
        )
        self.resize(max(w, 800), max(h, 560))
        if rater is not None:
            self.start(rater)

    # ------------------------------------------------------------------------------------ pages

    def _start_page(self) -> QWidget:
        page = QWidget()
        n_images = len(next(iter(self.study.orders.values())))
        self.rater_box = QComboBox()
        self.rater_box.setEditable(True)
        self.rater_box.setMinimumWidth(220)
        self.rater_box.addItems(list(self.study.orders))
        self.rater_box.setCurrentIndex(-1)
        self.rater_box.lineEdit().setPlaceholderText("your rater id, e.g. r1")
        self.rater_box.currentTextChanged.connect(self._describe_rater)
        self.rater_box.lineEdit().returnPressed.connect(self._start_clicked)
        self.rater_info = QLabel("")
        self.rater_info.setTextFormat(Qt.TextFormat.PlainText)
        self.rater_info.setWordWrap(True)
        self.start_button = QPushButton("Start rating")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self._start_clicked)
        intro = QLabel(
            f"<h2>Rating study</h2><p>{n_images} images of {len(self.study.items)} items. You will see one "
            "edited image at a time "
            "beside the original and the instruction, and answer two questions on a 1–5 scale:</p><ol>"
            + "".join(f"<li>{q.text}</li>" for q in QUESTIONS)
            + "</ol><p>Keys <b>1</b>–<b>5</b> answer the highlighted question; <b>Backspace</b> goes back; "
            "<b>O</b> shows or hides the outline of the marked region. Every answer is saved at once: you "
            "can close the window and come back later.</p>"
        )
        intro.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Rater id:"))
        row.addWidget(self.rater_box)
        row.addWidget(self.start_button)
        row.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.rater_info)
        layout.addStretch(1)
        return page

    def _rating_page(self) -> QWidget:
        page = QWidget()
        self.instruction = QLabel()
        self.instruction.setTextFormat(Qt.TextFormat.PlainText)  # an instruction may hold '<'
        self.instruction.setWordWrap(True)
        self.instruction.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        font = self.instruction.font()
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setWeight(QFont.Weight.DemiBold)
        self.instruction.setFont(font)
        self.progress_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFixedWidth(160)
        self.rater_label = QLabel()
        head = QHBoxLayout()
        head.addWidget(self.instruction, 1)
        head.addWidget(self.rater_label)
        head.addWidget(self.progress_bar)
        head.addWidget(self.progress_label)

        self.original_pane = ImagePane("Original")
        self.candidate_pane = ImagePane("Edited")
        panes = QHBoxLayout()
        for pane in (self.original_pane, self.candidate_pane):
            box = QVBoxLayout()
            box.addWidget(QLabel(f"<b>{pane.caption}</b>"))
            box.addWidget(pane, 1)
            panes.addLayout(box, 1)
        self.outline_box = QCheckBox("Show the marked region (O)")
        self.outline_box.setChecked(True)
        self.outline_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.outline_box.toggled.connect(self._show_images)

        self.rows = [QuestionRow(n, q.text) for n, q in enumerate(QUESTIONS, start=1)]
        for k, row in enumerate(self.rows):
            row.answered.connect(lambda v, k=k: self.answer(v, question=k))
        self.done_label = QLabel()
        self.done_label.setWordWrap(True)
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        self.back_button = QPushButton("← Back")
        self.back_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.back_button.clicked.connect(self.back)
        self.next_button = QPushButton("Skip →")
        self.next_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.next_button.setToolTip("Go to the next image without rating this one (you can come back)")
        self.next_button.clicked.connect(self.skip)
        close = QPushButton("Close")
        close.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.outline_box)
        buttons.addWidget(self.status, 1)
        hint = QLabel("Keys: 1–5 answer · Backspace back · → skip · O outline")
        hint.setStyleSheet("color: #777;")
        buttons.addWidget(hint)
        buttons.addWidget(self.next_button)
        buttons.addWidget(close)

        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addLayout(panes, 1)
        for row in self.rows:
            layout.addWidget(row)
        layout.addWidget(self.done_label)
        layout.addLayout(buttons)
        return page

    # ------------------------------------------------------------------------------------ start

    def _describe_rater(self, text: str) -> None:
        text = text.strip()
        if text not in self.study.orders:
            self.rater_info.setText(
                f"“{text}” is not a rater of this study; pick one of: {', '.join(self.study.orders)}."
                if text
                else ""
            )
            return
        try:
            answers = load_answers(self.study, text)
        except MaskPixError as exc:
            self.rater_info.setText(f"Cannot read your earlier answers: {exc}")
            return
        done = sum(answers.complete(i, c) for i, c in self.study.orders[text])
        total = len(self.study.orders[text])
        self.rater_info.setText(
            f"{text}: {done} / {total} rated" + (" — resumes where you left off." if done else ".")
        )

    def _start_clicked(self) -> None:
        self.start(self.rater_box.currentText().strip())

    def start(self, rater: str) -> bool:
        """Begin (or resume) as ``rater``; False, with the reason on the start page, when impossible."""
        self.stack.setCurrentIndex(0)
        if rater not in self.study.orders:
            self.rater_info.setText(
                f"“{rater}” is not a rater of this study; pick one of: {', '.join(self.study.orders)}."
            )
            return False
        try:
            answers = load_answers(self.study, rater)
        except MaskPixError as exc:  # never overwrite a file we could not read
            self.rater_info.setText(f"Cannot read your earlier answers, so nothing was changed: {exc}")
            return False
        self.rater, self.answers = rater, answers
        self.order = self.study.orders[rater]
        self.index = next(
            (k for k, (i, c) in enumerate(self.order) if not answers.complete(i, c)), len(self.order)
        )
        self.question = self._first_open_question()
        self.rater_label.setText(f"Rater {rater}")
        self.stack.setCurrentIndex(1)
        self.setFocus()
        self._show()
        return True

    # ------------------------------------------------------------------------------------ state

    def current(self) -> tuple[str, str] | None:
        return self.order[self.index] if 0 <= self.index < len(self.order) else None

    def finished(self) -> bool:
        return self.answers is not None and self.index >= len(self.order)

    def progress_text(self) -> str:
        return self.progress_label.text()

    def rated_count(self) -> int:
        assert self.answers is not None
        return sum(self.answers.complete(i, c) for i, c in self.order)

    def _first_open_question(self) -> int:
        cur = self.current()
        if cur is None or self.answers is None:
            return 0
        return next((k for k, q in enumerate(QUESTIONS) if self.answers.get(*cur, q.id) is None), 0)

    def answer(self, value: int, question: int | None = None) -> None:
        """Record ``value`` for ``question`` (the highlighted one by default), save, and move on."""
        cur = self.current()
        if cur is None or self.answers is None or value not in SCALE:
            return
        if not self.candidate_pane.has_image():
            self.status.setText("This image could not be read; skip it (→) or tell the study's coordinator.")
            self._show_rows(cur)
            return
        k = self.question if question is None else question
        self.answers.set(*cur, QUESTIONS[k].id, value)
        self._save()
        if k < len(QUESTIONS) - 1:
            self.question = k + 1
        elif self.answers.complete(*cur):
            self.index += 1
            self.question = self._first_open_question()
        else:
            self.question = self._first_open_question()
        self._show()

    def back(self) -> None:
        """One question back: the previous question of this image, or the last of the previous image."""
        if self.answers is None:
            return
        if self.question > 0 and not self.finished():
            self.question -= 1
        elif self.index > 0:
            self.index -= 1
            self.question = len(QUESTIONS) - 1
        self._show()

    def skip(self) -> None:
        if self.answers is not None and not self.finished():
            self.index += 1
            self.question = self._first_open_question()
            self._show()

    def _save(self) -> None:
        assert self.answers is not None
        try:
            save_answers(self.study, self.answers)
        except (MaskPixError, OSError) as exc:
            self.unsaved = True
            self.status.setStyleSheet("color: #c00;")
            self.status.setText(f"Not saved: {exc} (kept here; retried with the next answer)")
            return
        self.unsaved = False
        self.status.setStyleSheet("")
        self.status.setText("Saved.")

    # ------------------------------------------------------------------------------------ display

    def _show(self) -> None:
        total = len(self.order)
        shown = min(self.index + 1, total)
        self.progress_label.setText(f"{shown} / {total}")
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(self.rated_count())
        self.back_button.setEnabled(self.index > 0 or self.question > 0)
        cur = self.current()
        done = cur is None
        self.next_button.setEnabled(not done)
        for row in self.rows:
            row.setVisible(not done)
        self.original_pane.setVisible(True)
        if done:
            missing = total - self.rated_count()
            self.instruction.setText(
                "All done — thank you!" if not missing else f"{missing} image(s) still unrated"
            )
            self.done_label.setText(
                f"You rated {self.rated_count()} of {total} images; your answers are saved in "
                f"{self.study.answers_path(self.rater or '').name}. You can close this window"
                + (" (reopen the study later to rate the skipped ones)." if missing else ".")
            )
            self.original_pane.set_image(None, "")
            self.candidate_pane.set_image(None, "")
            self._loaded_for = None
            return
        self.done_label.setText("")
        item = self.study.items[cur[0]]
        self.instruction.setText(f"Instruction: “{item.instruction}”")
        self._show_rows(cur)
        if cur != self._loaded_for:  # the next question of the same image: nothing to reload
            self._load_images(item.original, item.mask, item.candidates[cur[1]])
            self._loaded_for = cur

    def _show_rows(self, cur: tuple[str, str]) -> None:
        assert self.answers is not None
        for k, (row, q) in enumerate(zip(self.rows, QUESTIONS, strict=True)):
            row.set_value(self.answers.get(*cur, q.id))
            row.set_current(k == self.question)

    def _load_images(self, original: str, mask: str, candidate: str) -> None:
        self._images: dict[str, np.ndarray | None] = {}
        self._errors: dict[str, str] = {}
        for name, rel in (("original", original), ("candidate", candidate)):
            try:
                self._images[name] = images.load_image(self.study.path(rel))
            except MaskPixError as exc:
                self._images[name], self._errors[name] = None, str(exc)
        self._mask = None
        if self._images["original"] is not None:
            try:
                self._mask = images.load_mask(self.study.path(mask), size=self._images["original"].shape[:2])
            except MaskPixError as exc:
                self._errors["mask"] = str(exc)
        self._show_images()

    def _show_images(self) -> None:
        if self.current() is None:
            return
        for name, pane in (("original", self.original_pane), ("candidate", self.candidate_pane)):
            arr = self._images.get(name)
            if arr is not None and self._mask is not None and self.outline_box.isChecked():
                m = (
                    self._mask
                    if self._mask.shape == arr.shape[:2]
                    else masks.resize_mask(self._mask, arr.shape[:2])
                )
                arr = outlined(arr, masks.as_bool(m))
            pane.set_image(arr, self._errors.get(name, ""))
        if "mask" in self._errors:
            self.status.setText(f"The marked region cannot be shown: {self._errors['mask']}")

    def outline_shown(self) -> bool:
        return self.outline_box.isChecked()

    # ------------------------------------------------------------------------------------ events

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if self.stack.currentIndex() == 1 and self.answers is not None:
            key = Qt.Key(event.key())
            if key in _KEYS and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
                self.answer(_KEYS[key])
                return
            if key in (Qt.Key.Key_Backspace, Qt.Key.Key_Left):
                self.back()
                return
            if key == Qt.Key.Key_Right:
                self.skip()
                return
            if key == Qt.Key.Key_O:
                self.outline_box.toggle()
                return
        super().keyPressEvent(event)

    def reject(self) -> None:
        """Close (the window's X and Escape both come here): a last try to save answers a failed save
        kept, and a question before they are dropped."""
        if self.unsaved and self.answers is not None:
            self._save()
            if self.unsaved:
                choice = QMessageBox.question(
                    self,
                    "Rate a study",
                    f"Your last answers could not be saved ({self.status.text()}). "
                    "Close anyway and lose them?",
                )
                if choice != QMessageBox.StandardButton.Yes:
                    return
        super().reject()


def open_study_dialog(
    parent: QWidget | None = None, study_dir: str | Path | None = None, rater: str | None = None
) -> StudyDialog | None:
    """Ask for a study folder (unless given) and show the rating window (non-modal); None if cancelled
    or the folder is no study (a message box says why)."""
    if study_dir is None:
        study_dir = QFileDialog.getExistingDirectory(
            parent, "Rate a study (the folder made by maskpix-cli study make)"
        )
        if not study_dir:
            return None
    try:
        study = load_study(study_dir)
    except MaskPixError as exc:
        QMessageBox.warning(parent, "Rate a study", str(exc))
        return None
    dialog = StudyDialog(study, parent, rater=rater)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog


__all__ = ["ImagePane", "QuestionRow", "StudyDialog", "open_study_dialog", "outlined"]
