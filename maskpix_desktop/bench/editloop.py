"""``editloop`` section: what a user waits for after the last denoising step, new vs old code."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from maskpix_desktop.bench.common import (
    BenchConfig,
    ellipse_mask,
    error_entry,
    interleave_cpu,
    load_average,
    mark_peak,
    ms_summary,
    ratio,
    size_label,
    synthetic_image,
)
from maskpix_desktop.bench.ui import qapp


def bench_editloop(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """What a user waits for after the last denoising step, per photo size, today's code vs before."""
    out: dict[str, Any] = {
        "what": "resize to full size (Pillow lanczos; new: core/resample.py, same bits), composite,"
        " Poisson seam, metrics of both views"
        " (compute_metrics x2 via compare, no CLIP), display (old: 4 full-size views to QPixmap + the"
        " full-size mask overlay; new: ResultsPanel.show_result, display pyramid levels, 1600x900 panel);"
        " old = the code before issue 20 (metrics: reference=True) in the same run, interleaved",
        "sizes": {},
    }
    for hw in cfg.loop_sizes:
        out["sizes"][size_label(hw)] = _loop_size(hw, cfg.loop_repeats, cfg.loop_seam_repeats)
        mark_peak(ctx, f"edit loop {size_label(hw)}")
    last = out["sizes"][size_label(cfg.loop_sizes[-1])]
    full = not cfg.quick  # the targets are about 24 MP: a --quick run leaves them n/a
    out["post_edit_s_largest"] = last["total_new_s"] if full else None
    metrics_row = last["stages"]["metrics_both_views"]
    out["metrics_s_largest"] = metrics_row["new"]["median_ms"] / 1000 if full else None
    out["metrics_ratio_largest"] = metrics_row["ratio"]
    edits = 3 if cfg.quick else 10
    try:
        out["memory_after_edits"] = {
            which: edits_memory(cfg.loop_sizes[-1], edits, keep=keep)
            for which, keep in (("old", None), ("new", RESULTS_IN_MEMORY))
        }
    except Exception as exc:  # no Qt platform: report, keep the timings
        out["memory_after_edits"] = error_entry(exc)
    mark_peak(ctx, "edit loop memory")
    out["loadavg"] = load_average()
    return out


