"""The re-associated SAM 2 decoder (core.sam2_decoder): Sam2MaskDecoder's maths to float32 rounding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from maskpix_desktop.core import sam2_decoder
from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter
from maskpix_desktop.testing.tiny_sam2 import SIDE, build_tiny_sam2


def _wide_sam2(seed: int = 3) -> tuple[Any, Any]:
    """A small hiera with SAM 2's official decoder width (256 wide, 8 heads, attention 128 wide), so
    the folded (token-side) attention branch runs; 8 x 8 embedding grid."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    backbone = Sam2HieraDetConfig(
        hidden_size=12, image_size=SIDE, blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[12, 24, 48, 96]
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
        fpn_hidden_size=256,
    )
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(
            hidden_size=256, image_size=SIDE, patch_size=16, mask_input_channels=16
        ),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=256, mlp_dim=512, num_attention_heads=8, iou_head_hidden_dim=64
        ),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2Model(config).eval()
        with torch.no_grad():
            model.no_memory_embedding.normal_(0.0, 0.1)
    low = 4 * SIDE // 16
    processor = Sam2Processor(
        image_processor=Sam2ImageProcessor(
            size={"height": SIDE, "width": SIDE}, mask_size={"height": low, "width": low}
        )
    )
    return model, processor


@pytest.fixture(scope="module")
def sam2_models() -> dict[str, tuple[Any, Any]]:
    return {"tiny": build_tiny_sam2(seed=0), "wide": _wide_sam2()}


def _reference(model, processor, image, embeddings, p: dict[str, Any]) -> dict[str, np.ndarray]:
    """Sam2Processor + Sam2Model(image_embeddings=...) + the post_process_masks resize (logits kept)."""
    kw: dict[str, Any] = {}
    if p.get("points") is not None:
        kw["input_points"] = [[np.asarray(p["points"]).tolist()]]
        kw["input_labels"] = [[np.asarray(p["labels"]).tolist()]]
    if p.get("box") is not None:
        kw["input_boxes"] = [[np.asarray(p["box"]).tolist()]]
    inputs = dict(processor(original_sizes=[list(image.shape[:2])], return_tensors="pt", **kw))
    sizes = inputs.pop("original_sizes")
    if p.get("mask_input") is not None:
        inputs["input_masks"] = torch.as_tensor(p["mask_input"])[None]
    with torch.no_grad():
        out = model(**inputs, image_embeddings=embeddings, multimask_output=p["multimask"])
    up = processor.post_process_masks(out.pred_masks, sizes, binarize=False)[0][0]
    return {"logits": out.pred_masks[0, 0].numpy(), "scores": out.iou_scores[0, 0].numpy(), "up": up.numpy()}


