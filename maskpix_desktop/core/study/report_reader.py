"""Read a written study report back (``report.json`` of ``maskpix-cli study report``) and find the one
that belongs to an evaluation folder, for the results browser. Qt-free.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from maskpix_desktop.core.evaluation.datasets import MODES
from maskpix_desktop.core.study.manifest import QUESTION_IDS, STUDY_JSON, StudyError, read_json
from maskpix_desktop.core.study.report import PLOT_PNG, REPORT_DIR, REPORT_JSON

log = logging.getLogger(__name__)

#: How many sub-folders of an evaluation folder and of its parent are looked at for a study report.
SCAN_LIMIT = 200


def study_report_file(path: str | Path) -> Path:
    """``report.json`` for ``path``: the file itself, a report folder, or a study folder (its ``report/``);
    StudyError when there is none."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / REPORT_JSON, path / REPORT_DIR / REPORT_JSON):
        if candidate.is_file():
            return candidate
    hint = f" (run: maskpix-cli study report {path})" if (path / STUDY_JSON).is_file() else ""
    raise StudyError(f"{path}: no study report ({REPORT_JSON}){hint}")


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StudyError(f"{where} is {value!r:.40}, not a number")
    return float(value)


def _rows(data: dict[str, Any], name: str, keys: tuple[str, ...], path: Path) -> list[dict[str, Any]]:
    rows = data.get(name)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise StudyError(f"{path}: '{name}' is missing or not a list of objects")
    for i, row in enumerate(rows):
        for key in keys:
            _number(row.get(key), f"{path}: {name}[{i}].{key}")
    return rows


def read_study_report(path: str | Path) -> dict[str, Any]:
    """The report's summary (``report.json``), checked, with ``folder`` and ``plot`` (the figure's path
    or None) added; ``path`` as :func:`study_report_file` takes it. StudyError names the file and field."""
    file = study_report_file(path)
    data = read_json(file, "the study report")
    if not isinstance(data, dict) or not isinstance(data.get("study_id"), str):
        raise StudyError(f"{file}: not a study report ('study_id' is missing)")
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods or not all(m in MODES for m in methods):
        raise StudyError(f"{file}: 'methods' is {methods!r:.60}, not a list of {', '.join(MODES)}")
    means = _rows(data, "means", ("mean", "sd", "ci_low", "ci_high", "n"), file)
    for i, row in enumerate(means):
        if row.get("method") not in methods or row.get("question") not in QUESTION_IDS:
            raise StudyError(f"{file}: means[{i}] names an unknown method or question")
    _rows(data, "agreement", ("alpha_ordinal",), file)
    _rows(data, "win_rates", ("win_rate", "n"), file)
    plot = file.parent / PLOT_PNG
    return {**data, "folder": str(file.parent), "plot": str(plot) if plot.is_file() else None}


def report_mean(report: dict[str, Any], method: str, question: str) -> dict[str, Any] | None:
    """The report's ``means`` row of ``method`` and ``question`` (None when absent)."""
    return next((r for r in report["means"] if r["method"] == method and r["question"] == question), None)


def _same_folder(a: str, b: Path) -> bool:
    try:
        return bool(a) and Path(a).resolve() == b
    except (OSError, RuntimeError):
        return False


def find_study_report(eval_folder: str | Path) -> Path | None:
    """The newest study report made from ``eval_folder``: a ``report.json`` (or ``<study>/report/``) in a
    sub-folder of the evaluation folder or of its parent whose ``eval_dir`` is this folder; None if none."""
    folder = Path(eval_folder).resolve()
    found: list[tuple[float, Path]] = []
    for base in (folder, folder.parent):
        try:
            subdirs = sorted(p for p in base.iterdir() if p.is_dir() and p != folder)[:SCAN_LIMIT]
        except OSError:
            continue
        for sub in subdirs:
            for file in (sub / REPORT_JSON, sub / REPORT_DIR / REPORT_JSON):
                if not file.is_file():
                    continue
                try:
                    data = read_json(file, "the study report")
                except StudyError as exc:
                    log.warning("skipping %s", exc)
                    continue
                if isinstance(data, dict) and _same_folder(str(data.get("eval_dir") or ""), folder):
                    created = data.get("created")
                    found.append((float(created) if isinstance(created, int | float) else 0.0, file))
    return max(found)[1] if found else None


__all__ = ["find_study_report", "read_study_report", "report_mean", "study_report_file"]
