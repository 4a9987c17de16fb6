"""Results browser (offscreen): opens a tiny eval folder, sorts by a metric, opening an item shows images."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from maskpix_desktop.cli import main
from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.testing.eval_data import make_pie_folder
from maskpix_desktop.ui.results_browser import ResultsBrowser, ResultsBrowserDialog, open_results_browser


@pytest.fixture(scope="module")
def eval_dir(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_pie_folder(tmp_path_factory.mktemp("pie") / "pie", n=3)  # 3 good items + 2 bad ones
    out = tmp_path_factory.mktemp("eval") / "run"
    args = ["eval", str(data), "--out", str(out), "--models-dir", str(tiny_models_dir)]
    args += ["--long-side", "64", "--steps", "2", "--threads", "1", "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    return out


def expected_order(folder: Path, metric: str, mode: str, worst_first: bool) -> list[str]:
    rows = [r for r in ev.read_rows(folder / "results.jsonl") if r["mode"] == mode]
    sign = ev.METRIC_BY_KEY[metric].direction
    valued = [(r["metrics"].get(metric), r["item"]) for r in rows]
    present = [(v * sign, i) for v, i in valued if v is not None and not math.isnan(v)]
    ordered = [i for _, i in sorted(present, reverse=not worst_first)]
    return ordered + sorted(i for v, i in valued if v is None or math.isnan(v))


def test_browser_sorts_by_a_metric_and_opens_items(qtbot, eval_dir: Path) -> None:
    browser = ResultsBrowser()
    qtbot.addWidget(browser)
    browser.resize(1100, 700)
    browser.show()
    browser.load(eval_dir)

    assert len(browser.item_order()) == 5
    assert browser.sort_key() == ("pie_psnr", "baseline", False)
    assert browser.item_order() == expected_order(eval_dir, "pie_psnr", "baseline", worst_first=True)
    assert browser.item_order()[-2:] == ["bad_size", "bad_unreadable"]  # no value: always last
    assert browser.current_item() == browser.item_order()[0]  # the first item opens at once

    browser.set_sort("clip_score", "latent", best_first=True)
    assert browser.item_order() == expected_order(eval_dir, "clip_score", "latent", worst_first=False)
    browser.set_sort("leakage_mean", "baseline")
    order = browser.item_order()
    assert order == expected_order(eval_dir, "leakage_mean", "baseline", worst_first=True)
    leak = [browser.value(i, "baseline", "leakage_mean") for i in order[:3]]
    assert leak == sorted(leak, reverse=True)  # lower is better: worst (highest) first
    assert browser.table.item(0, 0).text() == order[0]

    row = next(r for r, i in enumerate(order) if i != browser.current_item() and not i.startswith("bad"))
    item = order[row]
    with qtbot.waitSignal(browser.itemOpened, timeout=2000) as sig:
        browser.table.selectRow(row)
    assert sig.args == [item] and browser.current_item() == item
    for name in ("original", "mask", "baseline", "pixel", "latent", "crop"):
        assert browser.views[name].has_image(), name
    assert browser.views["crop"].pixmap_item.pixmap().width() == 512
    table = browser.metrics_table
    assert table.columnCount() == 4 and table.rowCount() >= 6
    texts = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert "missing" in texts  # LPIPS without weights: shown as missing, not 0

    browser.open_item("bad_size")
    assert browser.current_item() == "bad_size" and not browser.views["baseline"].has_image()
    assert "wrong mask size" in browser.table.item(browser.item_order().index("bad_size"), 0).toolTip()
    with pytest.raises(KeyError):
        browser.open_item("nope")


def test_browser_shows_the_benchmark_columns_and_retrieval(qtbot, eval_dir: Path, tmp_path: Path) -> None:
    browser = ResultsBrowser()
    qtbot.addWidget(browser)
    browser.load(eval_dir)

    def combo_keys() -> list[str]:
        return [browser.metric_combo.itemData(i) for i in range(browser.metric_combo.count())]

    keys = combo_keys()
    for key in ("pie_structure", "pie_ssim", "pie_ssim_full", "clip_edited_pie", "clip_edited_crop"):
        assert key in keys, key
    assert keys.index("clip_edited_pie") < keys.index("clip_edited_crop")  # the catalogue's order
    tip = browser.metric_combo.itemData(keys.index("clip_edited_pie"), Qt.ItemDataRole.ToolTipRole)
    assert "full frame times the mask" in tip
    assert browser.retrieval_label.text().startswith("Instruction retrieval, CLIP top-1 / top-5: IP2P")
    browser.set_sort("clip_edited_pie", "crop", best_first=True)
    assert browser.item_order() == expected_order(eval_dir, "clip_edited_pie", "crop", worst_first=False)

    # a folder written before the rename: clip_score_region is read as clip_edited_crop
    old = tmp_path / "old"
    shutil.copytree(eval_dir, old)
    text = (old / "results.jsonl").read_text(encoding="utf-8")
    (old / "results.jsonl").write_text(text.replace('"clip_edited_crop"', '"clip_score_region"'), "utf-8")
    (old / "summary.json").unlink()
    browser.load(old)
    assert "clip_edited_crop" in combo_keys()
    rows = {(r["item"], r["mode"]): r for r in ev.read_rows(eval_dir / "results.jsonl")}
    item = next(i for i in browser.item_order() if not i.startswith("bad"))
    assert (
        browser.value(item, "crop", "clip_edited_crop") == rows[(item, "crop")]["metrics"]["clip_edited_crop"]
    )
    assert browser.retrieval_label.text() == ""  # no summary.json: no retrieval line


def test_browser_reads_a_csv_only_folder_and_refuses_an_empty_one(
    qtbot, eval_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "csv-only"
    shutil.copytree(eval_dir, folder)
    (folder / "results.jsonl").unlink()
    dialog = ResultsBrowserDialog(folder / "summary.md")  # a file in the folder is fine too
    qtbot.addWidget(dialog)
    browser = dialog.browser
    good = [i for i in browser.item_order() if not i.startswith("bad")]
    browser.open_item(good[0])
    assert browser.views["original"].has_image() and browser.views["mask"].has_image()
    assert browser.views["latent"].has_image()

    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskPixError, match="no evaluation results"):
        ResultsBrowser().load(tmp_path / "empty")


def test_open_results_browser_shows_a_window(qtbot, eval_dir: Path) -> None:
    dialog = open_results_browser(None, eval_dir)
    assert dialog is not None
    qtbot.addWidget(dialog)
    assert dialog.isVisible() and dialog.browser.item_order()
    dialog.close()


def test_file_menu_opens_the_browser(qtbot, eval_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QFileDialog

    from maskpix_desktop.ui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, load_models=False, autosave=False)
    qtbot.addWidget(win)
    file_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&File")
    action = next(a for a in file_menu.actions() if a.text().replace("&", "") == "Open evaluation results…")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(eval_dir))
    action.trigger()
    dialogs = [d for d in win.findChildren(ResultsBrowserDialog) if d.isVisible()]
    assert len(dialogs) == 1 and dialogs[0].browser.folder == eval_dir
    dialogs[0].close()
    win.close()


STUDY_METHODS = ("baseline", "pixel", "latent", "crop")
STUDY_TRUTH = {"region": {"baseline": 2, "pixel": 5, "latent": 4, "crop": 3}, "instruction": {}}


def _rate(rater: str, item: str, method: str, question: str) -> int:
    """Region: the method's level, one lower for rater r2 on odd items; instruction: varies by item."""
    if question == "region":
        return STUDY_TRUTH["region"][method] - (rater == "r2" and int(item[1:]) % 2 == 1)
    return 1 + (int(item[1:]) + len(method)) % 5


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fake eval folder ``run`` and, beside it, a rated study made from it with its report."""
    from maskpix_desktop.core.study import make_study, write_study_report
    from maskpix_desktop.testing.study_data import make_fake_eval, simulate_raters

    root = tmp_path_factory.mktemp("study_run")
    run = make_fake_eval(root / "run", n_items=5, modes=STUDY_METHODS)
    study = make_study(run, STUDY_METHODS, root / "study", n_items=5, raters=3, seed=9)
    simulate_raters(study.folder, _rate)
    write_study_report(study.folder)
    return run, study.folder


def test_browser_shows_the_study_report_made_from_the_folder(qtbot, study_run: tuple[Path, Path]) -> None:
    import csv
    import json

    run, study = study_run
    browser = ResultsBrowser()
    qtbot.addWidget(browser)
    browser.load(run)  # the study beside the eval folder was made from it: its report opens by itself

    report = json.loads((study / "report" / "report.json").read_text(encoding="utf-8"))
    with open(study / "report" / "means.csv", encoding="utf-8", newline="") as fh:
        csv_means = {(r["method"], r["question"]): float(r["mean"]) for r in csv.DictReader(fh)}
    view = browser.study_view
    assert view.methods() == report["methods"] == list(STUDY_METHODS)
    table = view.means_table
    headers = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert headers == [ev.MODE_LABELS[m] for m in report["methods"]]
    for row in report["means"]:
        cell = view.mean_cell(row["method"], row["question"])
        expected = csv_means[(row["method"], row["question"])]
        assert cell.data(Qt.ItemDataRole.UserRole) == row["mean"] == expected
        assert cell.text() == f"{row['mean']:.2f}"
    region = [view.mean_cell(m, "region").data(Qt.ItemDataRole.UserRole) for m in view.methods()]
    # the simulated levels, less r2's one point on i001, i003, i005: 3 of 15 ratings per method
    assert region == pytest.approx([2 - 0.2, 5 - 0.2, 4 - 0.2, 3 - 0.2])
    ci = table.item(view.methods().index("pixel"), 1).data(Qt.ItemDataRole.UserRole)
    pixel = next(r for r in report["means"] if r["method"] == "pixel" and r["question"] == "region")
    assert tuple(ci) == (pixel["ci_low"], pixel["ci_high"])
    alpha = next(a for a in report["agreement"] if a["question"] == "region")["alpha_ordinal"]
    assert view.agreement_table.item(0, 0).data(Qt.ItemDataRole.UserRole) == alpha and alpha > 0.8
    wins = view.win_tables["region"]
    pixel_over_baseline = wins.item(STUDY_METHODS.index("pixel"), STUDY_METHODS.index("baseline"))
    assert pixel_over_baseline.data(Qt.ItemDataRole.UserRole) == 1.0
    assert wins.item(0, 0).text() == "—"
    assert not view.plot_label.pixmap().isNull()  # ratings.png

    other = shutil.copytree(run, run.parent / "other-run")  # beside the study, but not its eval folder
    browser.load(other)
    assert view.report is None and "No study report" in view.title.text()


def test_opening_a_study_folder_shows_its_report_and_its_eval(qtbot, study_run, tmp_path: Path) -> None:
    run, study = study_run
    dialog = ResultsBrowserDialog(study)  # File > Open evaluation results… on the study folder
    qtbot.addWidget(dialog)
    browser = dialog.browser
    assert browser.tabs.currentWidget() is browser.study_view
    assert browser.study_view.methods() == list(STUDY_METHODS)
    assert browser.folder == run.resolve() and len(browser.item_order()) == 5

    browser.load_study_report(study / "report" / "report.json")
    assert browser.study_view.report["folder"] == str(study / "report")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text("{}", encoding="utf-8")
    with pytest.raises(MaskPixError, match="study report"):
        browser.load_study_report(tmp_path / "s")
    assert browser.study_view.methods() == list(STUDY_METHODS)  # a failed open keeps what was shown
    with pytest.raises(MaskPixError, match="no evaluation results"):
        ResultsBrowserDialog(tmp_path / "s")
