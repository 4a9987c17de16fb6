"""``automask`` section: the IP2P relevance map's time (tiny IP2P)."""

from __future__ import annotations

from typing import Any

import numpy as np

from maskpix_desktop.bench.common import (
    BenchConfig,
    load_average,
    ms_summary,
    synthetic_image,
    timed,
)


def bench_automask(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Auto mask: time of the IP2P relevance map (VAE encode + K batched UNet calls), tiny IP2P."""
    from maskpix_desktop.core.automask import compute_relevance
    from maskpix_desktop.core.editor import Editor
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p

    editor = Editor(build_tiny_ip2p(seed=0))
    sizes = (64, 128) if cfg.quick else (256, 512)
    draws = (1,) if cfg.quick else (1, 4)
    reps = 2 if cfg.quick else 5
    out: dict[str, Any] = {"model": "tiny IP2P (random weights, fp32)", "device": "cpu", "reps": reps}
    for size in sizes:
        image = synthetic_image(size, size, seed=size)
        row = {}
        for k in draws:

            def run(k: int = k, image: np.ndarray = image, size: int = size) -> Any:
                return compute_relevance(editor, image, "make the dog a robot", draws=k, long_side=size)

            run()  # warm-up
            times = [timed(run)[0] for _ in range(reps)]
            row[f"draws_{k}"] = ms_summary(times)
        out[str(size)] = row
    out["loadavg"] = load_average()
    return out
