"""blend.composite's copy and formula paths (issue 20): each mask kind equals the whole-image formula."""

from __future__ import annotations

import numpy as np
import pytest

from maskpix_desktop.core import blend, masks

H, W = 48, 80


def _formula(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The definition: ``orig + M*(edit - orig)`` in float32 on every pixel, M = masks.as_float(mask)."""
    m = masks.as_float(mask)
    o = orig.astype(np.float32)
    return np.clip(np.rint(o + m[..., None] * (edit.astype(np.float32) - o)), 0, 255).astype(np.uint8)


@pytest.fixture()
def pair(rng_image):
    return rng_image(H, W, seed=3), rng_image(H, W, seed=4)


@pytest.mark.parametrize("chunk", [1 << 20, 5 * W])
def test_composite_wide_soft_band_takes_the_dense_path_bit_for_bit(pair, monkeypatch, chunk):
    """A mask soft almost everywhere (feathered interior at 0.99999994) runs the formula per chunk."""
    monkeypatch.setattr(blend, "_CHUNK_PIXELS", chunk)
    orig, edit = pair
    m = np.random.default_rng(0).random((H, W), dtype=np.float32)
    m[:, :7] = 0.0
    m[:, -5:] = 1.0
    m[3, 10] = np.float32(1.0) - np.float32(2.0**-24)
    out = blend.composite(orig, edit, m)
    np.testing.assert_array_equal(out, _formula(orig, edit, m))
    np.testing.assert_array_equal(out[:, :7], orig[:, :7])
    np.testing.assert_array_equal(out[:, -5:], edit[:, -5:])


def test_composite_uint8_soft_mask_scales_by_255_like_as_float(pair):
    orig, edit = pair
    m = np.zeros((H, W), np.uint8)
    m[10:30, 20:60] = 255
    m[10:30, 20:24] = (64, 128, 191, 254)
    np.testing.assert_array_equal(blend.composite(orig, edit, m), _formula(orig, edit, m))


def test_composite_integer_zero_one_mask_is_hard(pair):
    orig, edit = pair
    m = np.zeros((H, W), np.int32)
    m[5:9, 5:50] = 1
    out = blend.composite(orig, edit, m)
    np.testing.assert_array_equal(out[m == 1], edit[m == 1])
    np.testing.assert_array_equal(out[m == 0], orig[m == 0])


def test_composite_nan_and_out_of_range_floats_follow_as_float(pair):
    """NaN counts as 0 (the original), values above 1 as 1 and below 0 as 0, as masks.as_float clips."""
    orig, edit = pair
    m = np.zeros((H, W), np.float64)
    m[0:10] = np.nan
    m[10:20] = 3.5
    m[20:30] = -2.0
    m[30:40] = np.inf
    m[40:42] = 0.25
    out = blend.composite(orig, edit, m)
    np.testing.assert_array_equal(out, _formula(orig, edit, m))
    np.testing.assert_array_equal(out[0:10], orig[0:10])
    np.testing.assert_array_equal(out[10:20], edit[10:20])
    np.testing.assert_array_equal(out[30:40], edit[30:40])


def test_composite_bool_mask_in_chunks_and_non_contiguous_inputs(pair, monkeypatch):
    monkeypatch.setattr(blend, "_CHUNK_PIXELS", 3 * W)
    orig, edit = pair
    m = np.zeros((H, W), bool)
    m[7:40:3, 11:70:2] = True
    m_f = np.asfortranarray(m)
    edit_view = np.asfortranarray(edit)
    out = blend.composite(orig, edit_view, m_f)
    np.testing.assert_array_equal(out[m], edit[m])
    np.testing.assert_array_equal(out[~m], orig[~m])


def test_composite_does_not_modify_its_inputs(pair):
    orig, edit = pair
    o0, e0 = orig.copy(), edit.copy()
    m = blend.prepare_mask(np.pad(np.ones((20, 40), bool), ((14, 14), (20, 20))), feather=2.0)
    m0 = m.copy()
    blend.composite(orig, edit, m)
    np.testing.assert_array_equal(orig, o0)
    np.testing.assert_array_equal(edit, e0)
    np.testing.assert_array_equal(m, m0)
