"""``maskpix-cli study report``: un-blind the answers with the key and write ``report.md``, CSV tables,
``report.json`` and ``ratings.png``.

Every answers file in the study folder is read and checked (a bad one stops the report with its file
and field named: silently leaving a rater out would change the numbers).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maskpix_desktop.core import images
from maskpix_desktop.core.evaluation.datasets import MODE_LABELS, MODES
from maskpix_desktop.core.export import json_safe
from maskpix_desktop.core.study.agreement import agreement_table
from maskpix_desktop.core.study.manifest import (
    KEY_FORMAT,
    KEY_JSON,
    QUESTIONS,
    SCALE_LABELS,
    Study,
    StudyError,
    answer_files,
    load_answers,
    load_study,
    read_json,
)
from maskpix_desktop.core.study.stats import RESAMPLES, method_means, win_rates

REPORT_DIR = "report"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
RATINGS_CSV = "ratings.csv"
MEANS_CSV = "means.csv"
AGREEMENT_CSV = "agreement.csv"
WINS_CSV = "win_rates.csv"
PLOT_PNG = "ratings.png"


def load_key(path: Path, study: Study) -> dict[str, Any]:
    """The key, checked against the study: same id, every code of every item mapped to a method."""
    data = read_json(path, "the study key (key.json, written by maskpix-cli study make)")
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise StudyError(f"{path}: not a study key ('format' should be {KEY_FORMAT!r})")
    if data.get("study_id") != study.study_id:
        raise StudyError(
            f"{path}: 'study_id' is {data.get('study_id')!r:.40}, but the study is {study.study_id!r} "
            "(the key of another study)"
        )
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods or not all(m in MODES for m in methods):
        raise StudyError(f"{path}: 'methods' is {methods!r:.60}, not a list of {', '.join(MODES)}")
    items = data.get("items")
    if not isinstance(items, dict):
        raise StudyError(f"{path}: 'items' is missing or not an object")
    for sid, item in study.items.items():
        entry = items.get(sid)
        codes = entry.get("codes") if isinstance(entry, dict) else None
        if not isinstance(codes, dict) or set(codes) != set(item.candidates):
            raise StudyError(f"{path}: items.{sid}.codes does not cover the item's candidates")
        for code, method in codes.items():
            if method not in methods:
                raise StudyError(f"{path}: items.{sid}.codes.{code} is {method!r:.40}, not one of 'methods'")
    return data


def collect_ratings(study: Study, key: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Un-blinded ratings (one per rater, candidate and question) and per-rater progress."""
    ratings: list[dict[str, Any]] = []
    progress: dict[str, Any] = {}
    files = answer_files(study.folder)
    for rater, path in files:
        if rater not in study.orders:
            known = ", ".join(study.orders)
            raise StudyError(f"{path}: rater {rater!r} is not in the study (raters: {known})")
        answers = load_answers(study, rater, path, missing_ok=False)
        order = study.orders[rater]
        progress[rater] = {
            "complete": sum(answers.complete(i, c) for i, c in order),
            "shown": len(order),
            "file": path.name,
        }
        for item, code in order:
            entry = key["items"][item]
            for q in QUESTIONS:
                value = answers.get(item, code, q.id)
                if value is not None:
                    ratings.append(
                        {
                            "rater": rater,
                            "item": item,
                            "source_item": entry.get("source_item", ""),
                            "method": entry["codes"][code],
                            "code": code,
                            "question": q.id,
                            "value": value,
                        }
                    )
    for rater in study.orders:
        progress.setdefault(rater, {"complete": 0, "shown": len(study.orders[rater]), "file": None})
    return ratings, progress


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buf.getvalue()


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _label(method: str) -> str:
    return MODE_LABELS.get(method, method)


