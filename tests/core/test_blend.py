"""Compositing maths (docs/MATHS.md): pixel composite, mask preparation, latent blend, crop, seams."""

from __future__ import annotations

import math
import types

import cv2
import numpy as np
import pytest
import torch

from maskpix_desktop.core import blend, masks

H, W = 64, 96


@pytest.fixture()
def pair(rng_image):
    """(orig, edit): two unrelated images of the same size."""
    return rng_image(H, W, seed=1), rng_image(H, W, seed=2)


def _rect_mask(h: int = H, w: int = W, y0: int = 16, y1: int = 48, x0: int = 24, x1: int = 72) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# ----------------------------------------------------------------------------------------- composite


def test_composite_hard_mask_is_exact_inside_and_outside(pair):
    orig, edit = pair
    m = _rect_mask()
    m[5, 5] = True  # an isolated pixel too
    out = blend.composite(orig, edit, m)
    assert out.dtype == np.uint8 and out.shape == orig.shape
    np.testing.assert_array_equal(out[~m], orig[~m])
    np.testing.assert_array_equal(out[m], edit[m])


def test_composite_float_and_uint8_hard_masks_match_bool(pair):
    orig, edit = pair
    m = _rect_mask()
    ref = blend.composite(orig, edit, m)
    np.testing.assert_array_equal(blend.composite(orig, edit, m.astype(np.float32)), ref)
    np.testing.assert_array_equal(blend.composite(orig, edit, m.astype(np.uint8) * 255), ref)


def test_composite_all_ones_and_all_zeros(pair):
    orig, edit = pair
    np.testing.assert_array_equal(blend.composite(orig, edit, np.ones((H, W), bool)), edit)
    np.testing.assert_array_equal(blend.composite(orig, edit, np.ones((H, W), np.float32)), edit)
    np.testing.assert_array_equal(blend.composite(orig, edit, np.zeros((H, W), bool)), orig)
    np.testing.assert_array_equal(blend.composite(orig, edit, np.zeros((H, W), np.float32)), orig)


def test_composite_half_mask_is_rounded_mean(pair):
    orig, edit = pair
    out = blend.composite(orig, edit, np.full((H, W), 0.5, np.float32))
    mean = (orig.astype(np.float64) + edit.astype(np.float64)) / 2.0
    np.testing.assert_array_equal(out, np.rint(mean).astype(np.uint8))
    # Sanity: halves really occur, so the rounding rule is exercised.
    assert ((orig.astype(int) + edit.astype(int)) % 2 == 1).any()


def test_composite_rejects_shape_mismatches(pair):
    orig, edit = pair
    m = np.ones((H, W), bool)
    with pytest.raises(ValueError, match="image shapes differ"):
        blend.composite(orig, edit[:, :-1], m)
    with pytest.raises(ValueError, match="mask shape"):
        blend.composite(orig, edit, m[:-1])
    with pytest.raises(ValueError):
        blend.composite(orig, edit, np.ones((H, W, 1), bool))


