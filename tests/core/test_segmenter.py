"""SAM engine: loading, architecture detection, bit-equality with SamPredictor (decoder="exact")."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry

from maskpix_desktop.core.errors import MissingWeightsError, OutOfMemoryError, WeightsError
from maskpix_desktop.core.segmenter import (
    OFFICIAL_CONFIGS,
    Segmenter,
    build_sam_from_config,
    detect_model_type,
    infer_config,
    load_sam,
)
from maskpix_desktop.testing.tiny_sam import build_tiny_sam, save_tiny_sam, tiny_config


def _image(seed: int, h: int = 48, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = (250, 30, 30)  # a flat object to click on
    return img


@pytest.fixture(scope="module")
def sam():
    return build_tiny_sam(seed=0)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("w") / "sam_tiny.pth", seed=0)


def _assert_same(result, reference) -> None:
    masks, scores, logits = reference
    np.testing.assert_array_equal(result.masks, masks)
    np.testing.assert_array_equal(result.scores, scores)
    np.testing.assert_array_equal(result.logits, logits)
    assert result.masks.dtype == bool and result.scores.dtype == np.float32
    assert result.logits.dtype == np.float32


# --- loading and architecture detection -------------------------------------------------------------


def test_tiny_checkpoint_loads_with_inferred_config(sam, tiny_path):
    loaded, model_type = load_sam(tiny_path)
    assert model_type == "custom"
    assert infer_config(loaded.state_dict()) == tiny_config()
    ref = sam.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32 or not v.is_floating_point()
        torch.testing.assert_close(v, ref[k], rtol=0, atol=0)
    img = _image(1)
    pred = SamPredictor(sam)
    pred.set_image(img)
    seg = Segmenter(loaded, model_type, decoder="exact")
    seg.set_image(img)
    pts, lbl = np.array([[30, 20]]), np.array([1])
    _assert_same(seg.predict(pts, lbl), pred.predict(pts, lbl, multimask_output=True))


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_official_architectures_are_detected_exactly(name):
    with torch.device("meta"):
        official = sam_model_registry[name]()
    sd = official.state_dict()
    cfg = infer_config(sd)
    assert cfg == OFFICIAL_CONFIGS[name]
    assert detect_model_type(cfg) == name
    ours = build_sam_from_config(cfg, device="meta")
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in sd.items()}
    assert repr(ours) == repr(official)
    for a, b in zip(ours.image_encoder.blocks, official.image_encoder.blocks, strict=True):
        assert (a.window_size, a.attn.num_heads) == (b.window_size, b.attn.num_heads)
    for a, b in zip(ours.mask_decoder.modules(), official.mask_decoder.modules(), strict=True):
        assert getattr(a, "num_heads", None) == getattr(b, "num_heads", None)
    assert ours.image_encoder.img_size == 1024


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module"])
def test_wrapped_checkpoints_load(sam, tmp_path, wrap):
    sd = sam.state_dict()
    obj = {f"module.{k}": v for k, v in sd.items()} if wrap == "module" else {wrap: sd, "epoch": 3}
    path = tmp_path / "wrapped.pth"
    torch.save(obj, path)
    loaded, model_type = load_sam(path, model_type="custom")
    assert model_type == "custom"
    assert loaded.state_dict().keys() == sd.keys()


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_sam(tmp_path / "nope.pth", model_type="vit_b")
    assert info.value.name == "sam_vit_b"
    with pytest.raises(MissingWeightsError) as info:
        Segmenter.from_checkpoint(tmp_path / "nope.pth")
    assert info.value.name == "sam_vit_h"


def test_wrong_model_type_is_refused(tiny_path):
    with pytest.raises(WeightsError, match="vit_h was chosen"):
        load_sam(tiny_path, model_type="vit_h")


def test_truncated_text_and_empty_files_are_refused(tiny_path, tmp_path):
    data = tiny_path.read_bytes()
    cases = {
        "truncated.pth": data[: len(data) // 2],
        "notes.pth": b"these are not weights\n",
        "empty.pth": b"",
        "not_sam.pth": None,
    }
    torch.save({"weight": torch.zeros(3)}, tmp_path / "not_sam.pth")
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(WeightsError, match=name):
            load_sam(tmp_path / name)


def test_shape_mismatch_is_refused(sam, tmp_path):
    sd = dict(sam.state_dict())
    key = "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight"
    sd[key] = torch.zeros(sd[key].shape[0] + 1, sd[key].shape[1])
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth"):
        load_sam(tmp_path / "bad.pth")
    sd = dict(sam.state_dict())
    sd["image_encoder.patch_embed.proj.weight"] = torch.zeros(3)  # wrong rank
    torch.save(sd, tmp_path / "rank.pth")
    with pytest.raises(WeightsError, match="rank.pth"):
        load_sam(tmp_path / "rank.pth")
    sd = dict(sam.state_dict(), extra=torch.zeros(1))
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="extra.pth"):
        load_sam(tmp_path / "extra.pth")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_malicious_pickles_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    zipped = tmp_path / "zipped.pth"
    torch.save({"image_encoder.pos_embed": _Evil(marker)}, zipped)
    for path in (raw, zipped):
        with pytest.raises(WeightsError, match="refused for safety"):
            load_sam(path)
    assert not marker.exists()


# --- prediction equals SamPredictor -----------------------------------------------------------------

PROMPTS = {
    "one_positive": dict(points=[[30, 20]], labels=[1]),
    "positive_negative": dict(points=[[30, 20], [70, 40]], labels=[1, 0]),
    "box": dict(box=[15, 8, 45, 30]),
    "points_and_box": dict(points=[[30, 20], [5, 5]], labels=[1, 0], box=[15, 8, 45, 30]),
}


@pytest.mark.parametrize("name", list(PROMPTS))
@pytest.mark.parametrize("multimask", [None, True, False])
def test_predict_equals_sam_predictor(sam, name, multimask):
    prompt = {k: np.array(v) for k, v in PROMPTS[name].items()}
    img = _image(2)
    seg = Segmenter(sam, "custom", decoder="exact")
    seg.set_image(img)
    result = seg.predict(**prompt, multimask=multimask)
    expected_multi = name == "one_positive" if multimask is None else multimask
    pred = SamPredictor(sam)
    pred.set_image(img)
    ref = pred.predict(
        point_coords=prompt.get("points"),
        point_labels=prompt.get("labels"),
        box=prompt.get("box"),
        multimask_output=expected_multi,
    )
    _assert_same(result, ref)
    assert len(result) == (3 if expected_multi else 1)
    assert result.masks.shape[1:] == img.shape[:2]
    assert result.logits.shape[1:] == (seg.low_res_size, seg.low_res_size) == (16, 16)


def test_refinement_with_previous_logits_equals_sam_predictor(sam):
    img = _image(3)
    seg = Segmenter(sam, "custom", decoder="exact")
    seg.set_image(img)
    pred = SamPredictor(sam)
    pred.set_image(img)
    first = seg.predict(np.array([[30, 20]]), np.array([1]))
    _, ref_scores, ref_logits = pred.predict(np.array([[30, 20]]), np.array([1]), multimask_output=True)
    np.testing.assert_array_equal(first.logits, ref_logits)
    chosen = first.mask_input()
    assert chosen.shape == (1, 16, 16)
    np.testing.assert_array_equal(chosen[0], ref_logits[np.argmax(ref_scores)])
    pts, lbl = np.array([[30, 20], [70, 40]]), np.array([1, 0])
    second = seg.predict(pts, lbl, mask_input=chosen)
    assert len(second) == 1
    _assert_same(second, pred.predict(pts, lbl, mask_input=chosen, multimask_output=False))
    mask_only = seg.predict(mask_input=chosen)
    _assert_same(mask_only, pred.predict(mask_input=chosen, multimask_output=False))


def test_result_helpers(sam):
    seg = Segmenter(sam, "custom")
    seg.set_image(_image(4))
    r = seg.predict(np.array([[30, 20]]), np.array([1]))
    assert r.best == int(np.argmax(r.scores))
    np.testing.assert_array_equal(r.mask(), r.masks[r.best])
    np.testing.assert_array_equal(r.mask(0), r.masks[0])
    with pytest.raises(AttributeError):
        r.masks = r.masks  # frozen


def test_predict_refusals(sam):
    seg = Segmenter(sam, "custom")
    with pytest.raises(ValueError, match="No image"):
        seg.predict(np.array([[1, 1]]), np.array([1]))
    seg.set_image(_image(5))
    with pytest.raises(ValueError, match="No prompt"):
        seg.predict()
    with pytest.raises(ValueError, match="labels"):
        seg.predict(np.array([[1, 1]]))
    with pytest.raises(ValueError, match="N x 2"):
        seg.predict(np.array([1, 1, 1]), np.array([1]))
    with pytest.raises(ValueError, match="mask_input"):
        seg.predict(np.array([[1, 1]]), np.array([1]), mask_input=np.zeros((1, 256, 256)))
    with pytest.raises(ValueError):
        seg.set_image(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        seg.set_image(np.zeros((8, 8, 3), np.float32))


def test_cuda_oom_becomes_typed_error(sam, monkeypatch):
    seg = Segmenter(sam, "custom")

    def boom(*_a, **_k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(sam.image_encoder, "forward", boom)
    with pytest.raises(OutOfMemoryError, match="ran out of memory"):
        seg.set_image(_image(6))
    assert not seg.has_image and seg.embedding is None
    monkeypatch.undo()
    seg.set_image(_image(6))
    monkeypatch.setattr(sam.prompt_encoder, "forward", boom)
    for decoder in ("fast", "exact"):
        with seg.use_decoder(decoder), pytest.raises(OutOfMemoryError, match="predicting"):
            seg.predict(np.array([[1, 1]]), np.array([1]))


# --- embedding cache ------------------------------------------------------------------------------


def test_embedding_cache_lru(sam):
    calls = []
    handle = sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        seg = Segmenter(sam, "custom", cache_size=2)
        a, b, c = _image(10), _image(11), _image(12, h=64, w=40)
        pts, lbl = np.array([[20, 20]]), np.array([1])
        assert seg.set_image(a) is True
        first_a = seg.predict(pts, lbl)
        assert seg.set_image(a.copy()) is False  # same content, new array
        assert (len(calls), seg.encoder_calls) == (1, 1)
        assert seg.set_image(b) is True
        assert (len(calls), seg.encoder_calls) == (2, 2)
        assert seg.set_image(a) is False  # back to a cached image: identical results
        _assert_same(seg.predict(pts, lbl), (first_a.masks, first_a.scores, first_a.logits))
        assert (len(calls), seg.encoder_calls) == (2, 2)
        assert seg.set_image(c) is True  # evicts b (least recently used), keeps a
        assert len(seg.cached_keys()) == 2
        assert seg.predict(pts, lbl).masks.shape[1:] == (64, 40)
        assert seg.set_image(a) is False
        assert seg.set_image(b) is True
        assert (len(calls), seg.encoder_calls) == (4, 4)
        seg.clear_cache()
        assert not seg.has_image and seg.cached_keys() == []
        assert seg.set_image(a) is True
    finally:
        handle.remove()


# --- speed paths: lazy full-size masks, re-used image tokens (still exact) ---------------------------

LARGE = [(300, 400), (512, 320), (90, 1000)]  # second resize well above the small-output threshold


@pytest.fixture
def threads():
    """Run a test body at a chosen torch thread count, restoring the default afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("hw", LARGE)
