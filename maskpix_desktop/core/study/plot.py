"""The study report's figure: per question, each method's mean rating with its 95% interval and the
per-item means as points (matplotlib, Agg backend, imported when used)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.evaluation.datasets import MODE_LABELS
from maskpix_desktop.core.study.manifest import QUESTIONS, SCALE


def plot_ratings(
    ratings: list[dict[str, Any]], means: list[dict[str, Any]], methods: Sequence[str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    per_item: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in ratings:
        per_item[(r["question"], r["method"], r["item"])].append(float(r["value"]))
    fig = Figure(figsize=(4.0 + 1.4 * len(methods), 4.2), dpi=110, layout="constrained")
    rng = np.random.default_rng(0)
    for k, q in enumerate(QUESTIONS):
        ax = fig.add_subplot(1, len(QUESTIONS), k + 1)
        for j, m in enumerate(methods):
            row = next((x for x in means if x["question"] == q.id and x["method"] == m), None)
            points = [float(np.mean(v)) for (qq, mm, _), v in per_item.items() if qq == q.id and mm == m]
            if points:
                ax.scatter(j + rng.uniform(-0.18, 0.18, len(points)), points, s=10, alpha=0.35, color="0.4")
            if row and row["mean"] is not None:
                err = None
                if row["ci_low"] is not None:
                    err = [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
                ax.bar(j, row["mean"], width=0.6, alpha=0.55)
                ax.errorbar(j, row["mean"], yerr=err, fmt="o", color="black", capsize=5)
        ax.set_xticks(range(len(methods)), [MODE_LABELS.get(m, m) for m in methods])
        ax.set_ylim(min(SCALE) - 0.5, max(SCALE) + 0.5)
        ax.set_yticks(list(SCALE))
        ax.set_title(q.text, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    title = "Mean rating (1 = strongly disagree, 5 = strongly agree) ± 95% CI; points: items"
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close("all")
    images.atomic_write_bytes(path, buf.getvalue())


__all__ = ["plot_ratings"]
