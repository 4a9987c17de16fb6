"""``maskpix-cli train``: train the mask-conditioned InstructPix2Pix, and ``train prepare``: its data
(docs/TRAINING.md).

``maskpix-cli train prepare SOURCE --out DIR``: MagicBrush folder, triplets folder / JSONL or a
Hugging Face ``datasets`` dataset -> ``DIR/dataset`` (Arrow).
``maskpix-cli train --data DIR | --synthetic N --out RUN [options]``: the accelerate training loop
(``core/maskcond/train.py``); ``RUN/final`` loads in the app with ``--ip2p RUN/final``. Runs under
``accelerate launch -m maskpix_desktop.cli train ...`` on many GPUs / nodes.
Heavy imports (torch, datasets, diffusers) happen inside the commands: the CLI's parser stays light.
"""

from __future__ import annotations

import argparse
import os
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
#: ``core.maskcond.model.TYPES`` plus "none" (the plain IP2P baseline).
CONDITIONINGS = ("concat", "attention", "both", "none")


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


def _add_train(p: argparse.ArgumentParser) -> None:
    d = TRAIN_DEFAULTS
    data = p.add_argument_group("data (one of)")
    data.add_argument("--data", type=Path, help="a prepared dataset (train prepare's OUT or OUT/dataset)")
    data.add_argument("--synthetic", type=int, metavar="N", help="N items of the synthetic shapes task")
    data.add_argument("--synthetic-size", type=int, default=64, help="synthetic image side (default 64)")
    data.add_argument("--synthetic-seed", type=int, default=1000, help="synthetic stream seed")
    p.add_argument("--out", type=Path, help="run folder: losses.csv, checkpoints/, final/")
    p.add_argument("--base", help="InstructPix2Pix diffusers folder or hub id (default: the models folder's)")
    p.add_argument("--models-dir", help="models folder (default: $MASKPIX_MODELS or the user data folder)")
    p.add_argument(
        "--conditioning",
        default=d.conditioning,
        choices=CONDITIONINGS,
        help="how the UNet takes the mask: concat (9th input channel), attention (mask tokens in "
        "cross-attention), both; none: plain IP2P (the baseline)",
    )
    p.add_argument("--attention-tokens", type=int, default=d.attention_tokens, help="mask tokens (square)")
    p.add_argument("--attention-dim", type=int, default=d.attention_dim, help="mask token width")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process and micro-batch")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--consistency-weight", type=float, default=d.consistency_weight, help="lambda")
    p.add_argument("--keep-margin", type=int, default=d.keep_margin, help="latent cells around the mask")
    p.add_argument("--p-drop", type=float, default=d.p_drop, help="IP2P conditioning dropout")
    p.add_argument("--p-mask-drop", type=float, default=d.p_mask_drop, help="mask dropout")
    p.add_argument("--jitter-px", type=int, default=d.jitter_px, help="mask dilate/erode jitter, pixels")
    p.add_argument("--jitter-shift", type=int, default=d.jitter_shift, help="mask shift jitter, pixels")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps")
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    p.add_argument("--no-calibrate-scaling", action="store_true", help="keep the VAE's scaling factor")
    p.add_argument("--mixed-precision", default=d.mixed_precision, choices=("no", "fp16", "bf16"))
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--adam-8bit", action="store_true", help="bitsandbytes AdamW8bit (CUDA only)")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="0: no EMA")
    p.add_argument(
        "--lora-rank", type=int, default=0, help="LoRA (peft) on attention + conv_in; 0: full fine-tune"
    )
    p.add_argument("--lora-alpha", type=float, default=0.0, help="LoRA alpha (0: the rank)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument("--cpu-threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="discard --out's checkpoints and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--log-with", default="", choices=("", "tensorboard"), help="tensorboard: RUN/tensorboard (optional)"
    )
    p.add_argument("--validate-every", type=int, default=0, help="validation images every N steps (0: off)")
    p.add_argument("--validation-items", type=int, default=d.validation_items, help="items sampled")


class _Defaults:
    """TrainConfig's defaults, read without importing torch (the dataclass module imports it)."""

    conditioning, steps, batch_size, grad_accum, lr, seed = "concat", 200, 8, 1, 1e-4, 0
    consistency_weight, keep_margin, p_drop, p_mask_drop = 0.5, 1, 0.05, 0.1
    jitter_px, jitter_shift, checkpoint_every, keep_checkpoints = 2, 2, 100, 2
    mixed_precision, ema_decay = "no", 0.0
    attention_tokens, attention_dim, validation_items = 16, 64, 4


