"""ResultsPanel: synced views, change map, metrics table and run history (synthetic results, no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from maskpix_desktop.core import metric_catalog
from maskpix_desktop.core.export import mask_overlay
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.core.metrics import METRIC_INFO
from maskpix_desktop.ui.qimage import from_qimage
from maskpix_desktop.ui.results import ResultsPanel, change_heatmap
from maskpix_desktop.ui.results_metrics import better_variant, format_metric
from maskpix_desktop.ui.synced_view import SyncedImageView, ViewSync

H, W = 48, 64
MASK = np.zeros((H, W), bool)
MASK[12:36, 16:48] = True


def make_rng_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, size=(h, w, 3), dtype=np.uint8)


def make_result(seed: int, instruction: str, mode: str = "pixel", metrics: dict | None = None) -> EditResult:
    """Baseline = original + an offset everywhere (it leaks); blended = baseline inside the mask only."""
    image = make_rng_image(H, W, seed)
    baseline = np.clip(image.astype(np.int16) + 40 + 10 * seed, 0, 255).astype(np.uint8)
    blended = np.where(MASK[..., None], baseline, image)
    params = EditParams(instruction=instruction, seed=seed, mask_mode=mode, steps=12)
    return EditResult(
        request=EditRequest(image=image, mask=MASK, params=params),
        baseline=baseline,
        blended=blended,
        edit=baseline,
        mask_used=MASK,
        working_size=(H, W),
        timings={"baseline_s": 2.0, "total_s": 2.5},
        model={"ip2p": "tiny"},
        metrics=metrics or {},
    )


METRICS = {
    "baseline": {
        "leakage_mean": 40.0,
        "bg_psnr": 16.0928,
        "bg_ssim": 0.5,
        "miou": math.nan,
        "miou_tau": 10.0,
    },
    "blended": {"leakage_mean": 0.0, "bg_psnr": math.inf, "bg_ssim": 1.0, "miou": 0.8, "miou_tau": 10.0},
}


def view_pixels(view: SyncedImageView) -> np.ndarray:
    return from_qimage(view.pixmap_item.pixmap().toImage())


@pytest.fixture
def panel(qtbot) -> ResultsPanel:
    p = ResultsPanel()
    qtbot.addWidget(p)
    p.resize(1200, 700)
    p.show()
    qtbot.waitExposed(p)
    return p


def wheel(view: SyncedImageView, notches: int) -> None:
    pos = QPointF(view.viewport().rect().center())
    event = QWheelEvent(
        pos,
        QPointF(view.viewport().mapToGlobal(pos.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), event)


def test_history_selection_shows_result_pixels(panel: ResultsPanel, qtbot) -> None:
    r1 = make_result(1, "make it red", metrics=METRICS)
    r2 = make_result(2, "add snow", mode="crop")
    shown: list[object] = []
    panel.resultShown.connect(shown.append)
    assert panel.add_result(r1) == 0
    assert panel.add_result(r2) == 1
    assert panel.history() == [r1, r2]
    assert panel.current_result() is r2
    assert panel.history_list.count() == 2
    assert panel.history_list.item(0).text() == "#1  make it red  · pixel · seed 1 · 2.5s"
    assert panel.history_list.item(1).text() == "#2  add snow  · crop · seed 2 · 2.5s"
    tip = panel.history_list.item(0).toolTip()
    assert "instruction: 'make it red'" in tip and "steps: 12" in tip and "text_scale: 7.5" in tip

    panel.history_list.setCurrentRow(0)  # what a click does
    assert panel.current_result() is r1
    assert shown[-1] is r1
    np.testing.assert_array_equal(view_pixels(panel.views["blended"]), r1.blended)
    np.testing.assert_array_equal(view_pixels(panel.views["baseline"]), r1.baseline)
    np.testing.assert_array_equal(view_pixels(panel.views["original"]), r1.request.image)
    np.testing.assert_array_equal(view_pixels(panel.views["mask"]), mask_overlay(r1.request.image, MASK))

    panel.show_result(1)
    assert panel.history_list.currentRow() == 1
    np.testing.assert_array_equal(view_pixels(panel.views["blended"]), r2.blended)
    with pytest.raises(IndexError):
        panel.show_result(5)


def test_metrics_table_labels_values_and_bold(panel: ResultsPanel) -> None:
    panel.add_result(make_result(1, "x", metrics=METRICS))
    t = panel.metrics_table
    assert [t.horizontalHeaderItem(c).text() for c in range(2)] == ["Baseline", "Blended"]
    rows = {t.verticalHeaderItem(r).text(): r for r in range(t.rowCount())}
    # plain names with their units, from the metric catalogue
    assert set(rows) == {f"{METRIC_INFO[k][0]} ({metric_catalog.spec(k).unit})" for k in METRICS["baseline"]}
    leak = rows["Leakage outside the mask, mean (0-255)"]
    assert t.verticalHeaderItem(leak).toolTip() == METRIC_INFO["leakage_mean"][1]
    assert (t.item(leak, 0).text(), t.item(leak, 1).text()) == ("40", "0")
    psnr = rows["Background kept, PSNR (dB)"]
    assert (t.item(psnr, 0).text(), t.item(psnr, 1).text()) == ("16.09", "∞")
    miou = rows["Change matches the mask, mIoU (0-1)"]
    assert (t.item(miou, 0).text(), t.item(miou, 1).text()) == ("—", "0.8")
    # better value in bold: lower leakage, higher PSNR/SSIM; the informational tau has no winner
    for key in (
        "Leakage outside the mask, mean (0-255)",
        "Background kept, PSNR (dB)",
        "Background kept, SSIM (0-1)",
    ):
        assert t.item(rows[key], 1).font().bold() and not t.item(rows[key], 0).font().bold()
    tau = rows["Change threshold for mIoU (0-255)"]
    assert not t.item(tau, 0).font().bold() and not t.item(tau, 1).font().bold()


def test_format_and_direction_helpers() -> None:
    assert format_metric(math.inf) == "∞"
    assert format_metric(math.nan) == "—"
    assert format_metric(None) == "—"
    assert format_metric(0.123456) == "0.1235"
    assert format_metric(3) == "3"
    assert better_variant("pie_mse", {"baseline": 2.0, "blended": 1.0}) == "blended"
    assert better_variant("clip_score", {"baseline": 25.0, "blended": 21.0}) == "baseline"
    assert better_variant("bg_psnr", {"baseline": 30.0, "blended": math.inf}) == "blended"
    assert better_variant("bg_psnr", {"baseline": 30.0, "blended": 30.0}) is None
    assert better_variant("miou", {"baseline": math.nan, "blended": 0.5}) is None


def test_zoom_and_scroll_are_synced(panel: ResultsPanel, qtbot) -> None:
    panel.add_result(make_result(1, "x"))
    views = list(panel.views.values())
    fitted = views[0].transform().m11()
    assert all(v.transform() == views[0].transform() for v in views)

    wheel(panel.views["baseline"], 4)
    src = panel.views["baseline"]
    assert src.transform().m11() == pytest.approx(fitted * 1.25**4)
    for v in views:
        assert v.transform() == src.transform()
        assert v.scroll_position() == src.scroll_position()

    blended = panel.views["blended"]
    hsb, vsb = blended.horizontalScrollBar(), blended.verticalScrollBar()
    assert hsb.maximum() > 0 and vsb.maximum() > 0
    hsb.setValue(hsb.minimum() + 7)
    vsb.setValue(vsb.maximum() - 3)
    for v in views:
        assert v.scroll_position() == (hsb.value(), vsb.value())

    # showing another result of the same size keeps the zoom; double-click fits all again
    panel.add_result(make_result(2, "y"))
    assert all(v.transform() == src.transform() for v in views)
    qtbot.mouseDClick(panel.views["mask"].viewport(), Qt.MouseButton.LeftButton)
    assert views[0].transform().m11() == pytest.approx(fitted)
    assert all(v.transform() == views[0].transform() for v in views)


def test_view_sync_guards_recursion(qtbot) -> None:
    views = [SyncedImageView(f"v{i}") for i in range(3)]
    for v in views:
        qtbot.addWidget(v)
        v.resize(200, 150)
        v.set_image(make_rng_image(40, 60))
        v.show()
    sync = ViewSync(views)
    views[2].zoom(3.0)
    assert all(v.transform() == views[2].transform() for v in views)
    assert views[0].transform().m11() == pytest.approx(views[0].transform().m22())
    sync.remove(views[0])
    views[1].zoom(2.0)
    assert views[0].transform() != views[1].transform()
    assert views[2].transform() == views[1].transform()


def test_change_map_shows_leak_outside_mask(panel: ResultsPanel) -> None:
    r = make_result(1, "x")
    panel.add_result(r)
    view = panel.views["mask"]
    assert view.title() == "Mask"
    panel.change_map_toggle.click()
    assert panel.change_map_visible() and view.title() == "Change map"
    heat = view_pixels(view)
    np.testing.assert_array_equal(heat, change_heatmap(r.request.image, r.baseline, MASK))
    assert heat[2, 2].sum() > 60  # outside the mask the baseline differs: visibly not black
    assert tuple(heat[12, 16]) == (255, 255, 255)  # mask outline in white
    # an untouched image gives (near) black away from the outline
    assert change_heatmap(r.request.image, r.request.image, MASK)[2, 2].sum() < 20
    panel.set_change_map_visible(False)
    np.testing.assert_array_equal(view_pixels(view), mask_overlay(r.request.image, MASK))


def test_buttons_signals_set_history_and_clear(panel: ResultsPanel, qtbot) -> None:
    assert not panel.export_button.isEnabled() and not panel.rerun_button.isEnabled()
    r1, r2 = make_result(1, "a"), make_result(2, "b", mode="latent")
    panel.set_history([r1, r2])
    assert panel.history() == [r1, r2] and panel.current_result() is r2
    assert panel.history_list.item(1).text().startswith("#2  b  · latent · seed 2")
    with qtbot.waitSignal(panel.rerunRequested) as blocker:
        panel.rerun_button.click()
    assert blocker.args == [r2.request.params]
    with qtbot.waitSignal(panel.exportRequested):
        panel.export_button.click()
    panel.clear()
    assert panel.history() == [] and panel.current_result() is None
    assert panel.history_list.count() == 0 and panel.metrics_table.rowCount() == 0
    assert not panel.views["blended"].has_image()
    assert not panel.export_button.isEnabled()
