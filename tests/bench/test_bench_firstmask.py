"""The ``firstmask`` bench section (issue 20): open-to-first-mask per SAM model, on tiny models here."""

from __future__ import annotations

import pytest

from maskpix_desktop.bench import BenchConfig
from maskpix_desktop.bench.firstmask import bench_firstmask
from maskpix_desktop.bench.report import firstmask_rows
from maskpix_desktop.core import sam2_segmenter


@pytest.mark.parametrize("native_bf16", [False, True])
def test_firstmask_times_load_encode_and_click_per_model(monkeypatch, native_bf16):
    monkeypatch.setattr(sam2_segmenter, "cpu_native_bf16", lambda: native_bf16)
    cfg = BenchConfig.quick_config()
    out = bench_firstmask(cfg, {"rss_after": {}, "gpu_after": {}})
    side = ["sam2_tiny_test fp32"] if native_bf16 else []  # the float32 encoder beside the app's bf16
    assert list(out["models"]) == ["tiny", "sam2_tiny_test", *side] and out["size"] == "320x240"
    assert out["models"]["sam2_tiny_test"]["encoder_precision"] == ("bf16" if native_bf16 else "fp32")
    assert out["models"]["tiny"]["encoder_precision"] == "fp32"  # SAM 1 stays float32 on the CPU
    for r in out["models"].values():
        stages = r["load_s"] + r["encode_s"] + r["click_s"]
        assert r["encode_s"] > 0 and r["click_s"] > 0 and abs(r["total_s"] - stages) < 0.005
    assert out["sam2_tiny_open_to_mask_s"] is None  # --quick: the 24 MP target is n/a
    rows = firstmask_rows(out)
    assert [r[1] for r in rows] == [f"open to first mask, {name}" for name in out["models"]]
    assert ("encoder bf16" in rows[1][2]) is native_bf16
