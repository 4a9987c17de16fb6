"""Auto mask with a FLUX.1 Kontext editor (issue 17): the relevance map is the flow-matching version of
"Watch Your Steps" on the tiny random Kontext, and the whole auto mask runs on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop.core import images
from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams, compute_relevance
from maskpix_desktop.core.automask.relevance import relevance_from_eps, unsupported_reason
from maskpix_desktop.core.editor import Editor
from maskpix_desktop.core.editor_loader import load_editor

H, W = 48, 80  # working size = image size (multiples of 16 below long_side)


@pytest.fixture(scope="module")
def kontext(tmp_path_factory) -> Editor:
    from maskpix_desktop.testing.tiny_kontext import save_tiny_kontext

    folder: Path = save_tiny_kontext(tmp_path_factory.mktemp("tiny_kontext") / "tiny-kontext", seed=0)
    return load_editor(str(folder), device="cpu")


@pytest.fixture(scope="module")
def image(rng_image) -> np.ndarray:
    return rng_image(H, W, seed=11)


def test_every_shipped_family_is_supported_and_another_says_why() -> None:
    from maskpix_desktop.core.editor_families import FAMILIES

    assert all(unsupported_reason(family) is None for family in FAMILIES)
    why = unsupported_reason("other")  # a family without a reader
    assert why is not None and "the loaded editor is other" in why


def test_kontext_relevance_is_the_velocity_difference_of_the_two_prompts(kontext, image) -> None:
    rel = compute_relevance(kontext, image, "make the car red", seed=4, draws=2)
    f = kontext.pipe.vae_scale_factor
    assert rel.working_size == (H, W) and rel.raw.shape == (H // f, W // f) and rel.draws == 2
    assert rel.timestep == 800 and rel.raw.min() >= 0 and rel.raw.max() > 0
    assert 0.0 == rel.values.min() and rel.values.max() == 1.0
    again = compute_relevance(kontext, image, "make the car red", seed=4, draws=2)
    np.testing.assert_array_equal(again.raw, rel.raw)  # seeded: the same noises
    other = compute_relevance(kontext, image, "make the car red", seed=5, draws=2)
    assert not np.array_equal(other.raw, rel.raw)


def test_the_empty_instruction_has_no_relevance(kontext, image) -> None:
    rel = compute_relevance(kontext, image, "", seed=4, draws=1)
    assert not rel.raw.any()  # both branches see the same prompt: identical velocities


def test_one_draw_equals_a_transcription_with_the_pipelines_own_call(kontext, image) -> None:
    """One draw by hand: the pipeline's latents and prompt embeddings, one transformer call per prompt."""
    from diffusers.utils.torch_utils import randn_tensor

    pipe, sigma = kontext.pipe, 0.8
    with torch.inference_mode():
        x = pipe.image_processor.preprocess(images.to_pil(image), H, W)
        *_, x0, lat_ids, img_ids = pipe.prepare_latents(x, 1, 4, H, W, torch.float32, pipe.device, None)
        noise = randn_tensor(tuple(x0.shape), generator=torch.Generator("cpu").manual_seed(4))
        xt = (1 - sigma) * x0 + sigma * noise
        out = []
        for prompt in ("make the car red", ""):
            embeds, pooled, text_ids = pipe.encode_prompt(prompt=prompt, prompt_2=None)
            v = pipe.transformer(
                hidden_states=torch.cat([xt, x0], dim=1),
                timestep=torch.tensor([sigma]),
                guidance=torch.tensor([2.5]) if pipe.transformer.config.guidance_embeds else None,
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=text_ids,
                img_ids=torch.cat([lat_ids, img_ids]),
                return_dict=False,
            )[0][:, : xt.shape[1]]
            out.append(pipe._unpack_latents(v, H, W, pipe.vae_scale_factor))
    expected = relevance_from_eps(out[0], out[1])
    rel = compute_relevance(kontext, image, "make the car red", seed=4, draws=1)
    np.testing.assert_array_equal(rel.raw, expected)


def test_auto_mask_runs_end_to_end_on_kontext(kontext, image) -> None:
    from maskpix_desktop.core.segmenter import Segmenter
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    steps: list[tuple[int, int, str]] = []
    masker = AutoMasker(editor=kontext, segmenter=Segmenter(build_tiny_sam(seed=0), "custom"))
    params = AutoMaskParams(seed=2, min_component=0.0)
    res = masker.run(image, "turn the cat into a dog", params, on_step=lambda *a: steps.append(a))
    assert res.mask.shape == (H, W) and res.relevance is not None and res.source == "relevance"
    assert steps[0] == (1, 2, "relevance") and steps[-1] == (2, 2, "sam")
