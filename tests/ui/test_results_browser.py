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
