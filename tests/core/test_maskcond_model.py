"""Mask-conditioned IP2P model: zero-init equality with diffusers' IP2P, guidance branches, save / load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.maskcond import CONDITIONING_FILE
from maskpix_desktop.core.maskcond.model import (
    grow_conv_in,
    is_mask_checkpoint,
    load_mask_pipeline,
    mask_pipeline_from_ip2p,
    mask_weight_norm,
    save_mask_checkpoint,
)
from maskpix_desktop.core.maskcond.pipeline import mask_channel
from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p


@pytest.fixture(scope="module")
def ip2p():
    return build_tiny_ip2p(seed=0)


@pytest.fixture(scope="module")
def mask_pipe(ip2p):
    return mask_pipeline_from_ip2p(ip2p)


def make_rng_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Deterministic noisy image (the conftest fixture's generator)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = 64, w: int = 64) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[10:40, 20:50] = True
    return m


def _run(pipe, image, out: str = "np", **kw):
    out = pipe(
        prompt="make the circle red",
        image=image,
        num_inference_steps=3,
        guidance_scale=4.0,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7),
        output_type=out,
        **kw,
    )
    return out.images[0]


def test_grow_conv_in_copies_old_weights_and_zeroes_the_mask_channel(ip2p):
    import copy

    unet = copy.deepcopy(ip2p.unet)
    old_w, old_b = unet.conv_in.weight.detach().clone(), unet.conv_in.bias.detach().clone()
    grow_conv_in(unet)
    assert unet.conv_in.weight.shape[1] == 9 and unet.config.in_channels == 9
    assert torch.equal(unet.conv_in.weight[:, :8], old_w) and torch.equal(unet.conv_in.bias, old_b)
    assert mask_weight_norm(unet) == 0.0
    with pytest.raises(ValueError, match="8 input channels"):
        grow_conv_in(unet)


def test_zero_init_mask_pipeline_is_bit_equal_to_diffusers_ip2p(ip2p, mask_pipe):
    image = make_rng_image(64, 64, seed=1)
    from PIL import Image

    pil = Image.fromarray(image)
    ref = _run(ip2p, pil)
    assert np.array_equal(_run(mask_pipe, pil, mask=_mask()), ref)
    assert np.array_equal(_run(mask_pipe, pil), ref)  # no mask
    assert np.array_equal(_run(mask_pipe, pil, mask=_mask(), mask_in_uncond=False), ref)
    assert ip2p.unet.config.in_channels == 8  # the source pipeline was not modified


def _captured_mask_channel(pipe, image, **kw) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    hook = pipe.unet.conv_in.register_forward_pre_hook(lambda mod, args: seen.append(args[0][:, 8].clone()))
    try:
        _run(pipe, image, **kw)
    finally:
        hook.remove()
    return seen[0]


def test_mask_is_fed_to_all_three_guidance_branches_by_default(mask_pipe):
    image = make_rng_image(64, 64, seed=2)
    m = _captured_mask_channel(mask_pipe, image, mask=_mask())
    expected = mask_channel(_mask(), (8, 8))[0, 0]
    assert m.shape == (3, 8, 8)
    for branch in range(3):
        assert torch.equal(m[branch], expected)
    assert expected.max() == 1.0 and expected.min() == -1.0  # signed: edit +1, keep -1


def test_mask_in_uncond_false_gives_the_unconditional_branch_no_mask(mask_pipe):
    image = make_rng_image(64, 64, seed=2)
    m = _captured_mask_channel(mask_pipe, image, mask=_mask(), mask_in_uncond=False)
    assert torch.equal(m[0], m[1]) and m[0].abs().sum() > 0
    assert torch.equal(m[2], torch.zeros_like(m[2]))
    none = _captured_mask_channel(mask_pipe, image)
    assert torch.equal(none, torch.zeros_like(none))  # "no mask" is 0 in every branch


def test_nonzero_mask_weights_make_the_mask_change_the_output(ip2p):
    pipe = mask_pipeline_from_ip2p(ip2p)
    with torch.no_grad():
        pipe.unet.conv_in.weight[:, 8] = 0.5
    image = make_rng_image(64, 64, seed=3)
    a = _run(pipe, image, mask=_mask())
    b = _run(pipe, image, mask=~_mask())
    assert np.abs(a - b).max() > 1e-3


def test_mask_given_to_an_8_channel_unet_is_refused(ip2p):
    from maskpix_desktop.core.maskcond.pipeline import MaskPix2PixPipeline

    plain = MaskPix2PixPipeline(**ip2p.components)
    with pytest.raises(ValueError, match="needs 9"):
        _run(plain, make_rng_image(64, 64), mask=_mask())


def test_mask_values_outside_0_1_are_refused(mask_pipe):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _run(mask_pipe, make_rng_image(64, 64), mask=np.full((64, 64), 2.0, np.float32))


def test_save_load_round_trip_gives_the_same_weights_and_output(ip2p, tmp_path: Path):
    pipe = mask_pipeline_from_ip2p(ip2p, mask_in_uncond=False)
    with torch.no_grad():
        pipe.unet.conv_in.weight[:, 8] = 0.25
    folder = save_mask_checkpoint(pipe, tmp_path / "ckpt")
    assert is_mask_checkpoint(folder) and not is_mask_checkpoint(tmp_path)
    cond = json.loads((folder / CONDITIONING_FILE).read_text())
    assert cond["type"] == "concat" and cond["mask_channels"] == 1 and cond["mask_in_uncond"] is False
    loaded = load_mask_pipeline(folder)
    assert loaded.mask_in_uncond is False
    for (name, a), (_, b) in zip(
        pipe.unet.state_dict().items(), loaded.unet.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    # Same image latents for both: safetensors-loaded VAE weights sit at other memory alignments, and
    # CPU conv kernels on the preprocessed (non-contiguous) image then differ in the last bit.
    with torch.no_grad():
        lat = pipe.vae.encode(
            pipe.image_processor.preprocess(make_rng_image(64, 64, seed=4))
        ).latent_dist.mode()
    assert torch.equal(
        _run(loaded, lat, mask=_mask(), out="latent"), _run(pipe, lat, mask=_mask(), out="latent")
    )


def test_loader_names_the_file_and_field_of_a_bad_conditioning_json(ip2p, tmp_path: Path):
    folder = save_mask_checkpoint(mask_pipeline_from_ip2p(ip2p), tmp_path / "ckpt")
    path = folder / CONDITIONING_FILE
    good = json.loads(path.read_text())
    path.write_text(json.dumps({**good, "type": "telepathy"}))
    with pytest.raises(WeightsError, match=r"maskpix_conditioning\.json: field 'type'"):
        load_mask_pipeline(folder)
    path.write_text("{not json")
    with pytest.raises(WeightsError, match="not readable JSON"):
        load_mask_pipeline(folder)
    path.unlink()
    with pytest.raises(WeightsError, match="not a mask-conditioned checkpoint"):
        load_mask_pipeline(folder)
    assert (folder / "unet").is_dir()  # nothing was deleted


def test_loader_refuses_a_plain_ip2p_folder_with_the_json_added(tiny_ip2p_dir: Path, tmp_path: Path):
    import shutil

    folder = tmp_path / "fake"
    shutil.copytree(tiny_ip2p_dir, folder)
    (folder / CONDITIONING_FILE).write_text(json.dumps({"type": "concat", "mask_channels": 1}))
    with pytest.raises(WeightsError, match="field 'in_channels' is 8"):
        load_mask_pipeline(folder)
