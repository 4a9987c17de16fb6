"""The channels-last SAM 2 preprocessing equals transformers' ``Sam2ImageProcessor`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
from transformers import Sam2ImageProcessor  # noqa: E402

from maskpix_desktop.core.sam2_pixels import _native_uint8_bilinear, channels_last_processor  # noqa: E402

needs_native = pytest.mark.skipif(not _native_uint8_bilinear(), reason="no native uint8 resize here")


def _pixels(processor, image: np.ndarray) -> torch.Tensor:
    out = processor(images=image, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    return out.contiguous()


@needs_native
@pytest.mark.parametrize("hw", [(400, 600), (17, 33), (64, 64), (300, 100), (5, 7)])
def test_pixel_values_equal_the_processor_for_every_shape(hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(hw))
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    plain = Sam2ImageProcessor(size={"height": 128, "width": 128}, mask_size={"height": 32, "width": 32})
    fast = channels_last_processor(plain)
    assert type(fast) is not Sam2ImageProcessor
    assert fast.size == plain.size and fast.image_mean == plain.image_mean
    ref = _pixels(plain, image)
    assert torch.equal(_pixels(fast, image), ref)
    assert _pixels(fast, image).stride() == ref.stride()


@needs_native
def test_fast_path_resizes_a_view_of_the_array_and_other_inputs_take_the_processor_path() -> None:
    rng = np.random.default_rng(1)
    fast = channels_last_processor(Sam2ImageProcessor())
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = fast.process_image(image, input_data_format="channels_last")
    assert view.shape == (3, 40, 60) and view.data_ptr() == image.ctypes.data  # no copy
    strided = image[:, ::2]  # not contiguous: the processor's own copy
    copied = fast.process_image(strided, input_data_format="channels_last")
    assert copied.is_contiguous() and torch.equal(copied, torch.from_numpy(strided.copy()).permute(2, 0, 1))
    assert torch.equal(_pixels(fast, strided), _pixels(Sam2ImageProcessor(), strided))


def test_other_processors_are_kept_as_they_are() -> None:
    from transformers.image_utils import PILImageResampling

    bicubic = Sam2ImageProcessor(resample=PILImageResampling.BICUBIC)
    assert channels_last_processor(bicubic) is bicubic
    other = object()
    assert channels_last_processor(other) is other


def test_without_a_native_uint8_resize_the_processor_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import maskpix_desktop.core.sam2_pixels as sp

    monkeypatch.setattr(sp, "_native_uint8_bilinear", lambda: False)
    plain = Sam2ImageProcessor()
    assert sp.channels_last_processor(plain) is plain
