"""``maskpix-cli train prepare``: (image, instruction, mask, edited image) quadruplets as a Hugging Face
``datasets`` Arrow dataset, from MagicBrush folders (masks given) or instruction-editing triplets (masks
derived by :mod:`.derive_mask`).

Output folder::

    OUT/dataset/            the dataset (``Dataset.save_to_disk``; ``datasets.load_from_disk`` reads it;
                            absent when no item was kept)
    OUT/shards/shard-NNNNN/ one finished shard each: data/ (a saved dataset) and done.json (kept /
                            dropped ids; no data/ when every item of the shard was dropped)
    OUT/prepare.json        the options, counts and every dropped item with its reason

Deterministic: items are visited in a fixed order, images are resized with fixed filters and stored as
PNG with fixed settings, SAM is prompted the same way, so the same inputs give the same bytes.
Resumable: a shard is written to ``.tmp`` and renamed when complete; a restart skips finished shards
(and so their items) and refuses to mix options (``overwrite`` starts over).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images, masks
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation.datasets import ItemError
from maskpix_desktop.core.maskcond.derive_mask import (
    DeriveConfig,
    change_map,
    derive_mask,
    iou,
    otsu_threshold,
)
from maskpix_desktop.core.maskcond.sources import RawItem, is_hf_folder, open_source, require_datasets
from maskpix_desktop.core.protocols import SegmentEngine

REPORT = "prepare.json"
COLUMNS = ("id", "instruction", "image", "target", "mask", "mask_origin", "quality", "source", "provenance")


@dataclass
class PrepareConfig:
    """Options of :func:`prepare`; all but ``out`` and ``progress`` must match to resume a folder."""

    source: str
    out: str
    fmt: str = "auto"
    split: str = "train"
    size: int = 512  # square side (shorter side resized, centre crop); 0 keeps each item's size
    min_quality: float = 0.5  # derived masks below this IoU with the change map are dropped
    sam: str | None = None  # the segmenter's name, for the provenance (None: masks from the change map)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    shard_size: int = 256
    limit: int = 0  # 0: all items
    progress: bool = True

    def options(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out", "progress"):
            d.pop(k)
        return d


@dataclass
class PrepareResult:
    dataset_dir: Path
    kept: int
    dropped: list[dict[str, str]]
    shards_skipped: int


def features() -> Any:
    ds = require_datasets()
    text, img = ds.Value("string"), ds.Image()
    return ds.Features(
        {
            "id": text,
            "instruction": text,
            "image": img,
            "target": img,
            "mask": img,
            "mask_origin": text,  # given | sam | change-map
            "quality": ds.Value("float32"),
            "source": text,  # magicbrush | triplets | hf
            "provenance": text,  # JSON: source file or row, threshold, SAM prompts and model, options
        }
    )


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """``datasets``' own progress bars off (ours counts items), restored after."""
    ds_mod = require_datasets()
    was_on = ds_mod.is_progress_bar_enabled()
    ds_mod.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            ds_mod.enable_progress_bars()


def png(arr: np.ndarray) -> dict[str, Any]:
    """An image column value: PNG bytes written with fixed settings (the same array, the same bytes)."""
    buf = io.BytesIO()
    pil = images.to_pil(arr.astype(np.uint8) * 255 if arr.dtype == bool else arr)
    pil.save(buf, format="PNG", compress_level=6, optimize=False)
    return {"bytes": buf.getvalue(), "path": None}


def fit_square(arr: np.ndarray, size: int, *, is_mask: bool = False) -> np.ndarray:
    """Resize the shorter side to ``size`` and crop the centre square (``size`` 0: unchanged)."""
    if size <= 0:
        return arr
    h, w = arr.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if is_mask:
        out = images.resize_image(arr.astype(np.uint8) * 255, (nh, nw), resample="area") >= 128
    else:
        out = images.resize_image(arr, (nh, nw), resample="lanczos")
    y, x = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(out[y : y + size, x : x + size])