def _markdown(summary: dict[str, Any]) -> str:
    methods, qs = summary["methods"], QUESTIONS
    lines = [
        "# MaskPix human study",
        "",
        f"Study `{summary['study_id']}` from `{summary['eval_dir']}`: {summary['items']} items, "
        f"{len(methods)} methods ({', '.join(_label(m) for m in methods)}), "
        f"{len(summary['progress'])} raters, "
        f"{summary['n_ratings']} ratings. Scale 1–5: "
        + ", ".join(f"{k} = {v}" for k, v in SCALE_LABELS.items())
        + ".",
        "",
        "Questions: " + "; ".join(f"**{q.short}** — “{q.text}”" for q in qs) + ".",
        "",
        "## Mean rating (95% CI)",
        "",
        "| Method | " + " | ".join(f"{q.short} ↑" for q in qs) + " | n |",
        "|---|" + "---|" * (len(qs) + 1),
    ]
    by = {(r["question"], r["method"]): r for r in summary["means"]}
    for m in methods:
        cells = []
        for q in qs:
            r = by[(q.id, m)]
            ci = f" [{_num(r['ci_low'])}, {_num(r['ci_high'])}]" if r["ci_low"] is not None else ""
            cells.append(f"{_num(r['mean'])}{ci}")
        lines.append(f"| {_label(m)} | " + " | ".join(cells) + f" | {by[(qs[0].id, m)]['n']} |")
    lines += [
        "",
        f"CI: 95% percentile bootstrap over items ({RESAMPLES:,} resamples, seed fixed): each resample draws "
        "items with replacement and keeps all raters' ratings of an item together. n: ratings per method "
        "and question.",
        "",
        "## Inter-rater agreement",
        "",
        "| Question | Krippendorff's α (ordinal) | Raters | Candidates rated twice or more |",
        "|---|---|---|---|",
    ]
    for a in summary["agreement"]:
        short = next(q.short for q in qs if q.id == a["question"])
        alpha = _num(a["alpha_ordinal"], 3) if a["alpha_ordinal"] is not None else "undefined"
        rated = f"{a['pairable_candidates']} / {a['candidates']}"
        lines.append(f"| {short} | {alpha} | {a['raters']} | {rated} |")
    lines += [
        "",
        "α from the `krippendorff` package, ordinal level, values 1–5; units are candidates (an item edited "
        "by one method), coders are raters. 1 = perfect agreement, 0 = chance; undefined when no candidate "
        "has two ratings or all ratings are equal.",
        "",
        "## Pairwise win rates",
        "",
        "Row method A against column method B: (wins + ties / 2) / n over the (item, rater) pairs where "
        "both were rated; 0.50 = no difference. Counts are in `win_rates.csv`.",
    ]
    wins = {(w["question"], w["method_a"], w["method_b"]): w for w in summary["win_rates"]}
    for q in qs:
        lines += ["", f"**{q.short}**", "", "| A \\ B | " + " | ".join(_label(m) for m in methods) + " |"]
        lines.append("|---|" + "---|" * len(methods))
        for a in methods:
            cells = ["—" if a == b else _num(wins[(q.id, a, b)]["win_rate"]) for b in methods]
            lines.append(f"| {_label(a)} | " + " | ".join(cells) + " |")
    lines += ["", "## Raters", "", "| Rater | Candidates fully rated | Answers file |", "|---|---|---|"]
    for rater, p in summary["progress"].items():
        lines.append(f"| {rater} | {p['complete']} / {p['shown']} | {p['file'] or 'none'} |")
    lines += [
        "",
        f"Files: `{RATINGS_CSV}` (every un-blinded rating), `{MEANS_CSV}`, `{AGREEMENT_CSV}`, `{WINS_CSV}`, "
        f"`{REPORT_JSON}`, `{PLOT_PNG}`.",
        "",
    ]
    return "\n".join(lines)


def write_study_report(
    study_dir: str | Path, out: str | Path | None = None, *, key_path: str | Path | None = None
) -> dict[str, Any]:
    """Un-blind and write the report into ``out`` (default ``STUDY_DIR/report``); returns the summary."""
    study = load_study(study_dir)
    key_file = Path(key_path) if key_path else study.folder / KEY_JSON
    key = load_key(key_file, study)
    ratings, progress = collect_ratings(study, key)
    if not ratings:
        raise StudyError(f"{study.folder}: no answers yet (no rating in any answers-<rater>.json)")
    methods = [m for m in MODES if m in key["methods"]]
    qids = [q.id for q in QUESTIONS]
    means = method_means(ratings, methods, qids)
    summary = {
        "study_id": study.study_id,
        "eval_dir": key.get("eval_dir", ""),
        "items": len(study.items),
        "methods": methods,
        "n_ratings": len(ratings),
        "progress": progress,
        "means": means,
        "ci": f"95% percentile bootstrap over items, {RESAMPLES} resamples",
        "agreement": agreement_table(ratings, qids, list(study.orders)),
        "win_rates": win_rates(ratings, methods, qids),
        "created": time.time(),
    }
    folder = Path(out) if out is not None else study.folder / REPORT_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"cannot create the report folder {folder}: {exc.strerror or exc}") from None
    cols = ["rater", "item", "source_item", "method", "code", "question", "value"]
    images.atomic_write_text(folder / RATINGS_CSV, _csv(ratings, cols))
    mean_cols = ["question", "method", "n", "items", "mean", "sd", "ci_low", "ci_high"]
    images.atomic_write_text(folder / MEANS_CSV, _csv(means, mean_cols))
    agree_cols = ["question", "alpha_ordinal", "raters", "candidates", "pairable_candidates", "ratings"]
    images.atomic_write_text(folder / AGREEMENT_CSV, _csv(summary["agreement"], agree_cols))
    win_cols = ["question", "method_a", "method_b", "n", "wins", "ties", "losses", "win_rate"]
    images.atomic_write_text(folder / WINS_CSV, _csv(summary["win_rates"], win_cols))
    images.atomic_write_text(folder / REPORT_JSON, json.dumps(json_safe(summary), indent=1) + "\n")
    from maskpix_desktop.core.study.plot import plot_ratings

    plot_ratings(ratings, means, methods, folder / PLOT_PNG)
    images.atomic_write_text(folder / REPORT_MD, _markdown(summary))
    summary["folder"] = str(folder)
    return summary


__all__ = [
    "AGREEMENT_CSV",
    "MEANS_CSV",
    "PLOT_PNG",
    "RATINGS_CSV",
    "REPORT_DIR",
    "REPORT_JSON",
    "REPORT_MD",
    "WINS_CSV",
    "collect_ratings",
    "load_key",
    "write_study_report",
]
