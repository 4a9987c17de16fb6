"""SAM 2 engine: the exact decoder path equals transformers' processor + Sam2Model bit for bit; the feature
cache, loading, registry (the default fast decoder: tests/core/test_sam2_decoder.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from maskpix_desktop.core import models, sam2_segmenter
from maskpix_desktop.core.errors import DownloadError, MissingWeightsError, WeightsError
from maskpix_desktop.core.sam2_arch import SAM2_SIZES, detect_family, detect_sam2_type, sam2_config
from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter, _single_channel_exact, app_precision
from maskpix_desktop.core.service import SAM2_VARIANTS, ModelChoice, ModelService
from maskpix_desktop.testing.tiny_sam2 import build_tiny_sam2, save_tiny_sam2

TINY = "sam2.1_hiera_tiny"


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    """(Sam2Model, Sam2Processor): the reference pair, random weights (seed 0)."""
    return build_tiny_sam2(seed=0)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny SAM 2 saved where the registry expects sam2.1_hiera_tiny (a Hugging Face folder)."""
    root = tmp_path_factory.mktemp("sam2_models")
    return save_tiny_sam2(models.local_path(TINY, root), seed=0)


def reference(model, processor, image, *, embeddings=None, **prompt: Any) -> dict[str, Any]:
    """transformers' documented call: processor -> Sam2Model -> post_process_masks (one image, one object)."""
    kw: dict[str, Any] = {}
    if prompt.get("points") is not None:
        kw["input_points"] = [[np.asarray(prompt["points"]).tolist()]]
        kw["input_labels"] = [[np.asarray(prompt["labels"]).tolist()]]
    if prompt.get("box") is not None:
        kw["input_boxes"] = [[np.asarray(prompt["box"]).tolist()]]
    if embeddings is None:
        inputs = dict(processor(images=image, return_tensors="pt", **kw))
    else:
        sizes = [list(image.shape[:2])]
        inputs = dict(processor(original_sizes=sizes, return_tensors="pt", **kw))
        inputs["image_embeddings"] = embeddings
    sizes = inputs.pop("original_sizes")
    if prompt.get("mask_input") is not None:
        inputs["input_masks"] = torch.as_tensor(prompt["mask_input"])[None]
    with torch.no_grad():
        out = model(**inputs, multimask_output=prompt.get("multimask", True))
    masks = processor.post_process_masks(out.pred_masks, sizes)[0][0].numpy()
    return {
        "masks": masks,
        "scores": out.iou_scores[0, 0].numpy(),
        "logits": out.pred_masks[0, 0].numpy(),
        "embeddings": out.image_embeddings,
    }


