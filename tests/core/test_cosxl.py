"""CosXL-Edit (issue 17): one original-layout checkpoint file -> a diffusers folder the ip2p_xl editor loads.

The real conversion code (diffusers' ``from_single_file``) runs on a tiny SDXL InstructPix2Pix written in
the original layout by ``maskpix_desktop.testing.ldm_checkpoint``; the converted folder must hold exactly the
tiny model's weights, CosXL's scheduler and ``is_cosxl_edit``, and give the family's guarantees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_editor import assert_latent_run_pins_the_background
from test_editor_families import unet_calls_of_call_and_reading

from maskpix_desktop.bench.families import plain_call
from maskpix_desktop.core.cosxl import CONFIG_REPO, COSXL_SCHEDULER, convert_cosxl_edit
from maskpix_desktop.core.editor_loader import load_editor
from maskpix_desktop.core.errors import WeightsError
from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.testing.ldm_checkpoint import save_tiny_cosxl
from maskpix_desktop.testing.tiny_ip2p_xl import build_tiny_ip2p_xl

H, W = 64, 96
STEPS = 3
PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def cosxl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(single file, config folder, converted folder)."""
    root = tmp_path_factory.mktemp("cosxl")
    file, config = save_tiny_cosxl(root, seed=0)
    return file, config, convert_cosxl_edit(file, config, root / "cosxl-edit")


@pytest.fixture(scope="module")
def editor(cosxl):
    return load_editor(str(cosxl[2]), device="cpu")


def _params(**kw) -> EditParams:
    return EditParams(instruction="make it red", steps=STEPS, seed=3, feather=0.0, dilate=0, **kw)


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_converted_folder_holds_the_files_weights_scheduler_and_flag(cosxl) -> None:
    from diffusers import EDMEulerScheduler, StableDiffusionXLInstructPix2PixPipeline

    _, _, folder = cosxl
    want = build_tiny_ip2p_xl(0, width_2=48)
    pipe = StableDiffusionXLInstructPix2PixPipeline.from_pretrained(str(folder))
    for part in PARTS:
        a, b = getattr(want, part).state_dict(), getattr(pipe, part).state_dict()
        assert a.keys() == b.keys(), part
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert pipe.is_cosxl_edit is True  # from model_index.json, through from_pretrained
    assert isinstance(pipe.scheduler, EDMEulerScheduler)
    assert {k: pipe.scheduler.config[k] for k in COSXL_SCHEDULER} == COSXL_SCHEDULER
    assert not list(folder.parent.glob(".*partial"))


def test_editor_baseline_equals_diffusers_own_call_and_the_flag_is_used(cosxl, editor, rng_image) -> None:
    from diffusers import StableDiffusionXLInstructPix2PixPipeline

    image = rng_image(H, W, seed=2)
    base = editor.run(EditRequest(image, None, _params()))
    assert editor.family == "ip2p_xl" and editor.pipe.is_cosxl_edit
    pipe = StableDiffusionXLInstructPix2PixPipeline.from_pretrained(str(cosxl[2]))
    pipe.set_progress_bar_config(disable=True)

    def call() -> np.ndarray:  # diffusers' own call with the editor's arguments
        return plain_call("ip2p_xl", pipe, image, _params())

    np.testing.assert_array_equal(base.baseline, call())
    pipe.is_cosxl_edit = False  # CosXL's image-latent scaling changes the edit: the flag is live
    assert not np.array_equal(base.baseline, call())


@pytest.mark.parametrize("mode", ["pixel", "crop", "latent"])
def test_mask_modes_keep_the_outside_exact(editor, rng_image, mode: str) -> None:
    image = rng_image(H, W, seed=4)
    m = _rect(16, 48, 24, 72)
    res = editor.run(EditRequest(image, m, _params(mask_mode=mode)))
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    assert not np.array_equal(res.blended[m], image[m])
    if mode == "latent":  # EDM Euler: x_t = x0 + sigma * noise, as the Euler family
        base = editor.run(EditRequest(image, None, _params()))
        assert_latent_run_pins_the_background(editor, image, m, res, base.baseline)


