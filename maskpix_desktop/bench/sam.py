"""``sam`` section: click-to-mask, ``Segmenter.predict`` vs ``SamPredictor.predict`` on one embedding."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from maskpix_desktop.bench.common import (
    BenchConfig,
    interleave,
    interleave_cpu,
    mark_peak,
    median,
    ms_summary,
    ratio,
    size_label,
    synthetic_image,
    timed,
    torch_threads,
)


def build_bench_sam(name: str, device: str, seed: int = 0):
    """Full-size SAM architecture with seeded random weights (``tiny``: the test model)."""
    import torch

    if name == "tiny":
        from maskpix_desktop.testing.tiny_sam import build_tiny_sam

        return build_tiny_sam(seed=seed).to(device)
    from maskpix_desktop.core.segmenter import OFFICIAL_CONFIGS, build_sam_from_config

    on_gpu = device.startswith("cuda")  # initialise there: seconds instead of a minute for vit_h
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam_from_config(OFFICIAL_CONFIGS[name], device=device if on_gpu else None)
    return sam.to(device).eval()


def click_prompts(h: int, w: int) -> dict[str, dict[str, Any]]:
    pt = np.array([[0.45 * w, 0.5 * h]], np.float32)
    return {
        "point": {"points": pt, "labels": np.array([1]), "multimask": True},
        "point_box": {
            "points": np.array([[0.45 * w, 0.5 * h], [0.9 * w, 0.1 * h]], np.float32),
            "labels": np.array([1, 0]),
            "box": np.array([0.2 * w, 0.25 * h, 0.75 * w, 0.8 * h], np.float32),
            "multimask": False,
        },
        # "refine" adds a negative click and feeds back the chosen low-res logits (filled in later).
        "refine": {
            "points": np.array([[0.45 * w, 0.5 * h], [0.15 * w, 0.85 * h]], np.float32),
            "labels": np.array([1, 0]),
            "multimask": False,
        },
    }


def _reference_predictor(sam: Any, seg: Any) -> Any:
    """A ``SamPredictor`` holding the very embedding our Segmenter holds (no second encode)."""
    from segment_anything import SamPredictor

    ref = SamPredictor(sam)
    emb = seg.embedding
    ref.features = emb.features
    ref.original_size = emb.original_size
    ref.input_size = emb.input_size
    ref.is_image_set = True
    return ref


def _ref_predict(ref: Any, pr: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return ref.predict(
        point_coords=pr.get("points"),
        point_labels=pr.get("labels"),
        box=pr.get("box"),
        mask_input=pr.get("mask_input"),
        multimask_output=pr["multimask"],
    )


def _agreement(ours: Any, ref: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, Any]:
    """How far our result is from SamPredictor's: max |logit| difference, differing mask pixels."""
    m, s, lg = ref
    masks = ours.masks
    return {
        "identical": bool(
            np.array_equal(masks, m) and np.array_equal(ours.scores, s) and np.array_equal(ours.logits, lg)
        ),
        "max_logit_diff": float(np.abs(ours.logits - lg).max()),
        "max_score_diff": float(np.abs(ours.scores - s).max()),
        "mask_pixels_differing": int((masks != m).sum()),
        "mask_pixels": int(m.size),
    }


def our_predict(seg: Any, pr: dict[str, Any]) -> Any:
    return seg.predict(
        pr.get("points"), pr.get("labels"), pr.get("box"), pr.get("mask_input"), multimask=pr["multimask"]
    )


def encoded_segmenter(cfg: BenchConfig, ctx: dict[str, Any], hw: tuple[int, int]) -> tuple[Any, np.ndarray]:
    """A Segmenter with the benchmark image of size ``hw`` set, encoded once per run and shared by the
    sam and encoder sections; an encoder forward hook counts every encode."""
    from maskpix_desktop.core.segmenter import Segmenter

    sam = ctx.get("sam_model")
    if sam is None:
        sam = ctx["sam_model"] = build_bench_sam(cfg.sam_model, cfg.device)
        mark_peak(ctx, f"SAM {cfg.sam_model} built")
        ctx["encoder_forward_calls"] = []
        ctx["prompt_encoder_calls"] = []
        sam.image_encoder.register_forward_hook(lambda *_: ctx["encoder_forward_calls"].append(1))
        sam.prompt_encoder.register_forward_hook(lambda *_: ctx["prompt_encoder_calls"].append(1))
    cache = ctx.setdefault("segmenters", {})
    if hw not in cache:
        img = synthetic_image(*hw, seed=1)
        seg = Segmenter(sam, cfg.sam_model, cfg.device)
        before = len(ctx["encoder_forward_calls"])
        enc_s, encoded = timed(lambda: seg.set_image(img), cfg.device)
        cache[hw] = (seg, img)
        ctx.setdefault("encode", {})[hw] = {
            "embed_s": enc_s,
            "encoded": encoded,
            "forward_calls": len(ctx["encoder_forward_calls"]) - before,
            "decodes_before": len(ctx["prompt_encoder_calls"]),
        }
        mark_peak(ctx, f"embedded {size_label(hw)}")
    return cache[hw]


