"""SAM 2.1 hiera tiny / small vs SAM vit_b, side by side in one run: encoder time and click latency.

Full-size architectures with seeded random weights (no download; the timings do not depend on the weight
values). Per model and image size: ``set_image`` (one encode, median over --encodes runs), then clicks on
the cached features (median over --clicks runs, interleaved): a single point (3 candidates, the best one
upscaled to image size, as the app shows it) and points + box; and the reference predictor's own click
on the same features (SAM 1: ``SamPredictor.predict``; SAM 2: ``Sam2Processor`` + ``Sam2Model`` given
``image_embeddings`` + ``post_process_masks``), with our masks compared with it (pixels that differ, all
three candidates: the fast decoders equal the reference to float32 rounding, so only pixels whose logit
is within rounding of 0 may differ). ``--decoder exact`` times the segmenters' exact paths instead.

    .venv/bin/python scripts/bench_sam2.py --sizes 1024x768 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from maskpix_desktop.bench import build_bench_sam, synthetic_image


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: "wall" or "cpu" (process CPU time: at one torch thread, the work itself, whatever else runs on the
#: machine; set by --clock).
CLOCK = {"kind": "wall"}


def _ms(fn: Callable[[], Any], runs: int, device: str) -> float:
    clock = time.process_time if CLOCK["kind"] == "cpu" else time.perf_counter
    times = []
    for _ in range(runs):
        _sync(device)
        t0 = clock()
        fn()
        _sync(device)
        times.append(clock() - t0)
    return 1000 * statistics.median(times)


def _build(name: str, device: str, decoder: str = "fast") -> tuple[Any, Any, Callable[..., Any]]:
    """(our segmenter, its model, reference click factory) for 'vit_b' or 'sam2.1_hiera_<size>'."""
    if name.startswith("vit_"):
        from segment_anything import SamPredictor

        from maskpix_desktop.core.segmenter import Segmenter

        sam = build_bench_sam(name, device)
        seg = Segmenter(sam, name, device, decoder=decoder)

        def reference(
            seg: Any,
            pts: np.ndarray,
            lbl: np.ndarray,
            box: np.ndarray | None,
            multi: bool,
            logits: bool = False,
        ):
            ref = SamPredictor(sam)
            src = seg._predictor
            ref.features, ref.original_size, ref.input_size = src.features, src.original_size, src.input_size
            ref.is_image_set = True
            return lambda: ref.predict(pts, lbl, box, multimask_output=multi, return_logits=logits)[0]

        return seg, sam, reference
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    from maskpix_desktop.core.sam2_arch import sam2_config
    from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter

    size = name.rsplit("hiera_", 1)[1]
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        model = Sam2Model(sam2_config(size)).eval()
    processor = Sam2Processor(image_processor=Sam2ImageProcessor())
    seg = Sam2Segmenter(model, processor.image_processor, f"sam2_hiera_{size}", device, decoder=decoder)

    def reference(
        seg: Any, pts: np.ndarray, lbl: np.ndarray, box: np.ndarray | None, multi: bool, logits: bool = False
    ):
        emb = list(seg._cache[seg.current_key].features)
        h, w = seg._cache[seg.current_key].image_size

        def click() -> Any:
            kw: dict[str, Any] = {"input_points": [[pts.tolist()]], "input_labels": [[lbl.tolist()]]}
            if box is not None:
                kw["input_boxes"] = [[box.tolist()]]
            inputs = dict(processor(original_sizes=[[h, w]], return_tensors="pt", **kw))
            sizes = inputs.pop("original_sizes")
            inputs = {k: v.to(device) for k, v in inputs.items()}
            with torch.no_grad():
                out = model(**inputs, image_embeddings=emb, multimask_output=multi)
            masks = processor.post_process_masks(out.pred_masks.cpu(), sizes, binarize=not logits)
            return masks[0][0].numpy()

        return click

    return seg, model, reference


def _measure(seg: Any, reference: Callable[..., Any], h: int, w: int, encodes: int, clicks: int, device: str):
    """(encode ms, point click ms, points + box click ms, reference point click ms, mask pixels that
    differ from the reference's, the largest |reference logit| at those pixels / the largest overall)."""
    img = synthetic_image(h, w, seed=1)
    seg.set_image(img)  # warm-up (first-call allocations)

    def encode() -> None:
        seg.clear_cache()
        seg.set_image(img)

    enc_ms = _ms(encode, encodes, device)
    pt, one = np.array([[0.45 * w, 0.5 * h]], np.float32), np.array([1])
    pts2 = np.array([[0.45 * w, 0.5 * h], [0.9 * w, 0.1 * h]], np.float32)
    box = np.array([0.2 * w, 0.25 * h, 0.75 * w, 0.8 * h], np.float32)
    ours_point = _ms(lambda: seg.predict(pt, one).mask(), clicks, device)
    ours_box = _ms(lambda: seg.predict(pts2, np.array([1, 0]), box).mask(), clicks, device)
    ref_click = reference(seg, pt, one, None, True)
    ref_point = _ms(ref_click, clicks, device)
    up = reference(seg, pt, one, None, True, logits=True)()  # (3, H, W) upscaled reference logits
    wrong = seg.predict(pt, one).masks != (up > 0)
    near = float(np.abs(up[wrong]).max() / np.abs(up).max()) if wrong.any() else 0.0
    return enc_ms, ours_point, ours_box, ref_point, int(np.count_nonzero(wrong)), near


def run(
    models: list[str],
    sizes: list[tuple[int, int]],
    device: str,
    encodes: int,
    clicks: int,
    decoder: str = "fast",
) -> list[dict]:
    rows = []
    for name in models:
        seg, model, reference = _build(name, device, decoder)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for h, w in sizes:
            enc, point, pbox, ref, differ, near = _measure(seg, reference, h, w, encodes, clicks, device)
            row = {
                "model": name,
                "decoder": seg.decoder,
                "params_M": round(params, 1),
                "image": f"{w}x{h}",
                "encode_ms": round(enc, 1),
                "click_point_ms": round(point, 2),
                "click_points_box_ms": round(pbox, 2),
                "reference_click_ms": round(ref, 2),
                "ratio_vs_reference": round(point / ref, 3),
                "mask_px_differ": differ,
                "mask_px": 3 * h * w,
                "differ_max_rel_logit": float(f"{near:.1e}"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vit_b,sam2.1_hiera_tiny,sam2.1_hiera_small")
    ap.add_argument("--sizes", default="1024x768", help="comma-separated WxH, e.g. 1024x768,4000x3000")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--decoder", choices=("fast", "exact"), default="fast")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--encodes", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=15)
    ap.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time (use --threads 1)"
    )
    args = ap.parse_args()
    CLOCK["kind"] = args.clock
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [(int(s.split("x")[1]), int(s.split("x")[0])) for s in args.sizes.split(",")]
    label = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"device: {label}; torch {torch.__version__}; clock: {args.clock}")
    rows = run(args.models.split(","), sizes, args.device, args.encodes, args.clicks, args.decoder)
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
