"""The re-associated SAM decoder (core.sam_decoder): same maths as SAM's modules, fewer FLOPs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling.transformer import Attention
from torch.utils.flop_counter import FlopCounterMode

from maskpix_desktop.core import sam_decoder
from maskpix_desktop.core.segmenter import Segmenter
from maskpix_desktop.testing.tiny_sam import build_tiny_sam


def _image(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = (250, 30, 30)
    return img


@pytest.fixture(scope="module")
def sam_wide():
    """SAM's official decoder width (256, so attention projections are 128 wide) on a 16 x 16 grid."""
    return build_tiny_sam(seed=3, img_size=256, prompt_dim=256, decoder_mlp_dim=512)


def _attention_pair(heads: int, dim: int, down: int, seed: int) -> tuple[Attention, Attention]:
    torch.manual_seed(seed)
    a = Attention(dim, heads, downsample_rate=down)
    with torch.no_grad():
        for p in a.parameters():
            p.normal_(0, 0.3)
    return a.double().eval(), a


@pytest.mark.parametrize("tokens", [3, 7, 20])
def test_token_to_image_equals_sam_attention_in_float64(tokens):
    attn, _ = _attention_pair(8, 256, 2, seed=tokens)
    g = torch.Generator().manual_seed(tokens)
    q = torch.randn(tokens, 256, generator=g, dtype=torch.float64)
    k = torch.randn(300, 256, generator=g, dtype=torch.float64)
    v = torch.randn(300, 256, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = attn(q=q[None], k=k[None], v=v[None])[0]
        folded = sam_decoder._token_to_image(attn, q, k, v)
        projected = sam_decoder._token_to_image(
            attn,
            q,
            None,
            None,
            k_heads=sam_decoder.split_heads(attn, attn.k_proj(k), keys_last=True),
            v_heads=sam_decoder.split_heads(attn, attn.v_proj(v), keys_last=False),
        )
    torch.testing.assert_close(folded, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(projected, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tokens", [3, 7, 20])
def test_image_to_token_equals_sam_attention_in_float64(tokens):
    attn, _ = _attention_pair(8, 256, 2, seed=100 + tokens)
    g = torch.Generator().manual_seed(tokens)
    q = torch.randn(300, 256, generator=g, dtype=torch.float64)
    k = torch.randn(tokens, 256, generator=g, dtype=torch.float64)
    v = torch.randn(tokens, 256, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = attn(q=q[None], k=k[None], v=v[None])[0]
        folded = sam_decoder._image_to_token(attn, q, k, v)
        q_heads = sam_decoder.split_heads(attn, attn.q_proj(q), keys_last=True)
        projected = sam_decoder._image_to_token(attn, None, k, v, q_heads=q_heads)
    torch.testing.assert_close(folded, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(projected, ref, rtol=1e-10, atol=1e-10)


def test_upscale_masks_equals_conv_transpose_path_in_float64(sam_wide):
    md = sam_wide.mask_decoder.double()
    try:
        g = torch.Generator().manual_seed(5)
        h, w = 6, 9
        src = torch.randn(1, 256, h, w, generator=g, dtype=torch.float64)
        hyper = torch.randn(3, md.output_upscaling[3].out_channels, generator=g, dtype=torch.float64)
        with torch.no_grad():
            up = md.output_upscaling(src)  # (1, C, 4h, 4w)
            ref = (hyper @ up.flatten(2))[0].view(3, 4 * h, 4 * w)
            ours = sam_decoder.upscale_masks(md, src[0].flatten(1).T.contiguous(), (h, w), hyper)
        assert ours.shape == (3, 4 * h, 4 * w)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    finally:
        md.float()


def _prompt_sets(h: int, w: int, rng: np.random.Generator) -> list[dict]:
    return [
        dict(points=np.array([[0.4 * w, 0.45 * h]]), labels=np.array([1])),
        dict(points=np.array([[0.4 * w, 0.45 * h], [0.8 * w, 0.2 * h]]), labels=np.array([1, 0])),
        dict(box=np.array([0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h])),
        dict(
            points=np.array([[0.4 * w, 0.45 * h]]),
            labels=np.array([1]),
            box=np.array([0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h]),
        ),
        # 12 points + pad: 18 tokens x 8 heads > 128, so the projected (unfolded) branch runs
        dict(points=rng.uniform(0, min(h, w), (12, 2)), labels=rng.integers(0, 2, 12)),
    ]


@pytest.mark.parametrize("which", ["tiny", "wide"])
def test_fast_predictions_match_sam_predictor(which, sam_wide):
    sam = build_tiny_sam(seed=0) if which == "tiny" else sam_wide
    img = _image(7, 240, 320)
    fast = Segmenter(sam, "custom")
    assert fast.fast_decoder
    fast.set_image(img)
    pred = SamPredictor(sam)
    pred.set_image(img)
    prompts = _prompt_sets(240, 320, np.random.default_rng(1))
    first = fast.predict(**prompts[0])
    prompts.append(dict(**prompts[1], mask_input=first.mask_input()))
    for pr in prompts:
        ours = fast.predict(**pr)
        masks, scores, logits = pred.predict(
            point_coords=pr.get("points"),
            point_labels=pr.get("labels"),
            box=pr.get("box"),
            mask_input=pr.get("mask_input"),
            multimask_output=len(ours) == 3,
        )
        scale = max(1.0, float(np.abs(logits).max()))
        np.testing.assert_allclose(ours.logits, logits, rtol=0, atol=2e-5 * scale)
        np.testing.assert_allclose(ours.scores, scores, rtol=0, atol=2e-5)
        assert ours.logits.dtype == np.float32 and ours.masks.dtype == bool
        # masks may differ only where SAM's own logit sits at the threshold
        assert (ours.masks != masks).mean() < 1e-3
        again = fast.predict(**pr)
        np.testing.assert_array_equal(again.logits, ours.logits)  # deterministic


def test_fast_path_is_the_default_and_exact_path_is_not_run(sam_wide, monkeypatch):
    seg = Segmenter(sam_wide, "custom")
    exact = Segmenter(sam_wide, "custom", decoder="exact")
    assert seg.fast_decoder and not exact.fast_decoder
    monkeypatch.setattr(SamPredictor, "predict", lambda *a, **k: pytest.fail("exact decoder ran"))
    monkeypatch.setattr(sam_wide.mask_decoder, "forward", lambda *a, **k: pytest.fail("SAM's decoder ran"))
    seg.set_image(_image(2, 100, 120))
    assert len(seg.predict(np.array([[50, 40]]), np.array([1]))) == 3
    with pytest.raises(ValueError, match="decoder must be one of"):
        Segmenter(sam_wide, "custom", decoder="onnx")


def test_fast_decoder_needs_sams_upscaling_layout(sam_wide):
    md = sam_wide.mask_decoder
    assert sam_decoder.fast_decoder_supported(md)
    assert not sam_decoder.fast_decoder_supported(torch.nn.Linear(2, 2))
    saved = md.output_upscaling[0].stride
    md.output_upscaling[0].stride = (1, 1)
    try:
        assert not sam_decoder.fast_decoder_supported(md)
        assert not Segmenter(sam_wide, "custom").fast_decoder
    finally:
        md.output_upscaling[0].stride = saved


def test_fast_decoder_needs_far_fewer_flops_at_official_size():
    """Official decoder and a 64 x 64 embedding (a 1024 input); the encoder is kept tiny."""
    sam = build_tiny_sam(seed=0, img_size=1024, prompt_dim=256, decoder_mlp_dim=2048)
    counts = {}
    for mode in ("exact", "fast"):
        seg = Segmenter(sam, "custom", decoder=mode)
        seg.set_image(_image(3, 96, 128))
        seg.predict(np.array([[40, 50]]), np.array([1]))  # caches the image's first-layer tensors
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            seg.predict_low_res(np.array([[40, 50]]), np.array([1]), multimask=True)
        counts[mode] = counter.get_total_flops()
    assert counts["exact"] > 2.5e9  # SAM's decoder of vit_b/l/h
    assert counts["fast"] < 0.5 * counts["exact"]