def _row(item: RawItem, kind: str, cfg: PrepareConfig, seg: Callable[[], SegmentEngine | None]) -> dict:
    """The dataset row of one item; ItemError when it is dropped (the reason names the item)."""
    image = fit_square(item.image, cfg.size)
    target = fit_square(item.target, cfg.size)
    if target.shape != image.shape:
        th, tw, ih, iw = *target.shape[:2], *image.shape[:2]
        raise ItemError(f"edited image is {tw}x{th}, input {iw}x{ih}")
    if item.mask is not None:
        mask = fit_square(masks.as_bool(item.mask), cfg.size, is_mask=True)
        if not mask.any():
            raise ItemError("the given mask is empty")
        change = change_map(image, target, cfg.derive.blur)
        thr = otsu_threshold(change) if cfg.derive.threshold is None else cfg.derive.threshold
        quality = round(iou(mask, change > thr), 6)
        prov: dict[str, Any] = {"method": "given", "threshold": round(float(thr), 6)}
        origin = "given"
    else:
        segmenter = seg()
        d = derive_mask(image, target, segmenter, cfg.derive, sam_name=cfg.sam if segmenter else None)
        if d.reason:
            raise ItemError(d.reason)
        if d.quality < cfg.min_quality:
            raise ItemError(f"mask quality {d.quality:.3f} < --min-quality {cfg.min_quality}")
        mask, quality, prov, origin = d.mask, d.quality, d.provenance, d.provenance["method"]
    prov = {"source": kind, "origin": item.origin, **prov}
    return {
        "id": item.id,
        "instruction": item.instruction,
        "image": png(image),
        "target": png(target),
        "mask": png(mask),
        "mask_origin": origin,
        "quality": float(quality),
        "source": kind,
        "provenance": json.dumps(prov, sort_keys=True),
    }


def _check_folder(out: Path, cfg: PrepareConfig, overwrite: bool) -> None:
    report = out / REPORT
    if overwrite:
        for name in ("shards", "dataset", "dataset.tmp"):
            shutil.rmtree(out / name, ignore_errors=True)
        report.unlink(missing_ok=True)
        return
    if not report.is_file():
        if (out / "shards").exists() or (out / "dataset").exists():
            raise MaskPixError(f"{out} holds shards or a dataset but no {REPORT}; pass --overwrite")
        return
    try:
        old = json.loads(report.read_text(encoding="utf-8"))["options"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MaskPixError(f"{report}: unreadable ({exc}); pass --overwrite to start over") from None
    new = json.loads(json.dumps(cfg.options()))
    diff = sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k))
    if diff:
        raise MaskPixError(
            f"{report}: this folder was prepared with other options ({', '.join(diff)}); "
            "use another --out or pass --overwrite"
        )


def _write_report(out: Path, cfg: PrepareConfig, kept: int, dropped: list[dict], done: bool) -> None:
    data = {"options": cfg.options(), "complete": done, "kept": kept, "dropped": dropped}
    images.atomic_write_text(out / REPORT, json.dumps(data, indent=1, sort_keys=True))


