"""The report: machine description, targets, the printed table."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from maskpix_desktop.bench.common import SECTIONS
from maskpix_desktop.bench.families import families_rows

# The issue's targets: (section, metric key, comparison, bound, unit).
TARGETS: tuple[tuple[str, str, str, float, str], ...] = (
    ("sam", "click_ratio_1024", "<=", 0.5, "x SamPredictor"),
    ("sam", "click_ratio_4000x3000", "<=", 0.5, "x SamPredictor"),
    ("sam", "click_ms_1024", "<=", 30.0, "ms"),
    ("sam", "click_ms_4000x3000", "<=", 30.0, "ms"),
    ("sam", "click_ratio_1thread_cpu_1024", "<=", 0.5, "x (1 thread, CPU time)"),
    ("sam", "click_ratio_1thread_cpu_4000x3000", "<=", 0.5, "x (1 thread, CPU time)"),
    ("sam", "click_ms_1thread_cpu_1024", "<=", 30.0, "ms (1 thread, CPU)"),
    ("encoder", "encoder_calls_after_clicks", "<=", 1, "calls"),
    ("edit", "baseline_vs_diffusers", "<=", 1.03, "x"),
    ("edit", "pixel_overhead", "<=", 1.02, "x"),
    ("edit", "latent_overhead", "<=", 1.10, "x"),
    ("families", "worst_baseline_vs_diffusers", "<=", 1.03, "x (tiny models, every family)"),
    ("ui", "event_loop_stall_ms", "<", 50.0, "ms"),
    ("ui", "brush_segment_ms", "<", 8.0, "ms"),
    ("editloop", "post_edit_s_largest", "<=", 1.5, "s (24 MP, no seam)"),
    ("editloop", "metrics_s_largest", "<=", 1.0, "s (24 MP, both views)"),
    ("firstmask", "sam2_tiny_open_to_mask_s", "<=", 2.0, "s (24 MP, SAM 2.1 tiny, CPU)"),
)


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": cpu,
        "cpus_usable": usable,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for mod in ("diffusers", "segment_anything", "PySide6", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            info[mod] = None
    return info


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for section, key, op, bound, unit in TARGETS:
        value = report.get(section, {}).get(key) if isinstance(report.get(section), dict) else None
        met = None
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            met = value <= bound if op == "<=" else value < bound
        rows.append(
            {"section": section, "metric": key, "value": value, "target": f"{op} {bound} {unit}", "met": met}
        )
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The human-readable summary printed on stdout."""
    rows: list[tuple[str, str, str]] = []
    m = report["machine"]
    rows.append(
        (
            "machine",
            "cpu",
            f"{m['cpu_model']} ({m['cpus_usable']} usable, torch threads {m['torch_threads']})",
        )
    )
    rows.append(("machine", "torch", f"{m['torch']} (cuda: {m['cuda']})"))
    sam = report.get("sam")
    if isinstance(sam, dict) and "images" in sam:
        for label, per in sam["images"].items():
            for name, c in per["prompts"].items():
                rows.append(
                    (
                        f"sam {label}",
                        f"click {name}",
                        f"ours {c['ours']['median_ms']:.1f} ms"
                        f" | all masks {c['ours_all_candidates']['median_ms']:.1f} ms"
                        f" | SamPredictor {c['sam_predictor']['median_ms']:.1f} ms"
                        f" | ratio {c['ratio']:.3f}"
                        f" | max |dlogit| {c['agreement']['max_logit_diff']:.1e},"
                        f" {c['agreement']['mask_pixels_differing']} px differ",
                    )
                )
                rows.append(
                    (
                        f"sam {label}",
                        "  exact decoder",
                        f"ours exact {c['ours_exact']['median_ms']:.1f} ms | ratio {c['ratio_exact']:.3f}"
                        f" | bit-identical {c['exact_identical_to_sam_predictor']}",
                    )
                )
                if "ratio_1thread_cpu" in c:
                    rows.append(
                        (
                            f"sam {label}",
                            "  1 thread, CPU time",
                            f"ours {c['ours_1thread_cpu']['median_ms']:.1f} ms"
                            f" | SamPredictor {c['sam_predictor_1thread_cpu']['median_ms']:.1f} ms"
                            f" | ratio {c['ratio_1thread_cpu']:.3f}",
                        )
                    )
            b = per["breakdown_point"]
            rows.append(
                (
                    f"sam {label}",
                    "where time goes",
                    f"decoder SAM {b['decoder_sam_modules']['median_ms']:.1f} ms / exact"
                    f" {b['decoder_exact']['median_ms']:.1f} ms / ours ({b['decoder_path']})"
                    f" {b['decoder_ours']['median_ms']:.1f} ms; upsample 3 masks"
                    f" {b['upsample_all_candidates']['median_ms']:.1f} ms / best only"
                    f" {b['upsample_best_only']['median_ms']:.1f} ms",
                )
            )
            top = [op for op in b.get("profile_decoder_ours_top_ops", []) if "op" in op][:5]
            if top:
                rows.append(
                    (
                        f"sam {label}",
                        "decoder top ops (ours)",
                        ", ".join(
                            f"{op['op'].replace('aten::', '')} {op['self_ms_per_run']:.1f} ms" for op in top
                        ),
                    )
                )
            if "threads" in b:
                t = b["threads"]
                rows.append(
                    (
                        f"sam {label}",
                        "threads",
                        f"decoder {t['default_threads']} threads"
                        f" {t['decoder_default_threads']['median_ms']:.1f} ms,"
                        f" 1 thread {t['decoder_1_thread']['median_ms']:.1f} ms",
                    )
                )
            bf = b.get("tried_bf16_decoder", {})
            if "bf16_ratio" in bf:
                rows.append(
                    (
                        f"sam {label}",
                        "tried bf16 decoder",
                        f"{bf['decoder_bf16']['median_ms']:.1f} ms (x{bf['bf16_ratio']:.2f}),"
                        f" low-res mask IoU {bf['low_res_mask_iou_vs_fp32']:.4f}: not adopted",
                    )
                )
    enc = report.get("encoder")
    if isinstance(enc, dict) and "embed_s" in enc:
        rows.append(
            (
                "encoder",
                "embed",
                f"{enc['embed_s']:.2f} s ({enc['model']} at {enc['image_hw']}); encoder calls after"
                f" {enc['decodes_since_embedding']} decodes + re-set: {enc['encoder_calls_after_clicks']}"
                f" (all {enc['images_embedded']} images: {enc['encoder_forward_calls_total']});"
                f" cached set_image {enc['set_image_again_ms']:.1f} ms",
            )
        )
    ed = report.get("edit")
    if isinstance(ed, dict) and "modes" in ed:
        rows.append(
            (
                "edit",
                "Editor.run vs diffusers",
                f"{ed['editor_run']['median_ms']:.0f} ms vs {ed['diffusers_call']['median_ms']:.0f} ms,"
                f" ratio {ed['baseline_vs_diffusers']:.3f},"
                f" identical {ed['baseline_identical_to_diffusers']}",
            )
        )
        rows.append(
            ("edit", "ratios from", f"{ed['ratios_from']} (wall ratio {ed['baseline_vs_diffusers_wall']})")
        )
        for mode, d in ed["modes"].items():
            rows.append(
                (
                    "edit",
                    f"{mode} mode",
                    f"overhead {d['overhead']:.3f}x (cpu {d['overhead_cpu']:.3f},"
                    f" wall {d['overhead_wall']:.3f}, in-run wall {d['overhead_in_run_wall']:.3f};"
                    f" run vs plain run {d['run_vs_plain_run_wall']:.2f}x)",
                )
            )
        cu = ed.get("cuda_unet")
        rows.append(("edit", "CUDA UNet", cu if isinstance(cu, str) else json.dumps(cu)))
        rows.extend(pipeline_rows(ed.get("cuda_pipeline")))
    ui = report.get("ui")
    if isinstance(ui, dict) and "event_loop" in ui:
        ev, br, fw = ui["event_loop"], ui["brush"], ui["first_window"]
        rows.append(
            (
                "ui",
                "event-loop stall",
                f"longest {ev['longest_gap_ms']} ms between {ev['timer_interval_ms']} ms ticks during a"
                f" {ev['run_s']} s edit (p99 {ev['p99_gap_ms']} ms;"
                f" idle longest {ev['idle_longest_gap_ms']} ms)",
            )
        )
        rows.append(
            (
                "ui",
                "brush segment",
                f"update {br['update']['median_ms']} ms median (p95 {br['update_p95_ms']}, max"
                f" {br['update']['max_ms']}), repaint {br['repaint']['median_ms']} ms on {br['mask_hw']}",
            )
        )
        if "error" in fw:
            rows.append(("ui", "first window", fw["error"]))
        else:
            rows.append(
                (
                    "ui",
                    "first window",
                    f"{fw['first_window_s']} s (in-process {fw['in_process_s']} s),"
                    f" torch imported: {fw['torch_imported_at_first_window']}",
                )
            )
    am = report.get("automask")
    if isinstance(am, dict) and "error" not in am:
        for size, row in am.items():
            if isinstance(row, dict):
                cells = ", ".join(f"K={k.split('_')[1]}: {v['median_ms']} ms" for k, v in row.items())
                rows.append(("automask", f"relevance map {size} px", cells))
    rows.extend(families_rows(report.get("families")))
    rows.extend(editloop_rows(report.get("editloop")))
    rows.extend(firstmask_rows(report.get("firstmask")))
    mem = report.get("memory")
    if isinstance(mem, dict) and "peak_rss_mb" in mem:
        steps = ", ".join(f"{m['after']} {m['peak_rss_mb']}" for m in mem.get("peak_after_step", []))
        rows.append(("memory", "peak RSS", f"{mem['peak_rss_mb']} MB; GPU: {mem['peak_gpu_mb']}"))
        rows.append(("memory", "peak RSS so far (MB)", steps))
        rows.append(("memory", "first-window process", f"{mem.get('first_window_process_peak_rss_mb')} MB"))
    for name in SECTIONS:
        sec = report.get(name)
        if isinstance(sec, dict) and "error" in sec:
            rows.append((name, "ERROR", sec["error"]))
    lines = []
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    for a, b, c in rows:
        lines.append(f"{a:<{w1}}  {b:<{w2}}  {c}")
    lines.append("")
    lines.append("targets:")
    for t in report.get("targets", []):
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        lines.append(f"  {t['section']:<8} {t['metric']:<34} {_fmt(t['value']):>8}  {t['target']:<30} {mark}")
    lines.append(f"wall time {report.get('wall_s')} s; load average start {report.get('loadavg_start')}")
    return "\n".join(lines)


