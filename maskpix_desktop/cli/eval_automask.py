"""``maskpix-cli eval-automask DIR --out OUT``: how well the auto mask finds PIE-Bench's annotated regions.

The folder holds ``mapping_file.json`` (PIE-Bench layout: ``{key: {image_path, editing_instruction,
editing_type_id, blended_word, mask}}``, ``mask`` as flat ``(start, length)`` run pairs, row-major at
512 x 512) and the images, either beside it or under ``annotation_images/`` as in PIE-Bench itself.

Writes into OUT:

- ``automask.csv`` — one row per image: IoU, precision and recall of the proposed mask with the annotated
  one, the parse (targets, action) and whether it names ``blended_word`` (``parser_hit``), the mask's
  source and confidence, and the seconds the proposal took;
- ``automask_summary.csv`` — means per ``editing_type_id`` and over all images;
- ``masks/<key>.png`` — each proposed mask on the annotation's grid (512 x 512), the one the scores are
  computed on, so anyone can recompute them;
- ``automask_run.json`` — the parameters and models used.

Also :func:`case_auto_mask`, the ``mask = "auto"`` path of ``maskpix-cli run``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation import PIE_EDIT_TYPES, PIE_SIZE, EvalItem, read_pie

MAPPING = "mapping_file.json"
ROWS_CSV = "automask.csv"
SUMMARY_CSV = "automask_summary.csv"
RUN_JSON = "automask_run.json"
MASKS_DIR = "masks"


ROW_FIELDS = [
    "key",
    "image_path",
    "editing_type_id",
    "instruction",
    "blended_word",
    "targets",
    "action",
    "parser_hit",
    "source",
    "confidence",
    "iou",
    "precision",
    "recall",
    "pred_area",
    "gt_area",
    "seconds",
    "mask_png",
    "notes",
]
SUMMARY_FIELDS = [
    "editing_type_id",
    "editing_type",
    "n",
    "iou",
    "precision",
    "recall",
    "parser_hit",
    "seconds",
]


def _safe_key(key: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "item"


def read_pie_folder(root: str | Path) -> list[EvalItem]:
    """Items of a PIE-Bench-style folder (the eval reader); MaskPixError naming the first bad item."""
    items = read_pie(Path(root))
    for item in items:
        where = f"{MAPPING} item {item.id!r}"
        if item.problem:
            raise MaskPixError(f"{where}: {item.problem}")
        if not item.image.is_file():
            raise MaskPixError(f"{where}: image not found: {item.image}")
    return items


def scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """(IoU, precision, recall) of bool masks; an empty union scores 1, an empty prediction precision 0."""
    inter = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    p_area, g_area = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    iou = inter / union if union else 1.0
    precision = inter / p_area if p_area else (1.0 if g_area == 0 else 0.0)
    recall = inter / g_area if g_area else 1.0
    return iou, precision, recall


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6f}"
    return str(v)


def _csv(fields: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _fmt(row.get(k)) for k in fields})
    return buf.getvalue()


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per editing type means (IoU, precision, recall, parser hit rate, seconds) plus an "all" row."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r["editing_type_id"]), []).append(r)
    order = sorted(groups, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    out = []
    for key, group in [*((k, groups[k]) for k in order), ("all", rows)]:
        hits = [float(r["parser_hit"]) for r in group if r["parser_hit"] is not None]
        out.append(
            {
                "editing_type_id": key,
                "editing_type": "all" if key == "all" else PIE_EDIT_TYPES.get(key, ""),
                "n": len(group),
                "iou": _mean([r["iou"] for r in group]),
                "precision": _mean([r["precision"] for r in group]),
                "recall": _mean([r["recall"] for r in group]),
                "parser_hit": _mean(hits) if hits else float("nan"),
                "seconds": _mean([r["seconds"] for r in group]),
            }
        )
    return out


# ----------------------------------------------------------------------------------------- parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval-automask",
        help="score the auto mask against PIE-Bench's annotated masks",
        description="Propose a mask from each instruction of a PIE-Bench-style folder (relevance map + text "
        "grounding + SAM) and score it against the annotated mask: a CSV per image, a summary per "
        "editing type, and the proposed masks as PNGs.",
    )
    p.add_argument("dataset", type=Path, help="folder with mapping_file.json and the images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run")
    p.add_argument("--limit", type=int, default=None, help="only the first N items (in key order)")
    p.add_argument("--tau", type=float, default=0.5, help="relevance threshold (default 0.5)")
    p.add_argument("--draws", type=int, default=None, help="noise draws K (default 1 on CPU, 4 on CUDA)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--long-side", type=int, default=512, help="relevance working size (default 512)")
    p.add_argument("--box-threshold", type=float, default=0.3, help="GroundingDINO box threshold")
    p.add_argument("--text-threshold", type=float, default=0.25, help="GroundingDINO text threshold")
    p.add_argument("--no-grounding", action="store_true", help="relevance map and SAM only")
    p.add_argument("--no-relevance", action="store_true", help="grounding and SAM only (no UNet)")
    p.add_argument("--grounding", default=None, help="GroundingDINO folder or cached Hugging Face id")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from maskpix_desktop.cli.args import add_model_args

    add_model_args(p)
    return p


# ------------------------------------------------------------------------------------------- run


def cmd_eval_automask(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from maskpix_desktop.core import images, masks
    from maskpix_desktop.core.automask import AutoMasker, AutoMaskParams, parse_instruction, parser_hit
    from maskpix_desktop.core.errors import MissingWeightsError
    from maskpix_desktop.core.service import ModelChoice, ModelService

    dataset_root = Path(args.dataset)
    items = read_pie_folder(dataset_root)
    if args.limit is not None:
        items = items[: max(0, args.limit)]
    out: Path = args.out
    if not args.overwrite and any((out / n).exists() for n in (ROWS_CSV, SUMMARY_CSV)):
        raise MaskPixError(f"{out} already holds automask results; use --overwrite")
    params = AutoMaskParams(
        tau=args.tau,
        draws=args.draws,
        seed=args.seed,
        long_side=args.long_side,
        box_threshold=args.box_threshold,
        text_threshold=args.text_threshold,
        use_grounding=not args.no_grounding,
        use_relevance=not args.no_relevance,
    )
    choice = ModelChoice(
        models_dir=args.models_dir,
        sam=args.sam,
        ip2p=args.ip2p,
        grounding=args.grounding,
        device=args.device,
        precision=args.precision,
    )
    service = ModelService(choice)
    service.check(sam=True, ip2p=not args.no_relevance)
    detector = None
    if not args.no_grounding:
        try:
            detector = service.grounding()
        except MissingWeightsError as exc:
            print(f"note: text grounding skipped: {exc}", file=sys.stderr)
    masker = AutoMasker(
        editor=None if args.no_relevance else service.editor(),
        segmenter=service.segmenter(),
        detector=detector,
    )
    (out / MASKS_DIR).mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    names: set[str] = set()
    for item in tqdm(items, desc="auto mask", unit="image", disable=args.no_progress, dynamic_ncols=True):
        image = images.load_image(item.image)
        gt = masks.pie_rle_decode(list(item.mask_rle or ()), PIE_SIZE)
        t0 = time.perf_counter()
        result = masker.run(image, item.instruction, params)
        seconds = time.perf_counter() - t0
        pred = masks.resize_mask(result.mask, PIE_SIZE) if result.mask.shape != PIE_SIZE else result.mask
        iou, precision, recall = scores(pred, gt)
        name = _safe_key(item.id)
        while name.lower() in names:
            name += "_"
        names.add(name.lower())
        png = f"{MASKS_DIR}/{name}.png"
        images.save_image(out / png, (pred.astype(np.uint8) * 255))
        parsed = result.parsed
        rows.append(
            {
                "key": item.id,
                "image_path": item.image.relative_to(dataset_root).as_posix()
                if item.image.is_relative_to(dataset_root)
                else str(item.image),
                "editing_type_id": item.edit_type,
                "instruction": item.instruction,
                "blended_word": item.blended_word,
                "targets": "; ".join(parsed.targets),
                "action": parsed.action,
                "parser_hit": parser_hit(parse_instruction(item.instruction), item.blended_word),
                "source": result.source,
                "confidence": result.confidence,
                "iou": iou,
                "precision": precision,
                "recall": recall,
                "pred_area": int(np.count_nonzero(pred)),
                "gt_area": int(np.count_nonzero(gt)),
                "seconds": seconds,
                "mask_png": png,
                "notes": " | ".join(result.notes),
            }
        )
    summary = summarise(rows)
    images.atomic_write_text(out / ROWS_CSV, _csv(ROW_FIELDS, rows))
    images.atomic_write_text(out / SUMMARY_CSV, _csv(SUMMARY_FIELDS, summary))
    record = {
        "dataset": str(Path(args.dataset).resolve()),
        "items": len(rows),
        "params": asdict(params),
        "models": service.model_info(),
        "grounding": detector.model_id if detector is not None else None,
        "mask_grid": list(PIE_SIZE),
    }
    images.atomic_write_text(out / RUN_JSON, json.dumps(record, indent=2, default=str) + "\n")
    overall = summary[-1]
    print(
        f"auto mask on {len(rows)} image(s): mean IoU {_fmt(overall['iou'])}, precision "
        f"{_fmt(overall['precision'])}, recall {_fmt(overall['recall'])}; wrote {out / ROWS_CSV}"
    )
    return 0
