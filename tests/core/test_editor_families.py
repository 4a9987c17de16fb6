"""Editor families (issue 17): detection from model_index.json, clear errors, and the SDXL IP2P editor."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_editor import assert_latent_run_pins_the_background

from maskpix_desktop.core import editor_families, images
from maskpix_desktop.core.editor import POST_STAGES, Editor
from maskpix_desktop.core.editor_loader import load_editor
from maskpix_desktop.core.errors import Cancelled, MaskPixError, WeightsError
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

H, W = 96, 128  # a multiple of 8 below long_side 512: the working size is the image size
STEPS = 3
SEED = 5
INSTRUCTION = "make it look like winter"


def _index(folder: Path, class_name: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_index.json"
    path.write_text(json.dumps({"_class_name": class_name, "_diffusers_version": "0.36.0"}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("class_name", "family"),
    [
        ("StableDiffusionInstructPix2PixPipeline", "ip2p"),
        ("MaskPix2PixPipeline", "ip2p"),
        ("StableDiffusionXLInstructPix2PixPipeline", "ip2p_xl"),
        ("FluxKontextPipeline", "kontext"),
        ("QwenImageEditPipeline", "qwen_edit"),
        ("QwenImageEditPlusPipeline", "qwen_edit"),
    ],
)
def test_family_detected_from_class_name(tmp_path, class_name, family):
    _index(tmp_path / "m", class_name)
    assert editor_families.folder_family(tmp_path / "m") == family
    assert editor_families.detect_family(str(tmp_path / "m")) == family


@pytest.mark.parametrize("class_name", ["StableDiffusionPipeline", None, 3])
def test_unknown_class_names_file_field_and_families(tmp_path, class_name):
    path = _index(tmp_path / "m", class_name)
    with pytest.raises(WeightsError) as info:
        editor_families.folder_family(tmp_path / "m")
    msg = str(info.value)
    assert str(path) in msg and "_class_name" in msg
    for family in editor_families.FAMILIES:
        assert family in msg
    assert "FluxKontextPipeline" in msg and "StableDiffusionXLInstructPix2PixPipeline" in msg


def test_missing_model_index_names_the_file(tmp_path):
    with pytest.raises(WeightsError) as info:
        editor_families.folder_family(tmp_path)
    assert str(tmp_path / "model_index.json") in str(info.value) and "missing" in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_broken_model_index_names_the_file(tmp_path, text):
    (tmp_path / "model_index.json").write_text(text, encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        editor_families.folder_family(tmp_path)
    assert str(tmp_path / "model_index.json") in str(info.value)


def test_uncached_hub_id_offline_is_undetected_not_an_error():
    assert editor_families.detect_family("no-such-org/no-such-model", local_only=True) is None


def test_tiny_ip2p_and_mask_checkpoint_are_ip2p(tiny_ip2p_dir, tmp_path):
    from maskpix_desktop.core.maskcond.model import mask_pipeline_from_ip2p, save_mask_checkpoint
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    assert editor_families.folder_family(tiny_ip2p_dir) == "ip2p"
    ckpt = save_mask_checkpoint(mask_pipeline_from_ip2p(build_tiny_ip2p(seed=0)), tmp_path / "ckpt")
    assert json.loads((ckpt / "model_index.json").read_text())["_class_name"] == "MaskPix2PixPipeline"
    assert editor_families.folder_family(ckpt) == "ip2p"


@pytest.mark.parametrize(
    ("class_name", "family"),
    [("FluxKontextPipeline", "kontext"), ("QwenImageEditPlusPipeline", "qwen_edit")],
)
def test_load_unsupported_family_says_not_supported_yet(
    tmp_path, tiny_ip2p_dir, monkeypatch, class_name, family
):
    """A family a build does not run (every known one runs now: a build without the flow families is
    simulated) is refused before diffusers is asked."""
    import diffusers

    monkeypatch.setattr(editor_families, "SUPPORTED", ("ip2p", "ip2p_xl"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_ip2p_dir, folder)
    _index(folder, class_name)

    def never(*a, **k):
        raise AssertionError("diffusers must not be asked to load an unsupported family")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", never)
    monkeypatch.setattr(diffusers.StableDiffusionInstructPix2PixPipeline, "from_pretrained", never)
    with pytest.raises(WeightsError) as info:
        load_editor(str(folder), device="cpu")
    msg = str(info.value)
    assert f"not supported yet in this version: {family}" in msg and str(folder) in msg
    for supported in editor_families.SUPPORTED:
        assert supported in msg


def test_load_unknown_pipeline_names_the_families(tmp_path, tiny_ip2p_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_ip2p_dir, folder)
    _index(folder, "StableDiffusionPipeline")
    with pytest.raises(WeightsError) as info:
        load_editor(str(folder), device="cpu")
    assert str(folder / "model_index.json") in str(info.value) and "ip2p_xl" in str(info.value)


def test_loaded_ip2p_editor_records_its_family(editor):
    assert editor.family == "ip2p"


# ------------------------------------------------------------------------------ ip2p_xl (SDXL IP2P)


def _params(**kw) -> EditParams:
    base = {"instruction": INSTRUCTION, "steps": STEPS, "seed": SEED}
    base.update(kw)
    return EditParams(**base)


def _rect_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture(scope="module")
def xl_dir(tmp_path_factory) -> Path:
    from maskpix_desktop.testing.tiny_ip2p_xl import save_tiny_ip2p_xl

    return save_tiny_ip2p_xl(tmp_path_factory.mktemp("tiny_xl") / "tiny-ip2p-xl", seed=0)


@pytest.fixture(scope="module")
def xl_editor(xl_dir) -> Editor:
    return load_editor(str(xl_dir), device="cpu")


@pytest.fixture(scope="module")
def xl_image(rng_image) -> np.ndarray:
    return rng_image(H, W, seed=3)


@pytest.fixture(scope="module")
def xl_base(xl_editor, xl_image) -> EditResult:
    return xl_editor.run(EditRequest(xl_image, mask=None, params=_params()))


def test_xl_folder_loads_as_ip2p_xl(xl_dir, xl_editor, xl_base):
    from diffusers import StableDiffusionXLInstructPix2PixPipeline

    assert editor_families.folder_family(xl_dir) == "ip2p_xl"
    assert isinstance(xl_editor.pipe, StableDiffusionXLInstructPix2PixPipeline)
    assert xl_editor.family == "ip2p_xl" and not xl_editor.takes_mask
    assert xl_base.model["editor_family"] == "ip2p_xl" and xl_base.model["ip2p"] == str(xl_dir)


def test_xl_baseline_equals_plain_diffusers_bit_for_bit(xl_dir, xl_image, xl_base):
    from diffusers import StableDiffusionXLInstructPix2PixPipeline

    pipe = StableDiffusionXLInstructPix2PixPipeline.from_pretrained(str(xl_dir))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=INSTRUCTION,
        image=images.to_pil(xl_image),
        height=H,
        width=W,
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    ref = np.asarray(out)
    assert xl_base.working_size == (H, W) and xl_base.baseline.shape == (H, W, 3)
    np.testing.assert_array_equal(xl_base.baseline, ref)
    np.testing.assert_array_equal(xl_base.blended, ref)
    assert not np.array_equal(ref, xl_image)


def test_xl_pixel_mode_hard_mask_is_exact(xl_editor, xl_image, xl_base):
    m = _rect_mask(24, 72, 32, 96)
    steps: list[tuple[int, int, str]] = []
    res = xl_editor.run(
        EditRequest(xl_image, mask=m, params=_params(mask_mode="pixel")), on_step=lambda *a: steps.append(a)
    )
    np.testing.assert_array_equal(res.baseline, xl_base.baseline)
    np.testing.assert_array_equal(res.blended[~m], xl_image[~m])
    np.testing.assert_array_equal(res.blended[m], xl_base.baseline[m])
    denoising = [c for c in steps if c[2] not in POST_STAGES]
    assert denoising == [(i, STEPS, "baseline") for i in range(1, STEPS + 1)]


def test_xl_latent_mode_pins_latent_background_and_pixels(xl_editor, xl_image, xl_base):
    m = _rect_mask(32, 64, 40, 88)
    steps: list[tuple[int, int, str]] = []
    res = xl_editor.run(
        EditRequest(xl_image, mask=m, params=_params(mask_mode="latent")), on_step=lambda *a: steps.append(a)
    )
    assert [s[2] for s in steps if s[2] not in POST_STAGES] == ["baseline"] * STEPS + ["latent"] * STEPS
    assert_latent_run_pins_the_background(xl_editor, xl_image, m, res, xl_base.baseline)


def test_xl_crop_mode_keeps_outside_exact(xl_editor, xl_image):
    m = _rect_mask(40, 56, 48, 72)
    res = xl_editor.run(EditRequest(xl_image, mask=m, params=_params(mask_mode="crop")))
    np.testing.assert_array_equal(res.blended[~m], xl_image[~m])
    assert not np.array_equal(res.blended[m], xl_image[m])


def test_xl_latent_mode_refuses_higher_order_scheduler(xl_editor, xl_image, monkeypatch):
    monkeypatch.setattr(xl_editor.pipe.scheduler, "order", 2)
    with pytest.raises(MaskPixError, match="latent mode needs a first-order scheduler"):
        req = EditRequest(xl_image, mask=_rect_mask(8, 40, 8, 40), params=_params(mask_mode="latent"))
        xl_editor.run(req)


def test_xl_cancel_from_step_callback(xl_editor, xl_image, xl_base):
    cancel = threading.Event()
    calls: list[int] = []

    def on_step(done: int, total: int, stage: str) -> None:
        if stage in POST_STAGES:
            return
        calls.append(done)
        if done == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        xl_editor.run(EditRequest(xl_image, mask=None, params=_params()), on_step=on_step, cancel=cancel)
    assert calls == [1]
    again = xl_editor.run(EditRequest(xl_image, mask=None, params=_params()))
    np.testing.assert_array_equal(again.baseline, xl_base.baseline)


def test_xl_trained_mode_is_refused_clearly(xl_editor, xl_image):
    with pytest.raises(MaskPixError, match="does not take a mask"):
        req = EditRequest(xl_image, mask=_rect_mask(8, 40, 8, 40), params=_params(mask_mode="trained"))
        xl_editor.run(req)


# ------------------------------------------------------------------------------------- registry entries


def test_editor_registry_entries_are_unpinned_folders_and_gated_ones_say_how_to_log_in(tmp_path):
    from maskpix_desktop.core import models
    from maskpix_desktop.core.models.registry import EDITORS, REGISTRY

    assert {s.family for s in EDITORS.values()} == {"ip2p_xl", "kontext", "qwen_edit"}
    assert set(EDITORS) == {
        "sdxl-instructpix2pix",
        "cosxl-edit",
        "flux-kontext-dev",
        "qwen-image-edit",
        "qwen-image-edit-2509",
    }
    for name, spec in EDITORS.items():
        assert REGISTRY[name] is spec and spec.kind == "editor"  # `models download NAME` takes it
        assert spec.family in editor_families.FAMILIES and "/" in str(spec.hf_repo)
        assert spec.hf_revision == "main" and all(f.sha256 is None for f in spec.files)
        assert "unpinned" in spec.description
        if spec.single_file:  # one checkpoint, converted after download with another repository's configs
            assert (
                spec.patterns == (spec.single_file,)
                and spec.config_repo == EDITORS["sdxl-instructpix2pix"].hf_repo
            )
        else:
            assert "*/*.safetensors" in spec.patterns and spec.config_repo is None
        assert models.local_path(name, tmp_path) == tmp_path / str(spec.hf_repo).split("/")[-1]
    gated = {n for n, s in EDITORS.items() if s.access}
    assert gated == {"flux-kontext-dev", "cosxl-edit"}
    assert "HF_TOKEN" in str(EDITORS["flux-kontext-dev"].access) and "login" in str(
        EDITORS["flux-kontext-dev"].access
    )
    assert "non-commercial" in EDITORS["flux-kontext-dev"].description
    assert "non-commercial" in EDITORS["cosxl-edit"].description and EDITORS["cosxl-edit"].family == "ip2p_xl"


def unet_calls_of_call_and_reading(editor: Editor, image: np.ndarray, instruction: str) -> tuple:
    """(own, mine, relevance, mode): the UNet's positional inputs, ``encoder_hidden_states``,
    ``added_cond_kwargs`` and output (a forward hook) in the pipeline's own one-step call (seed 0, guidance
    7.5, image guidance 1.5) and in auto mask's reading (seed 4, one draw) of ``image``; its map; the
    image's latent mode."""
    from maskpix_desktop.core.automask.relevance import compute_relevance

    pipe = editor.pipe
    calls: list[dict] = []

    def hook(_module, args, kwargs, output):
        keys = ("encoder_hidden_states", "added_cond_kwargs")
        calls.append(
            {"sample": args[0].clone(), "t": args[1], "out": output[0].clone()} | {k: kwargs[k] for k in keys}
        )

    handle = pipe.unet.register_forward_hook(hook, with_kwargs=True)
    h, w = image.shape[:2]
    try:
        with torch.inference_mode():
            mode = editor.encode_image(image)
            gen = torch.Generator("cpu").manual_seed(0)
            kw = {"num_inference_steps": 1, "output_type": "latent", "guidance_scale": 7.5, "generator": gen}
            pipe(prompt=instruction, image=mode, height=h, width=w, image_guidance_scale=1.5, **kw)
        rel = compute_relevance(editor, image, instruction, seed=4, draws=1)
    finally:
        handle.remove()
    own, mine = calls
    return own, mine, rel, mode


