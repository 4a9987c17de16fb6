"""Auto mask with a Qwen-Image-Edit editor (issue 17.5): the relevance map is the flow-matching "Watch Your
Steps" difference on the tiny random Qwen-Image-Edit (plain and Plus pipelines), its transformer conditioned
exactly as the pipeline's own call conditions it, and the whole auto mask runs on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from maskpix_desktop.core import images
from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams, compute_relevance
from maskpix_desktop.core.editor import Editor
from maskpix_desktop.core.editor_flow import pack
from maskpix_desktop.core.editor_loader import load_editor

H, W = 64, 96  # multiples of 32 (tiny VAE 16x, 2x2 packing): the working size is the image size
INSTRUCTION = "make the car red"


def _load(root: Path, plus: bool) -> Editor:
    from maskpix_desktop.testing.tiny_qwen_edit import save_tiny_qwen_edit

    return load_editor(str(save_tiny_qwen_edit(root / "qwen", seed=0, plus=plus)), device="cpu")


@pytest.fixture(scope="module", params=[False, True], ids=["edit", "plus"])
def qwen(request, tmp_path_factory) -> Editor:
    return _load(tmp_path_factory.mktemp("tiny_qwen_relevance"), request.param)


@pytest.fixture(scope="module")
def image(rng_image) -> np.ndarray:
    return rng_image(H, W, seed=12)


def _capture(transformer: Any) -> tuple[list[dict], Any]:
    """Record the keyword inputs of every transformer call; returns (calls, hook handle)."""
    calls: list[dict] = []

    def hook(_module: Any, _args: Any, kwargs: dict) -> None:
        calls.append({k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})

    return calls, transformer.register_forward_pre_hook(hook, with_kwargs=True)


def test_qwen_relevance_is_seeded_at_latent_resolution_and_zero_for_the_empty_instruction(
    qwen, image
) -> None:
    rel = compute_relevance(qwen, image, INSTRUCTION, seed=4, draws=2)
    f = qwen.pipe.vae_scale_factor
    assert rel.working_size == (H, W) and rel.raw.shape == (H // f, W // f) and rel.draws == 2
    assert rel.timestep == 800 and rel.raw.min() >= 0 and rel.raw.max() > 0
    again = compute_relevance(qwen, image, INSTRUCTION, seed=4, draws=2)
    np.testing.assert_array_equal(again.raw, rel.raw)  # seeded: the same noises
    assert not np.array_equal(compute_relevance(qwen, image, INSTRUCTION, seed=5, draws=2).raw, rel.raw)
    assert not compute_relevance(qwen, image, "", seed=4, draws=1).raw.any()  # same prompt, same velocity


def test_the_transformer_is_conditioned_as_the_pipelines_own_call_conditions_it(qwen, image) -> None:
    """The pipeline's own call (one step, no true CFG) and the reading's instruction branch give the
    transformer the same prompt embeddings, mask, image shapes and condition latents; the noisy part is the
    source's packed latents noised to sigma = 0.8 with the draw's noise."""
    from diffusers.utils.torch_utils import randn_tensor

    pipe = qwen.pipe
    calls, handle = _capture(pipe.transformer)
    try:
        with torch.inference_mode():
            pipe(prompt=INSTRUCTION, image=images.to_pil(image), height=H, width=W, num_inference_steps=1,
                 output_type="latent", generator=torch.Generator("cpu").manual_seed(0))  # fmt: skip
        assert len(calls) == 1
        rel = compute_relevance(qwen, image, INSTRUCTION, seed=4, draws=1)
    finally:
        handle.remove()
    own, mine, empty = calls[0], calls[1], calls[2]
    n = (H // pipe.vae_scale_factor // 2) * (W // pipe.vae_scale_factor // 2)  # tokens of the output latents
    assert own["img_shapes"] == mine["img_shapes"] == empty["img_shapes"]
    assert torch.equal(own["encoder_hidden_states"], mine["encoder_hidden_states"])
    masks = own["encoder_hidden_states_mask"], mine["encoder_hidden_states_mask"]
    assert masks == (None, None) or torch.equal(*masks)  # diffusers passes None for an all-ones mask
    assert torch.equal(own["hidden_states"][:, n:], mine["hidden_states"][:, n:])  # the condition latents
    with torch.inference_mode():
        x0 = pack(pipe, qwen.source_latents_of(image))
    noise = randn_tensor(tuple(x0.shape), generator=torch.Generator("cpu").manual_seed(4))
    torch.testing.assert_close(mine["hidden_states"][:, :n], 0.2 * x0 + 0.8 * noise, rtol=0, atol=1e-6)
    assert float(mine["timestep"]) == pytest.approx(0.8) and mine["guidance"] is None
    assert torch.equal(mine["hidden_states"], empty["hidden_states"])  # the two branches differ in text only
    assert rel.raw.max() > 0


def test_auto_mask_runs_end_to_end_on_qwen(qwen, image) -> None:
    from maskpix_desktop.core.segmenter import Segmenter
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    steps: list[tuple[int, int, str]] = []
    masker = AutoMasker(editor=qwen, segmenter=Segmenter(build_tiny_sam(seed=0), "custom"))
    res = masker.run(image, "turn the cat into a dog", AutoMaskParams(seed=2, min_component=0.0),
                     on_step=lambda *a: steps.append(a))  # fmt: skip
    assert res.mask.shape == (H, W) and res.relevance is not None and res.source == "relevance"
    assert steps[0] == (1, 2, "relevance") and steps[-1] == (2, 2, "sam")