def prepare(
    cfg: PrepareConfig,
    segmenter: Callable[[], SegmentEngine | None] = lambda: None,
    *,
    overwrite: bool = False,
) -> PrepareResult:
    """Build (or finish) the dataset of ``cfg``. ``segmenter`` is called only when a mask must be derived
    (so a resumed or MagicBrush-only run never loads SAM); it returns None to use the change map alone."""
    ds_mod = require_datasets()
    from tqdm.auto import tqdm

    if cfg.shard_size < 1:
        raise MaskPixError(f"shard size must be >= 1, got {cfg.shard_size}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, cfg, overwrite)
    src = open_source(cfg.source, cfg.fmt, split=cfg.split)
    n = min(len(src.ids), cfg.limit) if cfg.limit > 0 else len(src.ids)
    if n == 0:
        raise MaskPixError(f"{cfg.source}: no items found")
    _write_report(out, cfg, 0, [], False)
    seg_cache: list[SegmentEngine | None] = []

    def seg() -> SegmentEngine | None:
        if not seg_cache:
            seg_cache.append(segmenter())
        return seg_cache[0]

    feats, shards_root = features(), out / "shards"
    shards_root.mkdir(exist_ok=True)
    bounds = [(lo, min(lo + cfg.shard_size, n)) for lo in range(0, n, cfg.shard_size)]
    finished = [k for k in range(len(bounds)) if (shards_root / f"shard-{k:05d}" / "done.json").is_file()]
    bar = tqdm(
        total=n,
        initial=sum(bounds[k][1] - bounds[k][0] for k in finished),
        unit="item",
        disable=not cfg.progress,
    )
    for k, (lo, hi) in enumerate(bounds):
        final = shards_root / f"shard-{k:05d}"
        if k in finished:
            continue
        rows: dict[str, list] = {c: [] for c in COLUMNS}
        dropped: list[dict[str, str]] = []
        for i in range(lo, hi):
            try:
                row = _row(src.load(i), src.kind, cfg, seg)
            except ItemError as exc:
                dropped.append({"id": src.ids[i], "reason": str(exc)})
            else:
                for c in COLUMNS:
                    rows[c].append(row[c])
            bar.update(1)
        tmp = shards_root / f"shard-{k:05d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if rows["id"]:  # datasets cannot load back a saved empty dataset: an all-dropped shard has none
            with quiet_datasets():
                ds_mod.Dataset.from_dict(rows, features=feats).save_to_disk(str(tmp / "data"))
        (tmp / "done.json").write_text(json.dumps({"kept": rows["id"], "dropped": dropped}), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
    bar.close()
    return _finish(out, cfg, len(bounds), len(finished))


def _finish(out: Path, cfg: PrepareConfig, n_shards: int, skipped: int) -> PrepareResult:
    """Concatenate the shards into ``OUT/dataset`` (not written when every item was dropped)."""
    ds_mod = require_datasets()
    parts, dropped = [], []
    for k in range(n_shards):
        folder = out / "shards" / f"shard-{k:05d}"
        done = json.loads((folder / "done.json").read_text(encoding="utf-8"))
        dropped += done["dropped"]
        if done["kept"]:
            parts.append(ds_mod.load_from_disk(str(folder / "data")))
    tmp, final = out / "dataset.tmp", out / "dataset"
    shutil.rmtree(final, ignore_errors=True)
    kept = sum(len(p) for p in parts)
    if parts:
        shutil.rmtree(tmp, ignore_errors=True)
        with quiet_datasets():
            ds_mod.concatenate_datasets(parts).save_to_disk(str(tmp))
        tmp.replace(final)
    _write_report(out, cfg, kept, dropped, True)
    return PrepareResult(final, kept, dropped, skipped)


def dataset_folder(path: str | Path) -> Path:
    """The saved dataset of a prepare output folder (``OUT`` or ``OUT/dataset``)."""
    p = Path(path)
    for cand in (p / "dataset", p):
        if is_hf_folder(cand):
            return cand
    raise MaskPixError(f"{p}: not a prepared dataset (run maskpix-cli train prepare first)")


@dataclass
class PreparedItem:
    id: str
    image: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    instruction: str


class PreparedItems(Sequence):
    """A prepared dataset as training items (``image`` / ``target`` / ``mask`` / ``instruction``)."""

    def __init__(self, path: str | Path):
        ds_mod = require_datasets()
        self.path = dataset_folder(path)
        self.ds = ds_mod.load_from_disk(str(self.path))
        missing = [c for c in ("image", "target", "mask", "instruction") if c not in self.ds.column_names]
        if missing:
            raise MaskPixError(f"{self.path}: the dataset lacks the column(s) {', '.join(missing)}")
        if len(self.ds) == 0:
            raise MaskPixError(f"{self.path}: the dataset is empty")
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> PreparedItem:  # type: ignore[override]
        row = self.ds[int(i)]
        rid = str(row.get("id", i))
        image, target = images.image_from_pil(row["image"]), images.image_from_pil(row["target"])
        mask = np.asarray(row["mask"].convert("L")) >= 128
        self._shape = self._shape or image.shape
        for name, arr in (("image", image), ("target", target), ("mask", mask)):
            if arr.shape[:2] != self._shape[:2]:
                raise MaskPixError(
                    f"{self.path}: item {rid!r} field '{name}' is {arr.shape[1]}x{arr.shape[0]}, the first "
                    f"item {self._shape[1]}x{self._shape[0]}: prepare with one --size"
                )
        return PreparedItem(rid, image, target, mask, row["instruction"])
