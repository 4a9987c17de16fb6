"""Reports: merged rows -> results.jsonl/.csv, summary.json/.md (means, per edit type, throughput,
errors), the plot and the grid; :func:`load_results` reads a finished evaluation back.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import maskpix_desktop.core.evaluation.plots as plots
from maskpix_desktop.core import images, metric_catalog
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation.datasets import (
    MODE_LABELS,
    MODES,
    MULTI_TURN,
    PIE_EDIT_TYPES,
    magicbrush_caption_source,
)
from maskpix_desktop.core.evaluation.scoring import BACKGROUND_KEYS, MB_KEYS, PIE_KEYS, SSIM_KEYS, WHOLE_MASK
from maskpix_desktop.core.evaluation.store import (
    GRID_PNG,
    ITEMS_DIR,
    PLOT_PNG,
    RESULTS_CSV,
    RESULTS_JSONL,
    SUMMARY_JSON,
    SUMMARY_MD,
    read_rows,
    row_to_json,
)
from maskpix_desktop.core.export import json_safe
from maskpix_desktop.core.metric_catalog import MetricSpec

log = logging.getLogger(__name__)


def merge_rows(
    rows: Iterable[dict[str, Any]], item_ids: Sequence[str], modes: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (item, mode) of the selection, in dataset then mode order; an ok row beats an error
    row, then the later one wins."""
    order = {item: i for i, item in enumerate(item_ids)}
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["item"], row["mode"])
        if row["item"] not in order or row["mode"] not in modes:
            continue
        old = best.get(key)
        rank = (row.get("status") == "ok", float(row.get("finished_at") or 0.0))
        if old is None or rank >= (old.get("status") == "ok", float(old.get("finished_at") or 0.0)):
            best[key] = row
    return sorted(best.values(), key=lambda r: (order[r["item"]], MODES.index(r["mode"])))


# ============================================================================================ report


def _stats(values: list[float | None], excluded: int = 0) -> dict[str, Any]:
    """Mean, median and counts; ``n_excluded`` of the missing values are items left out on purpose
    (a whole-image mask), the rest of ``n_missing`` could not be computed."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    finite = [v for v in present if math.isfinite(v)]
    n_inf = len(present) - len(finite)
    if not present:
        mean = None
    elif n_inf:
        mean = math.fsum(present)  # +inf or -inf (or nan when both occur)
    else:
        mean = math.fsum(finite) / len(finite)
    return {
        "mean": mean,
        "mean_finite": math.fsum(finite) / len(finite) if finite else None,
        "median": float(np.median(present)) if present else None,
        "n": len(present),
        "n_inf": n_inf,
        "n_missing": len(values) - len(present),
        "n_excluded": excluded,
    }


def _aggregate(rows: list[dict[str, Any]], keys: Sequence[str], modes: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in modes:
        mrows = [r for r in rows if r["mode"] == mode and r.get("status") == "ok"]
        if not mrows:
            continue
        entry: dict[str, Any] = {"items": len(mrows)}
        for key in keys:
            whole = sum(1 for r in mrows if (r.get("missing") or {}).get(key) == WHOLE_MASK)
            st = _stats([r["metrics"].get(key) for r in mrows], whole)
            reasons = sorted({r.get("missing", {}).get(key) for r in mrows} - {None})
            if reasons:
                st["missing_reason"] = "; ".join(reasons)
            entry[key] = st
        out[mode] = entry
    return out


def _cell(stat: dict[str, Any] | None, spec: MetricSpec) -> str:
    if stat is None:
        return "—"
    if stat["n"] == 0:
        if stat.get("n_excluded") and stat["n_excluded"] == stat["n_missing"]:
            return "NaN"  # every item has a whole-image mask (PIE-Bench: NaN)
        return "missing" if stat.get("missing_reason") else "—"
    mean = stat["mean"]
    if math.isinf(mean):
        return "∞" if mean > 0 else "−∞"
    text = f"{mean * spec.scale:.{spec.digits}f}"
    return text + "*" if stat["n_missing"] else text


def _table(
    agg: dict[str, Any], keys: Sequence[str], modes: Sequence[str], first: str = "Method"
) -> list[str]:
    specs = metric_catalog.specs(keys)
    body = [
        [MODE_LABELS[mode], str(agg[mode]["items"]), *(_cell(agg[mode].get(s.key), s) for s in specs)]
        for mode in modes
        if mode in agg
    ]
    return markdown_table([first, "n", *(s.header for s in specs)], body)


# ============================================================================================ tables


def _fmt_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # numpy floats too: written as the Python float they equal
        value = float(value)
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def table_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV table (newline line ends): floats as ``repr`` (exact; ``inf`` / ``nan`` as text), None blank."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_fmt_csv(v) for v in row] for row in rows)
    return buf.getvalue()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: the header, the ``|---|`` rule, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def write_table(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a table atomically, as CSV (:func:`table_csv`) or, for a ``.md`` path, Markdown
    (:func:`markdown_table`, newline-terminated); returns ``path``."""
    path = Path(path)
    if path.suffix.lower() == ".md":
        text = "\n".join(markdown_table(header, rows)) + "\n"
    else:
        text = table_csv(header, rows)
    images.atomic_write_text(path, text)
    return path