def editloop_rows(el: Any) -> list[tuple[str, str, str]]:
    """format_table rows of the edit-loop section: per size and stage, new vs old median and ratio."""
    if not isinstance(el, dict) or "sizes" not in el:
        return []
    rows = []
    for label, row in el["sizes"].items():
        for stage, st in row["stages"].items():
            if "new" not in st:
                rows.append((f"editloop {label}", stage, f"ERROR {st.get('error')}"))
                continue
            rows.append(
                (
                    f"editloop {label}",
                    stage,
                    f"new {st['new']['median_ms']:.1f} ms vs old {st['old']['median_ms']:.1f} ms,"
                    f" ratio {st['ratio']:.3f} (CPU {st['new_cpu']['median_ms']:.1f} vs"
                    f" {st['old_cpu']['median_ms']:.1f} ms, ratio {st['ratio_cpu']:.3f})",
                )
            )
        rows.append(
            (
                f"editloop {label}",
                "total (no seam / seam)",
                f"new {row['total_new_s']:.2f} / {row['total_new_with_poisson_s']:.2f} s,"
                f" old {row['total_old_s']:.2f} / {row['total_old_with_poisson_s']:.2f} s;"
                f" SSIM working factor {row['ssim_working_factor']}",
            )
        )
        if "display_new_photo" in row:
            rows.append(
                (
                    f"editloop {label}",
                    "display, first result of a photo",
                    f"new {row['display_new_photo']['new']['median_ms']:.1f} ms;"
                    f" levels shown {row.get('display_levels')}",
                )
            )
    mem = el.get("memory_after_edits")
    if isinstance(mem, dict) and "new" in mem:
        o, n = mem["old"], mem["new"]
        rows.append(
            (
                f"editloop {n['size']}",
                f"memory after {n['edits']} edits",
                f"new +{n['rss_added_mb']:.0f} MB RSS (anon +{n['anon_added_mb']:.0f}), old"
                f" +{o['rss_added_mb']:.0f} MB (anon +{o['anon_added_mb']:.0f})",
            )
        )
    return rows


