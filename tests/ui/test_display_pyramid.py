"""Display pyramids (issue 20): fitted views convert a screen-sized level, 1:1 zoom shows full resolution."""

from __future__ import annotations

import numpy as np
import pytest

from maskpix_desktop.core.export import mask_overlay
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult
from maskpix_desktop.ui import display_levels as dl
from maskpix_desktop.ui.qimage import from_qimage
from maskpix_desktop.ui.results import ResultsPanel, heatmap_pyramid
from maskpix_desktop.ui.synced_view import SyncedImageView, ViewSync

BIG_H, BIG_W = 1200, 1800  # larger than any test view: fitting shows a reduced level


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pixels(view: SyncedImageView) -> np.ndarray:
    return from_qimage(view.pixmap_item.pixmap().toImage())


@pytest.fixture
def view(qtbot) -> SyncedImageView:
    v = SyncedImageView("test")
    qtbot.addWidget(v)
    v.resize(400, 300)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_level_sizes_round_up_and_stop_at_the_minimum_long_side():
    assert dl.level_size((1200, 1801), 0) == (1200, 1801)
    assert dl.level_size((1200, 1801), 1) == (600, 901)
    assert dl.level_size((1200, 1801), 3) == (150, 226)
    assert dl.max_level((48, 64)) == 0
    assert dl.max_level((1200, 1800)) == 4  # 1800 / 16 = 112.5 >= 64; / 32 < 64


def test_choose_level_is_the_coarsest_with_enough_samples():
    size = (4000, 6000)
    assert dl.choose_level(size, 1.0) == 0
    assert dl.choose_level(size, 0.6) == 0
    assert dl.choose_level(size, 0.5) == 1
    assert dl.choose_level(size, 0.3) == 1
    assert dl.choose_level(size, 0.25) == 2
    assert dl.choose_level(size, 1e-6) == dl.max_level(size)


def test_reduce_area_level_zero_is_the_image_itself_and_levels_average():
    img = _image(64, 96)
    assert dl.reduce_area(img, 0) is img
    half = dl.reduce_area(img, 1)
    assert half.shape == (32, 48, 3)
    block = img[:2, :2].astype(np.float64).mean(axis=(0, 1))
    np.testing.assert_allclose(half[0, 0], block, atol=1.0)