def _present_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The catalogue's evaluation metrics that some row has, in the paper's order."""
    return [k for k in metric_catalog.EVAL_KEYS if any(k in (r.get("metrics") or {}) for r in rows)]


def results_csv(rows: list[dict[str, Any]]) -> str:
    keys = _present_keys(rows)
    header = ["item", "mode", "status", "edit_type", *keys, "missing", "error", "output", "instruction"]
    body = [
        [
            r["item"],
            r["mode"],
            r.get("status", ""),
            r.get("edit_type", ""),
            *(r.get("metrics", {}).get(k) for k in keys),
            "; ".join(f"{k}: {v}" for k, v in sorted((r.get("missing") or {}).items())),
            r.get("error") or "",
            (r.get("files") or {}).get("output", ""),
            r.get("instruction", ""),
        ]
        for r in rows
    ]
    return table_csv(header, body)


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` in the JSONL row shape (metrics as floats, blank -> None)."""
    known = set(metric_catalog.EVAL_KEYS) | set(metric_catalog.LEGACY_EVAL_KEYS)
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            vals = {k: (float(v) if v != "" else None) for k, v in rec.items() if k in known}
            vals = metric_catalog.upgrade_eval_metrics(vals)  # older column names read as now
            output = rec.get("output", "")
            rows.append(
                {
                    "item": rec["item"],
                    "mode": rec["mode"],
                    "status": rec.get("status", "ok"),
                    "edit_type": rec.get("edit_type", ""),
                    "metrics": vals,
                    "error": rec.get("error") or None,
                    "instruction": rec.get("instruction", ""),
                    "files": {"output": output} if output else {},
                }
            )
    return rows


