"""CUDA code paths with the tiny models: skipped without a GPU (CI); scripts/gpu_bench.sh runs them on one."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# MASKPIX_TEST_DEVICE=cpu runs the same checks on the CPU (to check the tests themselves without a GPU).
DEVICE = os.environ.get("MASKPIX_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _image(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = (250, 30, 30)
    return img


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_segmenter_on_cuda_matches_sam_predictor(precision):
    from segment_anything import SamPredictor

    from maskpix_desktop.core.segmenter import Segmenter
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    sam = build_tiny_sam(seed=0, img_size=256, prompt_dim=256, decoder_mlp_dim=512).to(DEVICE)
    seg = Segmenter(sam, "custom", DEVICE, encoder_precision=precision)
    assert seg.encoder_precision == (precision if DEVICE == "cuda" else "fp32") and seg.fast_decoder
    img = _image(1, 240, 320)
    seg.set_image(img)
    assert seg._predictor.features.dtype == torch.float32
    assert seg._predictor.features.device.type == torch.device(DEVICE).type
    ref = SamPredictor(sam)
    ref.features = seg._predictor.features  # the same embedding: compare the decoders
    ref.original_size, ref.input_size, ref.is_image_set = (240, 320), seg._predictor.input_size, True
    pts, lbl = np.array([[100, 90]]), np.array([1])
    res = seg.predict(pts, lbl)
    masks, scores, logits = ref.predict(pts, lbl, multimask_output=True)
    assert res.computed() == [res.best]  # lazy on the GPU with the fast decoder
    np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-3 * max(1.0, float(np.abs(logits).max())))
    assert (res.masks != masks).mean() < 1e-3
    exact = Segmenter(sam, "custom", DEVICE, decoder="exact", encoder_precision=precision)
    exact.set_image(img)
    np.testing.assert_array_equal(exact.predict(pts, lbl).logits, logits)  # same embedding, same kernels


def test_thin_image_on_cuda():
    from maskpix_desktop.core.segmenter import Segmenter
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    seg = Segmenter(build_tiny_sam(seed=0), "custom", DEVICE)
    seg.set_image(_image(2, 16, 4000))
    res = seg.predict(np.array([[2000, 8]]), np.array([1]))
    assert res.mask().shape == (16, 4000) and res.masks.shape == (3, 16, 4000)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_editor_on_cuda_equals_diffusers_and_blends(dtype):
    from dataclasses import replace

    from maskpix_desktop.bench import build_bench_ip2p, diffusers_reference, ellipse_mask, synthetic_image
    from maskpix_desktop.core import images
    from maskpix_desktop.core.editor import Editor
    from maskpix_desktop.core.jobs import EditParams, EditRequest

    pipe = build_bench_ip2p(DEVICE, dtype, full_size=False)
    editor = Editor(pipe)
    assert editor.device.startswith(DEVICE) and editor.dtype == dtype
    img, mask = synthetic_image(96, 128, seed=3), ellipse_mask(96, 128)
    params = EditParams(instruction="make it red", steps=3, seed=7)
    plain = editor.run(EditRequest(img, None, params))
    np.testing.assert_array_equal(plain.baseline, diffusers_reference(pipe, images.to_pil(img), params))
    pixel = editor.run(EditRequest(img, mask, replace(params, mask_mode="pixel", dilate=0, feather=0)))
    np.testing.assert_array_equal(pixel.blended[~mask], img[~mask])
    np.testing.assert_array_equal(pixel.blended[mask], pixel.baseline[mask])
    latent = editor.run(EditRequest(img, mask, replace(params, mask_mode="latent")))
    assert latent.blended.shape == img.shape and latent.timings["blend_s"] > 0


def test_warm_up_on_cuda_then_clicks_work():
    from maskpix_desktop.core.segmenter import Segmenter
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    seg = Segmenter(build_tiny_sam(seed=0), "custom", DEVICE)
    seg.warm_up(force=True)
    assert seg.encoder_calls == 0 and not seg.has_image
    seg.set_image(_image(3, 100, 120))
    assert seg.predict(np.array([[60, 50]]), np.array([1])).mask().shape == (100, 120)