def _prompts(h: int, w: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    box = [0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h]
    return [
        dict(points=[[0.4 * w, 0.45 * h]], labels=[1], multimask=True),
        dict(points=[[0.7 * w, 0.5 * h]], labels=[1], multimask=False),  # the stability rule
        dict(points=[[0.4 * w, 0.45 * h], [0.8 * w, 0.2 * h]], labels=[1, 0], multimask=False),
        dict(box=box, multimask=False),
        dict(box=box, multimask=True),
        dict(box=box, points=[[0.4 * w, 0.45 * h]], labels=[1], multimask=False),
        # 12 points + pad + 6 output tokens: 19 x 8 heads > 128, so the projected branch runs (wide)
        dict(
            points=rng.uniform(0, min(h, w), (12, 2)).tolist(),
            labels=rng.integers(0, 2, 12).tolist(),
            multimask=False,
        ),
    ]


def _predict(seg: Sam2Segmenter, p: dict[str, Any]):
    return seg.predict(
        np.asarray(p["points"], np.float32) if "points" in p else None,
        np.asarray(p["labels"]) if "labels" in p else None,
        np.asarray(p["box"], np.float32) if "box" in p else None,
        p.get("mask_input"),
        multimask=p["multimask"],
    )


def _assert_close_to_reference(res, ref: dict[str, np.ndarray]) -> None:
    """Logits and scores to float32 rounding; masks equal except where the reference's upscaled logit
    is within rounding of the threshold 0."""
    scale = float(np.abs(ref["logits"]).max())  # rounding is relative to the logits' magnitude
    np.testing.assert_allclose(res.logits, ref["logits"], rtol=0, atol=2e-5 * scale)
    np.testing.assert_allclose(res.scores, ref["scores"], rtol=0, atol=2e-5)
    assert res.masks.dtype == bool and res.masks.shape == ref["up"].shape
    clear = np.abs(ref["up"]) > 1e-4 * scale
    assert clear.mean() > 0.9  # the comparison covers almost every pixel
    assert np.array_equal(res.masks[clear], ref["up"][clear] > 0)


@pytest.mark.parametrize("which", ["tiny", "wide"])
def test_fast_sam2_clicks_match_reference_within_float32_rounding(sam2_models, rng_image, which: str) -> None:
    model, processor = sam2_models[which]
    h, w = 150, 200
    image = rng_image(h, w, seed=7)
    seg = Sam2Segmenter(model, processor.image_processor)
    assert seg.decoder == "fast" and seg.fast_decoder
    seg.set_image(image)
    embeddings = list(seg._cache[seg.current_key].features)
    prompts = _prompts(h, w)
    first = _predict(seg, prompts[0])
    prompts.append(
        dict(points=[[0.4 * w, 0.45 * h]], labels=[1], mask_input=first.mask_input(), multimask=False)
    )
    prompts.append(dict(mask_input=first.mask_input(0), multimask=False))  # mask alone: the empty point
    for p in prompts:
        res = _predict(seg, p)
        assert len(res) == (3 if p["multimask"] else 1)
        _assert_close_to_reference(res, _reference(model, processor, image, embeddings, p))
        np.testing.assert_array_equal(_predict(seg, p).logits, res.logits)  # deterministic


def test_fast_sam2_single_mask_follows_the_stability_rule(sam2_models, rng_image) -> None:
    """multimask=False: token 0's mask when stable, else the best of the three (as Sam2MaskDecoder)."""
    model, processor = sam2_models["wide"]
    seg = Sam2Segmenter(model, processor.image_processor)
    seg.set_image(rng_image(96, 128, seed=4))
    d = model.mask_decoder
    p = dict(points=[[50, 40]], labels=[1])
    three = seg.predict(np.array(p["points"]), np.array(p["labels"]), multimask=True)
    saved = d.dynamic_multimask_stability_thresh
    try:
        d.dynamic_multimask_stability_thresh = 2.0  # never stable: the best multimask candidate
        unstable = seg.predict(np.array(p["points"]), np.array(p["labels"]), multimask=False)
        np.testing.assert_array_equal(unstable.logits[0], three.logits[three.best])
        assert unstable.scores[0] == three.scores[three.best]
        d.dynamic_multimask_stability_thresh = -1.0  # always stable: token 0, not one of the three
        stable = seg.predict(np.array(p["points"]), np.array(p["labels"]), multimask=False)
        assert not any(np.array_equal(stable.logits[0], c) for c in three.logits)
    finally:
        d.dynamic_multimask_stability_thresh = saved


def test_fast_sam2_upscale_equals_conv_transpose_path_in_float64(sam2_models) -> None:
    model, _ = sam2_models["wide"]
    model.double()
    try:
        d = model.mask_decoder
        fast = sam2_decoder.FastSam2Decoder(model)
        g = torch.Generator().manual_seed(5)
        h, w = 6, 9
        emb = torch.randn(1, 256, h, w, generator=g, dtype=torch.float64)
        s1 = torch.randn(1, 64, 2 * h, 2 * w, generator=g, dtype=torch.float64)
        s0 = torch.randn(1, 32, 4 * h, 4 * w, generator=g, dtype=torch.float64)
        hyper = torch.randn(4, 32, generator=g, dtype=torch.float64)
        with torch.inference_mode():
            up = d.activation(d.upscale_layer_norm(d.upscale_conv1(emb) + s1))
            up = d.activation(d.upscale_conv2(up) + s0)
            ref = (hyper @ up.flatten(2))[0].view(4, 4 * h, 4 * w)
            s1_rows, s0_rows = fast.high_res_rows(s0, s1)
            rows = emb[0].flatten(1).T.contiguous()
            tensors = sam2_decoder.Sam2ImageTensors((h, w), rows, None, s1_rows, s0_rows)  # type: ignore[arg-type]
            ours = fast._upscale(tensors, rows, hyper)
        assert ours.shape == (4, 4 * h, 4 * w)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    finally:
        model.float()


def test_fast_path_is_default_and_reference_decoder_is_not_run(sam2_models, rng_image, monkeypatch) -> None:
    model, processor = sam2_models["tiny"]
    seg = Sam2Segmenter(model, processor.image_processor)
    exact = Sam2Segmenter(model, processor.image_processor, decoder="exact")
    assert seg.fast_decoder and not exact.fast_decoder and exact.decoder == "exact"
    image = rng_image(100, 120, seed=2)
    seg.set_image(image)
    exact.set_image(image)
    want = exact.predict(np.array([[50, 40]]), np.array([1]))
    monkeypatch.setattr(model.mask_decoder, "forward", lambda *a, **k: pytest.fail("Sam2MaskDecoder ran"))
    res = seg.predict(np.array([[50, 40]]), np.array([1]))
    assert len(res) == 3 and res.computed() == [res.best]  # only the shown candidate is upscaled
    np.testing.assert_allclose(res.logits, want.logits, rtol=0, atol=1e-5)
    with seg.use_decoder("exact"), pytest.raises(pytest.fail.Exception, match="Sam2MaskDecoder ran"):
        seg.predict(np.array([[50, 40]]), np.array([1]))
    assert seg.decoder == "fast"
    with pytest.raises(ValueError, match="decoder must be one of"):
        Sam2Segmenter(model, processor.image_processor, decoder="onnx")


def test_fast_sam2_decoder_needs_the_standard_layout(sam2_models) -> None:
    model, processor = sam2_models["tiny"]
    d = model.mask_decoder
    assert sam2_decoder.fast_sam2_decoder_supported(d)
    assert not sam2_decoder.fast_sam2_decoder_supported(torch.nn.Linear(2, 2))
    saved = d.upscale_conv1.stride
    d.upscale_conv1.stride = (1, 1)
    try:
        assert not sam2_decoder.fast_sam2_decoder_supported(d)
        seg = Sam2Segmenter(model, processor.image_processor)
        assert seg.decoder == "exact"
        with seg.use_decoder("fast"):
            assert seg.decoder == "exact"
    finally:
        d.upscale_conv1.stride = saved


def test_large_image_click_upscales_only_the_best_candidate_at_one_thread(sam2_models, rng_image) -> None:
    """A 3-candidate click on a big image resizes one candidate (OpenCV), whatever the thread count."""
    model, processor = sam2_models["tiny"]
    h, w = 1200, 1600
    image = rng_image(h, w, seed=11)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seg = Sam2Segmenter(model, processor.image_processor)
        seg.set_image(image)
        p = dict(points=[[700, 500]], labels=[1], multimask=True)
        res = _predict(seg, p)
        assert res.computed() == [res.best]
        ref = _reference(model, processor, image, list(seg._cache[seg.current_key].features), p)
        _assert_close_to_reference(res, ref)  # the other candidates computed on demand, same rule
        assert res.computed() == [0, 1, 2]
    finally:
        torch.set_num_threads(saved)


def test_fast_sam2_decoder_needs_far_fewer_flops_at_official_size() -> None:
    """hiera tiny's decoder on a 1024 input's features (64 x 64 embedding, random weights)."""
    from transformers import Sam2Model

    from maskpix_desktop.core.sam2_arch import sam2_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam2Model(sam2_config("tiny")).eval()
    g = torch.Generator().manual_seed(0)
    feats = (torch.randn(1, 32, 256, 256, generator=g), torch.randn(1, 64, 128, 128, generator=g))
    feats += (torch.randn(1, 256, 64, 64, generator=g),)
    points = torch.tensor([[[[400.0, 500.0]]]])
    labels = torch.tensor([[[1]]])
    fast = sam2_decoder.FastSam2Decoder(model)
    with torch.no_grad():
        tensors = fast.prepare(feats)
        # plain tensors: FlopCounterMode's module hooks reject views of parameters as inputs
        sparse, dense = (t.clone() for t in model.prompt_encoder(points, labels, None, None))
        pe = model.get_image_wide_positional_embeddings()
        with FlopCounterMode(display=False) as exact_count:
            ref, ref_iou, _, _ = model.mask_decoder(feats[-1], pe, sparse, dense, True, list(feats[:-1]))
        with FlopCounterMode(display=False) as fast_count:
            ours, iou = fast.decode(tensors, sparse[0, 0], None, True)
    torch.testing.assert_close(ours, ref[0, 0], rtol=0, atol=2e-4 * max(1.0, float(ref.abs().max())))
    torch.testing.assert_close(iou, ref_iou[0, 0], rtol=0, atol=2e-5)
    assert exact_count.get_total_flops() > 3e9
    assert fast_count.get_total_flops() < 0.6 * exact_count.get_total_flops()