def test_xl_relevance_conditions_the_unet_as_the_pipelines_own_call(xl_editor, xl_image):
    """Auto mask on SDXL InstructPix2Pix: the reading's two UNet branches get exactly the text, pooled,
    time-id and image-latent inputs of the pipeline's text and image-only branches (captured with a forward
    hook on a one-step call); the noisy part is DDPM's add_noise of the source at t = 800; seeded."""
    from diffusers.utils.torch_utils import randn_tensor

    from maskpix_desktop.core.automask.relevance import compute_relevance, ddpm_scheduler

    pipe = xl_editor.pipe
    own, mine, rel, mode = unet_calls_of_call_and_reading(xl_editor, xl_image, INSTRUCTION)
    assert own["sample"].shape[0] == 3 and mine["sample"].shape[0] == 2  # CFG: text, image-only, uncond
    assert torch.equal(own["encoder_hidden_states"][:2], mine["encoder_hidden_states"])
    for key in ("text_embeds", "time_ids"):
        assert torch.equal(own["added_cond_kwargs"][key][:2], mine["added_cond_kwargs"][key])
    assert torch.equal(own["sample"][:2, 4:], mine["sample"][:, 4:])  # the image latents of both branches
    z0 = xl_editor.source_latents(mode)
    noise = randn_tensor(tuple(z0.shape), generator=torch.Generator("cpu").manual_seed(4))
    zt = ddpm_scheduler(pipe).add_noise(z0, noise, torch.tensor([800]))
    assert torch.equal(mine["sample"][:, :4], torch.cat([zt, zt]))
    f = pipe.vae_scale_factor
    assert rel.raw.shape == (H // f, W // f) and rel.timestep == 800 and rel.raw.max() > 0
    again = compute_relevance(xl_editor, xl_image, INSTRUCTION, seed=4, draws=1)
    np.testing.assert_array_equal(again.raw, rel.raw)


def test_xl_editor_is_an_edit_engine_run_by_run_edit(xl_editor, xl_image, xl_base):
    from maskpix_desktop.core.pipeline import run_edit
    from maskpix_desktop.core.protocols import EditEngine

    assert isinstance(xl_editor, EditEngine)
    m = _rect_mask(16, 48, 16, 64)
    res = run_edit(xl_editor, EditRequest(xl_image, mask=m, params=_params(mask_mode="pixel")), metrics=False)
    assert res.model["editor_family"] == "ip2p_xl"
    np.testing.assert_array_equal(res.blended[~m], xl_image[~m])
    np.testing.assert_array_equal(res.blended[m], xl_base.baseline[m])
