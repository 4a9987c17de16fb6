"""The ablation grid: its settings, names, table maths, CSV round trip, and reuse of finished runs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch

from maskpix_desktop.core.maskcond import ablate
from maskpix_desktop.core.maskcond.proof import EvalConfig
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.core.maskcond.train import TrainConfig


def test_default_grid_is_the_plain_baseline_then_every_combination_once():
    settings = ablate.grid()
    assert settings[0] == {"conditioning": "none", "p_mask_drop": 0.0, "lora_rank": 0}
    assert len(settings) == 1 + 3 * 2 * 2
    combos = {tuple(s.values()) for s in settings[1:]}
    assert len(combos) == 12 and ("attention", 0.0, 4) in combos
    names = [ablate.run_name(s) for s in settings]
    assert len(set(names)) == len(names) and names[1] == "cond-concat_mdrop-0.1_lora-0"
    assert ablate.grid({"consistency_weight": [0.5, 2.0]}, baseline=False) == [
        {"consistency_weight": 0.5},
        {"consistency_weight": 2.0},
    ]


def _row(setting: dict, outside: float, psnr: float) -> dict:
    return {
        "name": ablate.run_name(setting),
        "setting": setting,
        "outside_change": outside,
        "outside_floor": 0.1,
        "inside_psnr": psnr,
        "change_miou": 0.5,
        "n_items": 4,
        "final_loss": 1.0,
        "train_s": 3.0,
    }


def test_rows_are_compared_with_the_plain_baseline_and_the_csv_keeps_exact_floats():
    rows = [_row({"conditioning": "none"}, 0.8, 20.0), _row({"conditioning": "concat"}, 0.2, 21.5)]
    ablate._vs_baseline(rows)
    assert rows[1]["outside_reduction"] == 1.0 - 0.2 / 0.8 and rows[1]["psnr_gain"] == 1.5
    assert rows[0]["outside_reduction"] == 0.0
    table = ablate.to_markdown(rows).splitlines()
    assert len(table) == 4 and "| none | 0.8000 | baseline |" in table[2]
    assert "| concat | 0.2000 | -75.0% | 21.50 | +1.50 |" in table[3]
    parsed = list(csv.DictReader(io.StringIO(ablate.to_csv(rows))))
    assert [r["conditioning"] for r in parsed] == ["none", "concat"]
    assert float(parsed[1]["outside_reduction"]) == rows[1]["outside_reduction"]


def test_report_step_writes_the_exact_csv_markdown_and_plot_through_the_evaluation_modules(
    tmp_path: Path, monkeypatch
):
    from PIL import Image

    from maskpix_desktop.core.evaluation import plots, report

    calls = []
    for mod, name in ((report, "write_table"), (plots, "plot_bars")):
        real = getattr(mod, name)

        def spy(*a, _real=real, _name=name, **k):
            calls.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(mod, name, spy)
    rows = [
        _row({"conditioning": "none", "lora_rank": 0}, 0.8, 20.0),
        _row({"conditioning": "concat", "lora_rank": 4}, 0.2, 21.5),
        _row({"conditioning": "attention", "lora_rank": 0}, 0.4, 19.25),
    ]
    rows[2]["n_items"] = 2
    ablate._vs_baseline(rows)
    paths = ablate.write_report(rows, tmp_path / "out")
    assert calls == ["write_table", "write_table", "plot_bars"]  # one report path: evaluation's modules
    assert paths == {k: tmp_path / "out" / f"ablation.{k}" for k in ("csv", "md", "png")}
    cols = "outside_change,inside_psnr,change_miou,final_loss,train_s,outside_reduction,psnr_gain"
    assert paths["csv"].read_text(encoding="utf-8").splitlines() == [
        f"name,conditioning,lora_rank,{cols},outside_floor,n_items",
        "cond-none_lora-0,none,0,0.8,20.0,0.5,1.0,3.0,0.0,0.0,0.1,4",
        "cond-concat_lora-4,concat,4,0.2,21.5,0.5,1.0,3.0,0.75,1.5,0.1,4",
        "cond-attention_lora-0,attention,0,0.4,19.25,0.5,1.0,3.0,0.5,-0.75,0.1,2",
    ]
    parsed = list(csv.DictReader(io.StringIO(paths["csv"].read_text(encoding="utf-8"))))
    assert [float(r["outside_reduction"]) for r in parsed] == [r["outside_reduction"] for r in rows]
    head = (
        "| conditioning | lora_rank | outside change ↓ | vs plain | inside PSNR dB | vs plain | mIoU | loss"
    )
    assert paths["md"].read_text(encoding="utf-8") == "\n".join(
        [
            head + " | train s |",
            "|---|---|---|---|---|---|---|---|---|",
            "| none | 0 | 0.8000 | baseline | 20.00 | baseline | 0.500 | 1.0000 | 3 |",
            "| concat | 4 | 0.2000 | -75.0% | 21.50 | +1.50 | 0.500 | 1.0000 | 3 |",
            "| attention | 0 | 0.4000 | -50.0% | 19.25 | -0.75 | 0.500 | 1.0000 | 3 |",
            "",
        ]
    )
    assert paths["md"].read_text(encoding="utf-8") == ablate.to_markdown(rows) + "\n"
    assert paths["csv"].read_text(encoding="utf-8") == ablate.to_csv(rows)
    assert paths["png"].stat().st_size > 1000
    with Image.open(paths["png"]) as im:
        assert im.format == "PNG" and im.size == (600, 650)  # 6 x 6.5 inches at 100 dpi (3 bars, 2 panels)
        low, high = im.convert("L").getextrema()
        assert low < high  # drawn, not blank


def test_report_without_matplotlib_writes_the_tables(tmp_path: Path, monkeypatch):
    from maskpix_desktop.core.evaluation import plots

    def no_matplotlib(*a, **k):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(plots, "plot_bars", no_matplotlib)
    rows = [_row({"conditioning": "none"}, 0.8, 20.0)]
    ablate._vs_baseline(rows)
    paths = ablate.write_report(rows, tmp_path)
    assert set(paths) == {"csv", "md"} and not (tmp_path / "ablation.png").exists()
    assert paths["csv"].read_text().splitlines()[1] == "cond-none,none,0.8,20.0,0.5,1.0,3.0,0.0,0.0,0.1,4"


def test_grid_runs_train_and_score_each_setting_and_a_second_call_reuses_them(
    tiny_ip2p_dir: Path, tmp_path: Path, monkeypatch
):
    torch.set_num_threads(1)
    cfg = TrainConfig(
        base=str(tiny_ip2p_dir),
        output_dir=str(tmp_path / "grid"),
        steps=2,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=2,
        attention_tokens=4,
        attention_dim=16,
        cpu=True,
        cpu_threads=1,
        progress=False,
    )
    settings = ablate.grid({"conditioning": ["attention"]})
    train_items, test_items = SyntheticShapes(4, size=32), SyntheticShapes(2, seed=9, size=32)
    ev = EvalConfig(steps=2)
    rows = ablate.run_grid(cfg, train_items, test_items, settings, ev)
    assert [r["name"] for r in rows] == ["cond-none", "cond-attention"]
    assert rows[1]["config"]["conditioning"] == "attention" and rows[1]["n_items"] == 2
    assert all((tmp_path / "grid" / r["name"] / "final").is_dir() for r in rows)
    paths = ablate.write_report(rows, tmp_path / "grid")
    assert paths["csv"].read_text().count("\n") == 3 and paths["md"].is_file()

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("maskpix_desktop.core.maskcond.train.train", no_training)
    again = ablate.run_grid(cfg, train_items, test_items, settings, ev)
    assert [r["outside_change"] for r in again] == [r["outside_change"] for r in rows]
    with pytest.raises(AssertionError, match="trained again"):  # other settings are not reused
        ablate.run_grid(cfg, train_items, test_items, ablate.grid({"conditioning": ["both"]}), ev)


def test_the_script_forks_every_run_from_one_warm_start_and_reuses_it(tmp_path: Path, monkeypatch):
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    import ablate_synthetic

    out = tmp_path / "grid"
    args = ["--out", str(out), "--steps", "2", "--warm-steps", "2", "--batch-size", "2", "--n-train", "4"]
    args += ["--n-test", "2", "--size", "32", "--eval-steps", "2", "--axes", '{"conditioning": ["concat"]}']
    assert ablate_synthetic.main(args) == 0
    warm = json.loads((out / "warm.json").read_text())
    assert warm["key"]["steps"] == 2 and Path(warm["final_dir"]) == out / "warm" / "final"
    rows = json.loads((out / "cond-concat" / "metrics.json").read_text())
    assert rows["config"]["base"] == warm["final_dir"]  # forked from the warm start, not the base
    assert '"prediction_type": "sample"' in (out / "base" / "scheduler" / "scheduler_config.json").read_text()

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr("maskpix_desktop.core.maskcond.train.train", no_training)
    assert ablate_synthetic.main(args) == 0  # the warm start and both runs are reused
    with pytest.raises(AssertionError, match="trained again"):
        ablate_synthetic.main([*args[:5], "3", *args[6:]])  # other warm steps: a new warm start
