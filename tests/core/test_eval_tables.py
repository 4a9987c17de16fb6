"""The evaluation report's general table writers and bar plot (also the ablation grid's report path)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.core.evaluation import plots, report


def test_csv_table_keeps_exact_floats_and_writes_none_blank():
    text = report.table_csv(
        ["a", "b", "c"], [[0.1 + 0.2, None, "x,y"], [math.inf, math.nan, np.float64(1.25)], [3, True, ""]]
    )
    assert text == 'a,b,c\n0.30000000000000004,,"x,y"\ninf,nan,1.25\n3,True,\n'


def test_markdown_table_and_write_table_pick_the_format_from_the_suffix(tmp_path: Path):
    assert report.markdown_table(["x", "y"], [[1, "a"], [2.5, "b"]]) == [
        "| x | y |",
        "|---|---|",
        "| 1 | a |",
        "| 2.5 | b |",
    ]
    md = report.write_table(tmp_path / "t.md", ["x"], [["1"]])
    assert md.read_text(encoding="utf-8") == "| x |\n|---|\n| 1 |\n"
    csv_path = report.write_table(tmp_path / "t.csv", ["x"], [[0.5]])
    assert csv_path.read_bytes() == b"x\n0.5\n"


def test_plot_bars_draws_single_and_grouped_panels_at_the_documented_size(tmp_path: Path):
    from PIL import Image

    labels = [f"run {i}" for i in range(8)]  # 0.6 * 8 + 2 = 6.8 inches wide
    path = tmp_path / "bars.png"
    plots.plot_bars(
        path,
        labels,
        [("single", list(range(8))), ("grouped", {"a": [1.0] * 8, "b": [2.0] * 8, "c": [math.nan] * 8})],
        title="t",
    )
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (680, 650)
    with pytest.raises(ValueError, match="2 values for 8 labels"):
        plots.plot_bars(tmp_path / "bad.png", labels, [("p", [1.0, 2.0])])
    assert not (tmp_path / "bad.png").exists()
