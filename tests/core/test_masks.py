"""Tests for maskpix_desktop.core.masks: exact pixel behaviour of the mask toolkit."""

from __future__ import annotations

import numpy as np
import pytest

from maskpix_desktop.core import masks


def _point(h: int = 15, w: int = 15) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[h // 2, w // 2] = True
    return m


# ------------------------------------------------------------------------------------------ conversion


def test_as_bool_and_as_float_conventions() -> None:
    b = np.array([[True, False]])
    assert masks.as_bool(b) is b
    assert masks.as_float(b).dtype == np.float32
    assert masks.as_float(b).tolist() == [[1.0, 0.0]]
    u255 = np.array([[0, 127, 128, 255]], np.uint8)
    assert masks.as_bool(u255).tolist() == [[False, False, True, True]]
    u01 = np.array([[0, 1]], np.uint8)
    assert masks.as_bool(u01).tolist() == [[False, True]]
    f = np.array([[0.5, 0.51, -3.0, 7.0]], np.float64)
    assert masks.as_bool(f).tolist() == [[False, True, False, True]]
    assert masks.as_float(f).tolist() == [[0.5, pytest.approx(0.51), 0.0, 1.0]]
    assert masks.as_bool(f, threshold=0.0).tolist() == [[True, True, False, True]]
    with pytest.raises(ValueError):
        masks.as_bool(np.zeros((2, 2, 3), bool))


# ---------------------------------------------------------------------------------------------- resize


def test_resize_nearest_bool_keeps_bool_and_duplicates_pixels() -> None:
    m = np.array([[True, False], [False, True]])
    up = masks.resize_mask(m, (4, 4))
    assert up.dtype == bool
    expected = np.kron(m.astype(int), np.ones((2, 2), int)).astype(bool)
    np.testing.assert_array_equal(up, expected)
    down = masks.resize_mask(expected, (2, 2))
    np.testing.assert_array_equal(down, m)


def test_resize_nearest_float_keeps_float_and_same_size_copies() -> None:
    f = np.array([[0.25, 0.75]], np.float32)
    out = masks.resize_mask(f, (1, 4))
    assert out.dtype == np.float32
    assert out.tolist() == [[0.25, 0.25, 0.75, 0.75]]
    same = masks.resize_mask(f, (1, 2))
    assert same is not f and same.dtype == np.float32
    np.testing.assert_array_equal(same, f)
    b = np.array([[True, False]])
    same_area = masks.resize_mask(b, (1, 2), mode="area")
    assert same_area.dtype == np.float32 and same_area.tolist() == [[1.0, 0.0]]


def test_resize_area_gives_exact_coverage_fractions() -> None:
    checker = (np.indices((8, 6)).sum(axis=0) % 2).astype(bool)
    half = masks.resize_mask(checker, (4, 3), mode="area")
    assert half.dtype == np.float32
    np.testing.assert_array_equal(half, np.full((4, 3), 0.5, np.float32))
    m = np.zeros((4, 4), bool)
    m[0, 0] = True
    m[2:4, 2:4] = True
    m[2, 0] = True
    m[3, 0] = True
    m[2, 1] = True
    quarter = masks.resize_mask(m, (2, 2), mode="area")
    np.testing.assert_array_equal(quarter, np.array([[0.25, 0.0], [0.75, 1.0]], np.float32))


def test_resize_bilinear_is_float_and_rejects_unknown_mode() -> None:
    m = np.zeros((4, 4), bool)
    m[:, 2:] = True
    out = masks.resize_mask(m, (8, 8), mode="bilinear")
    assert out.dtype == np.float32
    assert out[:, 0].max() == 0.0 and out[:, -1].min() == 1.0
    assert 0.0 < out[0, 4] < 1.0
    with pytest.raises(ValueError):
        masks.resize_mask(m, (2, 2), mode="cubic")


# ---------------------------------------------------------------------------------------- morphology


@pytest.mark.parametrize("radius, count", [(1, 9), (2, 21), (3, 37)])
def test_dilate_single_pixel_gives_the_disc(radius: int, count: int) -> None:
    out = masks.dilate(_point(), radius)
    assert out.dtype == bool
    assert int(out.sum()) == count
    yy, xx = np.mgrid[:15, :15] - 7
    np.testing.assert_array_equal(out, xx * xx + yy * yy <= radius * radius + radius)


def test_dilate_radius_two_exact_shape() -> None:
    out = masks.dilate(_point(5, 5), 2)
    expected = np.array(
        [
            [0, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
            [0, 1, 1, 1, 0],
        ],
        bool,
    )
    np.testing.assert_array_equal(out, expected)


def test_large_radius_distance_path_matches_kernel_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    m = rng.random((60, 70)) > 0.97
    for radius in (9, 12):
        fast = masks.dilate(m, radius)
        fast_e = masks.erode(~m, radius)
        monkeypatch.setattr(masks, "_KERNEL_MAX_RADIUS", 100)
        slow = masks.dilate(m, radius)
        slow_e = masks.erode(~m, radius)
        monkeypatch.setattr(masks, "_KERNEL_MAX_RADIUS", 8)
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(fast_e, slow_e)
        assert fast.sum() > m.sum()


def test_erode_is_exact_and_border_does_not_erode() -> None:
    disc = masks.dilate(_point(), 3)
    np.testing.assert_array_equal(masks.erode(disc, 3), _point())
    square = np.zeros((12, 12), bool)
    square[2:10, 2:10] = True
    inner = np.zeros((12, 12), bool)
    inner[3:9, 3:9] = True
    np.testing.assert_array_equal(masks.erode(square, 1), inner)
    full = np.ones((6, 6), bool)
    full[3, 3] = False
    eroded = masks.erode(full, 1)
    assert eroded[0, 0] and eroded[5, 0] and eroded[0, 5]
    assert int((~eroded).sum()) == 9 and not eroded[2:5, 2:5].any()


def test_radius_zero_copies_and_negative_radius_swaps() -> None:
    m = masks.dilate(_point(), 2)
    same = masks.dilate(m, 0)
    assert same is not m
    np.testing.assert_array_equal(same, m)
    np.testing.assert_array_equal(masks.dilate(m, -1), masks.erode(m, 1))
    np.testing.assert_array_equal(masks.erode(_point(), -2), m)


def test_feather_sigma_zero_is_exact_and_blur_is_symmetric() -> None:
    m = np.zeros((41, 41), bool)
    m[10:31, 10:31] = True
    hard = masks.feather(m, 0)
    assert hard.dtype == np.float32
    np.testing.assert_array_equal(hard, m.astype(np.float32))
    assert masks.feather(m, -1.0).tolist() == hard.tolist()
    soft = masks.feather(m, 1.5)
    assert soft.dtype == np.float32
    assert 0.0 < soft[20, 9] < 0.5 < soft[20, 10] < 1.0
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    assert soft[20, 20] == pytest.approx(1.0, abs=1e-6)
    assert soft[0, 0] == 0.0 and soft[20, 2] == 0.0  # beyond the kernel's reach nothing leaks
    np.testing.assert_allclose(soft, soft.T, atol=1e-7)
    np.testing.assert_allclose(soft, soft[::-1, ::-1], atol=1e-7)


# ------------------------------------------------------------------------------------------ set logic


def test_fill_holes_fills_a_ring_but_not_an_open_ring() -> None:
    ring = np.zeros((10, 10), bool)
    ring[2:8, 2:8] = True
    ring[4:6, 4:6] = False
    filled = masks.fill_holes(ring)
    expected = np.zeros((10, 10), bool)
    expected[2:8, 2:8] = True
    np.testing.assert_array_equal(filled, expected)
    open_ring = ring.copy()
    open_ring[4, 2:4] = False  # a channel from the hole to the outside
    np.testing.assert_array_equal(masks.fill_holes(open_ring), open_ring)
    edge = np.zeros((5, 5), bool)
    edge[:, 1] = True
    np.testing.assert_array_equal(masks.fill_holes(edge), edge)  # border-touching background stays


def test_fill_holes_diagonal_gap_is_still_a_hole() -> None:
    m = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 1, 0, 1, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        bool,
    )
    out = masks.fill_holes(m)
    assert out[2, 2]
    assert int(out.sum()) == int(m.sum()) + 1


def test_invert_union_intersect_subtract() -> None:
    a = np.array([[True, True, False, False]])
    b = np.array([[True, False, True, False]])
    assert masks.invert(a).tolist() == [[False, False, True, True]]
    assert masks.union(a, b).tolist() == [[True, True, True, False]]
    assert masks.intersect(a, b).tolist() == [[True, False, False, False]]
    assert masks.subtract(a, b).tolist() == [[False, True, False, False]]
    f = np.array([[0.25, 1.0, 0.0, 0.5]], np.float32)
    assert masks.invert(f).tolist() == [[0.75, 0.0, 1.0, 0.5]]
    assert masks.union(a, f).tolist() == [[1.0, 1.0, 0.0, 0.5]]
    assert masks.intersect(a, f).tolist() == [[0.25, 1.0, 0.0, 0.0]]
    assert masks.subtract(a, f).tolist() == [[0.75, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError):
        masks.union(a, np.zeros((2, 2), bool))


def test_area_bbox_and_remove_small() -> None:
    m = np.zeros((10, 12), bool)
    assert masks.bbox(m) is None and masks.area(m) == 0
    m[2:4, 3:5] = True  # 4 px
    m[6:10, 6:11] = True  # 20 px
    m[0, 11] = True
    m[1, 10] = True  # diagonal pair: one 8-connected component of 2
    assert masks.area(m) == 26
    assert masks.bbox(m) == (3, 0, 12, 10)
    kept = masks.remove_small(m, 5)
    expected = np.zeros_like(m)
    expected[6:10, 6:11] = True
    np.testing.assert_array_equal(kept, expected)
    kept3 = masks.remove_small(m, 3)
    assert kept3[2:4, 3:5].all() and not kept3[0, 11] and not kept3[1, 10]
    np.testing.assert_array_equal(masks.remove_small(m, 1), m)


def test_padded_bbox_clamps_and_is_multiple_of_8() -> None:
    m = np.zeros((100, 100), bool)
    m[90:96, 2:6] = True
    box = masks.padded_bbox(m)
    assert box == (0, 36, 64, 100)
    assert masks.padded_bbox(np.zeros((5, 5), bool)) is None


def test_padded_bbox_large_object_and_image_too_small_for_multiple() -> None:
    m = np.zeros((100, 90), bool)
    m[5:95, 3:87] = True
    box = masks.padded_bbox(m)
    assert box == (1, 2, 89, 98)
    x0, y0, x1, y1 = box
    assert (x1 - x0) % 8 == 0 and (y1 - y0) % 8 == 0
    wide = np.zeros((40, 70), bool)
    wide[10:20, 0:70] = True
    assert masks.padded_bbox(wide) == (0, 0, 70, 40)  # 72 does not fit, 64 cannot hold the mask


def test_padded_bbox_always_contains_the_mask() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        h, w = rng.integers(8, 200, size=2)
        m = np.zeros((h, w), bool)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : y0 + rng.integers(1, 60), x0 : x0 + rng.integers(1, 60)] = True
        tx0, ty0, tx1, ty1 = masks.bbox(m)
        px0, py0, px1, py1 = masks.padded_bbox(m, pad=float(rng.random()), min_size=int(rng.integers(0, 100)))
        assert 0 <= px0 <= tx0 and tx1 <= px1 <= w
        assert 0 <= py0 <= ty0 and ty1 <= py1 <= h
        assert (px1 - px0) % 8 == 0 or px1 - px0 == w
        assert (py1 - py0) % 8 == 0 or py1 - py0 == h


# ------------------------------------------------------------------------------------------------ RLE


def test_rle_encode_exact_counts() -> None:
    m = np.array([[0, 1, 1], [1, 0, 0]], bool)
    assert masks.rle_encode(m) == {"size": [2, 3], "counts": [1, 3, 2]}
    first_set = np.array([[1, 1], [0, 1]], bool)
    assert masks.rle_encode(first_set) == {"size": [2, 2], "counts": [0, 2, 1, 1]}
    assert masks.rle_encode(np.zeros((2, 2), bool))["counts"] == [4]
    assert masks.rle_encode(np.ones((2, 2), bool))["counts"] == [0, 4]


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 48), (3, 200)])
def test_rle_round_trip_random(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.1, 0.5, 0.9, 1.0):
        m = rng.random(shape) < density
        rle = masks.rle_encode(m)
        assert sum(rle["counts"]) == m.size
        back = masks.rle_decode(rle)
        assert back.dtype == bool
        np.testing.assert_array_equal(back, m)
        pairs = masks.pie_rle_encode(m)
        np.testing.assert_array_equal(masks.pie_rle_decode(pairs, shape), m)


def test_rle_decode_rejects_wrong_total() -> None:
    with pytest.raises(ValueError):
        masks.rle_decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError):
        masks.rle_decode({"size": [2, 2], "counts": [5, -1]})


def test_pie_rle_exact_format_and_reference_quirks() -> None:
    m = np.array([[0, 1, 1], [1, 0, 1]], bool)
    assert masks.pie_rle_encode(m) == [1, 3, 5, 1]
    clipped = masks.pie_rle_decode([4, 10], (2, 3))  # a run past the end is clipped
    assert clipped.tolist() == [[False, False, False], [False, True, True]]
    default = masks.pie_rle_decode([5, 1], (3, 4))
    assert int(default.sum()) == 1 and default[1, 1]
    bordered = masks.pie_rle_decode([5, 1], (3, 4), mark_border=True)
    expected = np.ones((3, 4), bool)
    expected[1, 2] = False
    np.testing.assert_array_equal(bordered, expected)
    assert masks.pie_rle_decode([], (512, 512)).shape == (512, 512)
    with pytest.raises(ValueError):
        masks.pie_rle_decode([1, 2, 3], (4, 4))