def test_reduce_max_keeps_a_single_bright_pixel_visible():
    img = np.zeros((100, 130, 3), np.uint8)
    img[57, 93] = (255, 200, 10)
    level = dl.reduce_max(img, 3)
    assert level.shape == (13, 17, 3)
    np.testing.assert_array_equal(level[57 // 8, 93 // 8], (255, 200, 10))
    assert int(level.sum()) == 255 + 200 + 10
    edge = np.zeros((100, 130), np.uint8)
    edge[99, 129] = 9  # in the padded last block
    assert dl.reduce_max(edge, 3)[-1, -1] == 9


def test_pyramid_builds_levels_lazily_and_caches_them():
    calls: list[int] = []
    img = _image(256, 256)

    def make(k: int) -> np.ndarray:
        calls.append(k)
        return dl.reduce_area(img, k)

    pyr = dl.Pyramid(img.shape[:2], make)
    assert pyr.built() == []
    assert pyr.level(1).shape == (128, 128, 3)
    pyr.level(1)
    assert calls == [1] and pyr.built() == [1]
    assert pyr.level(99).shape[:2] == dl.level_size(img.shape[:2], pyr.max_level)  # clamped


def test_overlay_pyramid_level_zero_equals_mask_overlay_and_coarse_levels_are_close():
    img = _image(256, 384, seed=1)
    mask = np.zeros((256, 384), bool)
    mask[40:200, 100:300] = True
    pyr = dl.overlay_pyramid(dl.Pyramid.of_image(img), mask)
    np.testing.assert_array_equal(pyr.level(0), mask_overlay(img, mask))
    coarse = pyr.level(2).astype(np.int16)
    expected = dl.reduce_area(mask_overlay(img, mask), 2).astype(np.int16)
    assert np.abs(coarse - expected).max() <= 2
    soft = np.clip(mask.astype(np.float32) * 0.7, 0, 1)
    soft_pyr = dl.overlay_pyramid(dl.Pyramid.of_image(img), soft)
    np.testing.assert_array_equal(soft_pyr.level(0), mask_overlay(img, soft))


def test_fitted_view_converts_a_reduced_level_not_the_full_image(view):
    img = _image(BIG_H, BIG_W)
    pyr = dl.Pyramid.of_image(img)
    view.set_pyramid(pyr)
    assert view.image_size() == (BIG_H, BIG_W)
    assert view.shown_level() >= 1
    assert 0 not in pyr.built()
    pix = view.pixmap_item.pixmap()
    assert (pix.height(), pix.width()) == dl.level_size((BIG_H, BIG_W), view.shown_level())
    # the scene stays in full-size pixels: the reduced pixmap is scaled back up
    rect = view.pixmap_item.sceneBoundingRect()
    assert rect.width() == pytest.approx(BIG_W) and rect.height() == pytest.approx(BIG_H)
    assert view.sceneRect().width() == BIG_W and view.sceneRect().height() == BIG_H


def test_zoom_to_one_to_one_shows_full_resolution_and_zoom_out_returns_to_a_level(view):
    img = _image(BIG_H, BIG_W, seed=2)
    view.set_image(img)
    fitted = view.transform().m11()
    assert fitted < 0.5 and view.shown_level() >= 1
    view.zoom(1.0 / fitted)  # 1:1
    assert view.transform().m11() == pytest.approx(1.0)
    assert view.shown_level() == 0
    np.testing.assert_array_equal(_pixels(view), img)
    view.zoom(0.4)
    assert view.shown_level() == 1
    view.fit()
    assert view.shown_level() == dl.choose_level((BIG_H, BIG_W), view.transform().m11())


def test_small_images_are_shown_at_full_size(view):
    img = _image(48, 64, seed=3)
    view.set_image(img)
    assert view.shown_level() == 0
    np.testing.assert_array_equal(_pixels(view), img)


def test_synced_views_follow_the_zoomed_view_to_full_resolution(qtbot):
    views = [SyncedImageView(str(i)) for i in range(2)]
    for v in views:
        qtbot.addWidget(v)
        v.resize(300, 200)
        v.show()
    ViewSync(views)
    a, b = _image(BIG_H, BIG_W, 4), _image(BIG_H, BIG_W, 5)
    views[0].set_image(a)
    views[1].set_image(b)
    views[0].sync.fit_all()
    assert views[0].shown_level() >= 1 and views[1].shown_level() >= 1
    views[0].zoom(1.0 / views[0].transform().m11())
    assert views[1].transform() == views[0].transform()
    assert views[1].shown_level() == 0
    np.testing.assert_array_equal(_pixels(views[1]), b)


def test_heatmap_pyramid_computes_the_full_heatmap_once_and_max_pools():
    orig = np.zeros((512, 768, 3), np.uint8)
    edited = orig.copy()
    edited[300, 400] = 255  # a single leaking pixel
    pyr = heatmap_pyramid(orig, edited, None)
    assert pyr.built() == []
    coarse = pyr.level(3)
    assert coarse.shape == (64, 96, 3)
    assert coarse[300 // 8, 400 // 8].max() > 200  # still bright at 1/8 scale
    assert pyr.level(0)[300, 400].max() > 200


def _result(image: np.ndarray, seed: int) -> EditResult:
    h, w = image.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 2, w // 4 : w // 2] = True
    baseline = np.clip(image.astype(np.int16) + 30 + seed, 0, 255).astype(np.uint8)
    return EditResult(
        request=EditRequest(image=image, mask=mask, params=EditParams(instruction="x", seed=seed)),
        baseline=baseline,
        blended=np.where(mask[..., None], baseline, image),
        edit=baseline,
        mask_used=mask,
        working_size=(h, w),
    )


def test_panel_reuses_the_original_levels_across_results_of_the_same_image(qtbot):
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 600)
    panel.show()
    qtbot.waitExposed(panel)
    img = _image(BIG_H, BIG_W, 6)
    panel.add_result(_result(img, 1))
    orig_pyr = panel.views["original"]._pyramid
    mask_pyr = panel.views["mask"]._pyramid
    panel.add_result(_result(img, 2))
    assert panel.views["original"]._pyramid is orig_pyr
    for name in ("original", "mask", "baseline", "blended"):
        assert panel.views[name].shown_level() >= 1, name
    assert 0 not in orig_pyr.built() and 0 not in mask_pyr.built()
    panel.add_result(_result(_image(BIG_H, BIG_W, 7), 3))  # a new photo: new levels
    assert panel.views["original"]._pyramid is not orig_pyr
    panel.set_change_map_visible(True)
    assert panel.views["mask"].shown_level() >= 1