def assert_same(res, ref: dict[str, Any]) -> None:
    assert res.masks.dtype == bool and res.masks.shape == ref["masks"].shape
    assert np.array_equal(res.masks, ref["masks"])
    np.testing.assert_allclose(res.scores, ref["scores"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res.logits, ref["logits"], rtol=1e-5, atol=1e-5)


PROMPTS = {
    "one_point": dict(points=[[40, 30]], labels=[1], multimask=True),
    "one_point_single": dict(points=[[70, 50]], labels=[1], multimask=False),
    "points_pos_neg": dict(points=[[40, 30], [90, 60], [20, 80]], labels=[1, 0, 1], multimask=False),
    "box": dict(box=[10, 12, 100, 80], multimask=False),
    "box_multimask": dict(box=[30, 20, 110, 90], multimask=True),
    "box_and_points": dict(
        box=[10, 12, 100, 80], points=[[50, 40], [95, 75]], labels=[1, 0], multimask=False
    ),
}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_sam2_click_equals_reference_with_image_reencoded(tiny, rng_image, name: str) -> None:
    model, processor = tiny
    image = rng_image(96, 128, seed=5)
    seg = Sam2Segmenter(model, processor.image_processor, decoder="exact")
    seg.set_image(image)
    p = PROMPTS[name]
    res = seg.predict(
        np.asarray(p["points"]) if "points" in p else None,
        np.asarray(p["labels"]) if "labels" in p else None,
        np.asarray(p["box"], np.float32) if "box" in p else None,
        multimask=p["multimask"],
    )
    assert len(res) == (3 if p["multimask"] else 1)
    assert_same(res, reference(model, processor, image, **p))


def test_sam2_clicks_equal_reference_with_embeddings_passed_and_encode_once(tiny, rng_image) -> None:
    """Several clicks on one image: one encoder run (counted on the vision encoder itself); each click
    equals Sam2Model given the reference's own image_embeddings; masks computed lazily, same bits."""
    model, processor = tiny
    image = rng_image(150, 200, seed=7)  # h + w > 160: the best candidate alone is upscaled at first
    runs = []
    hook = model.vision_encoder.register_forward_hook(lambda *a: runs.append(1))
    try:
        seg = Sam2Segmenter(model, processor.image_processor, decoder="exact")
        assert seg.set_image(image) is True
        first = reference(model, processor, image, points=[[60, 70]], labels=[1])
        assert len(runs) == 2  # ours + the reference's one full forward
        clicks = [
            dict(points=[[60, 70]], labels=[1], multimask=True),
            dict(points=[[60, 70], [150, 20]], labels=[1, 0], multimask=False),
            dict(box=[20, 30, 180, 120], multimask=True),
            dict(box=[20, 30, 180, 120], points=[[100, 80]], labels=[1], multimask=False),
        ]
        for p in clicks:
            assert seg.set_image(image.copy()) is False  # same pixels: served from the cache
            res = seg.predict(
                np.asarray(p["points"], np.float32) if "points" in p else None,
                np.asarray(p["labels"]) if "labels" in p else None,
                np.asarray(p["box"], np.float32) if "box" in p else None,
                multimask=p["multimask"],
            )
            # Only the best mask is upscaled up front where that gives the same bits; whether it does
            # depends on the thread count and CPU kernels, which the engine probes (as here).
            lazy = _single_channel_exact(len(res), torch.get_num_threads(), seg.low_res_size)
            assert res.computed() == ([res.best] if lazy else list(range(len(res))))
            assert_same(res, reference(model, processor, image, embeddings=first["embeddings"], **p))
        assert len(runs) == 2 and seg.encoder_calls == 1
    finally:
        hook.remove()


def test_sam2_mask_input_refinement_equals_reference(tiny, rng_image) -> None:
    model, processor = tiny
    image = rng_image(120, 90, seed=2)
    seg = Sam2Segmenter(model, processor.image_processor, decoder="exact")
    seg.set_image(image)
    first = seg.predict(np.array([[45, 60]]), np.array([1]))
    assert first.mask_input().shape == (1, seg.low_res_size, seg.low_res_size) == (1, 32, 32)
    ref1 = reference(model, processor, image, points=[[45, 60]], labels=[1])
    assert_same(first, ref1)
    prompt = dict(points=[[45, 60], [80, 100]], labels=[1, 0], mask_input=first.mask_input(), multimask=False)
    res = seg.predict(np.asarray(prompt["points"]), np.asarray(prompt["labels"]), None, prompt["mask_input"])
    assert_same(res, reference(model, processor, image, embeddings=ref1["embeddings"], **prompt))
    alone = seg.predict(mask_input=first.mask_input(0))  # mask only: Sam2Model's empty point
    assert_same(
        alone,
        reference(
            model,
            processor,
            image,
            embeddings=ref1["embeddings"],
            mask_input=first.mask_input(0),
            multimask=False,
        ),
    )
    with pytest.raises(ValueError, match="1 x 32 x 32"):
        seg.predict(np.array([[1, 1]]), np.array([1]), mask_input=np.zeros((1, 256, 256), np.float32))


def test_sam2_lru_evicts_the_least_recent_image(tiny, rng_image) -> None:
    model, processor = tiny
    seg = Sam2Segmenter(model, processor.image_processor, cache_size=2)
    a, b, c = (rng_image(64, 80, seed=s) for s in (1, 2, 3))
    assert [seg.set_image(x) for x in (a, b, a, c)] == [True, True, False, True]  # c evicts b, not a
    assert seg.encoder_calls == 3 and len(seg.cached_keys()) == 2
    assert seg.set_image(a) is False and seg.set_image(b) is True and seg.encoder_calls == 4
    seg.clear_cache()
    assert not seg.has_image and seg.cached_keys() == []
    with pytest.raises(ValueError, match="No image set"):
        seg.predict(np.array([[1, 1]]), np.array([1]))


def test_sam2_service_loads_registry_name_and_folder(tiny, tiny_folder: Path, rng_image) -> None:
    """The real loading code (service -> registry folder -> Sam2Model.from_pretrained) gives clicks equal
    to the in-memory reference model (``--precision fp32``: float32 on every CPU)."""
    model, processor = tiny
    image = rng_image(96, 128, seed=9)
    want = reference(model, processor, image, points=[[30, 40], [100, 70]], labels=[1, 0], multimask=False)
    root = tiny_folder.parent
    for sam in (TINY, str(tiny_folder), str(tiny_folder / "model.safetensors")):
        service = ModelService(ModelChoice(models_dir=str(root), sam=sam, device="cpu", precision="fp32"))
        seg = service.segmenter()
        assert isinstance(seg, Sam2Segmenter) and seg.model_type == "custom"
        seg.set_image(image)
        assert_same(seg.predict(np.array([[30, 40], [100, 70]]), np.array([1, 0])), want)
        info = service.model_info()
        assert info["sam"] == "custom" and len(info["sam_fingerprint"]) == 64


def test_sam2_registry_entries_and_missing_weights_message(tmp_path: Path) -> None:
    assert SAM2_VARIANTS == (TINY, "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large")
    for name in SAM2_VARIANTS:
        spec = models.get_spec(name)
        assert spec.kind == "sam2" and spec.hf_repo.startswith("facebook/sam2.1-hiera-")
        assert [f.filename for f in spec.files] == [
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
        ]
        assert all(f.sha256 is None and f.size_bytes is None for f in spec.files)  # unpinned, said plainly
        assert "unpinned" in spec.description
    assert models.local_path("sam2.1_hiera_base_plus", tmp_path) == tmp_path / "sam2.1-hiera-base-plus"
    with pytest.raises(MissingWeightsError, match=f"maskpix-cli models download {TINY}"):
        ModelChoice(models_dir=str(tmp_path), sam=TINY).sam_checkpoint()


def test_sam2_download_offline_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from maskpix_desktop.cli import main

    monkeypatch.setenv(models.ENV_OFFLINE, "1")
    with pytest.raises(DownloadError, match=f"Cannot download '{TINY}': offline mode is on"):
        models.download(TINY, tmp_path)
    monkeypatch.delenv(models.ENV_OFFLINE)  # HF_HUB_OFFLINE=1 (conftest): the hub client refuses
    assert main(["models", "download", TINY, "--models-dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert f"Could not download '{TINY}' (facebook/sam2.1-hiera-tiny@main)" in err and "offline" in err
    assert not models.is_present(TINY, tmp_path)


@pytest.mark.parametrize("size", list(SAM2_SIZES))
def test_sam2_type_detected_from_the_weights(size: str) -> None:
    from transformers import Sam2Model

    with torch.device("meta"):
        model = Sam2Model(sam2_config(size))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert detect_family(shapes) == "sam2"
    assert detect_sam2_type(shapes) == f"sam2_hiera_{size}"


def test_sam1_and_official_sam2_keys_are_told_apart(tmp_path: Path) -> None:
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    sam1_sd = build_tiny_sam().state_dict()
    assert detect_family(sam1_sd) == "sam1"
    with pytest.raises(WeightsError, match="Not SAM 2 weights"):
        detect_sam2_type({"image_encoder.patch_embed.proj.weight": (32, 3, 16, 16)})
    official = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(2, 3, 7, 7)}}, official)
    service = ModelService(ModelChoice(models_dir=str(tmp_path), sam=str(official), device="cpu"))
    with pytest.raises(WeightsError, match="official SAM 2 checkpoint.*models download sam2.1_hiera_tiny"):
        service.segmenter()
    torch.save(sam1_sd, tmp_path / "tiny-sam.pth")
    choice = ModelChoice(models_dir=str(tmp_path), sam=str(tmp_path / "tiny-sam.pth"), device="cpu")
    sam1 = ModelService(choice).segmenter()
    assert not isinstance(sam1, Sam2Segmenter) and sam1.model_type == "custom"  # SAM 1 .pth: SAM 1


