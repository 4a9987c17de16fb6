"""Inputs of ``maskpix-cli train prepare``: each source is a list of items read lazily by index.

* ``magicbrush``: a MagicBrush folder (read by :mod:`maskpix_desktop.core.evaluation.datasets`); masks given.
* ``triplets``: instruction-editing triplets, masks to derive. Either a folder of item folders
  ``<root>/<id>/input.png, edited.png, prompt.txt`` (any of .png .jpg .jpeg .webp), or
  ``<root>/triplets.jsonl`` with one ``{"id", "input_image", "edit_prompt", "edited_image"}`` record a line
  (image paths relative to the folder; ``id`` optional).
* ``hf``: a Hugging Face ``datasets`` dataset with ``input_image`` / ``edit_prompt`` / ``edited_image``
  columns (the public InstructPix2Pix training set's layout): a folder written by ``save_to_disk`` or a
  hub name (``load_dataset(name, split=...)``); an optional ``id`` column names the items.

A bad item raises :class:`~maskpix_desktop.core.evaluation.datasets.ItemError` naming its file and
field; the caller records it and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import ImageLoadError, MaskPixError
from maskpix_desktop.core.evaluation.datasets import ItemError, detect_format, load_item, read_dataset

FORMATS = ("auto", "magicbrush", "triplets", "hf")
TRIPLETS_JSONL = "triplets.jsonl"
HF_COLUMNS = ("input_image", "edit_prompt", "edited_image")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class RawItem:
    """One training example before its mask is derived; ``mask`` is None when it must be derived."""

    id: str
    instruction: str
    image: np.ndarray
    target: np.ndarray
    mask: np.ndarray | None
    origin: str  # where it came from (file or dataset row), for the provenance


@dataclass
class Source:
    """``kind`` (magicbrush / triplets / hf), ``ids`` in order, ``load(i)`` -> :class:`RawItem`."""

    kind: str
    where: str
    ids: list[str]
    load: Callable[[int], RawItem]


def require_datasets() -> Any:
    """The ``datasets`` module, or a clear error saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise MaskPixError(
            "training data needs the Hugging Face 'datasets' package: install datasets "
            "(pip install datasets, or pip install 'maskpix-desktop[train]')"
        ) from None
    return datasets


def is_hf_folder(path: Path) -> bool:
    names = ("dataset_info.json", "state.json", "dataset_dict.json")
    return path.is_dir() and any((path / n).is_file() for n in names)


def detect(path: str) -> str:
    """The format of ``path``: hf (a saved dataset, or not a local path: a hub name), triplets, magicbrush."""
    p = Path(path)
    if not p.exists():
        return "hf"
    if is_hf_folder(p):
        return "hf"
    if p.is_dir() and ((p / TRIPLETS_JSONL).is_file() or _triplet_folders(p)):
        return "triplets"
    try:
        if p.is_dir() and detect_format(p) == "magicbrush":
            return "magicbrush"
    except MaskPixError:
        pass
    raise MaskPixError(
        f"{p}: not a MagicBrush folder, a triplets folder (<id>/input.png, edited.png, prompt.txt or "
        f"{TRIPLETS_JSONL}) nor a saved datasets folder; pass --format to say which"
    )


def open_source(path: str, fmt: str = "auto", *, split: str = "train") -> Source:
    """The items of ``path`` in a fixed order (sorted ids; an HF dataset's row order)."""
    fmt = detect(path) if fmt == "auto" else fmt
    if fmt == "magicbrush":
        return _magicbrush(Path(path))
    if fmt == "triplets":
        return _triplets(Path(path))
    if fmt == "hf":
        return _hf(path, split)
    raise MaskPixError(f"unknown data format {fmt!r}; use {', '.join(FORMATS)}")


def _magicbrush(root: Path) -> Source:
    fmt, items = read_dataset(root, "magicbrush")

    def load(i: int) -> RawItem:
        it = items[i]
        li = load_item(it)
        assert li.target is not None
        return RawItem(it.id, it.instruction, li.image, li.target, li.edit_mask, str(it.image))

    return Source("magicbrush", str(root), [it.id for it in items], load)


def _find_image(folder: Path, stem: str) -> Path:
    for ext in IMAGE_EXTS:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    raise ItemError(f"{folder}: no {stem} image ({stem}.png / .jpg / .jpeg / .webp)")