def firstmask_rows(fm: Any) -> list[tuple[str, str, str]]:
    """format_table rows of the firstmask section: open-to-first-mask per model, by stage."""
    if not isinstance(fm, dict) or "models" not in fm:
        return []
    return [
        (
            f"firstmask {fm['size']}",
            f"open to first mask, {name}",
            f"{r['total_s']:.2f} s (CPU {r['total_cpu_s']:.2f}): load {r['load_s']:.2f}, encode"
            f" {r['encode_s']:.2f}, click {r['click_s']:.2f} s; encoder {r.get('encoder_precision', 'fp32')},"
            f" {fm['torch_threads']} threads",
        )
        for name, r in fm["models"].items()
    ]


def pipeline_rows(cp: Any) -> list[tuple[str, str, str]]:
    """format_table rows for the edit section's CUDA pipeline measurement (any entry may be missing)."""
    label = "CUDA pipeline"
    if cp is None:
        return []
    if not isinstance(cp, dict):
        return [("edit", label, str(cp))]
    head = f"{cp.get('model')}, {cp.get('size')} px, {cp.get('steps')} steps, {cp.get('dtype')}"
    if "error" in cp:
        return [("edit", label, f"{head}: ERROR {cp['error']}")]
    sec = cp.get("seconds", {})

    def s(name: str) -> str:
        return f"{sec[name]:.3f} s" if name in sec else "n/a"

    ratio_txt = "n/a"
    if "baseline_vs_diffusers" in cp:
        met = "met" if cp.get("baseline_vs_diffusers_met") else "MISSED"
        ratio_txt = f"{cp['baseline_vs_diffusers']:.3f} (target <= 1.03: {met})"
        if "baseline_vs_diffusers_min" in cp:
            ratio_txt += f", fastest runs {cp['baseline_vs_diffusers_min']:.3f}"
    rows = [
        (
            "edit",
            label,
            f"{head}: Editor.run {s('editor_run')} vs diffusers {s('diffusers_call')}, ratio {ratio_txt}",
        ),
        (
            "edit",
            "  mask modes",
            f"pixel {s('pixel_run')} (overhead {_fmt(cp.get('pixel_overhead'))}x),"
            f" latent {s('latent_run')} (overhead {_fmt(cp.get('latent_overhead'))}x)",
        ),
        (
            "edit",
            "  baseline vs diffusers",
            f"max abs pixel diff {cp.get('baseline_max_abs_diff')} (mean {cp.get('baseline_mean_abs_diff')}),"
            f" identical {cp.get('baseline_identical_to_diffusers')}",
        ),
    ]
    sps = cp.get("steps_per_s", {})
    peak = cp.get("peak_gpu_mb")
    peak_txt = (
        f"{max(peak.values()):.0f} MB (weights {cp.get('weights_gpu_mb')} MB)"
        if isinstance(peak, dict) and peak
        else str(peak)
    )
    rows.append(
        (
            "edit",
            "  steps/s, peak GPU",
            f"ours {_fmt(sps.get('editor_run'))}, diffusers {_fmt(sps.get('diffusers_call'))} steps/s;"
            f" peak GPU {peak_txt}; build {cp.get('build_s')} s",
        )
    )
    for name, err in cp.get("errors", {}).items():
        rows.append(("edit", f"  ERROR {name}", err.get("error", str(err))))
    tune = cp.get("tuning")
    if isinstance(tune, dict) and "error" in tune:
        rows.append(("edit", "  tuning (experiment)", f"ERROR {tune['error']}"))
    elif isinstance(tune, dict):
        parts = [
            f"{name} x{v['vs_plain']:.3f} (max pixel diff {v['max_abs_pixel_diff_vs_plain']})"
            for name, v in tune.items()
            if isinstance(v, dict) and name != "plain"
        ]
        rows.append(("edit", "  tuning (experiment)", "Editor.run vs plain: " + ", ".join(parts)))
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)
