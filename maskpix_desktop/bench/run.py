"""The driver: sections in order, options, ``main``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from maskpix_desktop.bench.automask import bench_automask
from maskpix_desktop.bench.common import (
    SECTIONS,
    BenchConfig,
    load_average,
    mark_peak,
    rss_peak_bytes,
)
from maskpix_desktop.bench.edit import bench_edit
from maskpix_desktop.bench.editloop import bench_editloop
from maskpix_desktop.bench.encoder import bench_encoder
from maskpix_desktop.bench.families import bench_families
from maskpix_desktop.bench.firstmask import bench_firstmask
from maskpix_desktop.bench.memory import bench_memory
from maskpix_desktop.bench.report import evaluate_targets, format_table, machine_info
from maskpix_desktop.bench.sam import bench_sam
from maskpix_desktop.bench.ui import bench_ui

RUNNERS: dict[str, Callable[[BenchConfig, dict[str, Any]], dict[str, Any]]] = {
    "sam": bench_sam,
    "encoder": bench_encoder,
    "edit": bench_edit,
    "families": bench_families,
    "automask": bench_automask,
    "ui": bench_ui,
    "editloop": bench_editloop,
    "firstmask": bench_firstmask,
    "memory": bench_memory,
}


def run_bench(
    cfg: BenchConfig, sections: Sequence[str], log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the chosen sections (memory last) and return the report dict."""
    import torch

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "config": asdict(cfg),
        "sections": list(sections),
        "loadavg_start": load_average(),
    }
    ctx: dict[str, Any] = {"rss_after": {}, "gpu_after": {}, "cuda": cfg.device.startswith("cuda")}
    mark_peak(ctx, "start (torch imported)")
    t_all = time.perf_counter()
    order = [s for s in SECTIONS if s in sections and s != "memory"] + (
        ["memory"] if "memory" in sections else []
    )
    for name in order:
        log(f"[bench] {name} ...")
        t0 = time.perf_counter()
        if cfg.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        try:
            report[name] = RUNNERS[name](cfg, ctx)
        except Exception as exc:  # one broken section must not hide the others
            import traceback

            report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        report[name]["section_s"] = round(time.perf_counter() - t0, 2)
        report[name]["loadavg_after"] = load_average()
        ctx["rss_after"][name] = round(rss_peak_bytes() / 2**20, 1)
        if cfg.device.startswith("cuda"):
            ctx["gpu_after"][name] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    report["targets"] = evaluate_targets(report)
    report["wall_s"] = round(time.perf_counter() - t_all, 2)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m maskpix_desktop.bench",
        description="MaskPix performance harness (see docs/PERFORMANCE.md).",
    )
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The harness's options (shared by ``python -m maskpix_desktop.bench`` and ``maskpix-cli bench``)."""
    p.add_argument(
        "--quick", action="store_true", help="tiny models and sizes: checks the harness in seconds"
    )
    p.add_argument("--json", type=Path, help="also write the full report as JSON to this file")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--sam-model", default=None, help="tiny | vit_b | vit_l | vit_h (default vit_b; vit_h on CUDA)"
    )
    p.add_argument("--repeats", type=int, default=None, help="repetitions per SAM measurement")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads before running (0: default)")
    p.add_argument(
        "--edit-threads", type=int, default=None, help="torch threads for the CPU edit section (1)"
    )
    p.add_argument(
        "--compile", action="store_true", help="CUDA UNet: also time torch.compile (first call: minutes)"
    )


def config_from_args(args: argparse.Namespace) -> tuple[BenchConfig, list[str]]:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    cfg = BenchConfig.quick_config(device) if args.quick else BenchConfig(device=device)
    if not args.quick and device.startswith("cuda"):
        cfg = replace(cfg, sam_model="vit_h")
    if args.sam_model:
        cfg = replace(cfg, sam_model=args.sam_model)
    if args.repeats:
        cfg = replace(cfg, sam_repeats=args.repeats)
    cfg = replace(cfg, threads=args.threads, unet_compile=args.compile)
    if args.edit_threads is not None:
        cfg = replace(cfg, edit_threads=args.edit_threads)
    return cfg, sections


def run_from_args(args: argparse.Namespace, command: str) -> int:
    """Run with parsed options; print the table, write the JSON; exit code 1 if a section failed."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg, sections = config_from_args(args)
    report = run_bench(cfg, sections, log=lambda s: print(s, file=sys.stderr, flush=True))
    report["command"] = command
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"JSON: {args.json}")
    failed = [name for name in sections if isinstance(report.get(name), dict) and "error" in report[name]]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    return run_from_args(args, " ".join(["python -m maskpix_desktop.bench", *argv]))
