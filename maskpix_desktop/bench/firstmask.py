"""``firstmask`` section: open-to-first-mask per SAM model on a large photo (issue 20).

What a user waits for from *File > Open* to the first click's mask with the models already loaded (the app
loads them at start-up and warms the decoder): ``images.load_image`` of a JPEG (the app's one loader),
the encode (``set_image``: the app starts it when the image opens) and the first click (one positive point,
three candidates, the best one's full-size mask, as the canvas shows it). Full-size architectures with
seeded random weights (the timings do not depend on the values): SAM vit_b and SAM 2.1 hiera tiny. A SAM 2
model runs at the encoder precision the app picks (``app_precision``: bfloat16 on a CPU that has it
natively) and, where that is not float32, in float32 too (entry ``<name> fp32``), side by side.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.bench.common import BenchConfig, load_average, mark_peak, size_label, synthetic_image


def build_segmenter(name: str, precision: str = "auto") -> Any:
    """A warmed-up CPU segmenter for ``name``: 'vit_b' / 'tiny' (SAM 1), 'sam2.1_hiera_<size>' or
    'sam2_tiny_test' (the test model), random weights; a SAM 2 encoder at ``app_precision(precision)``."""
    import torch

    from maskpix_desktop.bench.sam import build_bench_sam
    from maskpix_desktop.core.sam2_segmenter import Sam2Segmenter, app_precision
    from maskpix_desktop.core.segmenter import Segmenter

    prec = app_precision(precision, "cpu")

    if not name.startswith("sam2"):
        seg: Any = Segmenter(build_bench_sam(name, "cpu"), name, "cpu")
    elif name == "sam2_tiny_test":
        from maskpix_desktop.testing.tiny_sam2 import build_tiny_sam2

        model, processor = build_tiny_sam2()
        seg = Sam2Segmenter(model, processor.image_processor, name, "cpu", encoder_precision=prec)
    else:
        from transformers import Sam2ImageProcessor, Sam2Model

        from maskpix_desktop.core.sam2_arch import sam2_config

        size = name.rsplit("hiera_", 1)[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = Sam2Model(sam2_config(size)).eval()
        seg = Sam2Segmenter(model, Sam2ImageProcessor(), name, "cpu", encoder_precision=prec)
    seg.warm_up()
    return seg


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def open_to_first_mask(seg: Any, path: Path) -> dict[str, Any]:
    """One open of ``path`` with ``seg`` loaded: wall and process-CPU seconds of load, encode, click."""
    from maskpix_desktop.core import images

    seg.clear_cache()
    marks = [_clocks()]
    image = images.load_image(path)
    marks.append(_clocks())
    encoded = seg.set_image(image)
    marks.append(_clocks())
    h, w = image.shape[:2]
    res = seg.predict(np.array([[0.45 * w, 0.5 * h]], np.float32), np.array([1], np.int32))
    mask = res.mask()
    marks.append(_clocks())
    assert encoded and mask.shape == (h, w)
    out: dict[str, Any] = {}
    for i, stage in enumerate(("load", "encode", "click")):
        out[f"{stage}_s"] = round(marks[i + 1][0] - marks[i][0], 3)
        out[f"{stage}_cpu_s"] = round(marks[i + 1][1] - marks[i][1], 3)
    out["total_s"] = round(marks[-1][0] - marks[0][0], 3)
    out["total_cpu_s"] = round(marks[-1][1] - marks[0][1], 3)
    return out


def bench_firstmask(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Open-to-first-mask per model in ``cfg.first_mask_models`` at ``cfg.first_mask_size`` (median of
    ``cfg.first_mask_repeats`` opens, each encoding again)."""
    import torch

    from maskpix_desktop.core import images
    from maskpix_desktop.core.sam2_segmenter import app_precision

    h, w = cfg.first_mask_size
    out: dict[str, Any] = {
        "what": "load_image (JPEG q95) + set_image (encode) + first click (1 point, best mask at full"
        " size); models loaded and warmed up; full-size architectures, random weights; CPU",
        "size": size_label(cfg.first_mask_size),
        "torch_threads": torch.get_num_threads(),
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="maskpix-bench-open-") as tmp:
        path = Path(tmp) / "photo.jpg"
        images.save_image(path, synthetic_image(h, w, seed=5), quality=95)
        for name in cfg.first_mask_models:
            side_by_side = name.startswith("sam2") and app_precision("auto", "cpu") == "bf16"
            for precision in ("auto", "fp32") if side_by_side else ("auto",):
                seg = build_segmenter(name, precision)
                label = name if precision == "auto" else f"{name} fp32"
                runs = [open_to_first_mask(seg, path) for _ in range(cfg.first_mask_repeats)]
                best = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
                out["models"][label] = {**best, "runs": len(runs), "encoder_precision": seg.encoder_precision}
                del seg
                mark_peak(ctx, f"first mask {label}")
    tiny = out["models"].get("sam2.1_hiera_tiny")
    out["sam2_tiny_open_to_mask_s"] = tiny["total_s"] if tiny is not None and not cfg.quick else None
    out["loadavg"] = load_average()
    return out
