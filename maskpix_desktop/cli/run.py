"""``maskpix-cli run cases.toml --out DIR``: every case of a cases file through the one edit pipeline."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from maskpix_desktop.cli.exit_codes import EXIT_OK
from maskpix_desktop.core.errors import MaskPixError

__all__ = ["SUMMARY", "cmd_run"]

SUMMARY = "metrics.csv"  # all cases' metrics, beside the case folders


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
        from maskpix_desktop.cli.case_auto_mask import case_auto_mask

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
        models_dir=args.models_dir,
        sam=args.sam,
        ip2p=args.ip2p,
        device=args.device,
        precision=args.precision,
        memory=args.memory,
        vae_tiling=args.vae_tiling,
        quantize=args.quantize,
        compile=args.compile,
        gguf=args.gguf,
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
