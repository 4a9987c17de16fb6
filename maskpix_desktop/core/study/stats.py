"""Per-method means with a 95% interval and pairwise win rates of un-blinded ratings.

A rating is a dict ``{rater, item, method, question, value}``. The interval is a percentile bootstrap
over items (10,000 resamples, fixed seed): every resample draws items with replacement and keeps all
raters' ratings of a drawn item together, so ratings of the same edit are not counted as independent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import permutations
from typing import Any

import numpy as np

RESAMPLES = 10_000
CI_LEVEL = 0.95


def item_bootstrap_ci(
    per_item: Sequence[Sequence[float]], *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile interval of the mean of all values, resampling the items (groups); None with
    fewer than two items."""
    sums = np.array([float(np.sum(v)) for v in per_item])
    counts = np.array([len(v) for v in per_item], dtype=np.float64)
    if len(sums) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    tail = (1.0 - CI_LEVEL) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def method_means(
    ratings: list[dict[str, Any]], methods: Sequence[str], questions: Sequence[str], *, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per (question, method): n ratings, n items, mean, sd, 95% bootstrap interval."""
    grouped: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in ratings:
        grouped[(r["question"], r["method"])][r["item"]].append(float(r["value"]))
    table = []
    for qi, q in enumerate(questions):
        for mi, m in enumerate(methods):
            per_item = [v for _, v in sorted(grouped.get((q, m), {}).items())]
            values = [x for v in per_item for x in v]
            ci = item_bootstrap_ci(per_item, seed=seed + 1000 * qi + mi) if values else None
            table.append(
                {
                    "question": q,
                    "method": m,
                    "n": len(values),
                    "items": len(per_item),
                    "mean": math.fsum(values) / len(values) if values else None,
                    "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                    "ci_low": ci[0] if ci else None,
                    "ci_high": ci[1] if ci else None,
                }
            )
    return table


def win_rates(
    ratings: list[dict[str, Any]], methods: Sequence[str], questions: Sequence[str]
) -> list[dict[str, Any]]:
    """For every question and ordered pair (A, B): over the (item, rater) pairs where both were rated,
    how often A got the higher rating (wins), the same (ties) or the lower (losses);
    ``win_rate`` = (wins + ties / 2) / n (0.5: no difference)."""
    cells: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for r in ratings:
        cells[(r["question"], r["item"], r["rater"])][r["method"]] = float(r["value"])
    table = []
    for q in questions:
        for a, b in permutations(methods, 2):
            wins = ties = losses = 0
            for (cq, _, _), got in cells.items():
                if cq != q or a not in got or b not in got:
                    continue
                if got[a] > got[b]:
                    wins += 1
                elif got[a] == got[b]:
                    ties += 1
                else:
                    losses += 1
            n = wins + ties + losses
            table.append(
                {
                    "question": q,
                    "method_a": a,
                    "method_b": b,
                    "n": n,
                    "wins": wins,
                    "ties": ties,
                    "losses": losses,
                    "win_rate": (wins + ties / 2.0) / n if n else None,
                }
            )
    return table


__all__ = ["CI_LEVEL", "RESAMPLES", "item_bootstrap_ci", "method_means", "win_rates"]
