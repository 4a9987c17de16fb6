"""``maskpix-cli study make``: a blinded rating package from an evaluation folder.

The package is built in a hidden sibling folder and renamed into place at the end, so ``--out`` holds
either a complete package or nothing. Method names appear only in ``key.json``: candidate files are
named by a code drawn afresh for every item (a rater cannot learn what a code means), written in code
order (their times say nothing about the method), and carry no embedded text.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import string
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.evaluation.datasets import MODES
from maskpix_desktop.core.evaluation.store import RESULTS_JSONL, all_rows
from maskpix_desktop.core.study.manifest import (
    KEY_FORMAT,
    KEY_JSON,
    STUDY_JSON,
    VERSION,
    Study,
    StudyError,
    StudyItem,
    check_rater,
    study_to_json,
    write_json,
)

CODE_ALPHABET = string.ascii_lowercase + string.digits
CODE_LENGTH = 4
README = """This is a blinded MaskPix rating study.

Raters: open MaskPix, choose File > Rate a study... and pick this folder; choose your rater id.
Your answers are saved after every rating in answers-<rater>.json; send that file back when done.

Coordinator: key.json maps the codes to the methods. Raters do not need it: remove it from the
copies you hand out and keep it for `maskpix-cli study report`.
"""


def rater_ids(spec: str | int | Sequence[str]) -> list[str]:
    """``3`` -> ``r1, r2, r3`` (zero-padded past 9); a comma list or a sequence of names is checked."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        count = int(spec)
        if count < 1:
            raise StudyError(f"--raters: need at least one rater, not {count}")
        width = len(str(count))
        return [f"r{i:0{width}d}" for i in range(1, count + 1)]
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    names = [n for n in names if n]
    if not names:
        raise StudyError("--raters: give a number of raters or a comma list of rater ids")
    for name in names:
        check_rater(name, "--raters")
    if len(set(names)) != len(names):
        raise StudyError(f"--raters: a rater id is repeated in {', '.join(names)}")
    return names


