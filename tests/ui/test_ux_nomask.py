"""Issue 19.6: a run without a mask asks first; its leakage reads "—", not a perfect 0."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from test_dialogs import make_result

from maskpix_desktop.core.jobs import EditRequest
from maskpix_desktop.ui.results import ResultsPanel


def test_run_without_a_mask_asks_and_cancel_runs_nothing(tiny_window, photo):
    win = tiny_window
    assert win.open_image(photo)
    win.edit_panel.instruction.setText("make it red")
    asked = []
    win.ask_run_without_mask = lambda parent: asked.append(1) or False
    win.edit_panel.run_button.click()
    assert asked == [1] and win.edits.job == 0 and win.edit_panel.run_button.isEnabled()
    win.ask_run_without_mask = lambda parent: True
    win.edit_panel.steps.setValue(2)
    win.edit_panel.run_button.click()
    assert win.edits.job != 0 and not win.edit_panel.run_button.isEnabled()


def test_run_with_a_mask_asks_nothing(tiny_window, photo):
    win = tiny_window
    assert win.open_image(photo)
    mask = np.zeros((96, 128), np.uint8)
    mask[10:30, 10:30] = 255
    win.canvas.set_mask(mask)
    win.ask_run_without_mask = lambda parent: (_ for _ in ()).throw(AssertionError("asked"))
    win.edit_panel.instruction.setText("make it red")
    win.edit_panel.steps.setValue(2)
    win.edit_panel.run_button.click()
    assert win.edits.job != 0


def _leakage_cells(panel: ResultsPanel) -> list[str]:
    t = panel.metrics_table
    rows = [r for r in range(t.rowCount()) if t.verticalHeaderItem(r).data(256).startswith("leakage")]
    assert rows
    return [t.item(r, c).text() for r in rows for c in range(t.columnCount())]


def test_leakage_of_a_run_without_a_mask_reads_a_dash(qtbot):
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    masked = make_result()  # leakage 30 (baseline) and 0 (blended)
    panel.add_result(masked)
    assert _leakage_cells(panel) == ["30", "0"]
    r = make_result()
    unmasked = replace(r, request=EditRequest(r.request.image, None, r.request.params))
    panel.add_result(unmasked)
    assert _leakage_cells(panel) == ["—", "—"]
