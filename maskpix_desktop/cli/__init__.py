"""Headless command line: batch runs from a cases file, model management, tiny test models, self-test.

``maskpix-cli run cases.toml --out DIR``   ``maskpix-cli models list|download|convert-cosxl``

Exit codes: 0 done; 1 bad input (cases file, case field, output folder: checked before any model
loads, one ``error:`` line naming the file and field) or a failed run; 2 missing model weights (and
argparse usage errors); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from maskpix_desktop import __version__
from maskpix_desktop.cli.args import add_model_args
from maskpix_desktop.cli.exit_codes import EXIT_ERROR, EXIT_MISSING, EXIT_OK
from maskpix_desktop.core.errors import MaskPixError

log = logging.getLogger("maskpix.cli")

__all__ = ["EXIT_ERROR", "EXIT_MISSING", "EXIT_OK", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskpix-cli", description="MaskPix Desktop, headless.")
    parser.add_argument("--version", action="version", version=f"maskpix {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every case of a TOML cases file")
    run.add_argument("cases", type=Path)
    run.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per case)")
    run.add_argument("--overwrite", action="store_true", help="replace existing case folders")
    run.add_argument("--no-clip", action="store_true", help="skip CLIP metrics")
    add_model_args(run, memory=True)

    mdl = sub.add_parser("models", help="list or download model weights")
    msub = mdl.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="show which models are present")
    ls.add_argument("--models-dir")
    dl = msub.add_parser("download", help="download weights (sha256-verified)")
    dl.add_argument(
        "names",
        nargs="*",
        help="registry names (default: sam_vit_h ip2p clip with CUDA, sam2.1_hiera_tiny ip2p clip without)",
    )
    dl.add_argument("--models-dir")
    cx = msub.add_parser(
        "convert-cosxl",
        help="make CosXL-Edit's one checkpoint file (cosxl_edit.safetensors) a folder --ip2p loads",
    )
    cx.add_argument("file", type=Path, help="cosxl_edit.safetensors (stabilityai/cosxl, gated)")
    cx.add_argument(
        "--config",
        type=Path,
        required=True,
        help="an SDXL InstructPix2Pix diffusers folder for the configs (diffusers/sdxl-instructpix2pix-768)",
    )
    cx.add_argument("--out", type=Path, required=True, help="the new diffusers folder")

    tiny = sub.add_parser("make-tiny-models", help="write tiny random-weight models (tests, demos)")
    tiny.add_argument("folder", type=Path)
    tiny.add_argument("--seed", type=int, default=0)

    st = sub.add_parser("self-test", help="check this install with tiny models (no weights, no network)")
    st.add_argument("-q", "--quiet", action="store_true", help="only the PASS/FAIL lines")

    from maskpix_desktop.bench import add_arguments as add_bench_arguments

    add_bench_arguments(sub.add_parser("bench", help="performance harness (python -m maskpix_desktop.bench)"))

    from maskpix_desktop.cli.eval import add_parser as add_eval_parser

    add_eval_parser(sub)

    from maskpix_desktop.cli.train import add_parser as add_train_parser

    add_train_parser(sub)

    from maskpix_desktop.cli.eval_automask import add_parser as add_automask_parser

    add_automask_parser(sub)

    from maskpix_desktop.cli.study import add_parser as add_study_parser

    add_study_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "run":
            from maskpix_desktop.cli.run import cmd_run

            return cmd_run(args)
        if args.command == "models":
            from maskpix_desktop.cli.models import cmd_models

            return cmd_models(args)
        if args.command == "make-tiny-models":
            from maskpix_desktop.testing.tiny_models import make_tiny_models

            print(make_tiny_models(args.folder, seed=args.seed))
            return EXIT_OK
        if args.command == "eval":
            from maskpix_desktop.cli.eval import cmd_eval

            return cmd_eval(args)
        if args.command == "train":
            from maskpix_desktop.cli.train import cmd_train

            return cmd_train(args)
        if args.command == "eval-automask":
            from maskpix_desktop.cli.eval_automask import cmd_eval_automask

            return cmd_eval_automask(args)
        if args.command == "study":
            from maskpix_desktop.cli.study import cmd_study

            return cmd_study(args)
        if args.command == "self-test":
            from maskpix_desktop.selftest import run_self_test

            return run_self_test(verbose=not args.quiet)
        if args.command == "bench":
            from maskpix_desktop.bench import run_from_args

            return run_from_args(args, " ".join(["maskpix-cli", *(sys.argv[1:] if argv is None else argv)]))
    except MaskPixError as exc:
        from maskpix_desktop.core.errors import MissingWeightsError

        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISSING if isinstance(exc, MissingWeightsError) else EXIT_ERROR
    except OSError as exc:  # a file error not caught closer to its source: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_ERROR