def test_bad_inputs_are_named_and_leave_no_folder(cosxl, tmp_path: Path, tiny_ip2p_dir: Path) -> None:
    file, config, _ = cosxl
    out = tmp_path / "out"
    with pytest.raises(WeightsError, match="no such checkpoint"):
        convert_cosxl_edit(tmp_path / "missing.safetensors", config, out)
    pickle = tmp_path / "cosxl_edit.ckpt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(WeightsError, match="only .safetensors"):
        convert_cosxl_edit(pickle, config, out)
    with pytest.raises(WeightsError, match=CONFIG_REPO):  # an SD 1.5 IP2P folder is not SDXL's configs
        convert_cosxl_edit(file, tiny_ip2p_dir, out)
    with pytest.raises(WeightsError, match="model_index.json: missing"):
        convert_cosxl_edit(file, tmp_path, out)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(other))
    with pytest.raises(WeightsError, match="other.safetensors"):
        convert_cosxl_edit(other, config, out)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    out.mkdir()
    with pytest.raises(WeightsError, match="exists"):
        convert_cosxl_edit(file, config, out)


def test_auto_mask_reads_cosxl_through_its_edm_preconditioning(editor, rng_image) -> None:
    """Auto mask on CosXL-Edit: the UNet gets the pipeline's own text, pooled, time-id and (CosXL-scaled)
    image-latent inputs for its text and image-only branches, the noisy part ``c_in(sigma) (z0 + sigma eps)``
    at timestep ``c_noise(sigma)`` with DDPM t = 800's signal-to-noise ratio, and the map is the difference
    of the branches' implied noise, ``sigma_data / sqrt(sigma^2 + sigma_data^2)`` times that of the
    v-predictions. The pipeline's own one-step call shows the same conditioning at its own sigma."""
    from diffusers import DDPMScheduler
    from diffusers.utils.torch_utils import randn_tensor

    from maskpix_desktop.core.automask.relevance import compute_relevance

    pipe = editor.pipe
    image = rng_image(H, W, seed=2)
    own, mine, rel, mode = unet_calls_of_call_and_reading(editor, image, "make it red")
    assert own["sample"].shape[0] == 3 and mine["sample"].shape[0] == 2
    assert torch.equal(own["encoder_hidden_states"][:2], mine["encoder_hidden_states"])
    for key in ("text_embeds", "time_ids"):
        assert torch.equal(own["added_cond_kwargs"][key][:2], mine["added_cond_kwargs"][key])
    assert torch.equal(own["sample"][:2, 4:], mine["sample"][:, 4:])
    sched = pipe.scheduler
    s0 = float(sched.sigmas[0])  # the pipeline's one step: its noise, c_in and c_noise at its own sigma
    latents = randn_tensor((1, 4, H // 8, W // 8), generator=torch.Generator("cpu").manual_seed(0))
    latents = latents * sched.init_noise_sigma
    torch.testing.assert_close(own["sample"][0, :4], latents[0] / (s0**2 + 1) ** 0.5, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        own["t"].float(), torch.tensor(0.25 * np.log(s0), dtype=torch.float32), rtol=1e-6, atol=0
    )
    ddpm = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    abar = float(ddpm.alphas_cumprod[800])
    sigma = ((1 - abar) / abar) ** 0.5
    assert 5.0 < sigma < 5.2  # about 5.1
    z0 = editor.source_latents(mode)
    xt = z0 + sigma * randn_tensor(tuple(z0.shape), generator=torch.Generator("cpu").manual_seed(4))
    want = torch.cat([xt, xt]) / (sigma**2 + 1) ** 0.5
    torch.testing.assert_close(mine["sample"][:, :4], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        mine["t"].float(), torch.tensor(0.25 * np.log(sigma), dtype=torch.float32), rtol=1e-6, atol=0
    )
    dv = (mine["out"][0] - mine["out"][1]).abs().sum(0).numpy() / (sigma**2 + 1) ** 0.5
    np.testing.assert_allclose(rel.raw, dv, rtol=1e-4, atol=1e-6)
    assert rel.raw.max() > 0 and rel.timestep == 800
    again = compute_relevance(editor, image, "make it red", seed=4, draws=1)
    np.testing.assert_array_equal(again.raw, rel.raw)