def test_lazy_masks_equal_sam_predictor_on_large_images(sam, threads, n_threads, hw):
    threads(n_threads)
    img = _image(20, *hw)
    h, w = hw
    seg = Segmenter(sam, "custom", decoder="exact")
    seg.set_image(img)
    pred = SamPredictor(sam)
    pred.set_image(img)
    pts, lbl = np.array([[w // 3, h // 3]]), np.array([1])
    result = seg.predict(pts, lbl)
    ref = pred.predict(pts, lbl, multimask_output=True)
    assert result.best in result.computed()  # the best candidate is ready when predict returns
    for i in range(len(result)):
        np.testing.assert_array_equal(result.mask(i), ref[0][i])
    _assert_same(result, ref)
    box = np.array([w // 5, h // 5, 4 * w // 5, 4 * h // 5])
    single = seg.predict(pts, lbl, box=box, mask_input=result.mask_input())
    _assert_same(
        single, pred.predict(pts, lbl, box=box, mask_input=result.mask_input(), multimask_output=False)
    )


def test_only_the_requested_candidate_is_upsampled(sam):
    seg = Segmenter(sam, "custom")
    seg.set_image(_image(21, 300, 400))
    r = seg.predict(np.array([[100, 80]]), np.array([1]))
    assert r.computed() == [r.best]
    other = (r.best + 1) % 3
    m = r.mask(other)
    assert m.shape == (300, 400) and m.dtype == bool
    assert sorted(r.computed()) == sorted({r.best, other})
    assert r.mask(other) is m  # kept, not recomputed
    assert r.masks.shape == (3, 300, 400) and r.computed() == [0, 1, 2]
    np.testing.assert_array_equal(r.masks[other], m)


def test_exact_decoder_is_sam_predictor_itself(sam, monkeypatch):
    """decoder="exact" hands the prompts to SamPredictor.predict on the cached embedding."""
    calls = []
    real = SamPredictor.predict

    def spy(self, *a, **k):
        calls.append(self)
        return real(self, *a, **k)

    monkeypatch.setattr(SamPredictor, "predict", spy)
    seg = Segmenter(sam, "custom", decoder="exact")
    assert seg.decoder == "exact" and not seg.fast_decoder
    seg.set_image(_image(22, 300, 400))
    r = seg.predict(np.array([[100, 80]]), np.array([1]))
    assert len(calls) == 1 and r.computed() == [0, 1, 2]
    fast = Segmenter(sam, "custom")
    fast.set_image(_image(22, 300, 400))
    fast.predict(np.array([[100, 80]]), np.array([1]))
    assert len(calls) == 1  # the fast path does not go through SamPredictor


def test_public_decoder_api_embedding_twin_and_low_res(sam):
    """What the benchmark uses: the embedding, an exact twin (no second encode), the decoder alone."""
    img = _image(23, 300, 400)
    seg = Segmenter(sam, "custom")
    assert seg.embedding is None
    seg.set_image(img)
    emb = seg.embedding
    pred = SamPredictor(sam)
    pred.set_image(img)
    assert torch.equal(emb.features, pred.features)
    assert (emb.original_size, emb.input_size, emb.image_size) == (
        pred.original_size,
        pred.input_size,
        (300, 400),
    )
    twin = seg.twin(decoder="exact")
    assert twin.decoder == "exact" and seg.decoder == "fast"
    assert twin.embedding is emb and twin.current_key == seg.current_key and twin.encoder_calls == 0
    pts, lbl = np.array([[100, 80]]), np.array([1])
    ref_masks, ref_scores, ref_logits = pred.predict(pts, lbl, multimask_output=True)
    _assert_same(twin.predict(pts, lbl), (ref_masks, ref_scores, ref_logits))
    with seg.use_decoder("exact"):
        assert seg.decoder == "exact"
        low, iou = seg.predict_low_res(pts, lbl)
    assert seg.decoder == "fast"
    np.testing.assert_array_equal(low.numpy(), ref_logits)  # SAM's modules: bit for bit
    np.testing.assert_array_equal(iou.numpy(), ref_scores)
    fast_low, fast_iou = seg.predict_low_res(pts, lbl, multimask=True)
    assert fast_low.shape == (3, 16, 16) and fast_iou.shape == (3,)
    np.testing.assert_allclose(fast_low.numpy(), ref_logits, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="decoder must be one of"), seg.use_decoder("onnx"):
        pass
    with pytest.raises(ValueError, match="No image"):
        Segmenter(sam, "custom").predict_low_res(pts, lbl)


def test_non_standard_decoder_runs_unchanged(sam):
    from maskpix_desktop.core.segmenter import _standard_decoder

    assert _standard_decoder(sam.mask_decoder)
    assert not _standard_decoder(torch.nn.Linear(2, 2))


def test_result_from_arrays_and_frozen():
    from dataclasses import FrozenInstanceError

    from maskpix_desktop.core.segmenter import SegmentResult

    m = np.zeros((2, 4, 5), bool)
    m[1, 1:3, 1:4] = True
    r = SegmentResult(m, np.array([0.2, 0.9], np.float32), np.zeros((2, 8, 8), np.float32))
    assert len(r) == 2 and r.best == 1 and r.computed() == [0, 1]
    assert r.mask().sum() == 6 and r.mask(-2).sum() == 0
    assert r.mask_input().shape == (1, 8, 8)
    with pytest.raises(IndexError):
        r.mask(2)
    with pytest.raises(FrozenInstanceError):
        r.scores = None
    with pytest.raises(ValueError):
        SegmentResult(None, r.scores, r.logits)


def test_encoder_precision_is_cuda_only_and_stores_float32(sam):
    with pytest.raises(ValueError, match="encoder_precision"):
        Segmenter(sam, "custom", encoder_precision="fp64")
    assert Segmenter(sam, "custom", encoder_precision="bf16").encoder_precision == "fp32"  # CPU: fp32
    img = _image(31, 60, 90)
    ref = Segmenter(sam, "custom")
    ref.set_image(img)
    seg = Segmenter(sam, "custom")
    seg.encoder_precision = "bf16"  # the CUDA code path, run under CPU autocast
    seg.set_image(img)
    feats, ref_feats = seg.embedding.features, ref.embedding.features
    assert feats.dtype == torch.float32
    assert not torch.equal(feats, ref_feats)  # it did run in bfloat16
    assert float((feats - ref_feats).norm() / ref_feats.norm()) < 0.05
    assert seg.encoder_fallbacks == 0


def test_overflowing_half_precision_embedding_is_redone_in_float32(sam):
    img = _image(32, 60, 90)
    ref = Segmenter(sam, "custom")
    ref.set_image(img)
    seg = Segmenter(sam, "custom")
    seg.encoder_precision = "fp16"

    def overflowing(_module, _args, out):
        if torch.is_autocast_enabled("cpu"):  # what an fp16 overflow leaves behind
            return torch.full_like(out, float("inf"))
        return out

    handle = sam.image_encoder.register_forward_hook(overflowing)
    try:
        seg.set_image(img)
    finally:
        handle.remove()
    assert seg.encoder_fallbacks == 1 and seg.encoder_calls == 1
    assert torch.equal(seg.embedding.features, ref.embedding.features)  # the float32 embedding


def test_tf32_flags_are_restored():
    from maskpix_desktop.core.segmenter import _tf32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with _tf32(True):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize("decoder", ["fast", "exact"])
@pytest.mark.parametrize("hw", [(16, 4000), (4000, 16), (1, 300)])
def test_thin_images_are_padded_for_sam_and_masks_cropped_back(sam, decoder, hw):
    """A 64 px model would resize a 16 px side of a 4000 px image to 0 px; the Segmenter pads it."""
    from maskpix_desktop.core.segmenter import _pad_thin

    h, w = hw
    img = _image(40, h, w)
    padded = _pad_thin(img, 64)
    assert padded.shape[:2] != img.shape[:2] and min(padded.shape[:2]) * 64 >= max(padded.shape[:2])
    np.testing.assert_array_equal(padded[:h, :w], img)
    seg = Segmenter(sam, "custom", decoder=decoder)
    seg.set_image(img)
    pts, lbl = np.array([[w // 2, h // 2]]), np.array([1])
    res = seg.predict(pts, lbl)
    assert res.masks.shape == (3, h, w) and res.mask().shape == (h, w)
    refined = seg.predict(pts, lbl, mask_input=res.mask_input())  # logits stay in the padded frame
    assert refined.masks.shape == (1, h, w)
    # the same as encoding the padded image and cropping, as SamPredictor would see it
    ref = SamPredictor(sam)
    ref.set_image(padded)
    masks, _, logits = ref.predict(pts, lbl, multimask_output=True)
    np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-5)
    if decoder == "exact":
        np.testing.assert_array_equal(res.masks, masks[:, :h, :w])
    seg.set_image(_image(41, 50, 60))
    assert seg.predict(pts * 0 + 10, lbl).masks.shape == (3, 50, 60)
    seg.set_image(img)  # from the cache: the crop size comes back with the embedding
    assert seg.encoder_calls == 2 and seg.predict(pts, lbl).masks.shape == (3, h, w)


def test_warm_up_leaves_the_segmenter_untouched(sam, monkeypatch):
    seg = Segmenter(sam, "custom")
    calls = []
    monkeypatch.setattr(
        sam.image_encoder, "forward", lambda x, f=sam.image_encoder.forward: calls.append(1) or f(x)
    )
    seg.warm_up()  # CPU: nothing to set up
    assert calls == []
    seg.set_image(_image(50, 40, 60))
    key = seg.current_key
    seg.warm_up(force=True)  # what CUDA does: one encode through a throwaway Segmenter
    assert calls == [1, 1]
    assert seg.current_key == key and seg.cached_keys() == [key] and seg.encoder_calls == 1
    assert seg.predict(np.array([[30, 20]]), np.array([1])).masks.shape == (3, 40, 60)
