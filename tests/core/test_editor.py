"""The IP2P editor on the tiny random pipeline: exactness against diffusers, mask modes, progress, errors."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch

from maskpix_desktop.core import blend, images, masks
from maskpix_desktop.core.editor import POST_STAGES, Editor
from maskpix_desktop.core.editor_loader import load_editor
from maskpix_desktop.core.errors import Cancelled, MissingWeightsError, OutOfMemoryError, WeightsError
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

H, W = 96, 128  # already a multiple of 8 and below long_side 512: the working size is the image size
STEPS = 4
SEED = 7
INSTRUCTION = "make it look like winter"
MODES = ("pixel", "latent", "crop")


def _params(**kw) -> EditParams:
    base = {"instruction": INSTRUCTION, "steps": STEPS, "seed": SEED}
    base.update(kw)
    return EditParams(**base)


def _rect_mask(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture(scope="module")
def image(rng_image) -> np.ndarray:
    return rng_image(H, W, seed=11)


@pytest.fixture(scope="module")
def base_result(editor, image) -> EditResult:
    """The unmasked run every other test compares against."""
    return editor.run(EditRequest(image, mask=None, params=_params()))


class Recorder:
    """on_step callback that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str]] = []

    def __call__(self, done: int, total: int, stage: str) -> None:
        self.calls.append((done, total, stage))


def _assert_progress(calls: list[tuple[int, int, str]], stages: list[tuple[str, int]]) -> None:
    calls = [c for c in calls if c[2] not in POST_STAGES]  # resize / blend / seam: reported once each
    total = sum(n for _, n in stages)
    expected_stages = [s for s, n in stages for _ in range(n)]
    assert [c[0] for c in calls] == list(range(1, total + 1))
    assert all(c[1] == total for c in calls)
    assert [c[2] for c in calls] == expected_stages


# ------------------------------------------------------------------------------- exactness vs diffusers


