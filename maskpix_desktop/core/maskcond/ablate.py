"""Ablation grid on the synthetic task: train every setting from the same base on the same data and
steps, score each on the same held-out items (latent metrics of :mod:`.proof`), write one table.

A setting is a dict of :class:`~.train.TrainConfig` overrides. The default axes: conditioning
(concat | attention | both), mask dropout (on at 0.1 | off), LoRA (rank 4 | full fine-tune), plus the
plain IP2P UNet (``conditioning="none"``) as the baseline every row is compared with. Outputs in the grid
folder: ``ablation.csv``, ``ablation.md``, ``ablation.png`` (when matplotlib is there) and per run
``<name>/metrics.json``; a run whose ``metrics.json`` exists with the same settings is reused (resume).
The tables and the plot are written through the evaluation's report path
(:mod:`maskpix_desktop.core.evaluation.report`, :mod:`maskpix_desktop.core.evaluation.plots`).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from maskpix_desktop.core.evaluation import plots, report
from maskpix_desktop.core.maskcond.proof import EvalConfig, train_and_score

DEFAULT_AXES: dict[str, list[Any]] = {
    "conditioning": ["concat", "attention", "both"],
    "p_mask_drop": [0.1, 0.0],
    "lora_rank": [0, 4],
}
BASELINE = {"conditioning": "none", "p_mask_drop": 0.0, "lora_rank": 0}
METRICS = ("outside_change", "inside_psnr", "change_miou", "final_loss", "train_s")
SHORT = {"conditioning": "cond", "p_mask_drop": "mdrop", "lora_rank": "lora", "consistency_weight": "lam"}


def grid(axes: dict[str, list[Any]] | None = None, baseline: bool = True) -> list[dict[str, Any]]:
    """Every combination of ``axes`` (the plain baseline first when ``baseline``), in a fixed order."""
    axes = DEFAULT_AXES if axes is None else axes
    names = list(axes)
    settings = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]
    if baseline:
        base = {k: v for k, v in BASELINE.items() if k in names or k == "conditioning"}
        settings.insert(0, base)
    return settings


def run_name(setting: dict[str, Any]) -> str:
    """A folder-safe name: ``cond-concat_mdrop-0.1_lora-0``."""
    return "_".join(f"{SHORT.get(k, k)}-{v}" for k, v in setting.items())


def run_grid(
    cfg: Any, train_items: Any, test_items: Any, settings: list[dict[str, Any]], ev: EvalConfig = EvalConfig()
) -> list[dict[str, Any]]:
    """Train and score every setting under ``cfg.output_dir``; return one row per setting."""
    root = Path(cfg.output_dir)
    rows = []
    for setting in settings:
        run = replace(cfg, output_dir=str(root / run_name(setting)), **setting)
        cached = Path(run.output_dir) / "metrics.json"
        if cached.is_file():
            row = json.loads(cached.read_text(encoding="utf-8"))
            if row.get("config") == json.loads(json.dumps(asdict(run))):
                rows.append(row)
                continue
        row = {
            "name": run_name(setting),
            "setting": setting,
            **train_and_score(run, train_items, test_items, ev),
            "config": json.loads(json.dumps(asdict(run))),
        }
        cached.write_text(json.dumps(row, indent=1), encoding="utf-8")
        rows.append(row)
    _vs_baseline(rows)
    return rows


def _vs_baseline(rows: list[dict[str, Any]]) -> None:
    """``outside_reduction`` (1 - outside / baseline's) and ``psnr_gain`` for every row, in place."""
    base = next((r for r in rows if r["setting"].get("conditioning") == "none"), None)
    for r in rows:
        if base is None:
            r["outside_reduction"] = r["psnr_gain"] = math.nan
            continue
        r["outside_reduction"] = 1.0 - r["outside_change"] / max(base["outside_change"], 1e-12)
        r["psnr_gain"] = r["inside_psnr"] - base["inside_psnr"]


def _axes(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [k for k in r["setting"] if k not in names]
    return names


#: the CSV's columns after the name and the axes
CSV_COLUMNS = (*METRICS, "outside_reduction", "psnr_gain", "outside_floor", "n_items")
#: the Markdown table's columns after the axes
MD_COLUMNS = ("outside change ↓", "vs plain", "inside PSNR dB", "vs plain", "mIoU", "loss", "train s")
#: the plot's panels: (row key, title)
PLOT_PANELS = (("outside_change", "outside change ↓"), ("inside_psnr", "inside PSNR ↑"))


def csv_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """``(header, rows)`` of the CSV: the name, the axes, then every metric (a missing one blank)."""
    axes = _axes(rows)
    body = [
        [r["name"], *(r["setting"].get(a, "") for a in axes), *(r.get(c, "") for c in CSV_COLUMNS)]
        for r in rows
    ]
    return ["name", *axes, *CSV_COLUMNS], body


def markdown_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the Markdown table (the baseline's row says "baseline" in the comparisons)."""
    axes = _axes(rows)
    body = []
    for r in rows:
        plain = r["setting"].get("conditioning") == "none"
        body.append(
            [str(r["setting"].get(a, "")) for a in axes]
            + [
                f"{r['outside_change']:.4f}",
                "baseline" if plain else f"{-100 * r['outside_reduction']:+.1f}%",
                f"{r['inside_psnr']:.2f}",
                "baseline" if plain else f"{r['psnr_gain']:+.2f}",
                f"{r['change_miou']:.3f}",
                f"{r['final_loss']:.4f}",
                f"{r['train_s']:.0f}",
            ]
        )
    return [*axes, *MD_COLUMNS], body


def to_csv(rows: list[dict[str, Any]]) -> str:
    """One line per setting: the axes, then every metric (floats as ``repr``: exact)."""
    return report.table_csv(*csv_table(rows))


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The grid as a Markdown table (the baseline's row says "baseline" in the comparison columns)."""
    return "\n".join(report.markdown_table(*markdown_cells(rows)))


def write_report(rows: list[dict[str, Any]], folder: Path) -> dict[str, Path]:
    """``ablation.csv``, ``ablation.md`` and (with matplotlib) ``ablation.png`` in ``folder``, through the
    evaluation's report and plot modules (:func:`~maskpix_desktop.core.evaluation.report.write_table`,
    :func:`~maskpix_desktop.core.evaluation.plots.plot_bars`: outside change and inside PSNR per setting)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "csv": report.write_table(folder / "ablation.csv", *csv_table(rows)),
        "md": report.write_table(folder / "ablation.md", *markdown_cells(rows)),
    }
    panels = [(title, [r[key] for r in rows]) for key, title in PLOT_PANELS]
    try:
        plots.plot_bars(folder / "ablation.png", [r["name"] for r in rows], panels)
    except ImportError:  # matplotlib is optional: the tables are the result
        return out
    out["png"] = folder / "ablation.png"
    return out
