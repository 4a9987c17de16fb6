"""The metric catalogue is the one table: every produced key is in it once, and every table reads it."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import export
from maskpix_desktop.core import metric_catalog as mc
from maskpix_desktop.core import metrics as mx
from maskpix_desktop.core.evaluation import plots as ev_plots
from maskpix_desktop.testing.tiny_clip import build_tiny_clip


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[8:30, 10:40] = True
    edit = img.copy()
    edit[mask] = (250, 40, 40)
    edit[40:, :5] = 0  # a little leakage
    return img, edit, mask


class _FakeClip:
    """Enough of ClipScorer for ``score_row`` (the evaluation's CLIP metrics)."""

    def text_features(self, texts: list[str]) -> np.ndarray:
        return np.full((len(texts), 4), 0.5)

    @staticmethod
    def _score(a: np.ndarray, b: np.ndarray) -> float:
        return max(100.0 * float((a * b).sum()), 0.0)

    def score(self, image: np.ndarray, text: str) -> float:
        return 21.0

    def region_score(self, image: np.ndarray, mask: np.ndarray, text: str) -> float:
        return 23.0

    def image_features(self, images: list[np.ndarray]) -> np.ndarray:
        return np.full((len(images), 4), 0.5)


def test_catalogue_keys_are_unique_and_the_producer_lists_are_catalogued() -> None:
    assert len(mc.CATALOG) == len(mc._SPECS)  # no key given twice
    assert all(k == s.key for k, s in mc.CATALOG.items())
    for keys in (mc.APP_KEYS, mc.EVAL_KEYS):
        assert len(set(keys)) == len(keys)
        assert set(keys) <= set(mc.CATALOG)
    assert set(mc.APP_KEYS) | set(mc.EVAL_KEYS) == set(mc.CATALOG)  # nothing catalogued that nobody writes
    assert all(s.direction in (-1, 0, 1) and s.label and s.tooltip for s in mc.CATALOG.values())


def test_compute_metrics_and_compare_keys_are_exactly_the_app_keys(tmp_path: Path) -> None:
    clip = mx.ClipScorer.load(**build_tiny_clip(tmp_path / "clip"))
    img, edit, mask = _scene()
    out = mx.compute_metrics(img, edit, mask, text="red", clip=clip, src_caption="a", tgt_caption="a red")
    assert list(out) == list(mc.APP_KEYS)
    both = mx.compare(img, edit, img, mask, text="red", clip=clip, src_caption="a", tgt_caption="b")
    assert all(list(view) == list(mc.APP_KEYS) for view in both.values())
    assert set(mx.compute_metrics(img, edit, mask)) <= set(mc.APP_KEYS)  # without CLIP: a subset
    assert mx.METRIC_INFO == {k: (mc.spec(k).label, mc.spec(k).tooltip) for k in mc.APP_KEYS}


class _FakeDino:
    def structure_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return 0.01

    def cls_similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return 0.9


@pytest.mark.parametrize("dataset", ["pie", "magicbrush"])
def test_evaluation_row_keys_are_eval_keys(dataset: str) -> None:
    img, edit, mask = _scene()
    loaded = ev.LoadedItem(img, mask, mask, target=edit if dataset == "magicbrush" else None)
    item = ev.EvalItem("i1", dataset, Path("x.png"), "make it red", prompt="a red box")
    dino = _FakeDino()
    scorers = ev.Scorers(clip=_FakeClip(), lpips=lambda a, b, m: 0.1, dino_structure=dino, dino_mb=dino)  # type: ignore[arg-type]
    out, missing = ev.score_row(img, edit, loaded, item, scorers)
    assert not missing
    mb_only = ("l1", "l2", "clip_i", "dino", "clip_t")
    expected = (
        [k for k in mc.EVAL_KEYS if k != "pie_structure"]
        if dataset == "magicbrush"
        else [k for k in mc.EVAL_KEYS if k not in mb_only]
    )
    assert set(out) == set(expected)
    assert [m.key for m in ev.METRICS] == list(mc.EVAL_KEYS) and ev.METRIC_BY_KEY["pie_psnr"] is mc.spec(
        "pie_psnr"
    )


def test_older_results_name_clip_score_region_and_read_as_clip_edited_crop(tmp_path: Path) -> None:
    row = {"item": "a", "mode": "crop", "status": "ok", "metrics": {"clip_score_region": 31.5}, "missing": {}}
    back = ev.row_from_json(json.dumps(row))
    assert back["metrics"] == {"clip_edited_crop": 31.5}
    both = {**row, "metrics": {"clip_score_region": 1.0, "clip_edited_crop": 2.0}}
    assert ev.row_from_json(json.dumps(both))["metrics"] == {"clip_edited_crop": 2.0}  # the new name wins
    old_csv = tmp_path / "results.csv"
    old_csv.write_text(
        "item,mode,status,edit_type,pie_psnr,clip_score_region,missing\na,crop,ok,1,20.0,31.5,\n"
    )
    assert ev.read_results_csv(old_csv)[0]["metrics"] == {"pie_psnr": 20.0, "clip_edited_crop": 31.5}


def test_report_headers_match_the_published_table() -> None:
    headers = [mc.spec(k).header for k in ev.PIE_KEYS]
    assert headers == [
        "Structure ×10³ ↓",
        "PSNR ↑",
        "LPIPS ×10³ ↓",
        "MSE ×10⁴ ↓",
        "SSIM ×10² ↑",
        "CLIP whole ↑",
        "CLIP edited ↑",
    ] + ["CLIP crop ↑", "Leakage ↓"]
    assert [mc.spec(k).header for k in ev.MB_KEYS[:5]] == ["L1 ↓", "L2 ↓", "CLIP-I ↑", "DINO ↑", "CLIP-T ↑"]
    assert mc.spec("pie_ssim_full").header == "SSIM (full map) ×10² ↑"
    assert mc.spec("miou_tau").header == "mIoU threshold"  # informational: no arrow


def test_unknown_key_lookups() -> None:
    assert mc.direction("nope") == 0 and mc.label("nope") == "nope" and mc.get("nope") is None
    with pytest.raises(KeyError, match="'nope' is not in core/metric_catalog.py"):
        mc.spec("nope")
    assert mc.ordered(["zz", "miou", "leakage_mean", "zz"]) == ["leakage_mean", "miou", "zz"]


def test_cli_csv_columns_follow_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = {"baseline": {"bg_psnr": 20.0, "leakage_mean": 3.0}, "blended": {"miou": 0.5, "extra": 1}}
    assert export.metrics_csv(scores).splitlines()[0] == "variant,leakage_mean,miou,bg_psnr,extra"
    monkeypatch.setattr(mc, "CATALOG", dict(reversed(mc.CATALOG.items())))
    assert export.metrics_csv(scores).splitlines()[0] == "variant,bg_psnr,miou,leakage_mean,extra"


def _eval_rows() -> list[dict]:
    rows = []
    for i, (base, pixel) in enumerate([(9.0, 1.0), (4.0, 6.0)]):
        for mode, leak in (("baseline", base), ("pixel", pixel)):
            rows.append(
                {
                    "item": f"it{i}",
                    "mode": mode,
                    "status": "ok",
                    "edit_type": "1",
                    "metrics": {"pie_psnr": 20.0 + leak, "leakage_mean": leak},
                    "missing": {},
                }
            )
    return rows


def test_a_patched_catalogue_entry_shows_in_ui_table_csv_report_and_browser(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskpix_desktop.ui.results import ResultsPanel
    from maskpix_desktop.ui.results_browser import ResultsBrowser
    from maskpix_desktop.ui.results_metrics import better_variant

    patched = replace(
        mc.spec("leakage_mean"), label="Spill outside", short="Spill", direction=1, tooltip="tip!"
    )
    monkeypatch.setitem(mc.CATALOG, "leakage_mean", patched)

    # UI results table: label, tooltip, and the bold "better" cell follow the patched direction.
    assert better_variant("leakage_mean", {"baseline": 40.0, "blended": 0.0}) == "baseline"
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel._fill_metrics({"baseline": {"leakage_mean": 40.0}, "blended": {"leakage_mean": 0.0}})
    t = panel.metrics_table
    header = (t.verticalHeaderItem(0).text(), t.verticalHeaderItem(0).toolTip())
    assert header == ("Spill outside (0-255)", "tip!")
    assert t.item(0, 0).font().bold() and not t.item(0, 1).font().bold()

    # CLI CSV: the catalogue key is the column (machine-readable; labels stay out of it).
    assert export.metrics_csv({"baseline": {"leakage_mean": 1.0}}).splitlines()[0] == "variant,leakage_mean"

    # Evaluation report: column header and summary direction.
    monkeypatch.setattr(ev_plots, "plot_distributions", lambda *a, **k: None)  # report.py calls it there
    out = tmp_path / "run"
    out.mkdir()
    ev.write_report(out, _eval_rows(), modes=("baseline", "pixel"), meta={"format": "pie"}, grid_items=0)
    assert not (out / "distributions.png").exists()  # the patched plot ran instead of matplotlib
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "| Spill ↑ |" in md and "Leakage ↓" not in md
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["metrics"]["leakage_mean"]["direction"] == 1
    header = next(csv.reader(io.StringIO((out / "results.csv").read_text(encoding="utf-8"))))
    assert header[4:6] == ["pie_psnr", "leakage_mean"]

    # Results browser: combo text, table header, and "worst first" sorting by the patched direction.
    browser = ResultsBrowser()
    qtbot.addWidget(browser)
    browser.load(out)
    labels = [browser.metric_combo.itemText(i) for i in range(browser.metric_combo.count())]
    assert labels == ["PSNR", "Spill"]
    browser.set_sort("leakage_mean", "baseline")
    assert browser._order == ["it1", "it0"]  # higher is better now: 4 before 9
    assert browser.table.horizontalHeaderItem(2).text().startswith("Spill · ")
