"""The bench's shared parts: configuration, interleaved timing, statistics, memory, inputs."""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

SECTIONS = ("sam", "encoder", "edit", "families", "automask", "ui", "editloop", "firstmask", "memory")
INSTRUCTION = "make it look like winter"


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and repeat counts of one run (the defaults finish in a few minutes on a 2-core CPU)."""

    device: str = "cpu"
    sam_model: str = "vit_b"
    sam_images: tuple[tuple[int, int], ...] = ((768, 1024), (3000, 4000))
    sam_repeats: int = 7
    edit_size: tuple[int, int] = (256, 256)
    edit_steps: int = 10
    edit_repeats: int = 7
    mode_repeats: int = 7
    edit_threads: int = 1  # CPU: see bench_edit
    ui_edit_steps: int = 10
    brush_mask: tuple[int, int] = (3000, 4000)
    brush_segments: int = 60
    window_repeats: int = 3
    unet_steps: int = 20
    unet_compile: bool = False
    loop_sizes: tuple[tuple[int, int], ...] = ((864, 1152), (3000, 4000), (4000, 6000))  # 1, 12, 24 MP
    loop_repeats: int = 3
    loop_seam_repeats: int = 1  # the Poisson solve takes seconds per call at 12-24 MP
    first_mask_models: tuple[str, ...] = ("vit_b", "sam2.1_hiera_tiny")
    first_mask_size: tuple[int, int] = (4000, 6000)  # 24 MP
    first_mask_repeats: int = 3  # median of 3 opens (a vit_b encode is ~20 s of CPU here)
    quick: bool = False
    threads: int = 0  # 0: leave torch's default

    @classmethod
    def quick_config(cls, device: str = "cpu") -> BenchConfig:
        return cls(
            device=device,
            sam_model="tiny",
            sam_images=((96, 128), (300, 400)),
            sam_repeats=3,
            edit_size=(96, 128),
            edit_steps=2,
            edit_repeats=2,
            mode_repeats=1,
            ui_edit_steps=2,
            brush_mask=(600, 800),
            brush_segments=10,
            window_repeats=1,
            unet_steps=2,
            loop_sizes=((96, 128), (240, 320)),
            loop_repeats=2,
            first_mask_models=("tiny", "sam2_tiny_test"),
            first_mask_size=(240, 320),
            quick=True,
        )


def size_label(hw: tuple[int, int]) -> str:
    h, w = hw
    return f"{w}x{h}" if max(h, w) != 1024 else "1024"


def cuda_sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    cuda_sync(device)
    t0 = time.perf_counter()
    out = fn()
    cuda_sync(device)
    return time.perf_counter() - t0, out


def interleave(fns: Sequence[Callable[[], Any]], repeats: int, device: str = "cpu") -> list[list[float]]:
    """Run each function ``repeats`` times, rotating the order every repetition (A B C, B C A, ...).

    Returns wall seconds per function, in the order given. Rotation spreads slow phases of a shared
    machine over all contenders instead of charging them to whichever runs at that moment.
    """
    return interleave_cpu(fns, repeats, device)[0]


def interleave_cpu(
    fns: Sequence[Callable[[], Any]], repeats: int, device: str = "cpu"
) -> tuple[list[list[float]], list[list[float]]]:
    """:func:`interleave` returning (wall seconds, process CPU seconds) per function.

    At one torch thread the CPU time is the work itself: time spent preempted by other programs on a
    shared machine does not count (with several threads it would include OpenMP spin-waiting).
    """
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    n = len(fns)
    for rep in range(repeats):
        for j in range(n):
            k = (j + rep) % n
            c0 = time.process_time()
            wall[k].append(timed(fns[k], device)[0])
            cpu[k].append(time.process_time() - c0)
    return wall, cpu


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily run torch with ``n`` intra-op threads (0: leave as is)."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64))) if len(xs) else float("nan")


def ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of the per-repetition ratios a[i] / b[i] (paired, so slow phases cancel)."""
    return median([x / y for x, y in zip(a, b, strict=True) if y > 0])


def ms_summary(xs: Sequence[float]) -> dict[str, float]:
    arr = 1000.0 * np.asarray(xs, dtype=np.float64)
    return {
        "median_ms": round(float(np.median(arr)), 2),
        "min_ms": round(float(arr.min()), 2),
        "max_ms": round(float(arr.max()), 2),
        "n": int(arr.size),
    }


def rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def rss_now_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like HxWx3 uint8 image: ramps, a few discs, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([255 * xx / max(w - 1, 1), 255 * yy / max(h - 1, 1), 96 + 0 * xx], -1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.08, 0.2) * min(h, w)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[inside] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def ellipse_mask(h: int, w: int, frac: float = 0.3) -> np.ndarray:
    """A centred ellipse covering about ``frac`` of the image."""
    yy, xx = np.mgrid[0:h, 0:w]
    a = math.sqrt(frac / math.pi) * w
    b = math.sqrt(frac / math.pi) * h
    return ((yy - h / 2) / b) ** 2 + ((xx - w / 2) / a) ** 2 <= 1.0


def mark_peak(ctx: dict[str, Any], what: str) -> None:
    """Record the peak RSS so far (and GPU peak) after a named step."""
    mark: dict[str, Any] = {"after": what, "peak_rss_mb": round(rss_peak_bytes() / 2**20, 1)}
    if ctx.get("cuda"):
        import torch

        mark["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    ctx.setdefault("marks", []).append(mark)


def error_entry(exc: BaseException) -> dict[str, Any]:
    """An exception as a report entry; a CUDA out-of-memory also frees the allocator's cache."""
    import torch

    err: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        err["oom"] = True
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return err