def assert_latent_run_pins_the_background(
    editor: Editor, image: np.ndarray, m: np.ndarray, res: EditResult, baseline: np.ndarray
) -> None:
    """A latent-mode result (working size = image size): final latents outside the latent mask are the
    source latents, the scaled posterior mode of the working image (docs/MATHS.md); pixels outside the
    mask are the original, inside the edit; the baseline is the unmasked run's."""
    lb = editor.last_latent_blend
    assert lb is not None and lb.final is not None
    m_lat = lb.m.expand_as(lb.final)
    assert m_lat.shape[-2:] == (image.shape[0] // 8, image.shape[1] // 8)
    outside = m_lat == 0
    assert outside.any() and (m_lat == 1).any()
    assert torch.equal(lb.final[outside], lb.src[outside])
    with torch.inference_mode():
        mode = editor.encode_image(image)
    torch.testing.assert_close(lb.src, mode * editor.pipe.vae.config.scaling_factor, rtol=0, atol=0)
    np.testing.assert_array_equal(res.baseline, baseline)
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    np.testing.assert_array_equal(res.blended[m], res.edit[m])
    assert not np.array_equal(res.edit, baseline)  # the latent run is a different edit


def test_baseline_equals_plain_diffusers_bit_for_bit(base_result, image, tiny_ip2p_dir):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(str(tiny_ip2p_dir))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=INSTRUCTION,
        image=images.to_pil(image),
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    ref = np.asarray(out)
    assert base_result.working_size == (H, W)
    assert base_result.baseline.dtype == np.uint8 and base_result.baseline.shape == (H, W, 3)
    np.testing.assert_array_equal(base_result.baseline, ref)
    # No mask means "edit everywhere": the blended result is the baseline itself.
    np.testing.assert_array_equal(base_result.blended, ref)


def test_same_seed_is_deterministic_and_seed_matters(editor, image, base_result):
    again = editor.run(EditRequest(image, mask=None, params=_params()))
    np.testing.assert_array_equal(again.baseline, base_result.baseline)
    np.testing.assert_array_equal(again.blended, base_result.blended)
    other = editor.run(EditRequest(image, mask=None, params=_params(seed=SEED + 1)))
    assert not np.array_equal(other.baseline, base_result.baseline)


# ------------------------------------------------------------------------------------------ mask modes


def test_pixel_mode_hard_mask_is_exact(editor, image, base_result):
    m = _rect_mask(24, 72, 32, 96)
    rec = Recorder()
    res = editor.run(EditRequest(image, mask=m, params=_params(mask_mode="pixel")), on_step=rec)
    np.testing.assert_array_equal(res.baseline, base_result.baseline)  # the mask does not touch the baseline
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    np.testing.assert_array_equal(res.blended[m], base_result.baseline[m])
    assert res.blended.shape == image.shape
    _assert_progress(rec.calls, [("baseline", STEPS)])


def test_latent_mode_pins_latent_background_and_pixels(editor, image, base_result):
    m = _rect_mask(32, 64, 40, 88)
    rec = Recorder()
    res = editor.run(EditRequest(image, mask=m, params=_params(mask_mode="latent")), on_step=rec)
    _assert_progress(rec.calls, [("baseline", STEPS), ("latent", STEPS)])

    assert_latent_run_pins_the_background(editor, image, m, res, base_result.baseline)


@pytest.mark.parametrize("mode", MODES)
def test_full_mask_gives_baseline(editor, image, base_result, mode):
    rec = Recorder()
    res = editor.run(
        EditRequest(image, mask=np.ones((H, W), bool), params=_params(mask_mode=mode)), on_step=rec
    )
    np.testing.assert_array_equal(res.baseline, base_result.baseline)
    np.testing.assert_array_equal(res.blended, base_result.baseline)
    _assert_progress(rec.calls, [("baseline", STEPS)])  # no second pass for a full mask


@pytest.mark.parametrize("mode", MODES)
def test_empty_mask_gives_original(editor, image, base_result, mode):
    rec = Recorder()
    res = editor.run(
        EditRequest(image, mask=np.zeros((H, W), bool), params=_params(mask_mode=mode)), on_step=rec
    )
    np.testing.assert_array_equal(res.baseline, base_result.baseline)
    np.testing.assert_array_equal(res.blended, image)
    _assert_progress(rec.calls, [("baseline", STEPS)])


def test_crop_mode_small_mask(editor, image, base_result):
    m = _rect_mask(40, 52, 20, 36)
    win = blend.CropWindow.around(m, pad=0.15)
    assert win is not None and win.size != (H, W)
    rec = Recorder()
    res = editor.run(EditRequest(image, mask=m, params=_params(mask_mode="crop")), on_step=rec)
    _assert_progress(rec.calls, [("baseline", STEPS), ("crop", STEPS)])
    assert res.blended.shape == image.shape and res.edit.shape == image.shape
    np.testing.assert_array_equal(res.blended[~m], image[~m])
    np.testing.assert_array_equal(res.blended[m], res.edit[m])
    outside_win = np.ones((H, W), bool)
    outside_win[win.y0 : win.y1, win.x0 : win.x1] = False
    np.testing.assert_array_equal(res.edit[outside_win], image[outside_win])
    np.testing.assert_array_equal(res.baseline, base_result.baseline)


def test_poisson_seam_keeps_far_background(editor, image):
    m = _rect_mask(32, 64, 40, 88)
    res = editor.run(EditRequest(image, mask=m, params=_params(seam="poisson", steps=2)))
    x0, y0, x1, y1 = masks.bbox(m)
    outside = np.ones((H, W), bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(res.blended[outside], image[outside])


def test_feathered_pixel_mode_uses_prepared_mask(editor, image):
    m = _rect_mask(32, 64, 40, 88)
    p = _params(steps=2, dilate=2, feather=1.5)
    res = editor.run(EditRequest(image, mask=m, params=p))
    expected_mask = blend.prepare_mask(m, dilate=2, feather=1.5)
    np.testing.assert_array_equal(res.mask_used, expected_mask)
    np.testing.assert_array_equal(res.blended, blend.composite(image, res.baseline, expected_mask))


# ------------------------------------------------------------------------------------------ sizes


def test_working_size_cap_and_output_size(editor, rng_image):
    img = rng_image(300, 700, seed=5)
    m = _rect_mask(100, 200, 300, 500, h=300, w=700)
    res = editor.run(EditRequest(img, mask=m, params=_params(long_side=128, steps=2)))
    assert res.working_size == images.working_size(300, 700, 128, 8)
    assert max(res.working_size) <= 128
    for arr in (res.baseline, res.blended, res.edit):
        assert arr.shape == (300, 700, 3) and arr.dtype == np.uint8
    assert res.mask_used.shape == (300, 700)
    np.testing.assert_array_equal(res.blended[~m], img[~m])

    # The edit runs on the area-downscaled image and comes back with Lanczos.
    wh, ww = res.working_size
    small = images.resize_image(img, (wh, ww), resample="area")
    direct = editor.run(EditRequest(small, mask=None, params=_params(long_side=128, steps=2)))
    assert direct.working_size == (wh, ww)
    expected = images.resize_image(direct.baseline, (300, 700), resample="lanczos")
    np.testing.assert_array_equal(res.baseline, expected)


def test_mask_shape_mismatch_is_rejected(editor, image):
    with pytest.raises(ValueError, match="mask"):
        editor.run(EditRequest(image, mask=np.ones((H, W + 8), bool), params=_params(steps=1)))


# ------------------------------------------------------------------------------------- cancel / errors


def test_cancel_from_step_callback(editor, image, base_result):
    cancel = threading.Event()
    calls: list[tuple[int, int, str]] = []
    set_at: list[int] = []

    def on_step(done: int, total: int, stage: str) -> None:
        calls.append((done, total, stage))
        if done == 2:
            cancel.set()
            set_at.append(len(calls))

    with pytest.raises(Cancelled):
        editor.run(EditRequest(image, mask=None, params=_params()), on_step=on_step, cancel=cancel)
    assert set_at == [2]
    assert len(calls) - set_at[0] <= 1
    assert [c[0] for c in calls] == list(range(1, len(calls) + 1))

    # The editor is usable afterwards and gives the same answer as before.
    res = editor.run(EditRequest(image, mask=None, params=_params()))
    np.testing.assert_array_equal(res.baseline, base_result.baseline)


def test_cancel_before_start_runs_no_step(editor, image):
    cancel = threading.Event()
    cancel.set()
    rec = Recorder()
    with pytest.raises(Cancelled):
        editor.run(EditRequest(image, mask=None, params=_params()), on_step=rec, cancel=cancel)
    assert rec.calls == []


@pytest.mark.parametrize(
    "exc",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
    ids=["OutOfMemoryError", "RuntimeError"],
)
def test_out_of_memory_becomes_typed_error(editor, rng_image, monkeypatch, exc):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(editor.pipe.unet, "forward", boom)
    img = rng_image(64, 80, seed=2)
    with pytest.raises(OutOfMemoryError) as info:
        editor.run(EditRequest(img, mask=None, params=_params(long_side=256, steps=1)))
    msg = str(info.value)
    assert "working size" in msg and "256" in msg
    assert "80x64" in msg
    assert info.value.__cause__ is exc


def test_other_errors_are_not_reported_as_oom(editor, image, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("shape mismatch in conv")

    monkeypatch.setattr(editor.pipe.unet, "forward", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        editor.run(EditRequest(image, mask=None, params=_params(steps=1)))


# ------------------------------------------------------------------------------------------ loading


def test_load_missing_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises((MissingWeightsError, WeightsError)) as info:
        load_editor(str(missing), device="cpu")
    assert isinstance(info.value, MissingWeightsError)
    assert str(missing) in str(info.value)


def test_load_folder_that_is_not_diffusers(tmp_path):
    folder = tmp_path / "random-folder"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(WeightsError) as info:
        load_editor(str(folder), device="cpu")
    assert str(folder) in str(info.value)


def test_load_broken_diffusers_folder(tmp_path, tiny_ip2p_dir):
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy(tiny_ip2p_dir / "model_index.json", folder / "model_index.json")
    with pytest.raises(WeightsError) as info:
        load_editor(str(folder), device="cpu")
    assert str(folder) in str(info.value)


def test_loaded_editor_describes_itself(editor, tiny_ip2p_dir):
    assert editor.device == "cpu"
    assert editor.dtype == torch.float32
    assert editor.model_id == str(tiny_ip2p_dir)
    assert editor.fingerprint and editor.fingerprint != editor.model_id


# ------------------------------------------------------------------------------------- params / result


@pytest.mark.parametrize(
    "bad",
    [
        {"mask_mode": "magic"},
        {"seam": "glue"},
        {"steps": 0},
        {"image_scale": 0.5},
        {"long_side": 32},
        {"dilate": -1},
        {"feather": -0.5},
        {"latent_dilate": -2},
    ],
)
def test_edit_params_validation(bad):
    with pytest.raises(ValueError):
        _params(**bad)


def test_edit_params_dict_round_trip():
    p = _params(
        mask_mode="latent",
        text_scale=6.0,
        image_scale=1.25,
        long_side=384,
        dilate=3,
        feather=2.5,
        seam="poisson",
        negative_prompt="blurry",
        latent_dilate=4,
        crop_pad=0.2,
    )
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert EditParams.from_dict(d) == p
    assert EditParams.from_dict({**d, "unknown_future_key": 1}) == p
    assert EditParams.from_dict({"instruction": "x"}) == EditParams("x")


def test_result_metadata_is_json(base_result, tiny_ip2p_dir):
    meta = base_result.metadata()
    loaded = json.loads(json.dumps(meta))
    assert loaded["params"] == _params().to_dict()
    assert loaded["params"]["seed"] == SEED and loaded["params"]["instruction"] == INSTRUCTION
    assert loaded["model"]["ip2p"] == str(tiny_ip2p_dir)
    assert loaded["model"]["ip2p_fingerprint"]
    assert loaded["image_size"] == [H, W] and loaded["working_size"] == [H, W]
    assert set(loaded["timings"]) >= {"baseline_s", "blend_s", "total_s"}
    assert EditParams.from_dict(loaded["params"]) == base_result.request.params


def test_fp16_only_folder_loads_on_cpu(tmp_path, rng_image):
    """The registry folder holds only ``*.fp16.safetensors`` weights: CPU loads them as float32."""
    import torch

    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    folder = tmp_path / "ip2p-fp16"
    build_tiny_ip2p().to(torch.float16).save_pretrained(folder, variant="fp16", safe_serialization=True)
    assert any(p.name.endswith(".fp16.safetensors") for p in (folder / "unet").iterdir())
    ed = load_editor(str(folder), device="cpu")
    assert ed.dtype == torch.float32
    res = ed.run(
        EditRequest(image=rng_image(64, 64), mask=None, params=EditParams("make it red", steps=2, seed=1))
    )
    assert res.baseline.shape == (64, 64, 3)


@pytest.mark.parametrize("mode", ["pixel", "latent", "crop"])
def test_reused_baseline_gives_identical_results_with_fewer_steps(editor, rng_image, mode):
    """EditRequest.baseline skips the unmasked run and changes nothing in the outputs."""
    image = rng_image(64, 96, seed=5)
    mask = np.zeros((64, 96), bool)
    mask[16:40, 20:60] = True
    params = EditParams("make it red", steps=2, seed=3, mask_mode=mode, long_side=96)
    full = editor.run(EditRequest(image=image, mask=mask, params=params))
    steps: list[int] = []
    again = editor.run(
        EditRequest(image=image, mask=mask, params=params, baseline=full.baseline),
        on_step=lambda done, total, stage: stage in POST_STAGES or steps.append(total),
    )
    np.testing.assert_array_equal(again.baseline, full.baseline)
    np.testing.assert_array_equal(again.blended, full.blended)
    assert set(steps) == ({2} if mode != "pixel" else set())
    with pytest.raises(ValueError):
        editor.run(EditRequest(image=image, mask=mask, params=params, baseline=full.baseline[:10]))