def bench_sam(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Click-to-mask: ours vs SamPredictor.predict per click, same model, embedding and prompts.

    Default torch threads, wall time (what a user gets); on the CPU also 1 thread, CPU time (stable on a
    shared machine, where two OpenMP threads wait on each other whenever another program runs).
    """
    import torch

    out: dict[str, Any] = {"model": cfg.sam_model, "device": cfg.device, "images": {}}
    cpu = not cfg.device.startswith("cuda")
    for hw in cfg.sam_images:
        h, w = hw
        label = size_label(hw)
        seg, _img = encoded_segmenter(cfg, ctx, hw)
        ref = _reference_predictor(ctx["sam_model"], seg)
        exact = seg.twin(decoder="exact")
        prompts = click_prompts(h, w)
        first = our_predict(seg, prompts["point"])
        prompts["refine"]["mask_input"] = first.mask_input()
        enc = ctx["encode"][hw]
        per: dict[str, Any] = {"size_hw": [h, w], "embed_s": round(enc["embed_s"], 3), "prompts": {}}
        for name, pr in prompts.items():
            ours_res = our_predict(seg, pr)
            reference = _ref_predict(ref, pr)
            agree = _agreement(ours_res, reference)
            exact_agree = _agreement(our_predict(exact, pr), reference)

            def ours(pr=pr, seg=seg):
                return our_predict(seg, pr)

            def ours_all(pr=pr, seg=seg):
                return our_predict(seg, pr).masks

            def ours_exact(pr=pr, seg=exact):
                return our_predict(seg, pr)

            def base(pr=pr, ref=ref):
                return _ref_predict(ref, pr)

            with torch.inference_mode():
                t_ours, t_all, t_exact, t_base = interleave(
                    [ours, ours_all, ours_exact, base], cfg.sam_repeats, cfg.device
                )
            row = {
                "identical_to_sam_predictor": agree["identical"],
                "agreement": agree,
                "exact_identical_to_sam_predictor": exact_agree["identical"],
                "candidates": len(ours_res),
                "ours": ms_summary(t_ours),
                "ours_all_candidates": ms_summary(t_all),
                "ours_exact": ms_summary(t_exact),
                "sam_predictor": ms_summary(t_base),
                "ratio": round(ratio(t_ours, t_base), 3),
                "ratio_all_candidates": round(ratio(t_all, t_base), 3),
                "ratio_exact": round(ratio(t_exact, t_base), 3),
            }
            if cpu:
                with torch.inference_mode(), torch_threads(1):
                    _, (c_ours, c_base) = interleave_cpu([ours, base], cfg.sam_repeats)
                row["ours_1thread_cpu"] = ms_summary(c_ours)
                row["sam_predictor_1thread_cpu"] = ms_summary(c_base)
                row["ratio_1thread_cpu"] = round(ratio(c_ours, c_base), 3)
            per["prompts"][name] = row
        per["breakdown_point"] = _sam_breakdown(seg, prompts["point"], cfg)
        clicks = list(per["prompts"].values())
        per["click_ms_median"] = round(median([c["ours"]["median_ms"] for c in clicks]), 2)
        per["click_ratio_median"] = round(median([c["ratio"] for c in clicks]), 3)
        out["images"][label] = per
        out[f"click_ratio_{label}"] = per["click_ratio_median"]
        out[f"click_ms_{label}"] = per["click_ms_median"]
        if cpu:
            out[f"click_ratio_1thread_cpu_{label}"] = round(
                median([c["ratio_1thread_cpu"] for c in clicks]), 3
            )
            out[f"click_ms_1thread_cpu_{label}"] = round(
                median([c["ours_1thread_cpu"]["median_ms"] for c in clicks]), 2
            )
        out[f"identical_{label}"] = all(c["identical_to_sam_predictor"] for c in clicks)
        out[f"exact_identical_{label}"] = all(c["exact_identical_to_sam_predictor"] for c in clicks)
        out[f"max_logit_diff_{label}"] = max(c["agreement"]["max_logit_diff"] for c in clicks)
        out[f"mask_pixels_differing_{label}"] = max(c["agreement"]["mask_pixels_differing"] for c in clicks)
    return out


def _sam_breakdown(seg: Any, pr: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    """Where a click's time goes: decoder (SAM's modules vs ours), upsampling all vs one, threads."""
    import torch

    from maskpix_desktop.core.sam_result import MaskUpscaler

    dev = cfg.device
    emb = seg.embedding
    args = (pr["points"], pr["labels"], None, None, True)
    size = (emb.input_size, emb.original_size)
    exact = seg.twin(decoder="exact")

    def decoder_sam():  # SAM's modules, as SamPredictor runs them
        with seg.use_decoder("exact"):
            return seg.predict_low_res(*args)

    def decoder_exact():  # our decoder="exact" Segmenter
        return exact.predict_low_res(*args)

    def decoder_ours():
        return seg.predict_low_res(*args)

    with torch.inference_mode():
        low_res, iou = decoder_ours()
        best = int(torch.argmax(iou))

        def upsample_all():  # what SamPredictor.predict does after the decoder
            up = seg.model.postprocess_masks(low_res[None], *size)[0]
            return (up > seg.model.mask_threshold).cpu().numpy()

        def upsample_one():
            return MaskUpscaler(seg.model, low_res, *size).one(best)

        t_sam, t_exact, t_ours, t_all, t_one = interleave(
            [decoder_sam, decoder_exact, decoder_ours, upsample_all, upsample_one], cfg.sam_repeats, dev
        )
        out: dict[str, Any] = {
            "decoder_path": seg.decoder,
            "decoder_sam_modules": ms_summary(t_sam),
            "decoder_exact": ms_summary(t_exact),
            "decoder_ours": ms_summary(t_ours),
            "decoder_ratio": round(ratio(t_ours, t_sam), 3),
            "decoder_exact_ratio": round(ratio(t_exact, t_sam), 3),
            "upsample_all_candidates": ms_summary(t_all),
            "upsample_best_only": ms_summary(t_one),
        }
        # Thread count: the decoder at 1 thread vs torch's default, interleaved.
        if dev == "cpu":
            default = torch.get_num_threads()

            def one_thread():
                torch.set_num_threads(1)
                try:
                    return decoder_ours()
                finally:
                    torch.set_num_threads(default)

            t_def, t_one_thr = interleave([decoder_ours, one_thread], cfg.sam_repeats, dev)
            out["threads"] = {
                "default_threads": default,
                "decoder_default_threads": ms_summary(t_def),
                "decoder_1_thread": ms_summary(t_one_thr),
                "one_thread_ratio": round(ratio(t_one_thr, t_def), 3),
            }
        out["profile_decoder_ours_top_ops"] = _profile_top_ops(decoder_ours)
        out["profile_decoder_sam_top_ops"] = _profile_top_ops(decoder_sam)
        try:
            out["tried_bf16_decoder"] = _try_bf16_decoder(seg, args, low_res, cfg)
        except Exception as exc:  # an experiment: never lose the section over it
            out["tried_bf16_decoder"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence C-level stderr (the profiler's start/stop and 'no GPU' lines) for a moment."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            sys.stderr.flush()
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _profile_top_ops(fn: Callable[[], Any], runs: int = 3, top: int = 8) -> list[dict[str, Any]]:
    """torch.profiler: the operators with the most self CPU time per call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                fn()
    except Exception as exc:  # profiling is an aid, never a reason to fail the section
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [
        {
            "op": e.key,
            "self_ms_per_run": round(e.self_cpu_time_total / 1000 / runs, 2),
            "calls_per_run": round(e.count / runs, 1),
        }
        for e in rows
    ]


