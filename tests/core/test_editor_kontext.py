"""FLUX.1 Kontext editor family (issue 17) on a tiny random FluxKontextPipeline: exactness against
diffusers, the mask guarantee in pixel, crop and latent mode (flow-matching blend on packed latents,
docs/MODELS.md), progress and cancel."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop.core import editor_families, images
from maskpix_desktop.core.editor import POST_STAGES, Editor
from maskpix_desktop.core.editor_loader import load_editor
from maskpix_desktop.core.errors import Cancelled, MaskPixError
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

H, W = 64, 96  # multiples of 16 (VAE 8x, 2x2 packing) below long_side 512: working size = image size
STEPS = 3
SEED = 5
GUIDANCE = 3.0  # EditParams.guidance is Kontext's guidance_scale (not the default 2.5: it is passed)
INSTRUCTION = "make it look like winter"


def params(**kw) -> EditParams:
    base = {"instruction": INSTRUCTION, "steps": STEPS, "seed": SEED, "guidance": GUIDANCE}
    base.update(kw)
    return EditParams(**base)


def rect_mask(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def assert_flow_latent_run_pins_the_background(
    editor: Editor, image: np.ndarray, m: np.ndarray, res: EditResult, baseline: np.ndarray
) -> None:
    """A flow-editor latent-mode result (working size = image size): the final packed latents outside the
    packed latent mask are the pipeline's own packed source latents of the image, bit for bit; pixels
    outside the mask are the original, inside the edit; the baseline is the unmasked run's."""
    from maskpix_desktop.core.editor_flow import pack

    lb = editor.last_latent_blend
    assert lb is not None and lb.final is not None
    f = editor.pipe.vae_scale_factor
    src = editor.source_latents_of(image)
    assert src.shape[-2:] == (image.shape[0] // f, image.shape[1] // f)
    assert torch.equal(lb.src, pack(editor.pipe, src))
    assert lb.final.shape == lb.src.shape == lb.m.shape and lb.final.ndim == 3  # (1, tokens, 4C)
    outside = lb.m == 0
    assert outside.any() and (lb.m == 1).any()
    assert torch.equal(lb.final[outside], lb.src[outside])
    assert not torch.equal(lb.final, lb.src)  # inside, the edit moved away from the source
    np.testing.assert_array_equal(res.baseline, baseline)
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    np.testing.assert_array_equal(res.blended[m], res.edit[m])
    assert not np.array_equal(res.edit, baseline)  # the latent run is a different edit


@pytest.fixture(scope="module")
def kontext_dir(tmp_path_factory) -> Path:
    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext

    return save_tiny_kontext(tmp_path_factory.mktemp("tiny_kontext") / "tiny-kontext", seed=0)


@pytest.fixture(scope="module")
def kontext(kontext_dir) -> Editor:
    return load_editor(str(kontext_dir), device="cpu")


@pytest.fixture(scope="module")
def image(rng_image) -> np.ndarray:
    return rng_image(H, W, seed=4)


@pytest.fixture(scope="module")
def base(kontext, image) -> EditResult:
    return kontext.run(EditRequest(image, mask=None, params=params()))


def test_kontext_folder_loads_as_kontext_flow_editor(kontext_dir, kontext, base):
    from diffusers import FluxKontextPipeline

    from maskpix_desktop.core.editor_flow import FlowEditor

    assert editor_families.folder_family(kontext_dir) == "kontext"
    assert isinstance(kontext, FlowEditor) and isinstance(kontext.pipe, FluxKontextPipeline)
    assert kontext.family == "kontext" and kontext.size_multiple == 16 and not kontext.takes_mask
    assert base.model["editor_family"] == "kontext" and base.model["ip2p"] == str(kontext_dir)


def test_kontext_baseline_equals_plain_diffusers_bit_for_bit(kontext_dir, image, base):
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(str(kontext_dir))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=INSTRUCTION,
        image=images.to_pil(image),
        height=H,
        width=W,
        max_area=H * W,
        _auto_resize=False,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    ref = np.asarray(out)
    assert base.working_size == (H, W) and base.baseline.shape == (H, W, 3)
    np.testing.assert_array_equal(base.baseline, ref)
    np.testing.assert_array_equal(base.blended, ref)
    assert not np.array_equal(ref, image)


def test_kontext_guidance_is_the_guidance_input_and_ip2p_scales_are_ignored(kontext, image, base):
    other = kontext.run(EditRequest(image, mask=None, params=params(guidance=6.0)))
    assert not np.array_equal(other.baseline, base.baseline)
    ip2p_only = kontext.run(EditRequest(image, mask=None, params=params(text_scale=11.0, image_scale=3.0)))
    np.testing.assert_array_equal(ip2p_only.baseline, base.baseline)


def test_kontext_source_latents_are_what_the_pipeline_conditions_on(kontext, image):
    pipe = kontext.pipe
    x = pipe.image_processor.preprocess(images.to_pil(image), H, W)
    with torch.inference_mode():
        *_, cond, _, _ = pipe.prepare_latents(x, 1, 4, H, W, torch.float32, pipe.device, None)
    from maskpix_desktop.core.editor_flow import pack

    assert torch.equal(cond, pack(pipe, kontext.source_latents_of(image)))


def test_kontext_pixel_mode_hard_mask_is_exact(kontext, image, base):
    m = rect_mask(16, 48, 24, 72)
    steps: list[tuple[int, int, str]] = []
    res = kontext.run(
        EditRequest(image, mask=m, params=params(mask_mode="pixel")), on_step=lambda *a: steps.append(a)
    )
    np.testing.assert_array_equal(res.baseline, base.baseline)
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    np.testing.assert_array_equal(res.blended[m], base.baseline[m])
    assert [c for c in steps if c[2] not in POST_STAGES] == [(i, STEPS, "baseline") for i in range(1, 4)]


def test_kontext_latent_mode_pins_packed_latent_background_and_pixels(kontext, image, base):
    m = rect_mask(16, 48, 32, 80)
    steps: list[tuple[int, int, str]] = []
    res = kontext.run(
        EditRequest(image, mask=m, params=params(mask_mode="latent")), on_step=lambda *a: steps.append(a)
    )
    assert [s[2] for s in steps if s[2] not in POST_STAGES] == ["baseline"] * STEPS + ["latent"] * STEPS
    assert_flow_latent_run_pins_the_background(kontext, image, m, res, base.baseline)


def test_kontext_crop_mode_keeps_outside_exact(kontext, image):
    m = rect_mask(24, 40, 40, 64)
    res = kontext.run(EditRequest(image, mask=m, params=params(mask_mode="crop")))
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    assert not np.array_equal(res.blended[m], image[m])


def test_kontext_odd_size_image_runs_at_multiples_of_16(kontext, rng_image):
    img = rng_image(50, 70, seed=9)
    m = rect_mask(10, 40, 10, 60, h=50, w=70)
    res = kontext.run(EditRequest(img, mask=m, params=params(mask_mode="latent")))
    assert res.working_size == (48, 64) and res.blended.shape == img.shape
    np.testing.assert_array_equal(res.blended[~m], img[~m])


def test_kontext_cancel_from_step_callback(kontext, image, base):
    cancel = threading.Event()
    calls: list[int] = []

    def on_step(done: int, total: int, stage: str) -> None:
        if stage not in POST_STAGES:
            calls.append(done)
            cancel.set()

    with pytest.raises(Cancelled):
        kontext.run(EditRequest(image, mask=None, params=params()), on_step=on_step, cancel=cancel)
    assert calls == [1]
    again = kontext.run(EditRequest(image, mask=None, params=params()))
    np.testing.assert_array_equal(again.baseline, base.baseline)


def test_kontext_trained_mode_says_why_not(kontext, image):
    # (auto mask works with Kontext: tests/core/test_automask_kontext.py)
    with pytest.raises(MaskPixError, match="does not take a mask"):
        kontext.run(EditRequest(image, mask=rect_mask(8, 40, 8, 40), params=params(mask_mode="trained")))