TRAIN_DEFAULTS = _Defaults


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``train`` (the training options) with its optional ``prepare`` subcommand."""
    tr = sub.add_parser(
        "train",
        help="train the mask-conditioned IP2P, or 'train prepare' its data (docs/TRAINING.md)",
        description="Train the mask-conditioned InstructPix2Pix (maskpix-cli train --data DIR --out RUN), "
        "or build its dataset (maskpix-cli train prepare SOURCE --out DIR). docs/TRAINING.md.",
    )
    _add_train(tr)
    tsub = tr.add_subparsers(dest="train_command", required=False, metavar="{prepare}")
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


#: TrainConfig fields a resumed run may change (the rest must match the run's train_config.json).
RESUMABLE = (
    "steps",
    "checkpoint_every",
    "keep_checkpoints",
    "progress",
    "cpu_threads",
    "output_dir",
    "extra",
    "log_with",
    "validate_every",
    "validation_items",
)


def _base(args: argparse.Namespace) -> str:
    from maskpix_desktop.core import models
    from maskpix_desktop.core.errors import MaskPixError
    from maskpix_desktop.core.maskcond.model import is_mask_checkpoint
    from maskpix_desktop.core.service import ModelChoice

    choice = ModelChoice(models_dir=args.models_dir, ip2p=args.base).with_manifest()
    base, _ = models.resolve_ip2p(choice.ip2p, args.models_dir)  # MissingWeightsError: exit 2
    if is_mask_checkpoint(base):
        raise MaskPixError(
            f"--base {base} is a MaskPix mask checkpoint; give the plain InstructPix2Pix folder it was "
            "trained from (or --resume the run that wrote it)"
        )
    return base


def _items(args: argparse.Namespace):
    from maskpix_desktop.core.errors import MaskPixError

    if (args.data is None) == (args.synthetic is None):
        raise MaskPixError("give the training data: --data DIR (train prepare's output) or --synthetic N")
    if args.synthetic is not None:
        from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes

        if args.synthetic < 1 or args.synthetic_size < 32 or args.synthetic_size % 8:
            raise MaskPixError("--synthetic needs N >= 1 and --synthetic-size a multiple of 8, >= 32")
        return SyntheticShapes(args.synthetic, seed=args.synthetic_seed, size=args.synthetic_size)
    from maskpix_desktop.core.maskcond.prepare import PreparedItems

    return PreparedItems(args.data)


def _check_lora(rank: int) -> None:
    from maskpix_desktop.core.errors import MaskPixError

    if rank <= 0:
        return
    try:
        import peft  # noqa: F401
    except ImportError:
        raise MaskPixError("--lora-rank needs the peft package: install peft (pip install peft)") from None


def _check_resume(out: Path, cfg, resume: bool, overwrite: bool) -> bool:
    """True to resume. Checkpoints in ``out`` need --resume (same options) or --overwrite: nothing is lost
    by a forgotten flag."""
    import json
    from dataclasses import MISSING, asdict, fields

    from maskpix_desktop.core.errors import MaskPixError
    from maskpix_desktop.core.maskcond.train import checkpoints

    if overwrite:
        return False
    done = checkpoints(out)
    if not done:
        if resume:
            print(f"note: no checkpoint in {out}; starting a new run", file=sys.stderr)
        return False
    if not resume:
        raise MaskPixError(
            f"{out} holds checkpoints (newest {done[-1].name}); pass --resume to continue or --overwrite "
            "to start over"
        )
    saved_path = out / "train_config.json"
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MaskPixError(f"{saved_path}: unreadable ({exc}); cannot check the options to resume") from None
    new = json.loads(json.dumps(asdict(cfg)))
    default = json.loads(json.dumps({f.name: f.default for f in fields(cfg) if f.default is not MISSING}))
    diff = sorted(k for k in new if k not in RESUMABLE and saved.get(k, default.get(k)) != new[k])
    if diff:
        raise MaskPixError(
            f"{saved_path}: the run was started with other options ({', '.join(diff)}); resume with "
            "the same ones, or --overwrite"
        )
    return True


def cmd_fit(args: argparse.Namespace) -> int:
    from maskpix_desktop.core.errors import MaskPixError

    if args.out is None:
        raise MaskPixError("--out RUN is required (the run folder)")
    if args.resume and args.overwrite:
        raise MaskPixError("--resume and --overwrite exclude each other")
    _check_lora(args.lora_rank)
    items = _items(args)
    from maskpix_desktop.core.maskcond.train import TrainConfig, train

    cfg = TrainConfig(
        base=_base(args),
        output_dir=str(args.out),
        conditioning=args.conditioning,
        attention_tokens=args.attention_tokens,
        attention_dim=args.attention_dim,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        seed=args.seed,
        consistency_weight=args.consistency_weight,
        keep_margin=args.keep_margin,
        p_drop=args.p_drop,
        p_mask_drop=args.p_mask_drop,
        jitter_px=args.jitter_px,
        jitter_shift=args.jitter_shift,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        calibrate_scaling=not args.no_calibrate_scaling,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        adam_8bit=args.adam_8bit,
        ema_decay=args.ema_decay,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        cpu=args.cpu,
        cpu_threads=args.cpu_threads,
        progress=not args.no_progress,
        log_with=args.log_with,
        validate_every=args.validate_every,
        validation_items=args.validation_items,
        extra={"data": str(args.data) if args.data else f"synthetic:{args.synthetic}"},
    )
    for name in ("steps", "batch_size", "grad_accum", "checkpoint_every"):
        if getattr(cfg, name) < 1:
            raise MaskPixError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    resume = _check_resume(args.out, cfg, args.resume, args.overwrite)
    try:
        res = train(cfg, items, resume=resume)
    except ValueError as exc:  # options the loop refuses (8-bit Adam on CPU, a bad item)
        raise MaskPixError(str(exc)) from None
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under accelerate launch / torchrun: rank 0 reports
        return EXIT_OK
    last = res.losses[-1]["loss"] if res.losses else float("nan")
    print(f"{len(res.losses)} steps, last loss {last:.4f}; losses in {args.out / 'losses.csv'}")
    print(f"checkpoint: {res.final_dir} (load it with --ip2p {res.final_dir}; mask mode trained)")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    if args.train_command == "prepare":
        return cmd_prepare(args)
    return cmd_fit(args)
