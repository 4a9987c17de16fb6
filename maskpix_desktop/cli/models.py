"""``maskpix-cli models list|download|convert-cosxl``: which weights are present; sha256-verified downloads;
CosXL-Edit's checkpoint file made a diffusers folder."""

from __future__ import annotations

import argparse
from typing import Any

from maskpix_desktop.cli.exit_codes import EXIT_OK

__all__ = ["cmd_models"]


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
    if args.models_command == "convert-cosxl":
        from maskpix_desktop.core.cosxl import convert_cosxl_edit

        out = convert_cosxl_edit(args.file, args.config, args.out)
        print(f"CosXL-Edit folder: {out} (use --ip2p {out})")
        return EXIT_OK
    sam = models.default_sam_for(models.resolve_device("auto"))  # vit_h with CUDA, SAM 2.1 tiny without
    names = args.names or [sam, models.DEFAULT_IP2P, models.DEFAULT_CLIP]
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
