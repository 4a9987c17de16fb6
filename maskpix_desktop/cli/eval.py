"""``maskpix-cli eval``: every mask mode against the IP2P baseline over a dataset folder.

One process::

    maskpix-cli eval PIE-Bench/data --out runs/pie --steps 20

Several (GPUs, processes or nodes; each process takes a slice of the items, rank 0 merges)::

    accelerate launch --num_processes 4 -m maskpix_desktop.cli eval PIE-Bench/data --out runs/pie
    torchrun --nproc_per_node 2 -m maskpix_desktop.cli eval PIE-Bench/data --out runs/pie --device cpu

The parser is built without importing torch or accelerate (the CLI must start fast); the work lives
in :mod:`maskpix_desktop.core.evaluation`. See docs/EVALUATION.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskpix_desktop.cli.args import add_model_args
from maskpix_desktop.core.blend import SEAM_MODES
from maskpix_desktop.core.evaluation import DEFAULT_MODES, MODES, EvalConfig

#: The defaults of the edit options: the evaluation's own (seed 1234, otherwise the editor's).
DEFAULT = EvalConfig().params


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"modes must be a comma list of {', '.join(MODES)}")
    return modes


def _count(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
        return value

    return parse


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value <= 7 * 24 * 60):  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a number of minutes in (0, 10080], not {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="evaluate every mask mode against the baseline over a PIE-Bench or MagicBrush folder",
        description="Run the IP2P baseline and each mask mode on every item of a dataset folder and write "
        "PIE-Bench / MagicBrush metrics, a summary table, plots and a grid. Resumable: a rerun into the "
        "same --out skips finished (item, mode) pairs. Under torchrun / accelerate launch the items are "
        "sharded over the processes.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder (mapping_file.json, or edit_sessions.json)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; reused to resume)")
    p.add_argument("--format", dest="fmt", default="auto", choices=("auto", "pie", "magicbrush"))
    p.add_argument(
        "--modes",
        type=_modes,
        default=DEFAULT_MODES,
        help=f"comma list of {', '.join(MODES)} (default: {','.join(DEFAULT_MODES)}; 'trained' needs "
        "--ip2p a mask checkpoint, docs/TRAINING.md)",
    )
    p.add_argument("--limit", type=_count(0), default=None, help="only the first N items (in id order)")
    _add_edit_args(p)
    p.add_argument(
        "--pie-border",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode PIE masks as PIE-Bench's evaluation does, with the image border marked as edited, so "
        "the border is left out of the background metrics (default on; the editor always gets the "
        "annotated mask)",
    )
    p.add_argument("--no-clip", action="store_true", help="skip CLIP metrics (reported as missing)")
    p.add_argument(
        "--ssim-variant",
        default="border-cut",
        choices=("border-cut", "full-map"),
        help="the summary's SSIM: border-cut = torchmetrics <= 1.4 (PIE-Bench's code; default), full-map = "
        "torchmetrics >= 1.5 (every row has both: pie_ssim, pie_ssim_full)",
    )
    p.add_argument(
        "--no-dino",
        action="store_true",
        help="skip the DINO metrics (PIE-Bench structure distance: dino_vitb8; MagicBrush DINO: dino_vits16)",
    )
    p.add_argument("--no-retrieval", action="store_true", help="skip the instruction retrieval accuracy")
    p.add_argument(
        "--magicbrush-setting",
        default="single",
        choices=("single", "multi", "both"),
        help="MagicBrush: single = every turn from its ground-truth input (default), multi = each session "
        "edited turn after turn from the model's own outputs, scored on the final turn; both",
    )
    p.add_argument("--lpips-net", default="squeeze", choices=("squeeze", "alex", "vgg"))
    p.add_argument("--no-images", action="store_true", help="do not save per-item images (no grid)")
    p.add_argument("--grid-items", type=_count(0), default=4, help="items in grid.png (default 4)")
    p.add_argument("--retry-errors", action="store_true", help="rerun (item, mode) pairs that failed")
    p.add_argument("--threads", type=_count(1), default=None, help="torch CPU threads per process")
    p.add_argument(
        "--dist-timeout", type=_minutes, default=720.0, help="minutes a process waits for the others (720)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p, sam=False, device_note=" (under torchrun: each rank's own)")
    return p


def _add_edit_args(p: argparse.ArgumentParser) -> None:
    """One option per ``EditParams`` field but the instruction (each item's) and the mask mode (--modes)."""
    d = DEFAULT
    p.add_argument("--steps", type=int, default=d.steps, help=f"denoising steps (default {d.steps})")
    p.add_argument("--text-scale", type=float, default=d.text_scale, help=f"text guidance ({d.text_scale})")
    p.add_argument(
        "--image-scale", type=float, default=d.image_scale, help=f"image guidance ({d.image_scale})"
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of every item (default {d.seed})")
    p.add_argument(
        "--long-side", type=int, default=d.long_side, help=f"working size, long side ({d.long_side})"
    )
    p.add_argument("--dilate", type=int, default=d.dilate, help="grow the mask by N px before blending")
    p.add_argument("--feather", type=float, default=d.feather, help="Gaussian feather sigma of the blend")
    p.add_argument("--seam", default=d.seam, choices=SEAM_MODES, help=f"seam blending (default {d.seam})")
    p.add_argument(
        "--latent-dilate",
        type=int,
        default=d.latent_dilate,
        help=f"latent mode's mask grow ({d.latent_dilate})",
    )
    p.add_argument("--crop-pad", type=float, default=d.crop_pad, help=f"crop mode's padding ({d.crop_pad})")
    p.add_argument("--negative-prompt", default=d.negative_prompt, help="negative prompt of every item")
    p.add_argument(
        "--guidance", type=float, default=d.guidance, help=f"FLUX.1 Kontext's guidance ({d.guidance})"
    )
    p.add_argument(
        "--true-cfg-scale",
        type=float,
        default=d.true_cfg_scale,
        help=f"Qwen-Image-Edit's true CFG scale ({d.true_cfg_scale})",
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from maskpix_desktop.core.evaluation import RunOptions, run_eval
    from maskpix_desktop.core.jobs import EditParams

    # Checked here, before any model is loaded (EditParams raises a clear ValueError naming the field).
    try:
        params = EditParams(
            instruction="",
            steps=args.steps,
            text_scale=args.text_scale,
            image_scale=args.image_scale,
            seed=args.seed,
            long_side=args.long_side,
            dilate=args.dilate,
            feather=args.feather,
            seam=args.seam,
            negative_prompt=args.negative_prompt,
            latent_dilate=args.latent_dilate,
            crop_pad=args.crop_pad,
            guidance=args.guidance,
            true_cfg_scale=args.true_cfg_scale,
        )
    except ValueError as exc:
        from maskpix_desktop.core.errors import MaskPixError

        raise MaskPixError(str(exc)) from None
    cfg = EvalConfig(params=params, pie_border=args.pie_border, precision=args.precision)
    opts = RunOptions(
        dataset=args.dataset,
        out=args.out,
        fmt=args.fmt,
        modes=tuple(args.modes),
        limit=args.limit,
        config=cfg,
        models_dir=args.models_dir,
        ip2p=args.ip2p,
        device=args.device,
        clip=not args.no_clip,
        lpips_net=args.lpips_net,
        save_images=not args.no_images,
        retry_errors=args.retry_errors,
        threads=args.threads,
        grid_items=args.grid_items,
        dist_timeout_s=args.dist_timeout * 60.0,
        progress=not args.no_progress,
        ssim_variant=args.ssim_variant,
        dino=not args.no_dino,
        retrieval=not args.no_retrieval,
        mb_setting=args.magicbrush_setting,
    )
    run_eval(opts)
    return 0
