"""``ui`` section: GUI event-loop stall during an edit, brush segment update, time to first window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.bench.common import (
    INSTRUCTION,
    BenchConfig,
    ellipse_mask,
    mark_peak,
    median,
    ms_summary,
    synthetic_image,
)


class _BenchService:
    """The model service as the worker sees it, holding one ready editor (no files, no CLIP)."""

    device = "cpu"

    def __init__(self, editor: Any):
        self._editor = editor

    def check(self, **_: Any) -> None:
        return None

    def editor(self) -> Any:
        return self._editor

    def segmenter(self) -> Any:
        raise RuntimeError("no SAM in the UI benchmark")

    def clip(self) -> None:
        return None

    def model_info(self) -> dict[str, str]:
        return {"device": self.device}

    def unload(self) -> None:
        return None


def qapp() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "maskpix-bench"])


def _tick_gaps(app: Any, interval_ms: int, until: Callable[[], bool], limit_s: float) -> list[float]:
    """Intervals between ticks of a ``interval_ms`` QTimer on the GUI thread while ``until()`` is False."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    ticks: list[float] = []
    loop = QEventLoop()

    def tick() -> None:
        ticks.append(time.perf_counter())
        if until():
            loop.quit()

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(interval_ms)
    timer.timeout.connect(tick)
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(loop.quit)
    timer.start()
    guard.start(int(limit_s * 1000))
    loop.exec()
    timer.stop()
    guard.stop()
    return list(np.diff(ticks))


def _event_loop_stall(cfg: BenchConfig) -> dict[str, Any]:
    from maskpix_desktop.core.editor import Editor
    from maskpix_desktop.core.jobs import EditParams, EditRequest
    from maskpix_desktop.testing.tiny_ip2p import build_tiny_ip2p
    from maskpix_desktop.ui.worker import ModelClient

    app = qapp()
    interval = 5
    t_end = time.perf_counter() + (0.3 if cfg.quick else 1.0)
    idle = _tick_gaps(app, interval, lambda: time.perf_counter() > t_end, 5.0)
    editor = Editor(build_tiny_ip2p(seed=0))
    h, w = cfg.edit_size
    img = synthetic_image(h, w, seed=4)
    req = EditRequest(
        img, ellipse_mask(h, w), EditParams(INSTRUCTION, steps=cfg.ui_edit_steps, seed=3, mask_mode="latent")
    )
    client = ModelClient(lambda: _BenchService(editor))
    msgs: list[Any] = []
    client.message.connect(msgs.append)
    try:
        t0 = time.perf_counter()
        client.edit(req, metrics=False)
        busy = _tick_gaps(app, interval, lambda: any(m.final for m in msgs), 600.0)
        run_s = time.perf_counter() - t0
    finally:
        client.shutdown()
    final = next((m for m in msgs if m.final), None)
    gaps = 1000.0 * np.asarray(busy)
    return {
        "timer_interval_ms": interval,
        "edit": f"latent mode, {cfg.ui_edit_steps}x2 steps at {w}x{h}, tiny IP2P on the worker thread",
        "job_result": None if final is None else final.kind,
        "run_s": round(run_s, 3),
        "ticks": int(gaps.size),
        "longest_gap_ms": round(float(gaps.max()), 2) if gaps.size else None,
        "p99_gap_ms": round(float(np.percentile(gaps, 99)), 2) if gaps.size else None,
        "median_gap_ms": round(float(np.median(gaps)), 2) if gaps.size else None,
        "idle_longest_gap_ms": round(1000.0 * max(idle), 2) if idle else None,
        "progress_messages": sum(1 for m in msgs if m.kind == "progress"),
    }


