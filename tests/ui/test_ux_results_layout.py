"""Issue 19: with the filmstrip shown (two images or more), the Results tab still shows the metrics' headline
and their first rows in full, beside the grid of four views and the before/after split view."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QApplication
from strip_window import rect_in, strip_window

from maskpix_desktop.core import images
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.ui.results_metrics import MIN_VISIBLE_ROWS, VARIANTS

METRICS = {
    "leakage_mean": (48.4, 0.24),
    "leakage_p99": (103.7, 9.7),
    "miou": (0.33, 0.96),
    "miou_tau": (48.8, 10.0),
    "bg_psnr": (12.8, 41.6),
    "bg_ssim": (0.16, 0.99),
    "pie_psnr": (12.0, 40.0),
    "pie_ssim": (0.2, 0.98),
    "clip_score": (25.0, 24.0),
    "clip_direction": (0.1, 0.09),
}


def _result(image: np.ndarray) -> EditResult:
    h, w = image.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 2, w // 4 : w // 2] = True
    edited = 255 - image
    return EditResult(
        request=EditRequest(image=image, mask=mask, params=EditParams(instruction="invert it")),
        baseline=edited,
        blended=np.where(mask[..., None], edited, image),
        edit=edited,
        mask_used=mask,
        working_size=(h, w),
        timings={},
        model={},
        metrics={v: {k: pair[i] for k, pair in METRICS.items()} for i, v in enumerate(VARIANTS)},
    )


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_metrics_rows_stay_readable_with_the_filmstrip_shown(qtbot, tmp_path, photo, size):
    win = strip_window(qtbot, tmp_path, photo, size, 2)
    win.results.add_result(_result(images.load_image(photo)))
    win.tabs.setCurrentIndex(1)
    QApplication.processEvents()
    assert (win.width(), win.height()) == size
    assert win.filmstrip.isVisible() and win.filmstrip.count() == 2
    window = QRect(QPoint(0, 0), win.size())
    assert window.contains(rect_in(win.filmstrip, win))

    metrics = win.results.metrics
    table = metrics.table
    assert table.rowCount() == len(METRICS) > MIN_VISIBLE_ROWS
    assert metrics.headline.isVisible() and metrics.headline.text() == "Leakage outside the mask 48.4 → 0.2"
    headline = rect_in(metrics.headline, win)
    assert window.contains(headline) and headline.height() >= metrics.headline.sizeHint().height()
    assert window.contains(rect_in(table, win))
    rows_px = sum(table.rowHeight(r) for r in range(MIN_VISIBLE_ROWS))
    assert table.viewport().height() >= rows_px
    for row in range(MIN_VISIBLE_ROWS):  # each of the first rows whole inside the table's viewport
        assert table.viewport().rect().contains(table.visualRect(table.model().index(row, 1))), row
    # the grid and the split view beside it stay usable
    compare = win.results.compare_view
    assert compare.isVisible() and compare.viewport().width() >= 300 and compare.viewport().height() >= 200
    for name, view in win.results.views.items():
        assert view.isVisible() and view.viewport().width() >= 150 and view.viewport().height() >= 100, name
        assert rect_in(view, win).right() < rect_in(compare, win).left(), name
    win.close()
