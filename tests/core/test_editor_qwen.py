"""Qwen-Image-Edit editor family (issue 17) on a tiny random QwenImageEditPipeline: exactness against
diffusers (true CFG with a negative prompt), the mask guarantee in pixel, crop and latent mode (flow-matching
blend on packed latents, docs/MODELS.md). Few runs: each encodes the ~1 MP condition image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_editor_kontext import assert_flow_latent_run_pins_the_background

from maskpix_desktop.core import editor_families, images
from maskpix_desktop.core.editor import POST_STAGES, Editor
from maskpix_desktop.core.editor_loader import load_editor
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

H, W = 128, 160  # multiples of 32 (tiny VAE 16x, 2x2 packing): the working size is the image size
STEPS = 2
SEED = 3
CFG = 3.5  # EditParams.true_cfg_scale is Qwen's (not the default 4.0: it is passed)
NEGATIVE = "blurry"
INSTRUCTION = "make it look like winter"


def params(**kw) -> EditParams:
    base = {"instruction": INSTRUCTION, "steps": STEPS, "seed": SEED, "true_cfg_scale": CFG}
    base.update(negative_prompt=NEGATIVE, **kw)
    return EditParams(**base)


def rect_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    from maskpix_desktop.testing.tiny_qwen_edit import save_tiny_qwen_edit

    return save_tiny_qwen_edit(tmp_path_factory.mktemp("tiny_qwen") / "tiny-qwen-edit", seed=0)


@pytest.fixture(scope="module")
def qwen(qwen_dir) -> Editor:
    return load_editor(str(qwen_dir), device="cpu")


@pytest.fixture(scope="module")
def image(rng_image) -> np.ndarray:
    return rng_image(H, W, seed=6)


@pytest.fixture(scope="module")
def base(qwen, image) -> EditResult:
    return qwen.run(EditRequest(image, mask=None, params=params()))


def test_qwen_folder_loads_as_qwen_edit_flow_editor(qwen_dir, qwen, base):
    from diffusers import QwenImageEditPipeline

    from maskpix_desktop.core.editor_flow import FlowEditor

    assert editor_families.folder_family(qwen_dir) == "qwen_edit"
    assert isinstance(qwen, FlowEditor) and type(qwen.pipe) is QwenImageEditPipeline
    assert qwen.family == "qwen_edit" and qwen.size_multiple == 32
    assert base.model["editor_family"] == "qwen_edit"


def test_qwen_baseline_equals_plain_diffusers_bit_for_bit(qwen_dir, image, base):
    from diffusers import QwenImageEditPipeline

    pipe = QwenImageEditPipeline.from_pretrained(str(qwen_dir))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=INSTRUCTION,
        negative_prompt=NEGATIVE,
        true_cfg_scale=CFG,
        image=images.to_pil(image),
        height=H,
        width=W,
        num_inference_steps=STEPS,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    ref = np.asarray(out)
    assert base.working_size == (H, W) and base.baseline.shape == (H, W, 3)
    np.testing.assert_array_equal(base.baseline, ref)
    np.testing.assert_array_equal(base.blended, ref)
    assert not np.array_equal(ref, image)


def test_qwen_true_cfg_scale_is_used_and_ip2p_scales_are_ignored(qwen, image, base):
    other = qwen.run(EditRequest(image, mask=None, params=params(true_cfg_scale=7.0)))
    assert not np.array_equal(other.baseline, base.baseline)
    ip2p_only = qwen.run(EditRequest(image, mask=None, params=params(text_scale=11.0, image_scale=3.0)))
    np.testing.assert_array_equal(ip2p_only.baseline, base.baseline)


def test_qwen_pixel_mode_hard_mask_is_exact(qwen, image, base):
    m = rect_mask(32, 96, 40, 120)
    res = qwen.run(EditRequest(image, mask=m, params=params(mask_mode="pixel"), baseline=base.baseline))
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    np.testing.assert_array_equal(res.blended[m], base.baseline[m])


def test_qwen_latent_mode_pins_packed_latent_background_and_pixels(qwen, image, base):
    m = rect_mask(32, 96, 48, 128)
    steps: list[tuple[int, int, str]] = []
    req = EditRequest(image, mask=m, params=params(mask_mode="latent"), baseline=base.baseline)
    res = qwen.run(req, on_step=lambda *a: steps.append(a))
    assert [s[2] for s in steps if s[2] not in POST_STAGES] == ["latent"] * STEPS
    assert_flow_latent_run_pins_the_background(qwen, image, m, res, base.baseline)


def test_qwen_crop_mode_keeps_outside_exact(qwen, image, base):
    m = rect_mask(48, 80, 64, 112)
    res = qwen.run(EditRequest(image, mask=m, params=params(mask_mode="crop"), baseline=base.baseline))
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    assert not np.array_equal(res.blended[m], image[m])


# ------------------------------------------------------------------------- Plus (2509) variant


@pytest.fixture(scope="module")
def plus(tmp_path_factory) -> Editor:
    from maskpix_desktop.testing.tiny_qwen_edit import save_tiny_qwen_edit

    folder = save_tiny_qwen_edit(tmp_path_factory.mktemp("tiny_qwen_plus") / "plus", seed=0, plus=True)
    assert editor_families.folder_family(folder) == "qwen_edit"
    return load_editor(str(folder), device="cpu")


def test_qwen_plus_baseline_equals_plain_diffusers_bit_for_bit(plus, image):
    """The Plus pipeline differs only in how it conditions (image list, 384 px vision input); the mask
    modes run the same FlowEditor code as above."""
    from diffusers import QwenImageEditPlusPipeline

    assert type(plus.pipe) is QwenImageEditPlusPipeline and plus.family == "qwen_edit"
    base = plus.run(EditRequest(image, mask=None, params=params()))
    ref = plus.pipe(
        prompt=INSTRUCTION,
        negative_prompt=NEGATIVE,
        true_cfg_scale=CFG,
        image=images.to_pil(image),
        height=H,
        width=W,
        num_inference_steps=STEPS,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    np.testing.assert_array_equal(base.baseline, np.asarray(ref))
    assert not np.array_equal(base.baseline, image)
