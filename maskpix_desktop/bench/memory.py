"""``memory`` section: peak RSS and GPU memory of the run."""

from __future__ import annotations

from typing import Any

from maskpix_desktop.bench.common import (
    BenchConfig,
    rss_now_bytes,
    rss_peak_bytes,
)


def rss_parts() -> dict[str, float]:
    """Resident memory now in MiB: total, anonymous (the process's own) and file-backed (memory maps,
    which the kernel may drop); from /proc/self/status, zeros where that file does not exist."""
    fields = {"VmRSS:": "rss_mb", "RssAnon:": "anon_mb", "RssFile:": "file_mb"}
    out = dict.fromkeys(fields.values(), 0.0)
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                parts = line.split()
                if parts and parts[0] in fields:
                    out[fields[parts[0]]] = round(int(parts[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return out


def bench_memory(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "peak_rss_mb": round(rss_peak_bytes() / 2**20, 1),
        "current_rss_mb": None if (now := rss_now_bytes()) is None else round(now / 2**20, 1),
        "peak_rss_after_section_mb": ctx.get("rss_after", {}),
        "peak_after_step": ctx.get("marks", []),
        "first_window_process_peak_rss_mb": ctx.get("first_window_rss_mb"),
    }
    if cfg.device.startswith("cuda"):
        import torch

        # run_bench resets the peak before each section: the run's peak is the largest section peak
        per_section = ctx.get("gpu_after", {})
        out["peak_gpu_mb"] = max([*per_section.values(), round(torch.cuda.max_memory_allocated() / 2**20, 1)])
        out["peak_gpu_per_section_mb"] = per_section
    else:
        out["peak_gpu_mb"] = "not run: no CUDA device"
    return out