@pytest.mark.parametrize("chunk", [1 << 20, 7 * W])  # one chunk; 7-row chunks (a partial last one)
def test_composite_soft_mask_is_bit_identical_to_the_full_image_formula(pair, monkeypatch, chunk):
    """Bit for bit the full-image float32 formula, whichever pixels take the copy path."""
    monkeypatch.setattr(blend, "_CHUNK_PIXELS", chunk)
    orig, edit = pair
    soft = blend.prepare_mask(_rect_mask(), dilate=2, feather=3.0)
    assert ((soft > 0) & (soft < 1)).any() and (soft == 1).any() and (soft == 0).any()
    o = orig.astype(np.float32)
    formula = o + soft[..., None] * (edit.astype(np.float32) - o)
    expected = np.clip(np.rint(formula), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(blend.composite(orig, edit, soft), expected)
    np.testing.assert_array_equal(blend.composite(orig, edit, np.ascontiguousarray(soft.T).T), expected)


# -------------------------------------------------------------------------------------- prepare_mask


def test_prepare_mask_without_feather_stays_hard():
    m = _rect_mask()
    plain = blend.prepare_mask(m)
    assert plain.dtype == np.float32
    np.testing.assert_array_equal(plain, m.astype(np.float32))

    grown = blend.prepare_mask(m, dilate=3, feather=0.0)
    assert set(np.unique(grown).tolist()) == {0.0, 1.0}
    assert (grown[m] == 1.0).all()
    assert grown.sum() > m.sum()
    np.testing.assert_array_equal(grown > 0, masks.dilate(m, 3))


def test_prepare_mask_feather_is_soft_near_the_edge_only():
    m = _rect_mask()
    sigma = 2.0
    soft = blend.prepare_mask(m, feather=sigma)
    assert soft.dtype == np.float32
    assert soft.min() >= 0.0 and soft.max() <= 1.0

    # The Gaussian kernel reaches ~4 sigma along each axis (square support): far pixels are unchanged.
    r = math.ceil(4 * sigma) + 1
    square = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    outer = cv2.dilate(m.view(np.uint8), square).astype(bool)
    inner = ~cv2.dilate((~m).view(np.uint8), square).astype(bool)
    band = outer & ~inner
    between = (soft > 0) & (soft < 1)
    assert between.any()
    assert not (between & ~band).any(), "soft values appear far from the mask edge"
    np.testing.assert_array_equal(soft[~outer], 0.0)
    np.testing.assert_array_equal(soft[inner], 1.0)

    # Right at the edge the mask is strictly between 0 and 1, on both sides of it.
    edge_in = m & ~masks.erode(m, 1)
    edge_out = masks.dilate(m, 1) & ~m
    assert ((soft[edge_in] > 0.05) & (soft[edge_in] < 0.95)).all()
    assert ((soft[edge_out] > 0.05) & (soft[edge_out] < 0.95)).all()


def test_prepare_mask_dilate_then_feather_covers_the_dilated_mask():
    m = _rect_mask()
    soft = blend.prepare_mask(m, dilate=4, feather=1.5)
    assert (soft[m] > 0.99).all()
    assert (soft[masks.dilate(m, 4)] > 0.3).all()


# ----------------------------------------------------------------------------------------- latent blend


def _euler_ancestral(steps: int = 5):
    from diffusers import EulerAncestralDiscreteScheduler

    sched = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    sched.set_timesteps(steps)
    return sched


def _latent_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(1, 4, 8, 12, generator=g)
    noise = torch.randn(1, 4, 8, 12, generator=g)
    lat = torch.randn(1, 4, 8, 12, generator=g) * 3.0
    m = np.zeros((8, 12), np.float32)
    m[2:6, 3:9] = 1.0
    m[2:6, 9] = 0.5  # a soft column: neither pinned nor untouched
    return src, noise, lat, m


@pytest.mark.parametrize("i", [0, 1, 2, 3])
def test_latent_blender_pins_background_to_noised_source(i):
    sched = _euler_ancestral(5)
    pipe = types.SimpleNamespace(scheduler=sched)
    src, noise, lat, m = _latent_case(i)
    seen = []

    def inner(p, step, t, kwargs):
        seen.append((step, kwargs["latents"].clone()))
        return {"prompt_embeds": "kept"}

    blender = blend.LatentBlender(src, noise, m, inner=inner)
    timesteps = sched.timesteps
    out = blender(pipe, i, timesteps[i], {"latents": lat.clone()})

    expected_bg = sched.add_noise(src, noise, timesteps[i + 1 : i + 2])
    assert not torch.equal(expected_bg, src)
    res = out["latents"]
    zero = torch.from_numpy(m == 0)[None, None].expand_as(res)
    one = torch.from_numpy(m == 1)[None, None].expand_as(res)
    assert torch.equal(res[zero], expected_bg[zero])
    assert torch.equal(res[one], lat[one])
    half = torch.from_numpy(m == 0.5)[None, None].expand_as(res)
    torch.testing.assert_close(res[half], 0.5 * lat[half] + 0.5 * expected_bg[half])

    assert blender.final is res
    assert out["prompt_embeds"] == "kept"  # the inner callback's outputs are passed through
    assert len(seen) == 1 and seen[0][0] == i and torch.equal(seen[0][1], lat)


def test_latent_blender_last_step_is_the_source():
    sched = _euler_ancestral(5)
    pipe = types.SimpleNamespace(scheduler=sched)
    src, noise, lat, m = _latent_case(9)
    blender = blend.LatentBlender(src, noise, m)
    last = len(sched.timesteps) - 1
    res = blender(pipe, last, sched.timesteps[last], {"latents": lat.clone()})["latents"]
    zero = torch.from_numpy(m == 0)[None, None].expand_as(res)
    one = torch.from_numpy(m == 1)[None, None].expand_as(res)
    assert torch.equal(res[zero], src[zero])
    assert torch.equal(res[one], lat[one])
    assert torch.equal(blender.final, res)


def test_latent_mask_is_area_fraction_downsample():
    m = np.zeros((64, 64), bool)
    m[0:8, 0:8] = True  # cell (0, 0): full
    m[0:8, 8:12] = True  # cell (0, 1): half
    m[8:12, 0:4] = True  # cell (1, 0): quarter
    m[9, 9] = True  # cell (1, 1): one pixel of 64
    m[16:24, 16:20] = True  # cell (2, 2): half
    got = blend.latent_mask(m, (8, 8), dilate_px=0)
    expected = np.zeros((8, 8), np.float32)
    expected[0, 0], expected[0, 1], expected[1, 0], expected[1, 1], expected[2, 2] = 1, 0.5, 0.25, 1 / 64, 0.5
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_latent_mask_dilation_grows_coverage():
    m = np.zeros((64, 64), bool)
    m[24:40, 24:40] = True
    plain = blend.latent_mask(m, (8, 8), dilate_px=0)
    grown = blend.latent_mask(m, (8, 8), dilate_px=8)
    assert (grown >= plain).all() and grown.sum() > plain.sum()
    np.testing.assert_array_equal(grown, masks.resize_mask(masks.dilate(m, 8), (8, 8), mode="area"))


# ---------------------------------------------------------------------------------------------- crop


def test_crop_window_contains_mask_and_round_trips(rng_image):
    img = rng_image(H, W, seed=3)
    m = np.zeros((H, W), bool)
    m[30:38, 50:61] = True
    win = blend.CropWindow.around(m, pad=0.15)
    assert win is not None
    x0, y0, x1, y1 = masks.bbox(m)
    assert win.x0 <= x0 and win.y0 <= y0 and win.x1 >= x1 and win.y1 >= y1
    assert 0 <= win.x0 < win.x1 <= W and 0 <= win.y0 < win.y1 <= H
    assert win.size == (win.y1 - win.y0, win.x1 - win.x0)
    assert win.size[0] % 8 == 0 and win.size[1] % 8 == 0
    assert win.size != (H, W)  # a small mask gives a real crop

    patch = win.cut(img)
    assert patch.shape == (*win.size, 3) and patch.flags.c_contiguous
    np.testing.assert_array_equal(win.paste(img, patch), img)
    np.testing.assert_array_equal(win.cut(m), m[win.y0 : win.y1, win.x0 : win.x1])

    other = rng_image(*win.size, seed=4)
    pasted = win.paste(img, other)
    np.testing.assert_array_equal(win.cut(pasted), other)
    outside = np.ones((H, W), bool)
    outside[win.y0 : win.y1, win.x0 : win.x1] = False
    np.testing.assert_array_equal(pasted[outside], img[outside])
    np.testing.assert_array_equal(win.cut(img), patch)  # paste does not modify its input


def test_crop_window_of_empty_mask_is_none():
    assert blend.CropWindow.around(np.zeros((H, W), bool)) is None


# -------------------------------------------------------------------------------------------- poisson


def test_poisson_seam_only_changes_the_mask_box(pair):
    orig, other = pair
    m = _rect_mask(y0=20, y1=40, x0=30, x1=60)
    comp = blend.composite(orig, other, m)
    out = blend.poisson_seam(orig, comp, m)
    assert out.shape == orig.shape and out.dtype == np.uint8
    x0, y0, x1, y1 = masks.bbox(m)
    outside = np.ones((H, W), bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], orig[outside])
    assert (out[m] != comp[m]).any()  # it really blended


