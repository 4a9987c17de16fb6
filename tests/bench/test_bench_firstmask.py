"""The ``firstmask`` bench section (issue 20): open-to-first-mask per SAM model, on tiny models here."""

from __future__ import annotations

from maskpix_desktop.bench import BenchConfig
from maskpix_desktop.bench.firstmask import bench_firstmask
from maskpix_desktop.bench.report import firstmask_rows


def test_firstmask_times_load_encode_and_click_per_model():
    cfg = BenchConfig.quick_config()
    out = bench_firstmask(cfg, {"rss_after": {}, "gpu_after": {}})
    assert list(out["models"]) == ["tiny", "sam2_tiny_test"] and out["size"] == "320x240"
    for r in out["models"].values():
        stages = r["load_s"] + r["encode_s"] + r["click_s"]
        assert r["encode_s"] > 0 and r["click_s"] > 0 and abs(r["total_s"] - stages) < 0.005
    assert out["sam2_tiny_open_to_mask_s"] is None  # --quick: the 24 MP target is n/a
    rows = firstmask_rows(out)
    assert [r[1] for r in rows] == ["open to first mask, tiny", "open to first mask, sam2_tiny_test"]