def _try_bf16_decoder(seg: Any, args: tuple, ref_low_res: Any, cfg: BenchConfig) -> dict[str, Any]:
    """Tried and not adopted: the decoder under bf16 autocast (faster, but masks are no longer exact)."""
    import torch

    dev_type = "cuda" if cfg.device.startswith("cuda") else "cpu"

    def fp32():  # SAM's own decoder modules, as SamPredictor runs them
        with seg.use_decoder("exact"):
            return seg.predict_low_res(*args)

    def bf16():
        with torch.autocast(dev_type, dtype=torch.bfloat16):
            return fp32()

    try:
        low, _ = bf16()
    except Exception as exc:  # some CPUs/builds lack bf16 kernels
        return {"error": f"{type(exc).__name__}: {exc}"}
    a, b = (low.float() > 0), (ref_low_res > 0)
    union = (a | b).sum().item()
    iou = float((a & b).sum().item() / union) if union else 1.0
    t_fp32, t_bf16 = interleave([fp32, bf16], cfg.sam_repeats, cfg.device)
    return {
        "decoder_fp32": ms_summary(t_fp32),
        "decoder_bf16": ms_summary(t_bf16),
        "bf16_ratio": round(ratio(t_bf16, t_fp32), 3),
        "low_res_mask_iou_vs_fp32": round(iou, 5),
        "adopted": False,
    }
