"""Results panel: the before/after split view beside the grid (exact pixels each side of the divider, drag,
keys, new results) and the metrics headline ("Leakage outside the mask 48.5 → 1.3"; "—" without a mask)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, QRectF, Qt
from PySide6.QtGui import QImage, QPainter

from maskpix_desktop.core import metric_catalog
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.ui import display_levels as dl
from maskpix_desktop.ui.compare_view import CompareView
from maskpix_desktop.ui.qimage import from_qimage
from maskpix_desktop.ui.results import ResultsPanel
from maskpix_desktop.ui.results_metrics import headline

H, W = 48, 64


def _result(
    seed: int, h: int = H, w: int = W, metrics: dict | None = None, masked: bool = True
) -> EditResult:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
    blended = rng.integers(130, 256, size=(h, w, 3), dtype=np.uint8)  # never equal to the original
    mask = np.ones((h, w), bool)
    params = EditParams(instruction=f"edit {seed}", seed=seed)
    return EditResult(
        request=EditRequest(image=image, mask=mask if masked else None, params=params),
        baseline=blended,
        blended=blended,
        edit=blended,
        mask_used=mask,
        working_size=(h, w),
        timings={},
        model={},
        metrics=metrics or {},
    )


def scene_pixels(view: CompareView) -> np.ndarray:
    """The scene (what the view shows, without the divider drawn over it) at full size, 1:1."""
    h, w = view.image_size()
    img = QImage(w, h, QImage.Format.Format_RGB888)
    img.fill(0)
    p = QPainter(img)
    view.scene().render(p, QRectF(0, 0, w, h), QRectF(0, 0, w, h))
    p.end()
    return from_qimage(img)[..., :3]


def assert_split(view: CompareView, before: np.ndarray, after: np.ndarray, x: int) -> None:
    shown = scene_pixels(view)
    assert view.divider_x() == x
    np.testing.assert_array_equal(shown[:, :x], before[:, :x])
    np.testing.assert_array_equal(shown[:, x:], after[:, x:])


@pytest.fixture
def panel(qtbot) -> ResultsPanel:
    p = ResultsPanel()
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    qtbot.waitExposed(p)
    return p


def _window_rect(widget) -> QRect:
    return QRect(widget.mapTo(widget.window(), QPoint(0, 0)), widget.size())


def test_split_view_sits_beside_the_grid_and_compare_hides_it(panel: ResultsPanel, qtbot) -> None:
    r = _result(1)
    panel.add_result(r)
    view = panel.compare_view
    grid = [panel.views[t.lower()] for t in panel.TITLES]
    # shown from the start, right of the grid: all five views at once
    assert panel.compare_visible() and panel.compare_button.isChecked() and view.isVisible()
    assert all(v.isVisible() for v in grid) and panel.change_map_toggle.isEnabled()
    right_of_grid = max(_window_rect(v).right() for v in grid)
    assert _window_rect(view).left() > right_of_grid
    assert panel.view_split.indexOf(panel._views_area) == 0 and panel.view_split.indexOf(view) == 1
    assert_split(view, r.request.image, r.blended, 32)  # the divider starts in the middle
    grid_width = panel._views_area.width()
    panel.compare_button.click()  # hidden: the grid takes the room, nothing converted
    assert not panel.compare_visible() and not view.isVisible()
    assert all(v.isVisible() for v in grid)
    qtbot.waitUntil(lambda: panel._views_area.width() > grid_width)
    assert view.pixmap_item.pixmap().isNull() and view.after_item.pixmap().isNull()
    panel.set_compare_visible(True)  # back beside the grid, with the focus for the arrow keys
    assert panel.compare_button.isChecked() and view.isVisible() and panel.focusWidget() is view
    assert all(v.isVisible() for v in grid)
    assert_split(view, r.request.image, r.blended, 32)


@pytest.mark.parametrize("x", [0, 1, 23, 32, 63, 64])
def test_left_of_the_divider_is_the_original_and_right_of_it_the_result(panel: ResultsPanel, x: int) -> None:
    r = _result(2)
    panel.add_result(r)
    panel.set_compare_visible(True)
    view = panel.compare_view
    view.set_divider_x(x)
    assert_split(view, r.request.image, r.blended, x)


def test_dragging_moves_the_divider_and_the_pixels_follow(panel: ResultsPanel, qtbot) -> None:
    r = _result(3)
    panel.add_result(r)
    panel.set_compare_visible(True)
    view = panel.compare_view
    qtbot.waitUntil(lambda: view.viewport().width() > 200)
    moved: list[float] = []
    view.dividerMoved.connect(moved.append)
    start, end = view.mapFromScene(W * 0.5, H / 2), view.mapFromScene(W * 0.25 + 0.5, H / 2)
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view.viewport(), QPoint((start.x() + end.x()) // 2, start.y()))
    qtbot.mouseMove(view.viewport(), end)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=end)
    assert view.divider_x() == 16 and moved and moved[-1] == pytest.approx(16 / 64, abs=0.5 / 64)
    assert_split(view, r.request.image, r.blended, 16)
    # a move without the button held does nothing
    qtbot.mouseMove(view.viewport(), start)
    assert view.divider_x() == 16


def test_keys_move_the_divider(panel: ResultsPanel, qtbot) -> None:
    r = _result(4, w=100)
    panel.add_result(r)
    panel.set_compare_visible(True)
    view = panel.compare_view
    view.set_divider_x(50)
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.divider_x() == 49
    qtbot.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert view.divider_x() == 59
    assert_split(view, r.request.image, r.blended, 59)
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert view.divider_x() == 100
    qtbot.keyClick(view, Qt.Key.Key_Right)  # clamped at the edge
    assert view.divider_x() == 100
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert_split(view, r.request.image, r.blended, 0)


def test_a_new_result_keeps_the_divider_and_shows_the_new_pixels(panel: ResultsPanel) -> None:
    panel.add_result(_result(5))
    panel.set_compare_visible(True)
    panel.compare_view.set_divider_x(40)
    r2 = _result(6)
    panel.add_result(r2)
    assert panel.compare_visible()
    assert_split(panel.compare_view, r2.request.image, r2.blended, 40)
    # a result of another size: the divider keeps its fraction of the width
    r3 = _result(7, h=24, w=32)
    panel.add_result(r3)
    assert_split(panel.compare_view, r3.request.image, r3.blended, 20)
    panel.show_result(1)  # back in the history
    assert_split(panel.compare_view, r2.request.image, r2.blended, 40)
    panel.clear()
    assert not panel.compare_view.has_image() and panel.compare_view.after_pyramid() is None


def test_split_view_uses_the_display_pyramid_shared_with_the_grid(qtbot) -> None:
    # a large pair: the fitted compare view converts a reduced level of both images, not full size
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    qtbot.waitExposed(panel)
    r = _result(8, h=1536, w=2048)
    panel.add_result(r)
    panel.set_compare_visible(True)
    view = panel.compare_view
    qtbot.waitUntil(lambda: view.shown_level() > 0)
    k = view.shown_level()
    assert view.pixmap_item.pixmap().width() == dl.level_size((1536, 2048), k)[1]
    assert view.after_item.pixmap().size() == view.pixmap_item.pixmap().size()
    assert view.after_pyramid() is panel.views["blended"]._pyramid  # one set of levels for both views
    assert 0 not in view.after_pyramid().built() and 0 not in panel._orig_cache[1].built()


def test_headline_reads_baseline_to_masked_result_from_the_catalogue(panel: ResultsPanel) -> None:
    metrics = {"baseline": {"leakage_mean": 48.46, "bg_psnr": 16.0}, "blended": {"leakage_mean": 1.3}}
    panel.add_result(_result(9, metrics=metrics))
    assert panel.headline_label.isVisibleTo(panel)
    assert panel.headline_label.text() == "Leakage outside the mask 48.5 → 1.3"
    # the phrase is the catalogue's: a patched entry shows
    spec = metric_catalog.spec(metric_catalog.HEADLINE_KEY)
    patched = {metric_catalog.HEADLINE_KEY: replace(spec, headline="Spill")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(metric_catalog, "CATALOG", {**metric_catalog.CATALOG, **patched})
        assert headline(metrics) == "Spill 48.5 → 1.3"
    assert headline({"baseline": {"leakage_mean": 0}, "blended": {"leakage_mean": float("nan")}}) == (
        "Leakage outside the mask 0.0 → —"
    )


def test_headline_of_a_run_without_a_mask_is_a_dash_and_absent_without_metrics(panel: ResultsPanel) -> None:
    metrics = {"baseline": {"leakage_mean": 0.0}, "blended": {"leakage_mean": 0.0}}
    panel.add_result(_result(10, metrics=metrics, masked=False))
    text = panel.headline_label.text()
    assert text.startswith("Leakage outside the mask —") and "0.0" not in text
    panel.add_result(_result(11))  # no metrics at all (e.g. an edit run without scoring)
    assert panel.headline_label.text() == "" and not panel.headline_label.isVisibleTo(panel)