def _loop_size(hw: tuple[int, int], repeats: int, seam_repeats: int) -> dict[str, Any]:
    from maskpix_desktop.core import blend, images, metrics

    h, w = hw
    inp = _loop_inputs(h, w)
    orig, mask = inp["orig"], inp["mask"]
    m_used = blend.prepare_mask(mask)  # what Editor.run composites with (float32)
    baseline = images.resize_image(inp["work_out"], (h, w), resample="lanczos")
    blended = blend.composite(orig, baseline, m_used)
    ident_comp = bool(np.array_equal(blended, _old_composite(orig, baseline, m_used)))
    row: dict[str, Any] = {"megapixels": round(h * w / 1e6, 1), "stages": {}}

    def pair(name: str, old: Callable[[], Any], new: Callable[[], Any], reps: int) -> None:
        wall, cpu = interleave_cpu([old, new], reps)
        row["stages"][name] = {
            "old": ms_summary(wall[0]),
            "new": ms_summary(wall[1]),
            "old_cpu": ms_summary(cpu[0]),
            "new_cpu": ms_summary(cpu[1]),
            "ratio": round(ratio(wall[1], wall[0]), 4),
            "ratio_cpu": round(ratio(cpu[1], cpu[0]), 4),
        }

    def resize() -> Any:
        return images.resize_image(inp["work_out"], (h, w), resample="lanczos")

    def pillow_resize() -> Any:  # before issue 20: Pillow's Image.resize for every size
        from PIL import Image

        return np.asarray(Image.fromarray(inp["work_out"]).resize((w, h), Image.LANCZOS))

    pair("resize_to_full", pillow_resize, resize, repeats)
    row["resize_identical"] = bool(np.array_equal(baseline, pillow_resize()))
    pair(
        "composite",
        lambda: _old_composite(orig, baseline, m_used),
        lambda: blend.composite(orig, baseline, m_used),
        repeats,
    )
    pair(
        "metrics_both_views",
        lambda: metrics.compare(orig, baseline, blended, mask, reference=True),
        lambda: metrics.compare(orig, baseline, blended, mask),
        repeats,
    )
    seam = blend.poisson_seam(orig, blended, m_used)
    pair(
        "poisson_seam",
        lambda: _old_poisson(orig, blended, m_used),
        lambda: blend.poisson_seam(orig, blended, m_used),
        seam_repeats,
    )
    ident_seam = bool(np.array_equal(seam, _old_poisson(orig, blended, m_used)))
    try:
        app = qapp()
        panel = _panel(app)
        result = _result(orig, mask, baseline, blended, m_used)
        panel.add_result(result)
        app.processEvents()

        def new_display() -> None:  # a new result of the photo shown: the original's levels are kept
            panel.show_result(-1)

        def new_photo() -> None:
            panel.drop_display_cache()
            panel.show_result(-1)

        pair("display", lambda: _display((baseline, blended), orig, mask), new_display, repeats)
        wall, cpu = interleave_cpu([new_photo], repeats)
        row["display_new_photo"] = {"new": ms_summary(wall[0]), "new_cpu": ms_summary(cpu[0])}
        row["display_levels"] = {name: v.shown_level() for name, v in panel.views.items()}
        panel.clear()
        panel.store.close()
        panel.deleteLater()
        app.processEvents()
    except Exception as exc:  # no Qt platform: report, keep the other stages
        row["stages"]["display"] = error_entry(exc)
    old_m = metrics.compare(orig, baseline, blended, mask, reference=True)
    new_m = metrics.compare(orig, baseline, blended, mask)
    row["metrics_max_rel_diff"] = {
        k: max(
            abs(new_m[v][k] - old_m[v][k]) / max(abs(old_m[v][k]), 1e-12)
            for v in old_m
            if math.isfinite(old_m[v][k])
        )
        for k in old_m["baseline"]
        if any(math.isfinite(old_m[v][k]) for v in old_m)
    }
    row["ssim_working_factor"] = metrics.ssim_factor(h, w)
    row["composite_identical"] = ident_comp
    row["poisson_identical"] = ident_seam
    st = row["stages"]
    for which in ("old", "new"):
        names = ["resize_to_full", "composite", "metrics_both_views", "display"]
        ok = [n for n in names if which in st.get(n, {})]
        base_ms = sum(st[n][which]["median_ms"] for n in ok)
        row[f"total_{which}_s"] = round(base_ms / 1000, 3)
        seam_ms = st["poisson_seam"][which]["median_ms"]
        row[f"total_{which}_with_poisson_s"] = round((base_ms + seam_ms) / 1000, 3)
    row["total_ratio"] = round(row["total_new_s"] / row["total_old_s"], 4)
    return row


