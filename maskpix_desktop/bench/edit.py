"""``edit`` section: ``Editor.run`` vs diffusers' pipeline call, mask-mode overheads, CUDA runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

import maskpix_desktop.bench.cuda as bench_cuda
from maskpix_desktop.bench.common import (
    INSTRUCTION,
    BenchConfig,
    ellipse_mask,
    interleave_cpu,
    mark_peak,
    median,
    ms_summary,
    ratio,
    synthetic_image,
    torch_threads,
)


def bench_edit(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Editor.run vs diffusers' pipeline call (same components, seed), mask-mode overheads, CUDA UNet.

    On the CPU the tiny pipeline runs at ``cfg.edit_threads`` (1) torch threads and ratios use process
    CPU time: the tiny model's operators are too small to gain from a second thread, and on a shared
    machine two OpenMP threads turn every preemption by another program into a barrier wait (seconds of
    noise per run); wall-clock ratios are reported beside them.
    """

    from maskpix_desktop.core import images
    from maskpix_desktop.core.editor import Editor
    from maskpix_desktop.core.jobs import EditParams, EditRequest
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    pipe = build_tiny_ip2p(seed=0)
    editor = Editor(pipe)
    h, w = cfg.edit_size
    img = synthetic_image(h, w, seed=3)
    mask = ellipse_mask(h, w)
    params = EditParams(instruction=INSTRUCTION, steps=cfg.edit_steps, seed=7)
    pil = images.to_pil(img)

    def diffusers_call():
        return bench_cuda.diffusers_reference(pipe, pil, params)

    def ours_plain():
        return editor.run(EditRequest(img, None, params))

    # The tiny pipeline runs on the CPU whatever --device says (only the UNet check uses the GPU).
    with torch_threads(cfg.edit_threads):
        ref = diffusers_call()
        mine = ours_plain()
        identical = bool(np.array_equal(mine.baseline, ref))
        (w_ours, w_diff), (c_ours, c_diff) = interleave_cpu([ours_plain, diffusers_call], cfg.edit_repeats)
        # Mask modes: each run makes the baseline pass, then the mode's own work. "plain" = no mask.
        runs: dict[str, list[Any]] = {"plain": [], "pixel": [], "latent": [], "crop": []}

        def mode_run(mode: str) -> Callable[[], None]:
            def go() -> None:
                if mode == "plain":
                    req = EditRequest(img, None, params)
                else:
                    req = EditRequest(img, mask, replace(params, mask_mode=mode))
                runs[mode].append(editor.run(req).timings)

            return go

        mode_names = list(runs)
        walls, cpus = interleave_cpu([mode_run(m) for m in mode_names], cfg.mode_repeats)
    use_cpu = cfg.edit_threads == 1
    clock = "process CPU time at 1 torch thread" if use_cpu else "wall time"
    out: dict[str, Any] = {
        "model": "tiny random IP2P (testing.tiny_ip2p)",
        "image_hw": [h, w],
        "working_hw": list(mine.working_size),
        "steps": params.steps,
        "torch_threads": cfg.edit_threads or None,
        "ratios_from": clock,
        "baseline_identical_to_diffusers": identical,
        "editor_run": ms_summary(w_ours),
        "diffusers_call": ms_summary(w_diff),
        "editor_run_cpu": ms_summary(c_ours),
        "diffusers_call_cpu": ms_summary(c_diff),
        "baseline_vs_diffusers_wall": round(ratio(w_ours, w_diff), 3),
        "baseline_vs_diffusers_cpu": round(ratio(c_ours, c_diff), 3),
        "modes": {},
    }
    out["baseline_vs_diffusers"] = out[
        "baseline_vs_diffusers_cpu" if use_cpu else "baseline_vs_diffusers_wall"
    ]
    by_mode = dict(zip(mode_names, zip(walls, cpus, strict=True), strict=True))
    plain_w, plain_c = by_mode["plain"]
    for mode in ("pixel", "latent", "crop"):
        mw, mc = by_mode[mode]
        tm = runs[mode]
        # pixel: the whole run vs a plain run (compositing on top of the same edit);
        # latent / crop: the mode's own pass vs a plain pass = (mode run - plain run) / plain run.
        offset = 0.0 if mode == "pixel" else 1.0
        in_run = [
            t["total_s"] / t["baseline_s"] if mode == "pixel" else t["blend_s"] / t["baseline_s"] for t in tm
        ]
        out["modes"][mode] = {
            "overhead_cpu": round(ratio(mc, plain_c) - offset, 3),
            "overhead_wall": round(ratio(mw, plain_w) - offset, 3),
            "overhead_in_run_wall": round(median(in_run), 3),
            "run_vs_plain_run_wall": round(ratio(mw, plain_w), 3),
            "run_cpu": ms_summary(mc),
        }
        out["modes"][mode]["overhead"] = out["modes"][mode]["overhead_cpu" if use_cpu else "overhead_wall"]
        out[f"{mode}_overhead"] = out["modes"][mode]["overhead"]
    out["plain_run_cpu"] = ms_summary(plain_c)
    mark_peak(ctx, "edit (tiny IP2P)")
    if cfg.device.startswith("cuda"):
        out["cuda_unet"] = bench_cuda.cuda_unet(cfg)
        mark_peak(ctx, "edit: CUDA UNet")  # pipeline_speed resets the GPU peak: keep this one in the marks
        out["cuda_pipeline"] = cp = bench_cuda.cuda_pipeline(cfg)
        for key in ("baseline_vs_diffusers", "pixel_overhead", "latent_overhead"):
            if key in cp:  # top level, where TARGETS rows can name them
                out[f"cuda_pipeline_{key}"] = cp[key]
        mark_peak(ctx, "edit: CUDA pipeline")
    else:
        out["cuda_unet"] = (
            "not run: no CUDA device (the code path is unet_speed(sd15_unet_config(), 'cuda', fp16))"
        )
        out["cuda_pipeline"] = (
            "not run: no CUDA device (the code path is pipeline_speed('cuda', fp16), SD1.5-size IP2P)"
        )
    return out
