"""``encoder`` section: time to embed, proof that clicks do not re-encode, encoder precisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from maskpix_desktop.bench.common import (
    BenchConfig,
    interleave,
    ms_summary,
    ratio,
    size_label,
    timed,
)
from maskpix_desktop.bench.sam import click_prompts, encoded_segmenter, our_predict


def bench_encoder(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Time to embed the 1024 image, and proof that clicks and re-setting the image do not re-encode.

    Re-uses the sam section's Segmenter when it ran (so its dozens of clicks count as proof too).
    """
    hw = cfg.sam_images[0]
    seg, img = encoded_segmenter(cfg, ctx, hw)
    calls = ctx["encoder_forward_calls"]
    before = len(calls)
    h, w = hw
    prompts = click_prompts(h, w)
    first = our_predict(seg, prompts["point"])
    our_predict(seg, {**prompts["refine"], "mask_input": first.mask_input()})
    cached_s, again = timed(lambda: seg.set_image(img.copy()), cfg.device)  # same pixels, new array
    our_predict(seg, prompts["point_box"])
    enc = ctx["encode"][hw]
    out = {
        "model": cfg.sam_model,
        "image_hw": [h, w],
        "embed_s": round(enc["embed_s"], 3),
        "embed_all_images_s": {size_label(k): round(v["embed_s"], 3) for k, v in ctx["encode"].items()},
        "first_set_image_encoded": bool(enc["encoded"]),
        "encoder_forward_calls_for_image": enc["forward_calls"],
        "set_image_again_encoded": bool(again),
        "set_image_again_ms": round(1000 * cached_s, 2),
        "encoder_forward_calls_since_clicks": len(calls) - before,
        "encoder_calls_after_clicks": seg.encoder_calls,
        "clicks": 3,
        # every decode since this image was embedded (ours and SamPredictor's, on every benchmark image)
        "decodes_since_embedding": len(ctx["prompt_encoder_calls"]) - enc["decodes_before"],
        "encoder_forward_calls_total": len(calls),
        "images_embedded": len(ctx["encode"]),
    }
    if cfg.device.startswith("cuda"):  # after the counts above: these encode the image again
        try:
            out["precisions"] = encoder_precisions(ctx["sam_model"], cfg.sam_model, img, cfg.device)
        except Exception as exc:  # an experiment: never lose the section over it
            out["precisions"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def encoder_precisions(sam: Any, model_type: str, img: np.ndarray, device: str, repeats: int = 5) -> dict:
    """``set_image`` at each ``Segmenter(encoder_precision=)`` (fp32, TF32, bf16 and fp16 autocast),
    interleaved; each one's embedding error vs fp32 and its click mask's agreement with the fp32 one."""
    from maskpix_desktop.core.segmenter import ENCODER_PRECISIONS, Segmenter

    segs = {name: Segmenter(sam, model_type, device, encoder_precision=name) for name in ENCODER_PRECISIONS}
    if device.startswith("cuda") and any(s.encoder_precision != n for n, s in segs.items()):
        raise RuntimeError("encoder_precision was not taken on this device")

    def encode(name: str) -> Callable[[], Any]:
        def go() -> Any:
            seg = segs[name]
            seg.clear_cache()
            return seg.set_image(img)

        return go

    names = list(segs)
    for name in names:
        encode(name)()  # warm-up (kernel selection, autocast caches)
    times = dict(zip(names, interleave([encode(n) for n in names], repeats, device), strict=True))
    pr = click_prompts(*img.shape[:2])["point"]
    ref_feat = segs["fp32"].embedding.features
    ref = our_predict(segs["fp32"], pr)
    out: dict[str, Any] = {"image_hw": list(img.shape[:2]), "repeats": repeats}
    for name in names:
        seg = segs[name]
        feat = seg.embedding.features
        res = our_predict(seg, pr)
        a, b = res.mask(ref.best), ref.mask()
        union = int((a | b).sum())
        out[name] = {
            "set_image": ms_summary(times[name]),
            "vs_fp32": round(ratio(times[name], times["fp32"]), 3),
            "embedding_rel_err": float((feat - ref_feat).norm() / ref_feat.norm()),
            "embedding_dtype": str(feat.dtype).replace("torch.", ""),
            "click_mask_iou_vs_fp32": round(float((a & b).sum()) / union, 5) if union else 1.0,
            "click_best_same": bool(res.best == ref.best),
            "fell_back_to_fp32": seg.encoder_fallbacks,
        }
    return out
