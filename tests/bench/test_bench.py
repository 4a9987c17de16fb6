"""Smoke test of the performance harness: tiny models and sizes, every section, a complete JSON report.

Timings are not asserted (the machine may be shared); only that each figure exists and is sane.
"""

from __future__ import annotations

import json
import math

import pytest

from maskpix_desktop import bench


def _numbers(obj, path=""):
    """Yield (dotted path, value) for every number in a nested JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    code = bench.main(["--quick", "--json", str(out), "--sections", ",".join(bench.SECTIONS)])
    data = json.loads(out.read_text(encoding="utf-8"))
    data["_exit"] = code
    return data


def test_every_section_is_reported_without_error(report):
    assert report["_exit"] == 0
    for name in bench.SECTIONS:
        assert isinstance(report[name], dict), name
        assert "error" not in report[name], report[name].get("traceback")
    assert report["machine"]["torch"] and report["machine"]["cpus_usable"] >= 1
    assert report["command"].startswith("python -m maskpix_desktop.bench")
    assert {t["metric"] for t in report["targets"]} >= {
        "click_ratio_1024",
        "latent_overhead",
        "brush_segment_ms",
    }


def test_ratios_and_times_are_positive(report):
    found = 0
    for path, value in _numbers(report):
        leaf = path.rsplit(".", 1)[-1]
        if "ratio" in leaf or "overhead" in leaf or leaf.endswith("_ms") or leaf.endswith("_s"):
            assert math.isfinite(value) and value >= 0, path
            if "ratio" in leaf or "overhead" in leaf:
                assert value > 0, path
                found += 1
    assert found >= 10


def test_sam_section_compares_with_sam_predictor(report):
    sam = report["sam"]
    assert set(sam["images"]) == {"128x96", "400x300"}
    for per in sam["images"].values():
        assert set(per["prompts"]) == {"point", "point_box", "refine"}
        for c in per["prompts"].values():
            assert c["exact_identical_to_sam_predictor"] is True  # decoder="exact": bit for bit
            agree = c["agreement"]
            assert agree["max_logit_diff"] < 1e-5 and agree["max_score_diff"] < 1e-5
            assert agree["mask_pixels_differing"] <= 1e-3 * agree["mask_pixels"]
            assert c["ours"]["n"] == c["sam_predictor"]["n"] == c["ours_exact"]["n"] == 3
        b = per["breakdown_point"]
        assert b["decoder_path"] == "fast"
        assert b["decoder_ours"]["median_ms"] > 0 and b["decoder_exact"]["median_ms"] > 0


def test_encoder_edit_ui_memory_figures(report):
    enc = report["encoder"]
    assert enc["first_set_image_encoded"] and not enc["set_image_again_encoded"]
    assert enc["encoder_calls_after_clicks"] == 1 == enc["encoder_forward_calls_for_image"]
    assert enc["encoder_forward_calls_since_clicks"] == 0
    assert enc["encoder_forward_calls_total"] == enc["images_embedded"] == 2
    assert enc["decodes_since_embedding"] > 3
    edit = report["edit"]
    assert edit["baseline_identical_to_diffusers"] is True
    assert set(edit["modes"]) == {"pixel", "latent", "crop"}
    ui = report["ui"]
    assert ui["event_loop"]["job_result"] == "finished" and ui["event_loop"]["ticks"] > 0
    assert ui["brush"]["painted_px"] > 0
    assert ui["first_window"]["torch_imported_at_first_window"] is False
    assert report["memory"]["peak_rss_mb"] > 0


def test_editloop_section_compares_each_stage_with_the_old_code(report):
    el = report["editloop"]
    assert set(el["sizes"]) == {"128x96", "320x240"}
    for row in el["sizes"].values():
        stages = row["stages"]
        assert set(stages) == {"resize_to_full", "composite", "metrics_both_views", "poisson_seam", "display"}
        for st in stages.values():
            assert st["new"]["n"] == st["old"]["n"] >= 1 and st["ratio"] > 0
        assert row["composite_identical"] is True and row["poisson_identical"] is True
        assert row["resize_identical"] is True
        assert row["ssim_working_factor"] == 1  # small sizes: SSIM at full size, so only float32 rounding
        assert max(row["metrics_max_rel_diff"].values()) < 1e-4
        assert row["total_new_s"] > 0 and row["total_old_with_poisson_s"] >= row["total_old_s"]
        assert row["display_new_photo"]["new"]["n"] >= 1
        assert set(row["display_levels"]) == {"original", "mask", "baseline", "blended"}
    mem = el["memory_after_edits"]
    for which in ("old", "new"):
        assert mem[which]["edits"] == 3 and mem[which]["size"] == "320x240" and mem[which]["rss_after_mb"] > 0
    assert mem["new"]["results_in_memory"] == 2 and mem["old"]["results_in_memory"] == "all"
    assert el["post_edit_s_largest"] is None  # --quick: the 24 MP targets are n/a
    assert "editloop 320x240" in bench.format_table(report)


def test_families_section_runs_every_family_against_diffusers(report):
    fam = report["families"]
    assert set(fam["families"]) == {"ip2p", "ip2p_xl", "kontext", "qwen_edit"}
    for name, r in fam["families"].items():
        assert r["baseline_identical_to_diffusers"] and r["pixel_exact_outside_mask"], name
        assert r["latent_vs_diffusers"] > r["pixel_vs_diffusers"] > 0, name  # latent: two passes
    assert fam["worst_baseline_vs_diffusers"] == max(
        r["baseline_vs_diffusers"] for r in fam["families"].values()
    )
    table = bench.format_table(report)
    assert "qwen_edit 128x96" in table
    assert "worst_baseline_vs_diffusers" in table


def test_table_lists_targets(report):
    text = bench.format_table(report)
    assert "targets:" in text and "click_ratio_1024" in text


def test_unet_speed_code_path_on_cpu():
    """The CUDA UNet measurement, exercised on the tiny UNet on CPU (fp32, 1 step, 64 px)."""
    import torch

    res = bench.unet_speed(bench.tiny_unet_config(), "cpu", torch.float32, steps=1, size=64)
    assert res["seconds"] > 0 and res["flop_total"] > 0 and res["ratio_to_compute_limit"] > 0


def test_interleave_rotates_order():
    calls = []
    bench.interleave([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]


def test_cli_bench_delegates(tmp_path):
    from maskpix_desktop import cli

    out = tmp_path / "cli.json"
    assert cli.main(["bench", "--quick", "--sections", "encoder", "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["command"].startswith("maskpix-cli bench --quick")
    assert data["encoder"]["encoder_calls_after_clicks"] == 1


def test_encoder_precisions_experiment_runs_and_compares():
    """The CUDA-only encoder experiment, on the CPU (autocast is not taken there: all variants fp32)."""
    from maskpix_desktop.bench import encoder_precisions, synthetic_image
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    out = encoder_precisions(build_tiny_sam(seed=0), "custom", synthetic_image(90, 120), "cpu", repeats=2)
    assert set(out) >= {"fp32", "tf32", "bf16", "fp16"}
    for name in ("fp32", "tf32", "bf16", "fp16"):
        row = out[name]
        assert row["set_image"]["n"] == 2 and row["vs_fp32"] > 0
        assert row["embedding_dtype"] == "float32"
        assert row["embedding_rel_err"] == 0.0 and row["click_mask_iou_vs_fp32"] == 1.0  # same maths on CPU


def _private_reads(source: str) -> list[str]:
    """``obj._name`` reads (not dunders) on anything but ``self``: what the engines' public API replaces."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            continue
        found.append(f"{node.lineno}: .{node.attr}")
    return found


def test_bench_uses_only_the_public_api_of_the_engines():
    from pathlib import Path

    assert _private_reads("seg._cache[k] = other._restore(x)\nself._x = type(a).__name__") == [
        "1: ._cache",
        "1: ._restore",
    ]
    package = Path(bench.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 10
    offenders = {p.name: _private_reads(p.read_text(encoding="utf-8")) for p in modules}
    assert {name: hits for name, hits in offenders.items() if hits} == {}


def test_bench_modules_stay_small():
    from pathlib import Path

    package = Path(bench.__file__).parent
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in package.glob("*.py")}
    assert max(sizes.values()) <= 500, sizes