def test_poisson_seam_in_rgb_equals_opencvs_bgr_clone(pair):
    """The solve is per channel: cloning RGB directly gives exactly the BGR round trip it replaced."""
    orig, other = pair
    soft = blend.prepare_mask(_rect_mask(y0=12, y1=50, x0=20, x1=70), feather=2.0)
    comp = blend.composite(orig, other, soft)
    hard = masks.as_bool(soft, threshold=0.01).copy()
    hard[[0, -1], :] = False
    hard[:, [0, -1]] = False
    x0, y0, x1, y1 = masks.bbox(hard)
    bgr = cv2.seamlessClone(
        np.ascontiguousarray(comp[..., ::-1]),
        np.ascontiguousarray(orig[..., ::-1]),
        hard.astype(np.uint8) * 255,
        ((x0 + x1) // 2, (y0 + y1) // 2),
        cv2.NORMAL_CLONE,
    )
    np.testing.assert_array_equal(blend.poisson_seam(orig, comp, soft), bgr[..., ::-1])


def test_poisson_seam_soft_mask_uses_its_thresholded_box(pair):
    orig, other = pair
    soft = blend.prepare_mask(_rect_mask(y0=20, y1=40, x0=30, x1=60), feather=2.0)
    comp = other  # differs from orig everywhere, so anything not cloned must come from orig
    out = blend.poisson_seam(orig, comp, soft)
    x0, y0, x1, y1 = masks.bbox(masks.as_bool(soft, threshold=0.01))
    outside = np.ones((H, W), bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], orig[outside])


def test_poisson_seam_mask_touching_the_border(pair):
    orig, other = pair
    m = np.zeros((H, W), bool)
    m[0:10, 0:12] = True
    out = blend.poisson_seam(orig, other, m)
    outside = np.ones((H, W), bool)
    outside[0:10, 0:12] = False
    np.testing.assert_array_equal(out[outside], orig[outside])


def test_poisson_seam_empty_or_border_only_mask_returns_composite(pair):
    orig, comp = pair
    out = blend.poisson_seam(orig, comp, np.zeros((H, W), bool))
    np.testing.assert_array_equal(out, comp)
    assert out is not comp
    border_only = np.zeros((H, W), bool)
    border_only[0, 10:20] = True
    np.testing.assert_array_equal(blend.poisson_seam(orig, comp, border_only), comp)
