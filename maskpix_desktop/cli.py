"""Headless command line: batch runs from a cases file, model management, tiny test models, self-test.

``maskpix-cli run cases.toml --out DIR``   ``maskpix-cli models list|download``

Exit codes: 0 done; 1 bad input (cases file, case field, output folder: checked before any model
loads, one ``error:`` line naming the file and field) or a failed run; 2 missing model weights (and
argparse usage errors); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from maskpix_desktop import __version__
from maskpix_desktop.cli_args import add_model_args
from maskpix_desktop.core.errors import MaskPixError

log = logging.getLogger("maskpix.cli")

EXIT_OK, EXIT_ERROR, EXIT_MISSING = 0, 1, 2
SUMMARY = "metrics.csv"  # all cases' metrics, beside the case folders


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
    add_model_args(run)

    mdl = sub.add_parser("models", help="list or download model weights")
    msub = mdl.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="show which models are present")
    ls.add_argument("--models-dir")
    dl = msub.add_parser("download", help="download weights (sha256-verified)")
    dl.add_argument("names", nargs="*", help="registry names (default: sam_vit_h ip2p clip)")
    dl.add_argument("--models-dir")

    tiny = sub.add_parser("make-tiny-models", help="write tiny random-weight models (tests, demos)")
    tiny.add_argument("folder", type=Path)
    tiny.add_argument("--seed", type=int, default=0)

    st = sub.add_parser("self-test", help="check this install with tiny models (no weights, no network)")
    st.add_argument("-q", "--quiet", action="store_true", help="only the PASS/FAIL lines")

    from maskpix_desktop.bench import add_arguments as add_bench_arguments

    add_bench_arguments(sub.add_parser("bench", help="performance harness (python -m maskpix_desktop.bench)"))

    from maskpix_desktop.eval_cli import add_parser as add_eval_parser

    add_eval_parser(sub)

    from maskpix_desktop.automask_cli import add_parser as add_automask_parser

    add_automask_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "models":
            return cmd_models(args)
        if args.command == "make-tiny-models":
            from maskpix_desktop.testing.tiny_models import make_tiny_models

            print(make_tiny_models(args.folder, seed=args.seed))
            return EXIT_OK
        if args.command == "eval":
            from maskpix_desktop.eval_cli import cmd_eval

            return cmd_eval(args)
        if args.command == "eval-automask":
            from maskpix_desktop.automask_cli import cmd_eval_automask

            return cmd_eval_automask(args)
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


# ------------------------------------------------------------------------------------------ models
def cmd_models(args: argparse.Namespace) -> int:
    from maskpix_desktop.core import models

    if args.models_command == "list":
        root = models.models_dir(args.models_dir)
        print(f"models folder: {root}")
        rows = models.list_models(args.models_dir)
        width = max((len(row["name"]) for row in rows), default=14)
        for row in rows:
            mark = "present" if row["present"] else "missing"
            size = f"{row['size'] / 1e6:,.0f} MB" if row.get("size") else "?"
            print(f"  {row['name']:<{width}} {mark:<8} {size:>10}  {row['description']}")
        return EXIT_OK
    names = args.names or [models.DEFAULT_SAM, models.DEFAULT_IP2P, models.DEFAULT_CLIP]
    from tqdm import tqdm

    for name in names:
        models.get_spec(name)
        bar = tqdm(desc=name, unit="B", unit_scale=True, unit_divisor=1024, leave=True)

        def progress(done: int, total: int | None, bar: Any = bar) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            path = models.download(name, args.models_dir, progress=progress)
        finally:
            bar.close()
        print(f"{name}: {path}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------ run
def _case_mask(case: Any, image: Any, service: Any) -> Any:
    import numpy as np

    from maskpix_desktop.core import images

    if case.mask is not None:
        mask = images.load_mask(case.mask)
        if mask.shape != image.shape[:2]:  # checked from the headers up front; the decoded files decide
            raise MaskPixError(
                f"case '{case.name}': the mask '{case.mask}' is {mask.shape[1]}x{mask.shape[0]} pixels but "
                f"the image is {image.shape[1]}x{image.shape[0]}; a mask must have the image's size"
            )
        return mask
    if getattr(case, "auto_mask", False):
        from maskpix_desktop.automask_cli import case_auto_mask

        return case_auto_mask(case, image, service)
    seg = service.segmenter()
    seg.set_image(image)
    res = seg.predict(
        points=np.asarray(case.points, np.float32) if case.points else None,
        labels=np.asarray(case.labels, np.int32) if case.points else None,
        box=np.asarray(case.box, np.float32) if case.box is not None else None,
    )
    if case.candidate is not None and case.candidate >= len(res):
        raise MaskPixError(
            f"case '{case.name}': candidate {case.candidate} asked for, but SAM gave {len(res)} mask(s) "
            "for these prompts (3 only for a single point)"
        )
    return res.mask(case.candidate if case.candidate is not None else res.best)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _check_output(out: Path, names: list[str], *, overwrite: bool) -> None:
    """Refuse, before any model loads, an output folder that cannot take the case folders: ``--out`` is
    a file, a target exists (without ``--overwrite``) or is of the wrong kind, or nothing can be created
    there (proved by creating, then removing, a temp folder in it)."""
    try:
        _check_output_kinds(out, names, overwrite=overwrite)
        created = [p for p in (out, *out.parents) if not p.exists()]
    except OSError as exc:  # e.g. a name too long for the file system
        raise MaskPixError(f"cannot use the output folder '{out}': {exc.strerror or exc}") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".maskpix-check.", dir=out))
    except OSError as exc:
        raise MaskPixError(f"cannot write to the output folder '{out}': {exc.strerror or exc}") from None
    finally:
        for folder in created:  # innermost first; leave nothing behind (the run creates it again)
            with contextlib.suppress(OSError):
                folder.rmdir()


def _check_output_kinds(out: Path, names: list[str], *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MaskPixError(f"--out '{out}' is a file, not a folder")
    if not out.is_dir():
        return
    clash = [n for n in [*names, SUMMARY] if (out / n).exists() or (out / n).is_symlink()]
    if clash and not overwrite:
        raise MaskPixError(f"output exists for {', '.join(clash)} in {out}; use --overwrite")
    for n in clash:
        target = out / n
        folder = n != SUMMARY
        if target.is_symlink() or target.is_dir() != folder:
            kind = "folder" if folder else "file"
            raise MaskPixError(f"'{target}' is in the way: it is not a {kind}; move it away")


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from maskpix_desktop.core import export, images
    from maskpix_desktop.core.cases import check_case_files, load_cases
    from maskpix_desktop.core.editor import NO_MASK_INPUT
    from maskpix_desktop.core.jobs import EditRequest
    from maskpix_desktop.core.pipeline import run_edit
    from maskpix_desktop.core.service import ModelChoice, ModelService

    cases = load_cases(args.cases)
    for case in cases:  # fail before any model work on a bad input
        if case.name.lower() == SUMMARY:
            raise MaskPixError(f"case name '{case.name}' is reserved for the summary file; rename the case")
        check_case_files(case)
    out: Path = args.out
    _check_output(out, [c.name for c in cases], overwrite=args.overwrite)
    choice = ModelChoice(
        models_dir=args.models_dir, sam=args.sam, ip2p=args.ip2p, device=args.device, precision=args.precision
    )
    service = ModelService(choice)
    service.check(sam=any(c.uses_sam for c in cases), ip2p=True)
    clip = None if args.no_clip else service.clip()
    if clip is None and not args.no_clip:
        print(f"note: CLIP metrics skipped: {service.clip_error}", file=sys.stderr)

    editor = service.editor()
    trained = [c.name for c in cases if c.params.mask_mode == "trained"]
    if trained and not getattr(editor, "takes_mask", False):
        raise MaskPixError(f"case '{trained[0]}': mask_mode trained: {NO_MASK_INPUT}")
    out.mkdir(parents=True, exist_ok=True)
    summary_rows: list[str] = []
    total_steps = sum(c.params.steps * (1 if c.params.mask_mode == "pixel" else 2) for c in cases)
    with tqdm(total=total_steps, unit="step", desc="cases", dynamic_ncols=True) as bar:
        for case in cases:
            bar.set_postfix_str(case.name)
            image = images.load_image(case.image)
            mask = _case_mask(case, image, service)
            base = bar.n

            def on_step(done: int, total: int, stage: str, base: int = base) -> None:
                bar.n = base + done
                bar.refresh()

            request = EditRequest(image=image, mask=mask, params=case.params)
            result = run_edit(
                editor, request, clip=clip, model_info=service.model_info, progress=on_step, strict=True
            )
            scores = result.metrics
            # Write into a temp folder, then rename: a case folder is complete or absent.
            tmp = Path(tempfile.mkdtemp(prefix=f".{case.name}.", dir=out))
            try:
                os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
                for note in export.export_result(result, tmp, stem=case.name).renamed:
                    print(f"note: case '{case.name}': {note}", file=sys.stderr)
                final = out / case.name
                if final.exists():
                    shutil.rmtree(final)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            csv_lines = export.metrics_csv(scores).splitlines()
            if not summary_rows:
                summary_rows.append("case," + csv_lines[0])
            summary_rows += [f"{case.name},{line}" for line in csv_lines[1:]]
            bar.n = base + case.params.steps * (1 if case.params.mask_mode == "pixel" else 2)
            bar.refresh()
    images.atomic_write_text(out / SUMMARY, "\n".join(summary_rows) + "\n")
    print(f"wrote {len(cases)} case(s) to {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
