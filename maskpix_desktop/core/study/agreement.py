"""Inter-rater agreement: Krippendorff's alpha, ordinal, through the ``krippendorff`` package.

The units are the candidates (one item edited by one method); the coders are the raters. Missing
ratings (a rater who has not finished) are allowed; alpha is undefined (None) when no candidate has two
ratings or when every rating is the same value (no variation to agree on).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from maskpix_desktop.core.study.manifest import SCALE


def reliability_matrix(
    ratings: Iterable[dict[str, Any]], question: str, raters: Sequence[str]
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """``(raters x candidates)`` float matrix of one question's ratings (NaN: not rated) and the
    candidates (item, method) of its columns, sorted."""
    cells = {(r["rater"], r["item"], r["method"]): r["value"] for r in ratings if r["question"] == question}
    units = sorted({(i, m) for _, i, m in cells})
    col = {u: k for k, u in enumerate(units)}
    row = {name: k for k, name in enumerate(raters)}
    matrix = np.full((len(raters), len(units)), np.nan)
    for (rater, item, method), value in cells.items():
        if rater in row:
            matrix[row[rater], col[(item, method)]] = float(value)
    return matrix, units


def ordinal_alpha(matrix: np.ndarray) -> float | None:
    """Krippendorff's alpha (ordinal, values 1..5) of a raters x units matrix; None when undefined."""
    import krippendorff

    pairable = (np.isfinite(matrix).sum(axis=0) >= 2).sum()
    if matrix.shape[0] < 2 or pairable == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when every rating is the same
        value = krippendorff.alpha(
            reliability_data=matrix, level_of_measurement="ordinal", value_domain=list(SCALE)
        )
    value = float(value)
    return value if math.isfinite(value) else None


def agreement_table(
    ratings: list[dict[str, Any]], questions: Sequence[str], raters: Sequence[str]
) -> list[dict[str, Any]]:
    """Per question: alpha, the raters who rated anything, the candidates rated by two or more."""
    table = []
    for q in questions:
        matrix, units = reliability_matrix(ratings, q, raters)
        active = int((np.isfinite(matrix).sum(axis=1) > 0).sum())
        table.append(
            {
                "question": q,
                "alpha_ordinal": ordinal_alpha(matrix),
                "raters": active,
                "candidates": len(units),
                "pairable_candidates": int((np.isfinite(matrix).sum(axis=0) >= 2).sum()),
                "ratings": int(np.isfinite(matrix).sum()),
            }
        )
    return table


__all__ = ["agreement_table", "ordinal_alpha", "reliability_matrix"]
