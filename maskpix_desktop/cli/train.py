"""``maskpix-cli train prepare``: build a training dataset (docs/TRAINING.md).

``maskpix-cli train prepare SOURCE --out DIR``: MagicBrush folder, triplets folder / JSONL or a
Hugging Face ``datasets`` dataset -> ``DIR/dataset`` (Arrow). Heavy imports (torch, datasets) happen
inside the commands: the CLI's parser stays light.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskpix_desktop.cli.args import device_arg
from maskpix_desktop.cli.exit_codes import EXIT_ERROR, EXIT_OK


def _threshold(text: str) -> float | None:
    if text.strip().lower() == "otsu":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1) or 'otsu'") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"threshold {value} must be in (0, 1) (a fraction of 255) or 'otsu'")
    return value


#: ``core.maskcond.sources.FORMATS`` (not imported: building the parser stays light).
FORMATS = ("auto", "magicbrush", "triplets", "hf")


def _add_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="MagicBrush folder, triplets folder, saved datasets folder or hub name")
    p.add_argument("--out", type=Path, required=True, help="output folder (OUT/dataset is the dataset)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input layout (default: detected)")
    p.add_argument("--split", default="train", help="split of a Hugging Face dataset (default train)")
    p.add_argument("--size", type=int, default=512, help="square side in pixels (0: keep each item's size)")
    p.add_argument(
        "--sam",
        default="vit_h",
        help="segmenter for derived masks: a SAM / SAM 2.1 name or path (as maskpix-cli run --sam), or "
        "'none' for the cleaned change map alone",
    )
    p.add_argument("--models-dir", help="models folder (default: $MASKPIX_MODELS or the user data folder)")
    p.add_argument("--device", type=device_arg, default="auto", help="SAM's device: auto | cuda | cpu | ...")
    p.add_argument("--threshold", type=_threshold, default=0.1, help="change threshold (of 255) or 'otsu'")
    p.add_argument("--dilate", type=int, default=8, help="pixels the derived mask grows (default 8)")
    p.add_argument("--max-regions", type=int, default=8, help="SAM prompts per item (largest regions)")
    p.add_argument(
        "--min-quality",
        type=float,
        default=0.5,
        help="drop derived masks whose IoU with the change map is lower (default 0.5)",
    )
    p.add_argument("--shard-size", type=int, default=256, help="items per shard (the unit of resume)")
    p.add_argument("--limit", type=int, default=0, help="only the first N items (0: all)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT")
    p.add_argument("--cpu-threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``train`` with its ``prepare`` subcommand."""
    tr = sub.add_parser("train", help="training data for the mask-conditioned IP2P (docs/TRAINING.md)")
    tsub = tr.add_subparsers(dest="train_command", required=True, metavar="{prepare}")
    _add_prepare(tsub.add_parser("prepare", help="build the training dataset (Arrow) from edit data"))
    return tr


def cmd_prepare(args: argparse.Namespace) -> int:
    from maskpix_desktop.core.errors import MaskPixError
    from maskpix_desktop.core.maskcond import sources
    from maskpix_desktop.core.maskcond.derive_mask import DeriveConfig
    from maskpix_desktop.core.maskcond.prepare import REPORT, PrepareConfig, prepare

    sources.require_datasets()
    fmt = sources.detect(args.source) if args.format == "auto" else args.format
    seg_factory = lambda: None  # noqa: E731
    sam_name: str | None = None
    if fmt != "magicbrush" and args.sam.strip().lower() != "none":
        from maskpix_desktop.core.service import ModelChoice, ModelService

        choice = ModelChoice(models_dir=args.models_dir, sam=args.sam, device=args.device).with_manifest()
        path, _ = choice.sam_checkpoint()  # MissingWeightsError (exit 2) before any work
        sam_name = args.sam if args.sam == choice.sam else str(path)
        seg_factory = ModelService(choice).segmenter
    if args.cpu_threads > 0:
        import torch

        torch.set_num_threads(args.cpu_threads)
    for name in ("size", "dilate", "limit"):
        if getattr(args, name) < 0:
            raise MaskPixError(f"--{name} must be >= 0, got {getattr(args, name)}")
    cfg = PrepareConfig(
        source=args.source,
        out=str(args.out),
        fmt=fmt,
        split=args.split,
        size=args.size,
        min_quality=args.min_quality,
        sam=sam_name,
        derive=DeriveConfig(threshold=args.threshold, dilate_px=args.dilate, max_regions=args.max_regions),
        shard_size=args.shard_size,
        limit=args.limit,
        progress=not args.no_progress,
    )
    res = prepare(cfg, seg_factory, overwrite=args.overwrite)
    where = args.out / REPORT
    print(f"kept {res.kept}, dropped {len(res.dropped)} (reasons in {where})")
    if res.kept == 0:
        print(f"error: no item kept; see {where}", file=sys.stderr)
        return EXIT_ERROR
    print(res.dataset_dir)
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    if args.train_command == "prepare":
        return cmd_prepare(args)
    return EXIT_ERROR