def _brush(cfg: BenchConfig) -> dict[str, Any]:
    from PySide6.QtCore import QEvent, QPoint, QPointF, QSize, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtTest import QTest

    from maskpix_desktop.ui.canvas import ImageCanvas

    app = qapp()
    canvas = ImageCanvas()
    try:
        canvas.resize(QSize(1280, 800))
        canvas.show()
        QTest.qWaitForWindowExposed(canvas)
        h, w = cfg.brush_mask
        canvas.set_image(np.zeros((h, w, 3), np.uint8))
        canvas.set_tool("brush")
        canvas.brush_size = max(8, int(w / 20))  # 200 px on a 4000 px image
        vp = canvas.viewport()
        left, nomod = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        start = canvas.image_to_viewport(w * 0.15, h * 0.5)
        QTest.mousePress(vp, left, nomod, start)
        app.processEvents()
        update, repaint = [], []
        for i in range(1, cfg.brush_segments + 1):
            # 10 px right per event, drifting down in the second half (diagonal segments)
            dy = 0 if i <= cfg.brush_segments // 2 else (i - cfg.brush_segments // 2) * 4
            pos = start + QPoint(10 * i, dy)
            ev = QMouseEvent(
                QEvent.Type.MouseMove,
                QPointF(pos),
                QPointF(vp.mapToGlobal(pos)),
                Qt.MouseButton.NoButton,
                left,
                nomod,
            )
            t0 = time.perf_counter()
            app.sendEvent(vp, ev)
            t1 = time.perf_counter()
            app.processEvents()  # the pending repaint of the dirty rectangle
            t2 = time.perf_counter()
            update.append(t1 - t0)
            repaint.append(t2 - t1)
        QTest.mouseRelease(vp, left, nomod, start + QPoint(10 * cfg.brush_segments, 0))
        app.processEvents()
        painted = int((canvas.mask() > 0).sum())
        zoom = canvas.scale_factor()
    finally:
        canvas.close()
        canvas.deleteLater()
        app.processEvents()
    both = [a + b for a, b in zip(update, repaint, strict=True)]
    return {
        "mask_hw": [h, w],
        "brush_px": max(8, int(w / 20)),
        "zoom": round(zoom, 4),
        "segments": len(update),
        "update": ms_summary(update),
        "update_p95_ms": round(1000 * float(np.percentile(update, 95)), 2),
        "repaint": ms_summary(repaint),
        "update_plus_repaint": ms_summary(both),
        "painted_px": painted,
    }


_FIRST_WINDOW = textwrap.dedent(
    """
    import time
    t0 = time.time()
    import inspect, json, resource, sys
    from PySide6.QtCore import QSettings
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv[:1])
    from maskpix_desktop.ui.main_window import MainWindow
    kw = dict(models_dir=sys.argv[1], device="cpu", load_models=False,
              settings=QSettings(sys.argv[2], QSettings.Format.IniFormat))
    if "autosave" in inspect.signature(MainWindow).parameters:
        kw["autosave"] = False
    win = MainWindow(**kw)
    win.show()
    QTest.qWaitForWindowExposed(win)
    shown = time.time()
    try:  # VmHWM restarts at exec; ru_maxrss would still hold the forking parent's peak
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        rss = int(status.split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        unit = 2**20 if sys.platform == "darwin" else 1024
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit
    print(json.dumps({"shown": shown, "in_process_s": shown - t0, "torch_imported": "torch" in sys.modules,
                      "diffusers_imported": "diffusers" in sys.modules, "peak_rss_mb": rss}))
    win.close()
    """
)


def _first_window(cfg: BenchConfig) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="maskpix-bench-") as tmp:
        env = dict(os.environ)
        env.update(
            QT_QPA_PLATFORM="offscreen",
            HOME=tmp,
            XDG_CONFIG_HOME=str(Path(tmp, "config")),
            XDG_DATA_HOME=str(Path(tmp, "data")),
            XDG_CACHE_HOME=str(Path(tmp, "cache")),
            MASKPIX_DATA_DIR=str(Path(tmp, "maskpix-data")),
        )
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for _ in range(cfg.window_repeats):
            t0 = time.time()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _FIRST_WINDOW,
                    str(Path(tmp, "models")),
                    str(Path(tmp, "settings.ini")),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}"}
            data = json.loads(lines[-1])
            runs.append({**data, "first_window_s": data["shown"] - t0})
    return {
        "first_window_s": round(median([r["first_window_s"] for r in runs]), 3),
        "in_process_s": round(median([r["in_process_s"] for r in runs]), 3),
        "runs_s": [round(r["first_window_s"], 3) for r in runs],
        "torch_imported_at_first_window": any(r["torch_imported"] for r in runs),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "diffusers_imported_at_first_window": any(r["diffusers_imported"] for r in runs),
    }


def bench_ui(cfg: BenchConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    stall = _event_loop_stall(cfg)
    brush = _brush(cfg)
    window = _first_window(cfg)
    ctx["first_window_rss_mb"] = window.get("peak_rss_mb")
    mark_peak(ctx, "UI")
    return {
        "event_loop": stall,
        "brush": brush,
        "first_window": window,
        "event_loop_stall_ms": stall["longest_gap_ms"],
        "brush_segment_ms": brush["update"]["median_ms"],
        "first_window_s": window.get("first_window_s"),
    }