def _loop_inputs(h: int, w: int, long_side: int = 512) -> dict[str, Any]:
    """A photo-like original, a denoiser output at working size (colour-shifted) and a 30% ellipse mask."""
    import cv2

    from maskpix_desktop.core import images

    small = synthetic_image(max(8, h // 8), max(8, w // 8), seed=h)
    noise = np.random.default_rng(1).integers(-6, 7, (256, 256, 3), dtype=np.int16)
    reps = (-(-h // 256), -(-w // 256), 1)
    base = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    orig = np.clip(base + np.tile(noise, reps)[:h, :w], 0, 255).astype(np.uint8)
    work = images.working_image(orig, long_side, multiple=8)
    out = np.clip(work.astype(np.int16) + (40, -10, 25), 0, 255).astype(np.uint8)
    return {"orig": orig, "work_out": out, "mask": ellipse_mask(h, w)}


#: Results the new panel keeps in memory (the others are memory-mapped files), as ResultsPanel's store.
RESULTS_IN_MEMORY = 2
PANEL_SIZE = (1600, 900)


def _panel(app: Any, keep: int | None = None) -> Any:
    """A shown ResultsPanel of PANEL_SIZE whose store keeps ``keep`` results in memory (None: all)."""
    import tempfile
    from pathlib import Path

    from maskpix_desktop.core.result_store import ResultStore
    from maskpix_desktop.ui.results import ResultsPanel

    root = Path(tempfile.mkdtemp(prefix="maskpix-bench-results-"))
    panel = ResultsPanel(store=ResultStore(root, keep=10**9 if keep is None else keep))
    panel.resize(*PANEL_SIZE)
    panel.show()
    app.processEvents()
    return panel


def _result(
    orig: np.ndarray, mask: np.ndarray, baseline: np.ndarray, blended: np.ndarray, m_used: np.ndarray
) -> Any:
    from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

    return EditResult(
        request=EditRequest(image=orig, mask=mask, params=EditParams("bench")),
        baseline=baseline,
        blended=blended,
        edit=baseline,
        mask_used=m_used,
        working_size=(512, 512),
    )


def edits_memory(hw: tuple[int, int], edits: int, *, keep: int | None) -> dict[str, Any]:
    """Resident memory added by ``edits`` edits of one photo shown in a ResultsPanel.

    Each edit makes what Editor.run returns (a new full-size baseline, the float mask used, the composite)
    and the panel shows it. ``keep=None`` is the code before issue 20: every result in memory, and the
    shown result held as four full-size pixmaps (the old views) on top.
    """
    import gc

    from maskpix_desktop.bench.memory import rss_parts
    from maskpix_desktop.core import blend, images
    from maskpix_desktop.ui.document_model import freeze

    h, w = hw
    app = qapp()
    inp = _loop_inputs(h, w)
    orig, mask = inp["orig"], inp["mask"]
    orig.flags.writeable = False
    gc.collect()
    before = rss_parts()
    panel = _panel(app, keep)
    old_pixmaps: list[Any] = []
    t0 = time.perf_counter()
    for i in range(edits):
        work = np.clip(inp["work_out"].astype(np.int16) + i, 0, 255).astype(np.uint8)
        baseline = images.resize_image(work, (h, w), resample="lanczos")
        m_used = blend.prepare_mask(mask)
        result = _result(orig, mask, baseline, blend.composite(orig, baseline, m_used), m_used)
        freeze(result)
        panel.add_result(result)
        if keep is None:
            old_pixmaps = []
            _display((result.baseline, result.blended), orig, mask, keep=old_pixmaps)
        app.processEvents()
        del work, baseline, m_used, result
    panel.store.flush()
    gc.collect()
    after = rss_parts()
    out = {
        "edits": edits,
        "size": size_label(hw),
        "results_in_memory": "all" if keep is None else keep,
        "seconds": round(time.perf_counter() - t0, 2),
        "rss_added_mb": round(after["rss_mb"] - before["rss_mb"], 1),
        "anon_added_mb": round(after["anon_mb"] - before["anon_mb"], 1),
        "file_added_mb": round(after["file_mb"] - before["file_mb"], 1),
        "rss_after_mb": after["rss_mb"],
    }
    old_pixmaps.clear()
    panel.clear()
    panel.store.close()
    panel.deleteLater()
    app.processEvents()
    gc.collect()
    return out


def _display(
    result_views: Sequence[np.ndarray], orig: np.ndarray, mask: np.ndarray, keep: list | None = None
) -> None:
    """What ResultsPanel.show_result converts: original, mask overlay, baseline, blended -> QPixmaps."""
    from maskpix_desktop.core.export import mask_overlay
    from maskpix_desktop.ui.qimage import to_pixmap

    for arr in (orig, mask_overlay(orig, mask), *result_views):
        pix = to_pixmap(arr)
        if keep is not None:
            keep.append(pix)


def _old_composite(orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """blend.composite before issue 20 (whole-image float32 formula), kept here for the side-by-side."""
    from maskpix_desktop.core import masks

    m = masks.as_float(mask)
    o = orig.astype(np.float32)
    y = o + m[..., None] * (edit.astype(np.float32) - o)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def _old_poisson(orig: np.ndarray, composite_img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """blend.poisson_seam before issue 20 (whole images flipped to BGR and back), for the side-by-side."""
    import cv2

    from maskpix_desktop.core import masks

    hard = masks.as_bool(mask, threshold=0.01).copy()
    hard[[0, -1], :] = False
    hard[:, [0, -1]] = False
    box = masks.bbox(hard)
    if box is None:
        return composite_img.copy()
    x0, y0, x1, y1 = box
    m8 = hard.astype(np.uint8) * 255
    out = cv2.seamlessClone(
        np.ascontiguousarray(composite_img[..., ::-1]),
        np.ascontiguousarray(orig[..., ::-1]),
        m8,
        ((x0 + x1) // 2, (y0 + y1) // 2),
        cv2.NORMAL_CLONE,
    )
    return np.ascontiguousarray(out[..., ::-1])