def test_sam2_bad_folders_give_clear_errors(tmp_path: Path, tiny_folder: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match="not a SAM 2 model folder"):
        Sam2Segmenter.from_pretrained(empty)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_folder / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin.*refused for safety"):
        Sam2Segmenter.from_pretrained(pickled)
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_folder, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["mask_decoder_config"]["hidden_size"] = 64
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="Cannot load SAM 2 from .*wrong"):
        Sam2Segmenter.from_pretrained(wrong)
    small = tmp_path / "small_processor"
    shutil.copytree(tiny_folder, small)
    (small / "processor_config.json").unlink()
    (small / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "Sam2ImageProcessor", "size": {"height": 64, "width": 64}})
    )
    with pytest.raises(WeightsError, match=r"preprocessor_config\.json': field 'size' is 64x64"):
        Sam2Segmenter.from_pretrained(small)
    with pytest.raises(MissingWeightsError):
        Sam2Segmenter.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize("native", [False, True])
def test_app_precision_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(sam2_segmenter, "cpu_native_bf16", lambda: native)
    assert app_precision("auto", "cpu") == ("bf16" if native else "auto")
    assert app_precision("fp32", "cpu") == "fp32"  # --precision fp32: float32 everywhere
    assert app_precision("auto", "cuda") == "auto"  # CUDA: the segmenter's own choice (TF32)