def load_results(path: str | Path) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """``(folder, rows, summary)`` of a finished evaluation; ``path`` is its folder or a file in it.

    Rows come from ``results.jsonl`` (full precision, file paths) or else ``results.csv``; the summary
    from ``summary.json`` (empty when absent). :class:`MaskPixError` when the folder holds neither.
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if (folder / RESULTS_JSONL).is_file():
        rows = read_rows(folder / RESULTS_JSONL)
    elif (folder / RESULTS_CSV).is_file():
        try:
            rows = read_results_csv(folder / RESULTS_CSV)
        except (OSError, ValueError, KeyError) as exc:
            raise MaskPixError(f"cannot read {folder / RESULTS_CSV}: {exc}") from exc
    else:
        raise MaskPixError(f"{folder} holds no evaluation results ({RESULTS_JSONL} or {RESULTS_CSV})")
    summary: dict[str, Any] = {}
    if (folder / SUMMARY_JSON).is_file():
        try:
            summary = json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s is unreadable; showing the rows only", folder / SUMMARY_JSON)
    return folder, rows, summary


def definitions(
    keys: Sequence[str], variant: str, models: dict[str, Any], clip_t_caption: str | None = None
) -> dict[str, Any]:
    """Which definition each reported metric used (written into summary.json and summary.md).
    ``clip_t_caption``: where a MagicBrush run's CLIP-T captions came from
    (:func:`~maskpix_desktop.core.evaluation.datasets.magicbrush_caption_source`)."""
    return {
        "metrics": {k: metric_catalog.spec(k).summary for k in keys},
        "ssim_layout": f"{variant}: "
        + (
            "the SSIM map averaged without its 5-pixel border (torchmetrics <= 1.4, as PIE-Bench's code "
            "ran); pie_ssim_full in the rows has the whole-map mean (torchmetrics >= 1.5)"
            if variant == "border-cut"
            else "the whole SSIM map averaged (torchmetrics >= 1.5); pie_ssim in the rows has the "
            "border-cut mean (torchmetrics <= 1.4, as PIE-Bench's code ran)"
        ),
        "clip_edited": "clip_edited_pie is PIE-Bench's (full frame times its mask, outside black); "
        "clip_edited_crop is MaskPix's padded, mean-filled box crop (older results: clip_score_region)",
        "clip_model": models.get("clip"),
        "dino_model": models.get("dino"),
        **({"clip_t_caption": clip_t_caption} if clip_t_caption else {}),
    }


def _definitions_md(defs: dict[str, Any]) -> list[str]:
    md = ["", "## Definitions", ""]
    for key, text in defs["metrics"].items():
        md.append(f"- **{metric_catalog.spec(key).name}** (`{key}`): {text}.")
    md.append(f"- SSIM layout {defs['ssim_layout']} (`--ssim-variant`).")
    md.append(f"- CLIP edited: {defs['clip_edited']}.")
    if defs.get("clip_t_caption"):
        md.append(f"- CLIP-T caption (also the CLIP score's text): {defs['clip_t_caption']}.")
    if defs.get("dino_model"):
        md.append(f"- DINO model: `{defs['dino_model']}`.")
    return md


def _retrieval_md(ret: dict[str, Any]) -> list[str]:
    md = ["", "## Instruction retrieval", ""]
    if ret.get("missing"):
        return md + [f"missing: {ret['missing']}"]
    md.append(f"Definition: {ret.get('definition', '')}")
    md += [
        "",
        "| Method | n | Candidates | CLIP top-1 ↑ | CLIP top-5 ↑ | Direction top-1 ↑ | Direction top-5 ↑ |",
        "|---|---|---|---|---|---|---|",
    ]

    def pct(d: dict[str, float] | None, k: str) -> str:
        return "—" if not d else f"{100.0 * d[k]:.1f}%"

    for mode, e in ret.get("modes", {}).items():
        cells = [MODE_LABELS.get(mode, mode), str(e["n"]), str(e["candidates"])]
        cells += [pct(e["clip"], "top1"), pct(e["clip"], "top5")]
        cells += [pct(e["directional"], "top1"), pct(e["directional"], "top5")]
        md.append("| " + " | ".join(cells) + " |")
    md += ["", "Chance level: top-k = k / candidates."]
    return md


def _caption_source(meta: dict[str, Any], fmt: str) -> str | None:
    """MagicBrush only: ``meta["clip_t_caption"]`` if given, else read off the dataset folder in ``meta``."""
    if fmt != "magicbrush":
        return None
    if meta.get("clip_t_caption"):
        return str(meta["clip_t_caption"])
    dataset = meta.get("dataset")
    return magicbrush_caption_source(dataset) if dataset and Path(dataset).is_dir() else None


def _mode_settings(cfg: dict[str, Any], modes: Sequence[str]) -> str:
    """The settings of the evaluated modes only (a report without the latent mode never names it)."""
    text = f", latent dilate {cfg.get('latent_dilate', 8)}" if "latent" in modes else ""
    return text + (f", crop padding {cfg.get('crop_pad', 0.15)}" if "crop" in modes else "")


def write_report(
    out_dir: Path,
    rows: list[dict[str, Any]],
    *,
    modes: Sequence[str],
    meta: dict[str, Any],
    throughput: dict[str, Any] | None = None,
    grid_items: int = 4,
    retrieval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write results.jsonl/.csv, summary.json/.md, the distribution plot and the grid; returns the summary.

    ``meta["ssim_variant"]`` picks the table's SSIM column (``border-cut``, default, or ``full-map``);
    ``retrieval`` is :func:`retrieval.retrieval_summary`'s result (a table when present).
    """
    out_dir = Path(out_dir)
    fmt = meta.get("format", "pie")
    variant = meta.get("ssim_variant") or "border-cut"
    if variant not in SSIM_KEYS:
        raise MaskPixError(f"unknown SSIM variant {variant!r}; use {' or '.join(SSIM_KEYS)}")
    ssim_key = SSIM_KEYS[variant]
    keys = [ssim_key if k == "pie_ssim" else k for k in (MB_KEYS if fmt == "magicbrush" else PIE_KEYS)]
    all_keys = _present_keys(rows)
    images.atomic_write_text(out_dir / RESULTS_JSONL, "".join(row_to_json(r) + "\n" for r in rows))
    images.atomic_write_text(out_dir / RESULTS_CSV, results_csv(rows))
    ok = [r for r in rows if r.get("status") == "ok"]
    errors = [r for r in rows if r.get("status") != "ok"]
    edit_types = sorted({r.get("edit_type", "") for r in ok}, key=lambda t: (len(t), t))
    whole = sorted({r["item"] for r in ok if (r.get("missing") or {}).get("pie_psnr") == WHOLE_MASK})
    summary: dict[str, Any] = {
        **meta,
        "modes": list(modes),
        "items": len({r["item"] for r in rows}),
        "items_ok": len({r["item"] for r in ok}),
        "rows": len(rows),
        "errors": [{"item": r["item"], "mode": r["mode"], "error": r.get("error")} for r in errors],
        "metrics": {
            k: {"description": metric_catalog.spec(k).summary, "direction": metric_catalog.direction(k)}
            for k in all_keys
        },
        "overall": _aggregate([r for r in rows if r.get("edit_type") != MULTI_TURN], all_keys, modes),
        "multi_turn": _aggregate([r for r in rows if r.get("edit_type") == MULTI_TURN], all_keys, modes),
        "excluded_whole_mask": {
            "count": len(whole),
            "items": whole,
            "metrics": list(BACKGROUND_KEYS),
            "reason": WHOLE_MASK,
        },
        "by_edit_type": {
            t: _aggregate([r for r in ok if r.get("edit_type", "") == t], all_keys, modes) for t in edit_types
        },
        "throughput": throughput or {},
        "definitions": definitions(keys, variant, meta.get("models", {}), _caption_source(meta, fmt)),
        "retrieval": retrieval or {},
    }
    images.atomic_write_text(out_dir / SUMMARY_JSON, json.dumps(json_safe(summary), indent=2, sort_keys=True))

    plot_ok = bool(ok)
    if plot_ok:
        plots.plot_distributions(rows, modes, out_dir / PLOT_PNG)
    grid = plots.make_grid(out_dir, rows, modes, grid_items) if grid_items > 0 else None
    if grid is not None:
        images.save_image(out_dir / GRID_PNG, grid)

    md = [f"# MaskPix evaluation: {meta.get('dataset_name', '')}", ""]
    cfg = meta.get("config", {})
    md.append(
        f"Dataset `{meta.get('dataset_name', '')}` ({fmt}), {summary['items']} items "
        f"({summary['items_ok']} evaluated, {len({r['item'] for r in errors})} with errors). "
        f"Steps {cfg.get('steps')}, text scale {cfg.get('text_scale')}, "
        f"image scale {cfg.get('image_scale')}, "
        f"seed {cfg.get('seed')} (every item), working size {cfg.get('long_side')}, "
        f"dilate {cfg.get('dilate')}, feather {cfg.get('feather')}, seam {cfg.get('seam', 'none')}"
        + _mode_settings(cfg, modes)
        + (f", negative prompt “{cfg['negative_prompt']}”." if cfg.get("negative_prompt") else ".")
    )
    models = meta.get("models", {})
    md.append("")
    md.append(
        f"Models: IP2P `{Path(str(models.get('ip2p', '?'))).name}`; CLIP `{models.get('clip') or 'missing'}`"
        + (f" ({models['clip_missing']})" if models.get("clip_missing") else "")
        + f"; LPIPS `{models.get('lpips') or 'missing'}`"
        + (f" ({models['lpips_missing']})" if models.get("lpips_missing") else "")
        + (f"; DINO `{models.get('dino') or 'missing'}`" if "dino" in models else "")
        + (f" ({models['dino_missing']})" if models.get("dino_missing") else "")
        + "."
    )
    if fmt == "pie":
        border = "with" if cfg.get("pie_border") else "without"
        md.append(
            f"Background metrics on both images × (1 − M), M decoded {border} PIE-Bench's border marking."
        )
    if summary["overall"] or not summary["multi_turn"]:
        single = (
            " (single-turn: every turn edited from its ground-truth input)" if fmt == "magicbrush" else ""
        )
        md += ["", f"## Mean over items{single}", ""]
        md += _table(summary["overall"], keys, modes)
    if summary["multi_turn"]:
        md += [
            "",
            "## Multi-turn (each session edited turn after turn; the final output vs the final target)",
            "",
        ]
        md += _table(summary["multi_turn"], keys, modes)
    md += [
        "",
        "∞: at least one item's background is identical to the original (infinite PSNR). "
        "`*`: mean over the items where the metric exists. `missing`: no item has it (see models).",
    ]
    if whole:
        md += [
            "",
            f"Excluded: {len(whole)} item(s) whose mask covers the whole image have no unedited part; their "
            "PSNR, LPIPS, MSE, SSIM and leakage are NaN (as in PIE-Bench's evaluation) and left out of "
            f"those means: {', '.join(f'`{i}`' for i in whole[:20])}"
            + (" …" if len(whole) > 20 else "")
            + ".",
        ]
    md += _definitions_md(summary["definitions"])
    if retrieval:
        md += _retrieval_md(retrieval)
    if summary["by_edit_type"]:
        md += ["", "## Per edit type", ""]
        specs = metric_catalog.specs(keys)
        md.append("| " + " | ".join(["Edit type", "Method", "n", *(s.header for s in specs)]) + " |")
        md.append("|" + "---|" * (len(specs) + 3))
        for t in edit_types:
            agg = summary["by_edit_type"][t]
            name = f"{t} {PIE_EDIT_TYPES[t]}" if fmt == "pie" and t in PIE_EDIT_TYPES else t
            for mode in modes:
                if mode in agg:
                    cells = [
                        name,
                        MODE_LABELS[mode],
                        str(agg[mode]["items"]),
                        *(_cell(agg[mode].get(s.key), s) for s in specs),
                    ]
                    md.append("| " + " | ".join(cells) + " |")
    if throughput:
        md += ["", "## Throughput", ""]
        md.append(
            f"{throughput.get('processes', 1)} process(es), {throughput.get('items', 0)} items in "
            f"{throughput.get('wall_s', 0):.1f} s: {throughput.get('items_per_s', 0):.3f} items/s overall."
        )
        md += ["", "| Process | Device | Items | Seconds | Items/s |", "|---|---|---|---|---|"]
        for p in throughput.get("per_process", []):
            md.append(
                f"| {p['rank']} | {p.get('device', '')} | {p['items']} | {p['seconds']:.1f} | "
                f"{p['items_per_s']:.3f} |"
            )
    if errors:
        md += ["", f"## Errors ({len(errors)} rows)", ""]
        seen = set()
        for r in errors:
            if r["item"] not in seen:
                seen.add(r["item"])
                md.append(f"- `{r['item']}`: {r.get('error')}")
    md += [
        "",
        "## Files",
        "",
        f"`{RESULTS_CSV}`, `{RESULTS_JSONL}` (one row per item and mode), "
        f"`{SUMMARY_JSON}`"
        + (f", `{PLOT_PNG}`" if plot_ok else "")
        + (f", `{GRID_PNG}`" if grid is not None else "")
        + f", `{ITEMS_DIR}/<item>/` (original, mask, each output).",
    ]
    images.atomic_write_text(out_dir / SUMMARY_MD, "\n".join(md) + "\n")
    return summary
