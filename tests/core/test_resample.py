"""core/resample.py: the Lanczos upscale equals Pillow's bit for bit (issue 20, the post-edit resize)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskpix_desktop.core import images
from maskpix_desktop.core.resample import lanczos_coefficients, lanczos_upscale, use_fast_lanczos


def _pillow(a: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((w, h), Image.LANCZOS))


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((40, 60), (403, 577)),  # odd factors
        ((43, 64), (500, 750)),  # the 24 MP ratio (344x512 -> 4000x6000) scaled down
        ((64, 43), (750, 500)),  # portrait
        ((30, 200), (301, 150)),  # taller but narrower: Pillow's horizontal pass shrinks
        ((50, 80), (51, 80)),  # width unchanged: the vertical pass alone
        ((7, 9), (160, 9)),  # fewer input rows than the window
    ],
)
@pytest.mark.parametrize("channels", [3, 0])
def test_upscale_equals_pillow_bit_for_bit(src, dst, channels):
    rng = np.random.default_rng(sum(src) + channels)
    shape = (*src, channels) if channels else src
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    a[: src[0] // 3] = 255  # saturated areas: the negative lobes overshoot, the clip matters
    a[-2:, :] = 0
    np.testing.assert_array_equal(lanczos_upscale(a, dst), _pillow(a, *dst))


def test_coefficients_sum_to_one_in_fixed_point():
    kk, bounds = lanczos_coefficients(344, 4000)
    assert kk.shape == (4000, 7) and bounds[0, 0] == 0 and int(bounds[-1].sum()) == 344
    assert np.all(np.abs(kk.sum(axis=1) - (1 << 22)) <= 4)  # each weight rounded once


def test_resize_image_takes_the_fast_path_only_where_it_applies(monkeypatch):
    calls = []
    real = images.lanczos_upscale
    monkeypatch.setattr(images, "lanczos_upscale", lambda a, s: calls.append(s) or real(a, s))
    big = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    out = images.resize_image(big, (960, 1280), resample="lanczos")
    assert calls == [(960, 1280)]
    np.testing.assert_array_equal(out, _pillow(big, 960, 1280))
    images.resize_image(big, (48, 64), resample="lanczos")  # shrinking: Pillow
    images.resize_image(big, (100, 130), resample="lanczos")  # small output: Pillow
    assert calls == [(960, 1280)]
    assert not use_fast_lanczos((96, 128, 4), (960, 1280))  # RGBA: Pillow premultiplies alpha
    assert use_fast_lanczos((96, 128), (960, 1280))