def test_cpu_bf16_encoder_runs_in_bfloat16_and_keeps_float32_features(tiny, rng_image) -> None:
    """On the CPU "bf16" is honoured (autocast); the features stay float32 (the decoder runs in float32)
    and the click's logits stay close to the float32 encoder's; a CUDA-only precision means float32."""
    model, processor = tiny
    image = rng_image(96, 128, seed=4)
    half = Sam2Segmenter(model, processor.image_processor, encoder_precision="fp16")
    assert half.encoder_precision == "fp32"
    logits = {}
    for prec in ("fp32", "bf16"):
        seg = Sam2Segmenter(model, processor.image_processor, encoder_precision=prec)
        assert seg.encoder_precision == prec
        seg.set_image(image)
        logits[prec] = seg.predict(np.array([[40, 30]]), np.array([1])).logits
    assert logits["bf16"].dtype == np.float32
    rel = float(np.abs(logits["bf16"] - logits["fp32"]).max() / np.abs(logits["fp32"]).max())
    assert 0 < rel < 0.05  # bfloat16 rounding in the encoder: different bits, the same logits to ~1e-2


def test_service_picks_bf16_for_sam2_on_a_native_bf16_cpu(monkeypatch, tiny_folder: Path) -> None:
    monkeypatch.setattr(sam2_segmenter, "cpu_native_bf16", lambda: True)
    root = str(tiny_folder.parent)
    auto = ModelService(ModelChoice(models_dir=root, sam=TINY, device="cpu")).segmenter()
    exact = ModelService(ModelChoice(models_dir=root, sam=TINY, device="cpu", precision="fp32")).segmenter()
    assert (auto.encoder_precision, exact.encoder_precision) == ("bf16", "fp32")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_warm_up_encodes_once_only_for_a_bf16_encoder_and_leaves_the_segmenter_untouched(
    tiny, rng_image, monkeypatch, precision: str
) -> None:
    """oneDNN sets up its bf16 kernels at a process's first bf16 encode: warm_up pays that at model load
    (the service calls it) for a bf16 encoder on the CPU; a float32 encoder on the CPU has nothing to warm."""
    model, processor = tiny
    calls: list[int] = []
    forward = model.vision_encoder.forward
    monkeypatch.setattr(model.vision_encoder, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    seg = Sam2Segmenter(model, processor.image_processor, encoder_precision=precision)
    image = rng_image(96, 128, seed=6)
    seg.set_image(image)
    key = seg.current_key
    seg.warm_up()
    assert calls == ([1, 1] if precision == "bf16" else [1])
    assert seg.current_key == key and seg.cached_keys() == [key] and seg.encoder_calls == 1
    assert seg.predict(np.array([[40, 30]]), np.array([1])).masks.shape == (3, 96, 128)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_position_embedding_is_computed_at_load_and_encodes_are_bit_equal(rng_image, precision: str) -> None:
    """The Hiera position embedding is cached per (size, autocast) at construction and the neck's sine
    embedding per shape at the first encode; a later encode computes neither (no bicubic resize, no sine)
    and gives exactly the clicks of a segmenter running transformers' own code."""
    model, processor = build_tiny_sam2(seed=0)
    seg = Sam2Segmenter(model, processor.image_processor, encoder_precision=precision)
    cache = model.vision_encoder.backbone._get_pos_embed.maskpix_cache
    assert len(cache) == 1  # filled at load, for the processor's input size
    sine = model.vision_encoder.neck.position_encoding.forward.maskpix_cache
    untouched, _ = build_tiny_sam2(seed=0)
    ref = Sam2Segmenter(untouched, processor.image_processor, encoder_precision=precision)
    del untouched.vision_encoder.backbone._get_pos_embed  # back to transformers' methods: no caches
    del untouched.vision_encoder.neck.position_encoding.forward
    seg.set_image(rng_image(96, 128, seed=4))  # the first encode fills the sine cache, one entry per level
    levels = len(sine)
    assert levels == len(model.vision_encoder.neck.convs) and len(cache) == 1
    calls: list[Any] = []
    interpolate, sin = torch.nn.functional.interpolate, torch.Tensor.sin

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("mode"))
        return interpolate(*args, **kwargs)

    def counting_sin(self: torch.Tensor) -> torch.Tensor:
        calls.append("sin")
        return sin(self)

    image = rng_image(96, 128, seed=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "interpolate", counting)
        mp.setattr(torch.Tensor, "sin", counting_sin)
        seg.set_image(image)
        assert "bicubic" not in calls and "sin" not in calls and (len(cache), len(sine)) == (1, levels)
        ref.set_image(image)
        assert "bicubic" in calls and "sin" in calls  # the untouched model computes both at every encode
    for points, labels in (([[40, 30]], [1]), ([[10, 20], [90, 60]], [1, 0])):
        got = seg.predict(np.array(points), np.array(labels))
        want = ref.predict(np.array(points), np.array(labels))
        np.testing.assert_array_equal(got.logits, want.logits)
        np.testing.assert_array_equal(got.scores, want.scores)