def _best_rows(eval_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """One row per (item, mode): an ok row beats an error row, then the later one wins."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in all_rows(eval_dir):
        key = (row["item"], row["mode"])
        rank = (row.get("status") == "ok", float(row.get("finished_at") or 0.0))
        old = best.get(key)
        if old is None or rank >= (old.get("status") == "ok", float(old.get("finished_at") or 0.0)):
            best[key] = row
    return best


def complete_items(eval_dir: Path, methods: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Items with an ok row, an output file, the original and the mask for every method, in id order:
    ``[{id, instruction, original, mask, outputs: {method: path}}]`` and the counts of what was skipped."""
    best = _best_rows(eval_dir)
    if not best:
        raise StudyError(
            f"{eval_dir}: no evaluation rows ({RESULTS_JSONL} or shard-*.jsonl); "
            "give the --out folder of a finished `maskpix-cli eval`"
        )
    skipped = {"error or missing method": 0, "missing image file": 0}
    found = []
    for item in sorted({i for i, _ in best}):
        rows = [best.get((item, m)) for m in methods]
        if any(r is None or r.get("status") != "ok" for r in rows):
            skipped["error or missing method"] += 1
            continue
        files = [r.get("files") or {} for r in rows]  # type: ignore[union-attr]
        paths = {m: eval_dir / f.get("output", "") for m, f in zip(methods, files, strict=True)}
        base = files[0]
        original = eval_dir / base.get("original", "")
        mask = eval_dir / base.get("mask", "")
        needed = [original, mask, *paths.values()]
        if not all(f.get("output") for f in files) or not all(p.is_file() for p in needed):
            skipped["missing image file"] += 1
            continue
        instruction = rows[0].get("instruction") or ""  # type: ignore[union-attr]
        if not instruction.strip():
            skipped["error or missing method"] += 1
            continue
        found.append(
            {"id": item, "instruction": instruction, "original": original, "mask": mask, "outputs": paths}
        )
    return found, skipped


def _codes(rng: np.random.Generator, n: int) -> list[str]:
    codes: set[str] = set()
    while len(codes) < n:
        codes.add("".join(CODE_ALPHABET[int(k)] for k in rng.integers(0, len(CODE_ALPHABET), CODE_LENGTH)))
    return sorted(codes)  # written in code order; which code a method gets is the random part


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _copy_candidate(src: Path, dst: Path, link: bool) -> None:
    """A fresh copy (its own write time), re-encoded without text chunks when the source holds any."""
    if images.read_image_text(src):
        images.save_image(dst.with_suffix(".png"), images.load_image(src))
    elif link:
        _link_or_copy(src, dst)
    else:
        shutil.copyfile(src, dst)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise StudyError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise StudyError(f"--out {out} is not empty; give a new folder (a study is never written over)")


def make_study(
    eval_dir: str | Path,
    methods: Sequence[str],
    out: str | Path,
    *,
    n_items: int | None = None,
    raters: str | int | Sequence[str] = 3,
    seed: int | None = None,
    link: bool = False,
) -> Study:
    """Build the package in ``out`` (new or empty) and return it; :class:`StudyError` before anything is
    written when the input is unusable."""
    eval_dir, out = Path(eval_dir), Path(out)
    methods = [m.strip() for m in methods if m.strip()]
    bad = [m for m in methods if m not in MODES]
    if bad:
        raise StudyError(f"--methods: unknown method {bad[0]!r}; choose from {', '.join(MODES)}")
    if len(set(methods)) != len(methods) or len(methods) < 2:
        raise StudyError("--methods: give at least two different methods (the study compares them)")
    names = rater_ids(raters)
    if not eval_dir.is_dir():
        raise StudyError(f"{eval_dir}: no such evaluation folder")
    _check_out(out)
    found, skipped = complete_items(eval_dir, methods)
    if n_items is None:
        n_items = len(found)
    if n_items < 1:
        raise StudyError(f"--items must be at least 1, not {n_items}")
    if n_items > len(found):
        why = ", ".join(f"{v} {k}" for k, v in skipped.items() if v)
        raise StudyError(
            f"{eval_dir}: only {len(found)} items have an output for every method ({', '.join(methods)})"
            f"{f'; skipped: {why}' if why else ''}; --items {n_items} asks for more"
        )
    if seed is None:
        seed = secrets.randbits(32)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(found), size=n_items, replace=False).tolist())
    width = max(3, len(str(n_items)))

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    try:
        stage.mkdir()  # the usual permissions (mkdtemp's 0700 would hide the study from the raters)
    except OSError as exc:
        raise StudyError(f"cannot create a folder beside --out {out}: {exc.strerror or exc}") from None
    try:
        study, key = _write_package(stage, [found[i] for i in chosen], methods, names, rng, width, link)
        key.update(eval_dir=str(eval_dir.resolve()), seed=int(seed))
        created = time.time()
        write_json(stage / STUDY_JSON, study_to_json(study, created))
        write_json(stage / KEY_JSON, {**key, "created": created})
        images.atomic_write_text(stage / "README.txt", README)
        with contextlib.suppress(FileNotFoundError):
            out.rmdir()  # empty (checked above): the rename below needs the name free
        os.rename(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    study.folder = out
    return study


def _write_package(
    stage: Path,
    picked: list[dict[str, Any]],
    methods: Sequence[str],
    raters: list[str],
    rng: np.random.Generator,
    width: int,
    link: bool,
) -> tuple[Study, dict[str, Any]]:
    items: dict[str, StudyItem] = {}
    key_items: dict[str, Any] = {}
    for n, src in enumerate(picked, start=1):
        sid = f"i{n:0{width}d}"
        folder = stage / "items" / sid
        folder.mkdir(parents=True)
        rel = f"items/{sid}"
        orig_name = f"original{src['original'].suffix.lower()}"
        mask_name = f"mask{src['mask'].suffix.lower()}"
        _link_or_copy(src["original"], folder / orig_name)
        _link_or_copy(src["mask"], folder / mask_name)
        codes = _codes(rng, len(methods))
        assignment = dict(zip(codes, rng.permutation(list(methods)).tolist(), strict=True))
        candidates = {}
        for code in codes:  # code order: the write order says nothing about the method
            source = src["outputs"][assignment[code]]
            dst = folder / f"{code}{source.suffix.lower()}"
            _copy_candidate(source, dst, link)
            dst = dst if dst.exists() else dst.with_suffix(".png")
            candidates[code] = f"{rel}/{dst.name}"
        items[sid] = StudyItem(
            id=sid,
            instruction=src["instruction"],
            original=f"{rel}/{orig_name}",
            mask=f"{rel}/{mask_name}",
            candidates=candidates,
        )
        key_items[sid] = {"source_item": src["id"], "codes": assignment}
    pairs = [(sid, code) for sid, it in items.items() for code in it.candidates]
    orders = {r: [pairs[int(k)] for k in rng.permutation(len(pairs))] for r in raters}
    study = Study(folder=stage, study_id=secrets.token_hex(6), items=items, orders=orders)
    key = {
        "format": KEY_FORMAT,
        "version": VERSION,
        "study_id": study.study_id,
        "methods": list(methods),
        "items": key_items,
    }
    return study, key


__all__ = ["CODE_ALPHABET", "complete_items", "make_study", "rater_ids"]