def _triplet_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "prompt.txt").is_file())


def _read_image(path: Path, field: str) -> np.ndarray:
    try:
        return images.load_image(path)
    except ImageLoadError as exc:
        raise ItemError(f"{field}: {exc}") from None


def _triplets(root: Path) -> Source:
    jsonl = root / TRIPLETS_JSONL
    if jsonl.is_file():
        return _triplets_jsonl(root, jsonl)
    folders = _triplet_folders(root)

    def load(i: int) -> RawItem:
        d = folders[i]
        try:
            text = (d / "prompt.txt").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ItemError(f"{d / 'prompt.txt'}: cannot read the instruction: {exc}") from None
        if not text:
            raise ItemError(f"{d / 'prompt.txt'}: empty instruction")
        image = _read_image(_find_image(d, "input"), "input")
        target = _read_image(_find_image(d, "edited"), "edited")
        return RawItem(d.name, text, image, target, None, str(d))

    return Source("triplets", str(root), [d.name for d in folders], load)


def _triplets_jsonl(root: Path, jsonl: Path) -> Source:
    recs: list[tuple[str, Any, str | None]] = []  # (id, record, problem)
    try:
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MaskPixError(f"cannot read {jsonl}: {exc}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            recs.append((f"line{n}", None, f"{jsonl}: line {n}: not valid JSON"))
            continue
        if not isinstance(rec, dict):
            recs.append((f"line{n}", None, f"{jsonl}: line {n}: not a JSON object"))
            continue
        missing = [k for k in HF_COLUMNS if not isinstance(rec.get(k), str) or not rec[k].strip()]
        problem = f"{jsonl}: line {n}: field '{missing[0]}' missing or not text" if missing else None
        rid = rec.get("id")
        recs.append((str(rid) if isinstance(rid, str | int) and str(rid) else f"line{n}", rec, problem))
    ids = [r[0] for r in recs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise MaskPixError(f"{jsonl}: duplicate id {dup!r}")

    def load(i: int) -> RawItem:
        rid, rec, problem = recs[i]
        if problem:
            raise ItemError(problem)
        image = _read_image(root / rec["input_image"], "input_image")
        target = _read_image(root / rec["edited_image"], "edited_image")
        return RawItem(rid, rec["edit_prompt"].strip(), image, target, None, f"{jsonl}:{rid}")

    return Source("triplets", str(root), ids, load)


def _hf(name: str, split: str) -> Source:
    ds_mod = require_datasets()
    p = Path(name)
    try:
        if p.exists():
            ds = ds_mod.load_from_disk(str(p))
            if isinstance(ds, ds_mod.DatasetDict):
                if split not in ds:
                    raise MaskPixError(f"{p}: no split {split!r} (has {', '.join(ds)}); pass --split")
                ds = ds[split]
        else:
            ds = ds_mod.load_dataset(name, split=split)
    except MaskPixError:
        raise
    except Exception as exc:  # datasets raises many kinds (FileNotFoundError, DatasetNotFoundError, ...)
        raise MaskPixError(f"cannot open the dataset {name!r}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in HF_COLUMNS if c not in ds.column_names]
    if missing:
        raise MaskPixError(
            f"dataset {name!r} lacks the column(s) {', '.join(missing)} (has {', '.join(ds.column_names)})"
        )
    ids = [str(v) for v in ds["id"]] if "id" in ds.column_names else [f"{i:08d}" for i in range(len(ds))]
    if len(set(ids)) != len(ids):
        raise MaskPixError(f"dataset {name!r}: the 'id' column has duplicates")

    def load(i: int) -> RawItem:
        row = ds[i]
        where = f"{name} row {i}"
        text = row["edit_prompt"]
        if not isinstance(text, str) or not text.strip():
            raise ItemError(f"{where}: field 'edit_prompt' is empty or not text")
        pair = []
        for col in ("input_image", "edited_image"):
            try:
                pair.append(images.image_from_pil(row[col]))
            except (AttributeError, OSError, ValueError, TypeError) as exc:
                raise ItemError(f"{where}: field '{col}' is not an image: {exc}") from None
        return RawItem(ids[i], text.strip(), pair[0], pair[1], None, where)

    return Source("hf", name, ids, load)
