"""``families`` section: per editor family (issue 17), ``Editor.run`` vs the plain diffusers pipeline call on
the tiny random models of ``maskpix_desktop.testing``, side by side in one run.

Each tiny model is saved and loaded with ``load_editor`` (as the app does); its pipeline serves both
sides: diffusers' own call with the arguments the editor uses (the reference), ``Editor.run`` without a
mask (the baseline: bit-equal to the reference), and ``Editor.run`` with a hard mask in pixel mode (one
pass plus the composite) and in latent mode (the baseline pass plus the blended pass, so about 2x).
Interleaved, at ``cfg.edit_threads`` torch threads, ratios of process CPU time (see
:func:`~maskpix_desktop.bench.edit.bench_edit`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.bench.common import (
    INSTRUCTION,
    BenchConfig,
    ellipse_mask,
    interleave_cpu,
    mark_peak,
    ms_summary,
    ratio,
    synthetic_image,
    torch_threads,
)

#: family -> (saver in maskpix_desktop.testing, the family's guidance parameter as its examples set it).
FAMILIES: dict[str, tuple[str, dict[str, float]]] = {
    "ip2p": ("tiny_ip2p.save_tiny_ip2p", {"text_scale": 7.5}),
    "ip2p_xl": ("tiny_ip2p_xl.save_tiny_ip2p_xl", {"text_scale": 7.5}),
    "kontext": ("tiny_kontext.save_tiny_kontext", {"guidance": 2.5}),
    "qwen_edit": ("tiny_qwen_edit.save_tiny_qwen_edit", {"true_cfg_scale": 4.0}),
}


def load_tiny(family: str, folder: Path) -> Any:
    """The family's tiny model saved to ``folder`` and loaded the app's way (``load_editor``, CPU; a
    loaded pipeline is in eval mode: a freshly built one would still run its dropout)."""
    import importlib

    from maskpix_desktop.core.editor_loader import load_editor

    module, fn = FAMILIES[family][0].rsplit(".", 1)
    getattr(importlib.import_module(f"maskpix_desktop.testing.{module}"), fn)(folder, seed=0)
    return load_editor(str(folder), device="cpu", precision="fp32")


def plain_call(family: str, pipe: Any, image: np.ndarray, params: Any) -> np.ndarray:
    """diffusers' own call for ``family`` with the arguments ``Editor.run`` passes (uint8 HxWx3)."""
    import torch

    from maskpix_desktop.core import images

    h, w = image.shape[:2]
    kwargs: dict[str, Any] = {}
    if family in ("ip2p", "ip2p_xl"):
        kwargs.update(guidance_scale=params.text_scale, image_guidance_scale=params.image_scale)
        if family == "ip2p_xl":
            kwargs.update(height=h, width=w)
    elif family == "kontext":
        kwargs.update(height=h, width=w, guidance_scale=params.guidance, max_area=h * w, _auto_resize=False)
    else:
        kwargs.update(height=h, width=w, true_cfg_scale=params.true_cfg_scale, negative_prompt=" ")
    out = pipe(
        prompt=params.instruction,
        image=images.to_pil(image),
        num_inference_steps=params.steps,
        generator=torch.Generator("cpu").manual_seed(params.seed),
        **kwargs,
    )
    return np.asarray(out.images[0])


def family_ratios(family: str, cfg: BenchConfig, folder: Path) -> dict[str, Any]:
    """One family's measurements (see the module docstring); the tiny model is saved under ``folder``."""
    from maskpix_desktop.core.jobs import EditParams, EditRequest

    editor = load_tiny(family, folder)
    pipe = editor.pipe
    h, w = cfg.edit_size
    img = synthetic_image(h, w, seed=3)
    mask = ellipse_mask(h, w)
    params = EditParams(instruction=INSTRUCTION, steps=cfg.edit_steps, seed=7, **FAMILIES[family][1])
    pixel = replace(params, mask_mode="pixel", feather=0.0, dilate=0)
    latent = replace(params, mask_mode="latent", feather=0.0, dilate=0)

    def plain() -> np.ndarray:
        return plain_call(family, pipe, img, params)

    def run(p: Any, m: np.ndarray | None) -> Callable[[], Any]:
        return lambda: editor.run(EditRequest(img, m, p))

    with torch_threads(cfg.edit_threads):
        ref = plain()
        base = editor.run(EditRequest(img, None, params))
        masked = editor.run(EditRequest(img, mask, pixel))
        fns = [plain, run(params, None), run(pixel, mask), run(latent, mask)]
        walls, cpus = interleave_cpu(fns, cfg.mode_repeats)
    use_cpu = cfg.edit_threads == 1
    times = cpus if use_cpu else walls
    return {
        "working_hw": list(base.working_size),
        "baseline_identical_to_diffusers": bool(np.array_equal(base.baseline, ref)),
        "pixel_exact_outside_mask": bool(np.array_equal(masked.blended[~mask], img[~mask])),
        "diffusers_call": ms_summary(times[0]),
        "editor_run": ms_summary(times[1]),
        "baseline_vs_diffusers": round(ratio(times[1], times[0]), 3),
        "pixel_vs_diffusers": round(ratio(times[2], times[0]), 3),
        "latent_vs_diffusers": round(ratio(times[3], times[0]), 3),
        "baseline_vs_diffusers_wall": round(ratio(walls[1], walls[0]), 3),
    }


def bench_families(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Every family's ratios; a family that fails reports its error and the others still run."""
    out: dict[str, Any] = {
        "models": "tiny random pipelines (maskpix_desktop.testing), CPU, float32",
        "image_hw": list(cfg.edit_size),
        "steps": cfg.edit_steps,
        "repeats": cfg.mode_repeats,
        "ratios_from": "process CPU time at 1 torch thread" if cfg.edit_threads == 1 else "wall time",
        "families": {},
    }
    with tempfile.TemporaryDirectory(prefix="maskpix-families-") as tmp:
        for family in FAMILIES:
            try:
                out["families"][family] = family_ratios(family, cfg, Path(tmp) / family)
            except Exception as exc:  # one family's failure must not hide the others' figures
                out["families"][family] = {"error": f"{type(exc).__name__}: {exc}"}
    ok = [r["baseline_vs_diffusers"] for r in out["families"].values() if "error" not in r]
    if ok:
        out["worst_baseline_vs_diffusers"] = max(ok)
    mark_peak(ctx, "families (tiny editors)")
    return out


def families_rows(fam: Any) -> list[tuple[str, str, str]]:
    """format_table rows: per family, Editor.run / diffusers for the baseline, pixel and latent runs."""
    if not isinstance(fam, dict) or "families" not in fam:
        return []
    rows = []
    for family, r in fam["families"].items():
        if "error" in r:
            rows.append(("families", family, f"ERROR {r['error']}"))
            continue
        rows.append(
            (
                "families",
                f"{family} {r['working_hw'][1]}x{r['working_hw'][0]}",
                f"diffusers {r['diffusers_call']['median_ms']} ms; Editor.run / diffusers: baseline "
                f"{r['baseline_vs_diffusers']}, pixel {r['pixel_vs_diffusers']}, latent "
                f"{r['latent_vs_diffusers']}; bit-equal {r['baseline_identical_to_diffusers']}, "
                f"exact outside {r['pixel_exact_outside_mask']}",
            )
        )
    return rows
