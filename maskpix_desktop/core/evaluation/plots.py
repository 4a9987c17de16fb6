"""The report's images: per-item metric distributions and bar panels (matplotlib, imported when used)
and the grid."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation.datasets import MODE_LABELS
from maskpix_desktop.core.export import comparison_grid, mask_overlay

log = logging.getLogger(__name__)


def plot_distributions(rows: list[dict[str, Any]], modes: Sequence[str], path: Path) -> None:
    """Per-item leakage and background PSNR per mode (box plots with the items as points); Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=110, layout="constrained")
    modes = [m for m in modes if any(r["mode"] == m and r.get("status") == "ok" for r in rows)]
    panels = [
        ("leakage_mean", "Leakage outside the mask (mean |Δ|, 0–255) ↓"),
        ("pie_psnr", "Background PSNR (dB, PIE-Bench) ↑"),
    ]
    rng = np.random.default_rng(0)
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        tops: list[tuple[int, np.ndarray]] = []
        for j, mode in enumerate(modes):
            vals = np.array(
                [
                    float(r["metrics"][key])
                    for r in rows
                    if r["mode"] == mode and r.get("status") == "ok" and r["metrics"].get(key) is not None
                ],
                dtype=np.float64,
            )
            finite = vals[np.isfinite(vals)]
            if finite.size:
                ax.boxplot([finite], positions=[j], widths=0.5, showfliers=False)
            if vals.size:
                tops.append((j, vals))
        finite_all = [float(v) for _, vals in tops for v in vals[np.isfinite(vals)]]
        top = (max(finite_all) if finite_all else 0.0) + 5.0
        for j, vals in tops:
            shown = np.where(np.isfinite(vals), vals, top)
            ax.scatter(j + rng.uniform(-0.15, 0.15, shown.size), shown, s=12, alpha=0.7)
            n_inf = int(np.isinf(vals).sum())
            if n_inf:
                ax.annotate(
                    f"∞ ×{n_inf}",
                    (j, top),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=8,
                )
        ax.set_xticks(range(len(modes)), [MODE_LABELS[m] for m in modes])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Per-item distributions ({len({r['item'] for r in rows if r.get('status') == 'ok'})} items)",
        fontsize=11,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close("all")
    images.atomic_write_bytes(path, buf.getvalue())


def plot_bars(
    path: Path,
    labels: Sequence[str],
    panels: Sequence[tuple[str, Sequence[float] | Mapping[str, Sequence[float]]]],
    *,
    title: str | None = None,
) -> None:
    """One bar chart per panel, stacked, over the same ``labels`` (tick labels on the last panel only).

    A panel is ``(title, values)`` with one value per label, or ``(title, {series: values})`` for grouped
    bars with a legend. The figure is ``max(6, 0.6 * len(labels) + 2)`` by ``3.25 * len(panels)`` inches
    at 100 dpi; written atomically (Agg backend; ImportError without matplotlib).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    n = len(labels)
    fig = Figure(figsize=(max(6.0, 0.6 * n + 2), 3.25 * len(panels)), dpi=100, layout="constrained")
    x = np.arange(n, dtype=np.float64)
    for i, (panel_title, values) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        series = dict(values) if isinstance(values, Mapping) else {"": values}
        width = 0.8 / max(len(series), 1)
        for j, (name, vals) in enumerate(series.items()):
            if len(vals) != n:
                raise ValueError(f"panel {panel_title!r}: {len(vals)} values for {n} labels")
            offset = (j - (len(series) - 1) / 2) * width
            ax.bar(x + offset, [float(v) for v in vals], width=width, label=name or None)
        if len(series) > 1:
            ax.legend(fontsize=7)
        ax.set_title(panel_title)
        last = i == len(panels) - 1
        ax.set_xticks(x, list(labels) if last else [], rotation=60, ha="right", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    images.atomic_write_bytes(path, buf.getvalue())


def make_grid(
    out_dir: Path, rows: list[dict[str, Any]], modes: Sequence[str], n_items: int = 4
) -> np.ndarray | None:
    """original | mask | baseline | each mode (| target) for the first ``n_items`` complete items."""
    by_item: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok" and (r.get("files") or {}).get("output"):
            by_item.setdefault(r["item"], {})[r["mode"]] = r
    strips = []
    for item, mrows in by_item.items():
        if len(strips) >= n_items or not all(m in mrows for m in modes):
            continue
        files = mrows[modes[0]]["files"]
        try:
            orig = images.load_image(out_dir / files["original"])
            mask = images.load_mask(out_dir / files["mask"], size=orig.shape[:2])
            panels = [orig, mask_overlay(orig, mask)]
            labels = [f"{item} original", "mask"]
            for m in modes:
                panels.append(images.load_image(out_dir / mrows[m]["files"]["output"]))
                labels.append(MODE_LABELS[m])
            if "target" in files:
                panels.append(images.load_image(out_dir / files["target"]))
                labels.append("target")
        except (MaskPixError, KeyError) as exc:
            log.warning("grid: skipping %s: %s", item, exc)
            continue
        strips.append(comparison_grid(panels, labels, max_side=192))
    if not strips:
        return None
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=32) for s in strips]
    return np.concatenate(padded, axis=0)
