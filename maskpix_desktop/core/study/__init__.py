"""Blinded human study of the edit methods (Qt-free): build a rating package from an evaluation folder,
store a rater's answers, and un-blind them into a report.

- ``manifest``: ``study.json`` / ``key.json`` / ``answers-<rater>.json`` formats, readers and writers.
- ``make``: :func:`make_study` (``maskpix-cli study make``).
- ``stats`` and ``agreement``: means with a bootstrap interval, win rates, Krippendorff's alpha.
- ``report``: :func:`write_study_report` (``maskpix-cli study report``); ``plot`` draws its figure;
  ``report_reader`` reads a written report back (:func:`read_study_report`, :func:`find_study_report`).
"""

from __future__ import annotations

from maskpix_desktop.core.study.make import make_study, rater_ids
from maskpix_desktop.core.study.manifest import (
    KEY_JSON,
    QUESTIONS,
    SCALE,
    SCALE_LABELS,
    STUDY_JSON,
    Answers,
    Question,
    Study,
    StudyError,
    StudyItem,
    load_answers,
    load_study,
    save_answers,
)
from maskpix_desktop.core.study.report import write_study_report
from maskpix_desktop.core.study.report_reader import find_study_report, read_study_report

__all__ = [
    "KEY_JSON",
    "QUESTIONS",
    "SCALE",
    "SCALE_LABELS",
    "STUDY_JSON",
    "Answers",
    "Question",
    "Study",
    "StudyError",
    "StudyItem",
    "load_answers",
    "find_study_report",
    "load_study",
    "make_study",
    "rater_ids",
    "read_study_report",
    "save_answers",
    "write_study_report",
]
