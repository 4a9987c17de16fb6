"""``maskpix-cli study make|report``: a blinded human study of the edit methods.

::

    maskpix-cli study make runs/pie --methods baseline,pixel,latent --items 40 --raters 5 --out study/
    maskpix-cli study report study/            # after the raters used File > Rate a study... in the app

The parser imports nothing heavy; the work lives in :mod:`maskpix_desktop.core.study`. See
docs/EVALUATION.md, "Human study".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskpix_desktop.cli.exit_codes import EXIT_OK


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise argparse.ArgumentTypeError("give a comma list of methods, e.g. baseline,pixel,latent")
    return methods


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "study",
        help="blinded human study: build a rating package from an eval folder, report the answers",
        description="Build a blinded rating package from a `maskpix-cli eval` folder (rated in the app: "
        "File > Rate a study...), then un-blind the answers into a report.",
    )
    ssub = p.add_subparsers(dest="study_command", required=True)
    mk = ssub.add_parser(
        "make",
        help="build a blinded rating package",
        description="Pick N items that have an output for every method, hide the methods behind codes "
        "drawn per item, give every rater their own random order, and keep the key in key.json.",
    )
    mk.add_argument("eval_dir", type=Path, help="the --out folder of a finished maskpix-cli eval")
    mk.add_argument("--methods", type=_methods, required=True, help="comma list, e.g. baseline,pixel,latent")
    mk.add_argument("--items", type=_positive, default=None, help="number of items (default: all complete)")
    mk.add_argument(
        "--raters", default="3", help="number of raters (ids r1, r2, ...) or a comma list of ids (default 3)"
    )
    mk.add_argument("--out", type=Path, required=True, help="the package folder (new or empty)")
    mk.add_argument("--seed", type=int, default=None, help="seed of the item pick, codes and orders")
    mk.add_argument(
        "--link",
        action="store_true",
        help="hard-link the candidate images instead of copying them (saves space, but a link shares the "
        "eval's file times, which follow the order the methods ran in)",
    )
    rp = ssub.add_parser("report", help="un-blind the answers: means, agreement, win rates, plot")
    rp.add_argument("study_dir", type=Path, help="the study folder (with the raters' answers-*.json)")
    rp.add_argument("--out", type=Path, default=None, help="report folder (default STUDY_DIR/report)")
    rp.add_argument("--key", type=Path, default=None, help="the key file (default STUDY_DIR/key.json)")
    return p


def cmd_study(args: argparse.Namespace) -> int:
    if args.study_command == "make":
        from maskpix_desktop.core.study import make_study

        study = make_study(
            args.eval_dir,
            args.methods,
            args.out,
            n_items=args.items,
            raters=args.raters,
            seed=args.seed,
            link=args.link,
        )
        n_cands = sum(len(it.candidates) for it in study.items.values())
        print(
            f"study: {len(study.items)} items x {len(args.methods)} methods = {n_cands} candidates "
            "per rater, "
            f"raters {', '.join(study.orders)}; wrote {study.folder} (keep key.json away from the raters)"
        )
        return EXIT_OK
    from maskpix_desktop.core.study import write_study_report

    summary = write_study_report(args.study_dir, args.out, key_path=args.key)
    print(f"study report: {summary['n_ratings']} ratings; wrote {Path(summary['folder']) / 'report.md'}")
    return EXIT_OK
