"""The results browser's *Study* tab: a written human-study report (``maskpix-cli study report``) shown as
tables — per method and question the mean with its 95% interval, Krippendorff's alpha per question, the
pairwise win rates — and the report's figure. Numbers come from ``report.json`` unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskpix_desktop.core.evaluation.datasets import MODE_LABELS
from maskpix_desktop.core.study import QUESTIONS, StudyError, read_study_report
from maskpix_desktop.core.study.report_reader import report_mean

EMPTY_TEXT = (
    "No study report. Build one with <tt>maskpix-cli study make EVAL_DIR …</tt>, collect the ratings "
    "(File → Rate a study…), run <tt>maskpix-cli study report STUDY_DIR</tt>, then open it here. "
    "A report whose study was made from this evaluation folder, in a folder beside it or inside it, "
    "opens by itself."
)


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(value: float | None, digits: int = 2, tooltip: str = "") -> QTableWidgetItem:
    """A read-only number cell: the value rounded as in report.md, the exact value in UserRole."""
    cell = QTableWidgetItem(_num(value, digits))
    cell.setData(Qt.ItemDataRole.UserRole, value)
    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if tooltip:
        cell.setToolTip(tooltip)
    return cell


def _table(rows: int, cols: int) -> QTableWidget:
    table = QTableWidget(rows, cols)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return table


def _fit_height(table: QTableWidget) -> None:
    table.resizeColumnsToContents()
    height = table.horizontalHeader().height() + 2 * table.frameWidth()
    height += sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setFixedHeight(height)


class StudyReportView(QWidget):
    """One study report: means ± 95% CI, agreement, win rates and the figure; empty until loaded."""

    reportLoaded = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.report: dict[str, Any] | None = None
        self.title = QLabel(EMPTY_TEXT)
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.open_button = QPushButton("Open study report…")
        self.open_button.setToolTip("A study folder, its report/ folder or report.json")
        self.open_button.clicked.connect(self.choose)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignTop)

        self.means_table = _table(0, 0)
        self.agreement_table = _table(0, 0)
        self.win_tables: dict[str, QTableWidget] = {}
        self.plot_label = QLabel()
        self.plot_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._plot = QPixmap()

        self.body = QWidget()
        self._body_layout = QVBoxLayout(self.body)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.body)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.scroll, 1)
        self.clear()

    # ------------------------------------------------------------------------------------------ API
    def clear(self) -> None:
        self.report = None
        self.title.setText(EMPTY_TEXT)
        self.scroll.setVisible(False)

    def load(self, path: str | Path) -> dict[str, Any]:
        """Show the report at ``path`` (report.json, a report folder or a study folder); StudyError when
        there is none or it is damaged (the view keeps what it showed)."""
        report = read_study_report(path)
        self.report = report
        self._fill()
        self.reportLoaded.emit(report["folder"])
        return report

    def methods(self) -> list[str]:
        """Methods in the order of the report (and of the table's rows)."""
        return list(self.report["methods"]) if self.report else []

    def choose(self) -> None:
        """Ask for a study folder or report and show it (a message box says why one cannot be read)."""
        folder = QFileDialog.getExistingDirectory(self, "Open a study report (a study folder or its report)")
        if not folder:
            return
        try:
            self.load(folder)
        except StudyError as exc:
            QMessageBox.warning(self, "Open study report", str(exc))

    # ------------------------------------------------------------------------------------ internals
    def _fill(self) -> None:
        report = self.report
        assert report is not None
        methods = report["methods"]
        raters = len(report.get("progress") or {})
        self.title.setText(
            f"<b>Study {report['study_id']}</b> · {report.get('items', '?')} items · "
            f"{len(methods)} methods · {raters} raters · {report.get('n_ratings', '?')} ratings"
            f"<br>from <tt>{report['folder']}</tt>"
            f" · evaluation <tt>{report.get('eval_dir', '')}</tt>"
        )
        while self._body_layout.count():
            w = self._body_layout.takeAt(0).widget()
            if w is not None and w not in (self.means_table, self.agreement_table, self.plot_label):
                w.deleteLater()
        self._fill_means(methods)
        self._fill_agreement()
        self._body_layout.addWidget(QLabel("<b>Mean rating (1–5) with 95% CI</b> — bootstrap over items"))
        self._body_layout.addWidget(self.means_table)
        self._body_layout.addWidget(QLabel("<b>Inter-rater agreement</b> — Krippendorff's α, ordinal"))
        self._body_layout.addWidget(self.agreement_table)
        self.win_tables = {}
        for q in QUESTIONS:
            self._body_layout.addWidget(QLabel(f"<b>Win rate, row over column</b> — {q.short}"))
            table = self._win_table(q.id, methods)
            self.win_tables[q.id] = table
            self._body_layout.addWidget(table)
        self._plot = QPixmap(report["plot"]) if report.get("plot") else QPixmap()
        if self._plot.isNull():
            self.plot_label.setText("(no ratings.png beside the report)")
        else:
            width = min(self._plot.width(), 900)
            smooth = Qt.TransformationMode.SmoothTransformation
            self.plot_label.setPixmap(self._plot.scaledToWidth(width, smooth))
        self._body_layout.addWidget(self.plot_label)
        self._body_layout.addStretch(1)
        self.scroll.setVisible(True)

    def _fill_means(self, methods: list[str]) -> None:
        table = self.means_table
        table.clear()
        headers = [h for q in QUESTIONS for h in (f"{q.short} ↑", "95% CI")] + ["n"]
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(methods))
        for r, method in enumerate(methods):
            table.setVerticalHeaderItem(r, QTableWidgetItem(MODE_LABELS.get(method, method)))
            n = None
            for qi, q in enumerate(QUESTIONS):
                row = report_mean(self.report, method, q.id) or {}
                table.setItem(r, 2 * qi, _cell(row.get("mean"), tooltip=f"sd {_num(row.get('sd'))}"))
                low, high = row.get("ci_low"), row.get("ci_high")
                ci = QTableWidgetItem(f"[{_num(low)}, {_num(high)}]" if low is not None else "—")
                ci.setData(Qt.ItemDataRole.UserRole, (low, high))
                table.setItem(r, 2 * qi + 1, ci)
                n = row.get("n", n)
            table.setItem(r, len(headers) - 1, _cell(n, 0))
        _fit_height(table)

    def _fill_agreement(self) -> None:
        table = self.agreement_table
        rows = self.report["agreement"]
        table.clear()
        table.setColumnCount(3)
        table.setHorizontalHeaderLabels(["α (ordinal)", "Raters", "Candidates rated ≥ 2×"])
        table.setRowCount(len(rows))
        shorts = {q.id: q.short for q in QUESTIONS}
        for r, a in enumerate(rows):
            table.setVerticalHeaderItem(r, QTableWidgetItem(shorts.get(a.get("question"), a.get("question"))))
            alpha = _cell(a.get("alpha_ordinal"), 3)
            if a.get("alpha_ordinal") is None:
                alpha.setText("undefined")
            table.setItem(r, 0, alpha)
            table.setItem(r, 1, _cell(a.get("raters"), 0))
            table.setItem(r, 2, QTableWidgetItem(f"{a.get('pairable_candidates')} / {a.get('candidates')}"))
        _fit_height(table)

    def _win_table(self, question: str, methods: list[str]) -> QTableWidget:
        table = _table(len(methods), len(methods))
        labels = [MODE_LABELS.get(m, m) for m in methods]
        table.setHorizontalHeaderLabels(labels)
        table.setVerticalHeaderLabels(labels)
        rows = [w for w in self.report["win_rates"] if w["question"] == question]
        wins = {(w["method_a"], w["method_b"]): w for w in rows}
        for r, a in enumerate(methods):
            for c, b in enumerate(methods):
                w = wins.get((a, b))
                if a == b or w is None:
                    table.setItem(r, c, QTableWidgetItem("—"))
                    continue
                tip = f"{w.get('wins')} wins, {w.get('ties')} ties, {w.get('losses')} losses of {w.get('n')}"
                table.setItem(r, c, _cell(w.get("win_rate"), tooltip=tip))
        _fit_height(table)
        return table

    def mean_cell(self, method: str, question: str) -> QTableWidgetItem:
        """The means table's cell of ``method`` and ``question``."""
        qi = [q.id for q in QUESTIONS].index(question)
        return self.means_table.item(self.methods().index(method), 2 * qi)


__all__ = ["EMPTY_TEXT", "StudyReportView"]
