"""Issue 19: the run's progress text sits in a label above a thin bar, so the fill edge never crosses it."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect

from maskpix_desktop.ui.edit_panel import EditPanel
from maskpix_desktop.ui.step_progress import BAR_HEIGHT


def _rect(widget, top) -> QRect:
    return QRect(widget.mapTo(top, QPoint(0, 0)), widget.size())


@pytest.fixture
def panel(qtbot) -> EditPanel:
    p = EditPanel()
    qtbot.addWidget(p.prompt_bar)
    qtbot.addWidget(p)
    p.prompt_bar.resize(900, 40)
    p.prompt_bar.show()
    qtbot.waitExposed(p.prompt_bar)
    return p


@pytest.mark.parametrize(("done", "total"), [(0, 20), (1, 20), (10, 20), (19, 20), (20, 20)])
def test_progress_text_is_beside_the_fill_at_any_fill(panel: EditPanel, done: int, total: int) -> None:
    panel.set_running(True)
    panel.set_progress(done, total, eta_s=12.0, stage="baseline")
    bar, label = panel.progress, panel.progress.label
    left = " · 12 s left" if done < total else ""
    assert bar.format() == label.text() == f"baseline · step {done}/{total}{left}"
    assert not bar.isTextVisible() and bar.height() == BAR_HEIGHT  # the bar paints no text
    top = panel.prompt_bar
    text_rect, bar_rect = _rect(label, top), _rect(bar, top)
    assert label.isVisible() and not text_rect.intersects(bar_rect)  # the fill never reaches the glyphs
    assert text_rect.bottom() < bar_rect.top() and text_rect.width() == bar_rect.width()
    assert label.sizeHint().width() <= text_rect.width()  # the whole text fits the label
    assert text_rect.height() >= label.fontMetrics().height()


def test_busy_and_idle_texts_show_in_the_label(panel: EditPanel) -> None:
    assert panel.progress.label.text() == "idle"
    panel.set_running(True)  # busy bar: Qt's own text() is empty, the label shows the format
    assert panel.progress.text() == "" and panel.progress.label.text() == "starting…"
    panel.set_running(False)
    assert panel.progress.label.text() == "idle" == panel.progress.format()
