"""Dataset evaluation: every mask mode against the IP2P baseline on PIE-Bench- and MagicBrush-style folders.

Qt-free and importable without torch (torch, accelerate and matplotlib are imported where they are used).

- Readers turn a dataset folder into :class:`EvalItem` records (:func:`read_dataset`).
- :func:`load_item` reads an item's images and masks; a bad item raises :class:`ItemError`.
- :func:`evaluate_item` runs the editor once per needed mask mode and yields one row per (item, mode);
  the baseline comes from the first run, it is not recomputed for its own row.
- :class:`JsonlAppender` appends each row at once (flush + fsync); :func:`done_keys` and
  :func:`merge_rows` make runs resumable and shard-aware (one ``shard-{rank}.jsonl`` per process).
- :func:`write_report` writes ``results.jsonl``/``results.csv``/``summary.json``/``summary.md``, a
  distribution plot and a grid image.
- :func:`run_eval` ties it together under ``accelerate.PartialState`` (plain, ``torchrun`` or
  ``accelerate launch``): items are split with ``split_between_processes`` and rank 0 merges.

Row schema (one JSON object per line): ``item``, ``mode``, ``status`` ("ok" or "error"), ``error``,
``dataset``, ``edit_type``, ``instruction``, ``prompt``, ``seed``, ``metrics`` (name -> number, "inf"
strings for infinities, null when missing), ``missing`` (name -> reason), ``files`` (relative paths of
the saved images), ``run_s``, ``rank``, ``finished_at``, ``config``, ``model`` (provenance) and
``edit_metrics`` (the app's metrics of the row's output, as the app and ``maskpix-cli run`` report them).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from maskpix_desktop.core import images, masks, metric_catalog, metrics
from maskpix_desktop.core.blend import MASK_MODES
from maskpix_desktop.core.editor import NO_MASK_INPUT
from maskpix_desktop.core.errors import ImageLoadError, MaskPixError
from maskpix_desktop.core.eval_store import (
    JsonlAppender,
    OutputLock,
    json_kind,
    read_rows,
    row_to_json,
)
from maskpix_desktop.core.eval_store import repair_tail as _repair_tail
from maskpix_desktop.core.export import comparison_grid, json_safe, mask_overlay
from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.core.metric_catalog import MetricSpec
from maskpix_desktop.core.pipeline import run_edit

log = logging.getLogger(__name__)

#: The rows of an item: the unmasked IP2P baseline, then each mask mode.
MODES = ("baseline", *MASK_MODES)
#: The rows run when no mode is named: all but ``trained``, which needs a mask checkpoint (``--ip2p``).
DEFAULT_MODES = tuple(m for m in MODES if m != "trained")
MODE_LABELS = {"baseline": "IP2P baseline", **{m: m for m in MASK_MODES}}
FORMATS = ("pie", "magicbrush")
PIE_SIZE = (512, 512)
PIE_MAPPING = "mapping_file.json"
MB_SESSIONS = "edit_sessions.json"
MB_CAPTIONS = "global_descriptions.json"
MB_JSONL = "metadata.jsonl"

#: PIE-Bench editing types (``editing_type_id``), as named in the PIE-Bench paper.
PIE_EDIT_TYPES = {
    "0": "random editing",
    "1": "change object",
    "2": "add object",
    "3": "delete object",
    "4": "change attribute (content)",
    "5": "change attribute (pose)",
    "6": "change attribute (color)",
    "7": "change attribute (material)",
    "8": "change background",
    "9": "change style",
}

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
PLOT_PNG = "distributions.png"
GRID_PNG = "grid.png"
CONFIG_JSON = "eval-config.json"
ITEMS_DIR = "items"
SHARD_GLOB = "shard-*.jsonl"


#: Every per-row metric (core/metric_catalog.py, the one table), in the order of the paper's table.
#: Aliases for old callers; the report reads the catalogue at call time.
METRICS: tuple[MetricSpec, ...] = tuple(metric_catalog.specs(metric_catalog.EVAL_KEYS))
METRIC_BY_KEY = {m.key: m for m in METRICS}
PIE_KEYS = ("pie_psnr", "pie_lpips", "pie_mse", "pie_ssim", "clip_score", "clip_score_region", "leakage_mean")
MB_KEYS = ("l1", "clip_i", *PIE_KEYS)
#: Metrics of the unedited part (1 - M): undefined when the mask covers the whole image.
BACKGROUND_KEYS = ("pie_psnr", "pie_lpips", "pie_mse", "pie_ssim", "leakage_mean", "leakage_p99")
WHOLE_MASK = "the mask covers the whole image: no unedited part (NaN in PIE-Bench, left out of the means)"


class ItemError(MaskPixError):
    """One dataset item cannot be evaluated (unreadable image, wrong mask size, missing field)."""


# ============================================================================================ datasets


@dataclass(frozen=True)
class EvalItem:
    """One edit of a dataset. ``problem`` is set when the record itself is broken (reported as an error)."""

    id: str
    dataset: str
    image: Path
    instruction: str
    prompt: str | None = None  # the description of the wanted result (CLIP score text)
    source_prompt: str | None = None
    edit_type: str = ""
    mask_rle: tuple[int, ...] | None = None  # PIE-Bench: (start, length) pairs at 512x512
    blended_word: str = ""  # PIE-Bench: the words naming the edited object (auto-mask parser check)
    mask_path: Path | None = None  # MagicBrush: brush mask image
    target: Path | None = None  # MagicBrush: ground-truth edited image
    problem: str | None = None

    @property
    def slug(self) -> str:
        """The folder of the item's saved images: a readable file-safe prefix of the id plus a hash of the
        exact id, so ids that differ only in unsafe characters (``a b``/``a_b``, ``猫``/``犬``) or in case
        (on case-insensitive disks) never share a folder. Rows name their files, so resuming a run made
        with the older plain slugs still finds the old folders."""
        return item_folder(self.id)


def item_folder(item_id: str) -> str:
    """``<safe prefix, at most 40 chars>-<10 hex of sha256(id)>``; never empty, never ``.``/``..``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)[:40].strip(".") or "item"
    return f"{safe}-{hashlib.sha256(item_id.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def detect_format(root: Path) -> str:
    root = Path(root)
    if (root / PIE_MAPPING).is_file():
        return "pie"
    if (root / MB_SESSIONS).is_file() or (root / MB_JSONL).is_file():
        return "magicbrush"
    raise MaskPixError(
        f"{root} is neither a PIE-Bench folder ({PIE_MAPPING}) nor a MagicBrush folder "
        f"({MB_SESSIONS} with images/, or {MB_JSONL}); pass --format to say which"
    )


def _strip_brackets(text: str) -> str:
    """PIE-Bench marks the edited words with [ ]; its evaluation removes them before CLIP."""
    return text.replace("[", "").replace("]", "")


def _clean(text: str) -> str:
    """Text as UTF-8 can store it: a lone surrogate (possible in JSON) becomes its ``\\udXXX`` escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _load_index(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise MaskPixError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def _field(rec: dict, name: str, problems: list[str], lacks: list[str] | None = None) -> str:
    """A text field of an index record ("" when absent); a wrong type is a problem, never str()-ed."""
    value = rec.get(name)
    if value is None or value == "":
        if lacks is not None:
            lacks.append(name)
        return ""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, int) and not isinstance(value, bool) and name in ("editing_type_id", "img_id"):
        return str(value)
    problems.append(f"'{name}' is {json_kind(value)}, not text")
    return ""


def _whole(value: Any, least: int) -> int | None:
    """``value`` as an integer >= ``least`` (ints, integral floats, digit strings), else None."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= least else None


def _rle(value: Any) -> tuple[tuple[int, ...] | None, str | None]:
    if not isinstance(value, list):
        return None, f"mask is {json_kind(value)}, not a list of (start, length) integers"
    runs = [_whole(v, 0) for v in value]
    bad = next((v for v, r in zip(value, runs, strict=True) if r is None), None)
    if bad is not None or any(r is None for r in runs):
        return None, f"mask holds {bad!r:.40}, not a non-negative integer"
    return tuple(r for r in runs if r is not None), None


def read_pie(root: Path) -> list[EvalItem]:
    """Items of a PIE-Bench folder: ``mapping_file.json`` plus images under ``annotation_images/``. A record
    of the wrong shape becomes an item with a ``problem`` (an error row), never a crash."""
    root = Path(root)
    data = _load_index(root / PIE_MAPPING)
    if not isinstance(data, dict):
        raise MaskPixError(f"{root / PIE_MAPPING} must map item ids to records, not a {json_kind(data)}")
    img_root = root / "annotation_images" if (root / "annotation_images").is_dir() else root
    items = []
    for key in sorted(data):
        rec = data[key]
        problems = [] if isinstance(rec, dict) else [f"the record is {json_kind(rec)}, not an object"]
        rec = rec if isinstance(rec, dict) else {}
        lacks: list[str] = []
        image_path = _field(rec, "image_path", problems, lacks)
        instruction = _field(rec, "editing_instruction", problems, lacks)
        prompt, source = _field(rec, "editing_prompt", problems), _field(rec, "original_prompt", problems)
        edit_type = _field(rec, "editing_type_id", problems)
        rle_t, rle_problem = _rle(rec["mask"]) if "mask" in rec else (None, None)
        if "mask" not in rec and isinstance(data[key], dict):
            lacks.append("mask")  # an empty list is a valid (empty) mask
        problem = problems[0] if problems else f"record lacks {', '.join(lacks)}" if lacks else rle_problem
        items.append(
            EvalItem(
                id=_clean(str(key)),
                dataset="pie",
                image=img_root / image_path,
                instruction=instruction,
                prompt=_strip_brackets(prompt) or None,
                source_prompt=_strip_brackets(source) or None,
                edit_type=edit_type,
                mask_rle=rle_t,
                blended_word=_clean(str(rec.get("blended_word", "") or "")),
                problem=problem,
            )
        )
    return items


MB_TURN_KEYS = ("input", "mask", "instruction", "output")
MB_HF_KEYS = ("source_img", "mask_img", "instruction", "target_img")


def _mb_item(
    item_id: str, folder: Path, rec: dict, problems: list[str], where: str, keys: Sequence[str], **extra: Any
) -> EvalItem:
    """One MagicBrush turn; ``keys`` name its input, mask, instruction and output fields in ``rec``."""
    lacks: list[str] = []
    image, mask, instruction, output = (_field(rec, k, problems, lacks) for k in keys)
    problem = problems[0] if problems else f"lacks {', '.join(lacks)}" if lacks else None
    return EvalItem(
        id=item_id,
        dataset="magicbrush",
        image=folder / image,
        instruction=instruction,
        mask_path=folder / mask,
        target=folder / output,
        problem=f"{where}: {problem}" if problem else None,
        **extra,
    )


def read_magicbrush(root: Path) -> list[EvalItem]:
    """Items of a MagicBrush folder.

    Either the official test layout: ``edit_sessions.json`` (``{img_id: [{"input", "mask", "instruction",
    "output"}, ...]}``) with files in ``images/<img_id>/`` and optional ``global_descriptions.json``
    (``{img_id: {output file: caption}}``) for the CLIP score; one item per turn, id ``<img_id>-<turn>``.
    Or ``metadata.jsonl`` with the Hugging Face columns ``img_id``, ``turn_index``, ``source_img``,
    ``mask_img``, ``instruction``, ``target_img`` (paths relative to the folder) and optional ``caption``.
    A session, turn or line of the wrong shape becomes an item with a ``problem`` (an error row).
    """
    root = Path(root)
    items: list[EvalItem] = []
    if (root / MB_SESSIONS).is_file():
        sessions = _load_index(root / MB_SESSIONS)
        if not isinstance(sessions, dict):
            raise MaskPixError(
                f"{root / MB_SESSIONS} must map image ids to lists of turns, not a {json_kind(sessions)}"
            )
        captions = _load_index(root / MB_CAPTIONS) if (root / MB_CAPTIONS).is_file() else {}
        for img_id in sorted(sessions):
            folder, turns, sid = root / "images" / img_id, sessions[img_id], _clean(img_id)
            if not isinstance(turns, list):
                why = f"is {json_kind(turns)}, not a list of turns"
                items.append(_mb_item(sid, folder, {}, [why], f"session {sid!r}", MB_TURN_KEYS))
                continue
            caps = captions.get(img_id) if isinstance(captions, dict) else None
            for turn, rec in enumerate(turns, start=1):
                problems = [] if isinstance(rec, dict) else [f"is {json_kind(rec)}, not a record"]
                rec = rec if isinstance(rec, dict) else {}
                out_name = rec.get("output")
                caption = caps.get(out_name) if isinstance(caps, dict) and isinstance(out_name, str) else None
                prompt = _clean(caption) if isinstance(caption, str) and caption else None
                extra = {"prompt": prompt, "edit_type": f"turn {turn}"}
                items.append(
                    _mb_item(f"{sid}-{turn}", folder, rec, problems, f"turn {turn}", MB_TURN_KEYS, **extra)
                )
        return items
    try:
        lines = (root / MB_JSONL).read_bytes().split(b"\n")
    except OSError as exc:
        raise MaskPixError(f"cannot read {root / MB_JSONL}: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problems: list[str] = []
        try:
            rec = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            rec, problems = {}, ["not UTF-8 text"]
        except (ValueError, RecursionError):
            rec, problems = {}, ["not valid JSON"]
        if not isinstance(rec, dict):
            rec, problems = {}, [f"is {json_kind(rec)}, not a record"]
        img_id = _field(rec, "img_id", problems) or f"line{n}"
        raw_turn = rec.get("turn_index", 1)
        turn = _whole(1 if raw_turn is None else raw_turn, 1)
        if turn is None:
            problems.append(f"turn_index {raw_turn!r:.40} is not a whole number >= 1")
        caption = rec.get("caption")
        items.append(
            _mb_item(
                f"{img_id}-{turn}" if turn is not None else f"{img_id}-line{n}",
                root,
                rec,
                problems,
                f"line {n}",
                MB_HF_KEYS,
                prompt=_clean(caption) if isinstance(caption, str) and caption else None,
                edit_type=f"turn {turn or '?'}",
            )
        )
    return sorted(items, key=lambda it: it.id)


def read_dataset(root: str | Path, fmt: str = "auto") -> tuple[str, list[EvalItem]]:
    """``(format, items)``; item ids are unique (a duplicate is an error in the index)."""
    root = Path(root)
    if not root.is_dir():
        raise MaskPixError(f"dataset folder not found: {root}")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise MaskPixError(f"unknown dataset format {fmt!r}; use pie, magicbrush or auto")
    items = read_pie(root) if fmt == "pie" else read_magicbrush(root)
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise MaskPixError(f"duplicate item id {it.id!r} in {root}")
        seen.add(it.id)
    return fmt, items


# ============================================================================================ items


@dataclass(frozen=True, eq=False)
class LoadedItem:
    image: np.ndarray
    edit_mask: np.ndarray  # the annotated mask given to the editor (bool HxW)
    metric_mask: np.ndarray  # the mask the background metrics leave out (PIE: optionally border-marked)
    target: np.ndarray | None = None


def _magicbrush_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """MagicBrush ships the source image with the brushed region made transparent: alpha < 128 is the
    edit region. A mask without transparency is read as white = edit. Masks may come at another
    resolution than the image (resized, nearest); a different aspect ratio is a wrong mask."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            alpha = np.asarray(img.convert("RGBA"))[..., 3] if has_alpha else None
    except (OSError, ValueError) as exc:
        raise ItemError(f"cannot read mask {path}: {exc}") from None
    if alpha is not None and alpha.min() < 255:
        m = alpha < 128
    else:
        try:
            m = images.load_mask(path)
        except ImageLoadError as exc:
            raise ItemError(str(exc)) from None
    h, w = size
    mh, mw = m.shape
    if abs(mh / mw - h / w) > 0.01 * (h / w):
        raise ItemError(f"mask {path.name} is {mw}x{mh}, image is {w}x{h}: wrong mask size")
    return masks.resize_mask(m, (h, w)) if (mh, mw) != (h, w) else m


def load_item(item: EvalItem, *, pie_border: bool = True) -> LoadedItem:
    """Read an item's images and masks; :class:`ItemError` for anything that makes it unusable."""
    if item.problem:
        raise ItemError(item.problem)
    if not item.instruction.strip():
        raise ItemError("empty editing instruction")
    try:
        image = images.load_image(item.image)
    except ImageLoadError as exc:
        raise ItemError(str(exc)) from None
    h, w = image.shape[:2]
    target = None
    if item.dataset == "pie":
        if (h, w) != PIE_SIZE:
            raise ItemError(
                f"image is {w}x{h} but PIE-Bench masks are defined at {PIE_SIZE[1]}x{PIE_SIZE[0]}: "
                "wrong mask size"
            )
        rle = item.mask_rle or ()
        n = PIE_SIZE[0] * PIE_SIZE[1]
        if any(s >= n for s in rle[0::2]):
            raise ItemError("mask RLE starts past the 512x512 image: wrong mask size")
        try:
            edit_mask = masks.pie_rle_decode(rle, PIE_SIZE, mark_border=False)
            metric_mask = masks.pie_rle_decode(rle, PIE_SIZE, mark_border=pie_border)
        except ValueError as exc:
            raise ItemError(f"bad mask RLE: {exc}") from None
    else:
        assert item.mask_path is not None and item.target is not None
        edit_mask = _magicbrush_mask(item.mask_path, (h, w))
        metric_mask = edit_mask
        try:
            target = images.load_image(item.target)
        except ImageLoadError as exc:
            raise ItemError(f"target: {exc}") from None
    return LoadedItem(image=image, edit_mask=edit_mask, metric_mask=metric_mask, target=target)


# ============================================================================================ metrics


class LpipsScorer:
    """LPIPS as PIE-Bench computes it (``net='squeeze'``, both images x (1 - M), inputs scaled to [-1, 1]),
    built only from local files: the ``lpips`` package's linear layers and torchvision's backbone
    checkpoint in the torch hub cache. Nothing is downloaded."""

    BACKBONES = {
        "squeeze": ("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth"),
        "alex": ("alexnet", "alexnet-owt-7be5be79.pth"),
        "vgg": ("vgg16", "vgg16-397923af.pth"),
    }

    def __init__(self, model: Any, net: str, device: str):
        self.model = model
        self.net = net
        self.device = device
        self.name = f"lpips/{net}"

    @classmethod
    def load(cls, net: str = "squeeze", device: str = "cpu") -> tuple[LpipsScorer | None, str | None]:
        """``(scorer, None)``, or ``(None, reason)`` when the package or any weights file is absent."""
        try:
            import lpips  # type: ignore[import-not-found]
        except ImportError:
            return None, "the 'lpips' package is not installed (pip install lpips)"
        if net not in cls.BACKBONES:
            return None, f"unknown LPIPS net {net!r}"
        import torch
        import torchvision

        linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        if not linear.is_file():
            return None, f"LPIPS linear weights not found: {linear}"
        arch, fname = cls.BACKBONES[net]
        backbone = Path(torch.hub.get_dir()) / "checkpoints" / fname
        if not backbone.is_file():
            return None, f"LPIPS backbone weights not found locally: {backbone} (torchvision {arch})"
        try:
            # pnet_rand=True: lpips builds the backbone without fetching it; we load the local copy.
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
            tv = getattr(torchvision.models, arch)(weights=None)
            tv.load_state_dict(torch.load(backbone, map_location="cpu", weights_only=True))
            for name, block in model.net.named_children():
                if name.startswith("slice"):
                    for idx, layer in block.named_children():
                        layer.load_state_dict(tv.features[int(idx)].state_dict())
            model = model.eval().to(device)
        except Exception as exc:  # a broken install must not stop the evaluation
            return None, f"LPIPS could not be built from local weights: {type(exc).__name__}: {exc}"
        return cls(model, net, device), None

    def __call__(self, orig: np.ndarray, edit: np.ndarray, mask: np.ndarray) -> float:
        import torch

        keep = (~masks.as_bool(mask))[..., None].astype(np.float32)

        def tensor(a: np.ndarray) -> Any:
            x = torch.from_numpy(a.astype(np.float32) / 255.0 * keep).permute(2, 0, 1)[None]
            return (x * 2 - 1).to(self.device)

        with torch.inference_mode():
            return float(self.model(tensor(orig), tensor(edit)).flatten()[0])


@dataclass
class Scorers:
    """The metric models of a run; ``missing`` holds the reason for each absent one."""

    clip: Any = None
    lpips: LpipsScorer | None = None
    missing: dict[str, str] = field(default_factory=dict)


def magicbrush_l1(edit: np.ndarray, target: np.ndarray) -> float:
    """MagicBrush L1: the edit resized to the target's size (bicubic), mean |edit - target| on [0, 1]."""
    if edit.shape != target.shape:
        from PIL import Image

        size = (target.shape[1], target.shape[0])
        edit = np.asarray(Image.fromarray(edit).resize(size, Image.Resampling.BICUBIC))
    return float(np.mean(np.abs(edit.astype(np.float64) - target.astype(np.float64))) / 255.0)


def score_row(
    orig: np.ndarray, edit: np.ndarray, loaded: LoadedItem, item: EvalItem, scorers: Scorers
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric of one output; a metric that cannot be computed is None with a reason in ``missing``."""
    m = loaded.metric_mask
    out: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    if masks.as_bool(m).all():  # no unedited part: PIE-Bench's evaluation gives NaN, left out of means
        for key in BACKGROUND_KEYS:
            out[key], missing[key] = None, WHOLE_MASK
    else:
        out["pie_psnr"] = metrics.pie_background_psnr(orig, edit, m)
        out["pie_mse"] = metrics.pie_background_mse(orig, edit, m)
        out["pie_ssim"] = metrics.pie_background_ssim(orig, edit, m)
        out["leakage_mean"], out["leakage_p99"] = metrics.leakage(metrics.change_map(orig, edit), m)
        if scorers.lpips is not None:
            out["pie_lpips"] = scorers.lpips(orig, edit, m)
        else:
            out["pie_lpips"] = None
            missing["pie_lpips"] = scorers.missing.get("lpips", "LPIPS unavailable")
    clip = scorers.clip
    clip_reason = scorers.missing.get("clip", "CLIP unavailable")
    if clip is None or not item.prompt:
        reason = clip_reason if clip is None else "the item has no editing prompt / target caption"
        out["clip_score"] = out["clip_score_region"] = None
        missing["clip_score"] = missing["clip_score_region"] = reason
    else:
        out["clip_score"] = clip.score(edit, item.prompt)
        region = clip.region_score(edit, loaded.edit_mask, item.prompt)
        out["clip_score_region"] = None if math.isnan(region) else region
        if math.isnan(region):
            missing["clip_score_region"] = "empty mask"
    if item.dataset == "magicbrush":
        assert loaded.target is not None
        out["l1"] = magicbrush_l1(edit, loaded.target)
        if clip is None:
            out["clip_i"] = None
            missing["clip_i"] = clip_reason
        else:
            feats = clip.image_features([edit, loaded.target])
            out["clip_i"] = float((feats[0] * feats[1]).sum())
    return out, missing


# ============================================================================================ running


#: ``EditParams`` fields a config leaves out: each item brings its instruction, each run its mask mode.
PER_RUN_FIELDS = ("instruction", "mask_mode")
#: Config fields that ``eval-config.json`` files (and rows) written before the evaluation took every
#: ``EditParams`` field lack, with the values those runs used (the editor's defaults of the time).
LEGACY_CONFIG_DEFAULTS: dict[str, Any] = {
    "seam": "none",
    "negative_prompt": "",
    "latent_dilate": 8,
    "crop_pad": 0.15,
}


def _default_params() -> EditParams:
    return EditParams(instruction="", seed=1234)  # every item gets the same seed, 1234 unless told


@dataclass(frozen=True)
class EvalConfig:
    """Everything that determines the numbers of a row. A rerun into the same folder must match.

    ``params``: the edit parameters of every run (any field may vary; the instruction and mask mode
    are replaced per item and run, see :meth:`run_params`).
    """

    params: EditParams = field(default_factory=_default_params)
    pie_border: bool = True
    precision: str = "auto"

    def run_params(self, instruction: str, mode: str) -> EditParams:
        return replace(self.params, instruction=instruction, mask_mode=mode)

    def to_dict(self) -> dict[str, Any]:
        """The flat record in ``eval-config.json`` and every row: each ``EditParams`` field but the
        per-run ones, then ``pie_border`` and ``precision``."""
        flat = {k: v for k, v in self.params.to_dict().items() if k not in PER_RUN_FIELDS}
        return {**flat, "pie_border": self.pie_border, "precision": self.precision}

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config record as this version writes it: records of older versions lack the fields in
    :data:`LEGACY_CONFIG_DEFAULTS`, which their runs held at those values."""
    return {**LEGACY_CONFIG_DEFAULTS, **config}


def _base_row(item: EvalItem, mode: str, cfg: EvalConfig) -> dict[str, Any]:
    return {
        "item": item.id,
        "mode": mode,
        "dataset": item.dataset,
        "edit_type": item.edit_type,
        "instruction": item.instruction,
        "prompt": item.prompt,
        "seed": cfg.params.seed,
        "config": cfg.to_dict(),
    }


def error_rows(item: EvalItem, modes: Iterable[str], cfg: EvalConfig, message: str) -> list[dict[str, Any]]:
    return [
        {**_base_row(item, mode, cfg), "status": "error", "error": message, "metrics": {}, "missing": {}}
        for mode in modes
    ]


def evaluate_item(
    item: EvalItem,
    todo: Sequence[str],
    editor: Any,
    scorers: Scorers,
    cfg: EvalConfig,
    out_dir: Path | None,
    *,
    model_info: Callable[[], dict[str, str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one finished row per mode in ``todo`` as soon as it is done.

    One :func:`~maskpix_desktop.core.pipeline.run_edit` per mask mode (the app's path: the same images,
    metrics and provenance); the unmasked baseline is computed by the first run only and passed
    to the next ones (``EditRequest.baseline``), so all four modes cost three IP2P runs, not five. With
    ``out_dir`` the item's images are saved under ``items/<slug>/`` before its rows are yielded.
    ``model_info``: facts about the loaded models for each row's ``model`` (``ModelService.model_info``).
    Raises :class:`ItemError` (nothing yielded) for a bad item.
    """
    loaded = load_item(item, pie_border=cfg.pie_border)
    folder = out_dir / ITEMS_DIR / item.slug if out_dir is not None else None
    files: dict[str, str] = {}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        base = {
            "original": loaded.image,
            "mask": loaded.edit_mask,
            **({"target": loaded.target} if loaded.target is not None else {}),
        }
        for name, arr in base.items():
            path = folder / f"{name}.png"
            if not path.is_file():
                images.save_image(path, arr)
            files[name] = f"{ITEMS_DIR}/{item.slug}/{name}.png"
    runs = [m for m in MODES[1:] if m in todo]
    if "baseline" in todo and not runs:
        runs = ["pixel"]  # cheapest run that yields a baseline
    want_baseline = "baseline" in todo
    baseline = None  # the unmasked run is the same for every mode: run it once, reuse it
    captions = (item.source_prompt, item.prompt) if item.source_prompt and item.prompt else None
    for run_mode in runs:
        t0 = time.perf_counter()
        request = EditRequest(
            image=loaded.image,
            mask=loaded.edit_mask,
            params=cfg.run_params(item.instruction, run_mode),
            baseline=baseline,
        )
        result = run_edit(editor, request, clip=scorers.clip, captions=captions, model_info=model_info)
        run_s = result.timings.get("total_s", time.perf_counter() - t0)  # the edit, not its metrics
        baseline = result.baseline
        outputs = []
        if want_baseline:
            outputs.append(("baseline", result.baseline, result.timings.get("baseline_s", run_s)))
            want_baseline = False
        if run_mode in todo:
            outputs.append((run_mode, result.blended, run_s))
        for mode, arr, seconds in outputs:
            row = _base_row(item, mode, cfg)
            vals, missing = score_row(loaded.image, arr, loaded, item, scorers)
            row_files = dict(files)
            if folder is not None:
                images.save_image(folder / f"{mode}.png", arr)
                row_files["output"] = f"{ITEMS_DIR}/{item.slug}/{mode}.png"
            row.update(
                status="ok",
                error=None,
                metrics=vals,
                missing=missing,
                files=row_files,
                run_s=round(float(seconds), 4),
                model=dict(result.model),
                nsfw=bool(result.nsfw),
                edit_metrics=result.metrics.get("baseline" if mode == "baseline" else "blended", {}),
            )
            yield row


# ============================================================================================ JSONL


def shard_path(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / f"shard-{rank}.jsonl"


def all_rows(out_dir: Path) -> list[dict[str, Any]]:
    """Every row in the folder: the merged results first, then each shard (any number of them)."""
    out_dir = Path(out_dir)
    rows = read_rows(out_dir / RESULTS_JSONL)
    for path in sorted(out_dir.glob(SHARD_GLOB)):
        rows += read_rows(path)
    return rows


def done_keys(out_dir: Path, *, retry_errors: bool = False) -> set[tuple[str, str]]:
    """(item, mode) pairs already finished in any shard (error rows too, unless ``retry_errors``)."""
    return _done(all_rows(out_dir), retry_errors)


def _done(rows: Iterable[dict[str, Any]], retry_errors: bool) -> set[tuple[str, str]]:
    ok = ("ok",) if retry_errors else ("ok", "error")
    return {(r["item"], r["mode"]) for r in rows if r.get("status") in ok}


def merge_rows(
    rows: Iterable[dict[str, Any]], item_ids: Sequence[str], modes: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (item, mode) of the selection, in dataset then mode order; an ok row beats an error
    row, then the later one wins."""
    order = {item: i for i, item in enumerate(item_ids)}
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["item"], row["mode"])
        if row["item"] not in order or row["mode"] not in modes:
            continue
        old = best.get(key)
        rank = (row.get("status") == "ok", float(row.get("finished_at") or 0.0))
        if old is None or rank >= (old.get("status") == "ok", float(old.get("finished_at") or 0.0)):
            best[key] = row
    return sorted(best.values(), key=lambda r: (order[r["item"]], MODES.index(r["mode"])))


# ============================================================================================ report


def _stats(values: list[float | None], excluded: int = 0) -> dict[str, Any]:
    """Mean, median and counts; ``n_excluded`` of the missing values are items left out on purpose
    (a whole-image mask), the rest of ``n_missing`` could not be computed."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    finite = [v for v in present if math.isfinite(v)]
    n_inf = len(present) - len(finite)
    if not present:
        mean = None
    elif n_inf:
        mean = math.fsum(present)  # +inf or -inf (or nan when both occur)
    else:
        mean = math.fsum(finite) / len(finite)
    return {
        "mean": mean,
        "mean_finite": math.fsum(finite) / len(finite) if finite else None,
        "median": float(np.median(present)) if present else None,
        "n": len(present),
        "n_inf": n_inf,
        "n_missing": len(values) - len(present),
        "n_excluded": excluded,
    }


def _aggregate(rows: list[dict[str, Any]], keys: Sequence[str], modes: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in modes:
        mrows = [r for r in rows if r["mode"] == mode and r.get("status") == "ok"]
        if not mrows:
            continue
        entry: dict[str, Any] = {"items": len(mrows)}
        for key in keys:
            whole = sum(1 for r in mrows if (r.get("missing") or {}).get(key) == WHOLE_MASK)
            st = _stats([r["metrics"].get(key) for r in mrows], whole)
            reasons = sorted({r.get("missing", {}).get(key) for r in mrows} - {None})
            if reasons:
                st["missing_reason"] = "; ".join(reasons)
            entry[key] = st
        out[mode] = entry
    return out


def _cell(stat: dict[str, Any] | None, spec: MetricSpec) -> str:
    if stat is None:
        return "—"
    if stat["n"] == 0:
        if stat.get("n_excluded") and stat["n_excluded"] == stat["n_missing"]:
            return "NaN"  # every item has a whole-image mask (PIE-Bench: NaN)
        return "missing" if stat.get("missing_reason") else "—"
    mean = stat["mean"]
    if math.isinf(mean):
        return "∞" if mean > 0 else "−∞"
    text = f"{mean * spec.scale:.{spec.digits}f}"
    return text + "*" if stat["n_missing"] else text


def _table(
    agg: dict[str, Any], keys: Sequence[str], modes: Sequence[str], first: str = "Method"
) -> list[str]:
    specs = metric_catalog.specs(keys)
    lines = [
        "| " + " | ".join([first, "n", *(s.header for s in specs)]) + " |",
        "|" + "---|" * (len(specs) + 2),
    ]
    for mode in modes:
        if mode not in agg:
            continue
        cells = [MODE_LABELS[mode], str(agg[mode]["items"]), *(_cell(agg[mode].get(s.key), s) for s in specs)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fmt_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _present_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The catalogue's evaluation metrics that some row has, in the paper's order."""
    return [k for k in metric_catalog.EVAL_KEYS if any(k in (r.get("metrics") or {}) for r in rows)]


def results_csv(rows: list[dict[str, Any]]) -> str:
    keys = _present_keys(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["item", "mode", "status", "edit_type", *keys, "missing", "error", "output", "instruction"]
    )
    for r in rows:
        missing = "; ".join(f"{k}: {v}" for k, v in sorted((r.get("missing") or {}).items()))
        writer.writerow(
            [
                r["item"],
                r["mode"],
                r.get("status", ""),
                r.get("edit_type", ""),
                *(_fmt_csv(r.get("metrics", {}).get(k)) for k in keys),
                missing,
                r.get("error") or "",
                (r.get("files") or {}).get("output", ""),
                r.get("instruction", ""),
            ]
        )
    return buf.getvalue()


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` in the JSONL row shape (metrics as floats, blank -> None)."""
    known = set(metric_catalog.EVAL_KEYS)
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            vals = {k: (float(v) if v != "" else None) for k, v in rec.items() if k in known}
            output = rec.get("output", "")
            rows.append(
                {
                    "item": rec["item"],
                    "mode": rec["mode"],
                    "status": rec.get("status", "ok"),
                    "edit_type": rec.get("edit_type", ""),
                    "metrics": vals,
                    "error": rec.get("error") or None,
                    "instruction": rec.get("instruction", ""),
                    "files": {"output": output} if output else {},
                }
            )
    return rows


def load_results(path: str | Path) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """``(folder, rows, summary)`` of a finished evaluation; ``path`` is its folder or a file in it.

    Rows come from ``results.jsonl`` (full precision, file paths) or else ``results.csv``; the summary
    from ``summary.json`` (empty when absent). :class:`MaskPixError` when the folder holds neither.
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if (folder / RESULTS_JSONL).is_file():
        rows = read_rows(folder / RESULTS_JSONL)
    elif (folder / RESULTS_CSV).is_file():
        try:
            rows = read_results_csv(folder / RESULTS_CSV)
        except (OSError, ValueError, KeyError) as exc:
            raise MaskPixError(f"cannot read {folder / RESULTS_CSV}: {exc}") from exc
    else:
        raise MaskPixError(f"{folder} holds no evaluation results ({RESULTS_JSONL} or {RESULTS_CSV})")
    summary: dict[str, Any] = {}
    if (folder / SUMMARY_JSON).is_file():
        try:
            summary = json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s is unreadable; showing the rows only", folder / SUMMARY_JSON)
    return folder, rows, summary


def plot_distributions(rows: list[dict[str, Any]], modes: Sequence[str], path: Path) -> None:
    """Per-item leakage and background PSNR per mode (box plots with the items as points); Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=110, layout="constrained")
    modes = [m for m in modes if any(r["mode"] == m and r.get("status") == "ok" for r in rows)]
    panels = [
        ("leakage_mean", "Leakage outside the mask (mean |Δ|, 0–255) ↓"),
        ("pie_psnr", "Background PSNR (dB, PIE-Bench) ↑"),
    ]
    rng = np.random.default_rng(0)
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        tops: list[tuple[int, np.ndarray]] = []
        for j, mode in enumerate(modes):
            vals = np.array(
                [
                    float(r["metrics"][key])
                    for r in rows
                    if r["mode"] == mode and r.get("status") == "ok" and r["metrics"].get(key) is not None
                ],
                dtype=np.float64,
            )
            finite = vals[np.isfinite(vals)]
            if finite.size:
                ax.boxplot([finite], positions=[j], widths=0.5, showfliers=False)
            if vals.size:
                tops.append((j, vals))
        finite_all = [float(v) for _, vals in tops for v in vals[np.isfinite(vals)]]
        top = (max(finite_all) if finite_all else 0.0) + 5.0
        for j, vals in tops:
            shown = np.where(np.isfinite(vals), vals, top)
            ax.scatter(j + rng.uniform(-0.15, 0.15, shown.size), shown, s=12, alpha=0.7)
            n_inf = int(np.isinf(vals).sum())
            if n_inf:
                ax.annotate(
                    f"∞ ×{n_inf}",
                    (j, top),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=8,
                )
        ax.set_xticks(range(len(modes)), [MODE_LABELS[m] for m in modes])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Per-item distributions ({len({r['item'] for r in rows if r.get('status') == 'ok'})} items)",
        fontsize=11,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close("all")
    images.atomic_write_bytes(path, buf.getvalue())


def make_grid(
    out_dir: Path, rows: list[dict[str, Any]], modes: Sequence[str], n_items: int = 4
) -> np.ndarray | None:
    """original | mask | baseline | each mode (| target) for the first ``n_items`` complete items."""
    by_item: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok" and (r.get("files") or {}).get("output"):
            by_item.setdefault(r["item"], {})[r["mode"]] = r
    strips = []
    for item, mrows in by_item.items():
        if len(strips) >= n_items or not all(m in mrows for m in modes):
            continue
        files = mrows[modes[0]]["files"]
        try:
            orig = images.load_image(out_dir / files["original"])
            mask = images.load_mask(out_dir / files["mask"], size=orig.shape[:2])
            panels = [orig, mask_overlay(orig, mask)]
            labels = [f"{item} original", "mask"]
            for m in modes:
                panels.append(images.load_image(out_dir / mrows[m]["files"]["output"]))
                labels.append(MODE_LABELS[m])
            if "target" in files:
                panels.append(images.load_image(out_dir / files["target"]))
                labels.append("target")
        except (MaskPixError, KeyError) as exc:
            log.warning("grid: skipping %s: %s", item, exc)
            continue
        strips.append(comparison_grid(panels, labels, max_side=192))
    if not strips:
        return None
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=32) for s in strips]
    return np.concatenate(padded, axis=0)


def _mode_settings(cfg: dict[str, Any], modes: Sequence[str]) -> str:
    """The settings of the evaluated modes only (a report without the latent mode never names it)."""
    text = f", latent dilate {cfg.get('latent_dilate', 8)}" if "latent" in modes else ""
    return text + (f", crop padding {cfg.get('crop_pad', 0.15)}" if "crop" in modes else "")


def write_report(
    out_dir: Path,
    rows: list[dict[str, Any]],
    *,
    modes: Sequence[str],
    meta: dict[str, Any],
    throughput: dict[str, Any] | None = None,
    grid_items: int = 4,
) -> dict[str, Any]:
    """Write results.jsonl/.csv, summary.json/.md, the distribution plot and the grid; returns the summary."""
    out_dir = Path(out_dir)
    fmt = meta.get("format", "pie")
    keys = [k for k in (MB_KEYS if fmt == "magicbrush" else PIE_KEYS)]
    all_keys = _present_keys(rows)
    images.atomic_write_text(out_dir / RESULTS_JSONL, "".join(row_to_json(r) + "\n" for r in rows))
    images.atomic_write_text(out_dir / RESULTS_CSV, results_csv(rows))
    ok = [r for r in rows if r.get("status") == "ok"]
    errors = [r for r in rows if r.get("status") != "ok"]
    edit_types = sorted({r.get("edit_type", "") for r in ok}, key=lambda t: (len(t), t))
    whole = sorted({r["item"] for r in ok if (r.get("missing") or {}).get("pie_psnr") == WHOLE_MASK})
    summary: dict[str, Any] = {
        **meta,
        "modes": list(modes),
        "items": len({r["item"] for r in rows}),
        "items_ok": len({r["item"] for r in ok}),
        "rows": len(rows),
        "errors": [{"item": r["item"], "mode": r["mode"], "error": r.get("error")} for r in errors],
        "metrics": {
            k: {"description": metric_catalog.spec(k).summary, "direction": metric_catalog.direction(k)}
            for k in all_keys
        },
        "overall": _aggregate(rows, all_keys, modes),
        "excluded_whole_mask": {
            "count": len(whole),
            "items": whole,
            "metrics": list(BACKGROUND_KEYS),
            "reason": WHOLE_MASK,
        },
        "by_edit_type": {
            t: _aggregate([r for r in ok if r.get("edit_type", "") == t], all_keys, modes) for t in edit_types
        },
        "throughput": throughput or {},
    }
    images.atomic_write_text(out_dir / SUMMARY_JSON, json.dumps(json_safe(summary), indent=2, sort_keys=True))

    plot_ok = bool(ok)
    if plot_ok:
        plot_distributions(rows, modes, out_dir / PLOT_PNG)
    grid = make_grid(out_dir, rows, modes, grid_items) if grid_items > 0 else None
    if grid is not None:
        images.save_image(out_dir / GRID_PNG, grid)

    md = [f"# MaskPix evaluation: {meta.get('dataset_name', '')}", ""]
    cfg = meta.get("config", {})
    md.append(
        f"Dataset `{meta.get('dataset_name', '')}` ({fmt}), {summary['items']} items "
        f"({summary['items_ok']} evaluated, {len({r['item'] for r in errors})} with errors). "
        f"Steps {cfg.get('steps')}, text scale {cfg.get('text_scale')}, "
        f"image scale {cfg.get('image_scale')}, "
        f"seed {cfg.get('seed')} (every item), working size {cfg.get('long_side')}, "
        f"dilate {cfg.get('dilate')}, feather {cfg.get('feather')}, seam {cfg.get('seam', 'none')}"
        + _mode_settings(cfg, modes)
        + (f", negative prompt “{cfg['negative_prompt']}”." if cfg.get("negative_prompt") else ".")
    )
    models = meta.get("models", {})
    md.append("")
    md.append(
        f"Models: IP2P `{Path(str(models.get('ip2p', '?'))).name}`; CLIP `{models.get('clip') or 'missing'}`"
        + (f" ({models['clip_missing']})" if models.get("clip_missing") else "")
        + f"; LPIPS `{models.get('lpips') or 'missing'}`"
        + (f" ({models['lpips_missing']})" if models.get("lpips_missing") else "")
        + "."
    )
    if fmt == "pie":
        border = "with" if cfg.get("pie_border") else "without"
        md.append(
            f"Background metrics on both images × (1 − M), M decoded {border} PIE-Bench's border marking."
        )
    md += ["", "## Mean over items", ""]
    md += _table(summary["overall"], keys, modes)
    md += [
        "",
        "∞: at least one item's background is identical to the original (infinite PSNR). "
        "`*`: mean over the items where the metric exists. `missing`: no item has it (see models).",
    ]
    if whole:
        md += [
            "",
            f"Excluded: {len(whole)} item(s) whose mask covers the whole image have no unedited part; their "
            "PSNR, LPIPS, MSE, SSIM and leakage are NaN (as in PIE-Bench's evaluation) and left out of "
            f"those means: {', '.join(f'`{i}`' for i in whole[:20])}"
            + (" …" if len(whole) > 20 else "")
            + ".",
        ]
    if summary["by_edit_type"]:
        md += ["", "## Per edit type", ""]
        specs = metric_catalog.specs(keys)
        md.append("| " + " | ".join(["Edit type", "Method", "n", *(s.header for s in specs)]) + " |")
        md.append("|" + "---|" * (len(specs) + 3))
        for t in edit_types:
            agg = summary["by_edit_type"][t]
            name = f"{t} {PIE_EDIT_TYPES[t]}" if fmt == "pie" and t in PIE_EDIT_TYPES else t
            for mode in modes:
                if mode in agg:
                    cells = [
                        name,
                        MODE_LABELS[mode],
                        str(agg[mode]["items"]),
                        *(_cell(agg[mode].get(s.key), s) for s in specs),
                    ]
                    md.append("| " + " | ".join(cells) + " |")
    if throughput:
        md += ["", "## Throughput", ""]
        md.append(
            f"{throughput.get('processes', 1)} process(es), {throughput.get('items', 0)} items in "
            f"{throughput.get('wall_s', 0):.1f} s: {throughput.get('items_per_s', 0):.3f} items/s overall."
        )
        md += ["", "| Process | Device | Items | Seconds | Items/s |", "|---|---|---|---|---|"]
        for p in throughput.get("per_process", []):
            md.append(
                f"| {p['rank']} | {p.get('device', '')} | {p['items']} | {p['seconds']:.1f} | "
                f"{p['items_per_s']:.3f} |"
            )
    if errors:
        md += ["", f"## Errors ({len(errors)} rows)", ""]
        seen = set()
        for r in errors:
            if r["item"] not in seen:
                seen.add(r["item"])
                md.append(f"- `{r['item']}`: {r.get('error')}")
    md += [
        "",
        "## Files",
        "",
        f"`{RESULTS_CSV}`, `{RESULTS_JSONL}` (one row per item and mode), "
        f"`{SUMMARY_JSON}`"
        + (f", `{PLOT_PNG}`" if plot_ok else "")
        + (f", `{GRID_PNG}`" if grid is not None else "")
        + f", `{ITEMS_DIR}/<item>/` (original, mask, each output).",
    ]
    images.atomic_write_text(out_dir / SUMMARY_MD, "\n".join(md) + "\n")
    return summary


# ============================================================================================ driver


@dataclass
class RunOptions:
    dataset: Path
    out: Path
    fmt: str = "auto"
    modes: tuple[str, ...] = DEFAULT_MODES
    limit: int | None = None
    config: EvalConfig = field(default_factory=EvalConfig)
    models_dir: str | None = None
    ip2p: str | None = None
    device: str = "auto"
    clip: bool = True
    lpips_net: str = "squeeze"
    save_images: bool = True
    retry_errors: bool = False
    threads: int | None = None
    grid_items: int = 4
    dist_timeout_s: float = 12 * 3600.0
    progress: bool = True


def _device_string(dev: Any) -> str:
    dev = str(dev)
    if dev.startswith("cpu"):
        return "cpu"
    return dev


def _check_config(out: Path, record: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """Refuse to mix settings (fails closed): ``eval-config.json`` must be readable and equal to this
    run's settings, a folder with rows must have it, and every row must carry this run's config."""
    path = out / CONFIG_JSON
    if path.exists() or path.is_symlink():
        try:
            if not path.is_file():
                raise ValueError("it is not a regular file")
            with open(path, "rb") as fh:
                raw = fh.read(1 << 20)
            if len(raw) == 1 << 20:
                raise ValueError("it is larger than 1 MiB")
            text = raw.decode("utf-8")
            old = json.loads(text) if text.strip() else "empty"
            if not isinstance(old, dict):
                raise ValueError(f"it is {old}" if old == "empty" else f"it holds a {json_kind(old)}")
        except (OSError, ValueError, RecursionError) as exc:
            raise MaskPixError(
                f"{path} is unreadable ({exc}); it records the settings of the results in {out}, so they "
                "cannot be checked against this run. Restore it, or use another --out folder"
            ) from None
        _refuse_diff(out, old, record, "")
    elif rows:
        raise MaskPixError(
            f"{out} holds {len(rows)} result rows but no {CONFIG_JSON}, so their settings are unknown; "
            "use another --out folder"
        )
    for r in rows:
        if isinstance(r.get("config"), dict):
            where = f" in the row ({r['item']}, {r['mode']})"
            _refuse_diff(out, {"config": r["config"]}, {"config": record["config"]}, where)


def _refuse_diff(out: Path, old: dict[str, Any], new: dict[str, Any], where: str) -> None:
    """Refuse when ``old`` (a record or a row's config, as read) differs from this run's ``new``; the
    config of an older version counts with the values its runs used for the fields it lacks."""
    old_config = old.get("config")
    old_config = upgrade_config(old_config) if isinstance(old_config, dict) else {}
    flat_old = {**old, **{f"config.{k}": v for k, v in old_config.items()}}
    flat_new = {**new, **{f"config.{k}": v for k, v in new["config"].items()}}
    diff = sorted(
        k for k in set(flat_old) | set(flat_new) if k != "config" and flat_old.get(k) != flat_new.get(k)
    )
    if diff:
        details = ", ".join(f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in diff)
        raise MaskPixError(
            f"{out} holds results made with other settings{where} ({details}); resume with the same "
            "settings or use another --out folder"
        )


def run_eval(opts: RunOptions, log_fn: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Evaluate a dataset folder; returns the summary on the main process (None on the others).

    Runs as one process, or as one of many under ``torchrun`` / ``accelerate launch``: the items are
    split with ``PartialState.split_between_processes``, each process appends to its own shard and the
    main process merges after ``wait_for_everyone()``. ``opts.threads`` sets torch's CPU threads for the
    run (restored afterwards).
    """
    import torch

    old_threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    try:
        return _run_eval(opts, log_fn)
    finally:
        torch.set_num_threads(old_threads)


def _record(shard: JsonlAppender, written: set[str], rank: int, row: dict[str, Any]) -> None:
    row.update(rank=rank, finished_at=time.time())
    shard.append(row)
    written.add(row["mode"])


def _run_eval(opts: RunOptions, log_fn: Callable[[str], None]) -> dict[str, Any] | None:
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    want_cpu = opts.device == "cpu" or (opts.device == "auto" and not torch.cuda.is_available())
    state = PartialState(cpu=want_cpu, timeout=timedelta(seconds=opts.dist_timeout_s))
    if state.num_processes > 1 or opts.device == "auto":
        device = _device_string(state.device)
    else:
        device = opts.device

    fmt, items = read_dataset(opts.dataset, opts.fmt)
    if opts.limit is not None:
        items = items[: max(0, int(opts.limit))]
    modes = tuple(m for m in MODES if m in opts.modes)
    if not modes:
        raise MaskPixError(f"no mode to evaluate; choose from {', '.join(MODES)}")
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskPixError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    lock = _lock_output(out, state)  # before anything is read, repaired, written or loaded
    try:
        return _run_locked(opts, log_fn, state, device, fmt, items, modes, out)
    finally:
        if lock is not None:
            lock.release()


def _lock_output(out: Path, state: Any) -> OutputLock | None:
    """The main process takes the folder's OS lock and tells the others whether it got it, so a second
    launch on the same ``--out`` (one process or many) stops at once with the same message."""
    lock, err = None, None
    if state.is_main_process:
        try:
            lock = OutputLock.acquire(out)
        except MaskPixError as exc:
            err = str(exc)
    if state.num_processes > 1:
        import torch.distributed as dist

        box = [err]
        dist.broadcast_object_list(box, src=0)
        err = box[0]
    if err:
        raise MaskPixError(err)
    return lock


def _run_locked(
    opts: RunOptions,
    log_fn: Callable[[str], None],
    state: Any,
    device: str,
    fmt: str,
    items: list[EvalItem],
    modes: tuple[str, ...],
    out: Path,
) -> dict[str, Any] | None:
    import torch

    from maskpix_desktop.core.service import ModelChoice, ModelService

    rank, world = state.process_index, state.num_processes
    choice = ModelChoice(
        models_dir=opts.models_dir, ip2p=opts.ip2p, device=device, precision=opts.config.precision
    )
    service = ModelService(choice)
    service.check(sam=False, ip2p=True)
    record = {
        "config": opts.config.to_dict(),
        "format": fmt,
        "dataset": str(Path(opts.dataset).resolve()),
        "ip2p": str(service.choice.ip2p or "registry"),
        "clip": bool(opts.clip),
    }
    previous = all_rows(out)
    _check_config(out, record, previous)
    if state.is_main_process and not (out / CONFIG_JSON).is_file():
        images.atomic_write_text(out / CONFIG_JSON, json.dumps(record, indent=2, sort_keys=True))

    done = _done(previous, opts.retry_errors)
    own = shard_path(out, rank)
    _repair_tail(own)
    state.wait_for_everyone()

    ids = [it.id for it in items]
    with state.split_between_processes(ids) as mine:
        my_ids = list(mine)
    by_id = {it.id: it for it in items}
    todo = [(by_id[i], [m for m in modes if (i, m) not in done]) for i in my_ids]
    todo = [(it, ms) for it, ms in todo if ms]

    scorers = Scorers()
    editor = None
    model_info: dict[str, Any] = {}
    if todo:  # IP2P only where there is work; the metric models also on the main process (its report)
        editor = service.editor()
        model_info["ip2p"] = editor.model_id
        if "trained" in modes and not getattr(editor, "takes_mask", False):
            raise MaskPixError(f"mode trained: {editor.model_id}: " + NO_MASK_INPUT)
    if todo or state.is_main_process:
        if opts.clip:
            scorers.clip = service.clip()
            if scorers.clip is None:
                scorers.missing["clip"] = f"CLIP weights unusable: {service.clip_error}"
        else:
            scorers.missing["clip"] = "disabled (--no-clip)"
        scorers.lpips, reason = LpipsScorer.load(opts.lpips_net, device)
        if reason:
            scorers.missing["lpips"] = reason
    if state.is_main_process:
        log_fn(
            f"eval: {len(items)} items ({fmt}), modes {', '.join(modes)}, {world} process(es), "
            f"{sum(len(ms) for _, ms in todo)} rows to run on rank 0"
        )

    t0 = time.perf_counter()
    n_items = n_rows = 0
    bar = None
    if opts.progress and todo:
        from tqdm import tqdm

        bar = tqdm(
            total=len(todo),
            desc=f"eval rank {rank}" if world > 1 else "eval",
            unit="item",
            position=rank,
            dynamic_ncols=True,
            leave=False,
        )
    with JsonlAppender(own) as shard:
        for item, ms in todo:
            written: set[str] = set()
            try:
                folder = out if opts.save_images else None
                info = service.model_info
                for row in evaluate_item(item, ms, editor, scorers, opts.config, folder, model_info=info):
                    _record(shard, written, rank, row)
            except ItemError as exc:
                log.warning("item %s: %s", item.id, exc)
                for row in error_rows(item, ms, opts.config, str(exc)):
                    _record(shard, written, rank, row)
            except (MaskPixError, ValueError, OSError, RuntimeError) as exc:
                # One failing item (out of memory on a huge image, a broken file) must not stop the run.
                log.warning("item %s failed", item.id, exc_info=True)
                rest = [m for m in ms if m not in written]
                for row in error_rows(item, rest, opts.config, f"{type(exc).__name__}: {exc}"):
                    _record(shard, written, rank, row)
            n_items += 1
            n_rows += len(written)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    stats = {
        "rank": rank,
        "device": device,
        "items": n_items,
        "rows": n_rows,
        "seconds": round(seconds, 3),
        "items_per_s": n_items / seconds if seconds > 0 and n_items else 0.0,
        "threads": torch.get_num_threads(),
    }
    images.atomic_write_text(out / f"shard-{rank}.stats.json", json.dumps(stats, sort_keys=True))
    state.wait_for_everyone()
    if not state.is_main_process:
        return None

    per_process = []
    for r in range(world):
        try:
            per_process.append(json.loads((out / f"shard-{r}.stats.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    total_items = sum(p["items"] for p in per_process)
    wall = max((p["seconds"] for p in per_process), default=0.0)
    throughput = {
        "processes": world,
        "items": total_items,
        "wall_s": wall,
        "items_per_s": total_items / wall if wall > 0 and total_items else 0.0,
        "per_process": per_process,
        "note": "this run only (items skipped as already done are not counted)",
    }
    rows = merge_rows(all_rows(out), ids, modes)
    clip_name = getattr(scorers.clip, "name", None)
    meta = {
        "dataset": str(Path(opts.dataset).resolve()),
        "dataset_name": Path(opts.dataset).resolve().name,
        "format": fmt,
        "config": opts.config.to_dict(),
        "models": {
            "ip2p": model_info.get("ip2p") or str(service.choice.ip2p or "registry"),
            "clip": clip_name,
            "clip_missing": scorers.missing.get("clip"),
            "lpips": scorers.lpips.name if scorers.lpips is not None else None,
            "lpips_missing": scorers.missing.get("lpips"),
            "device": device,
        },
    }
    summary = write_report(
        out,
        rows,
        modes=modes,
        meta=meta,
        throughput=throughput,
        grid_items=opts.grid_items if opts.save_images else 0,
    )
    log_fn(
        f"eval: wrote {out / SUMMARY_MD} ({summary['items_ok']}/{summary['items']} items ok, "
        f"{len(summary['errors'])} error rows)"
    )
    return summary


__all__ = [
    "MODES",
    "METRICS",
    "EvalConfig",
    "EvalItem",
    "ItemError",
    "JsonlAppender",
    "LoadedItem",
    "LpipsScorer",
    "RunOptions",
    "Scorers",
    "done_keys",
    "evaluate_item",
    "load_item",
    "load_results",
    "merge_rows",
    "read_dataset",
    "read_results_csv",
    "read_rows",
    "run_eval",
    "score_row",
    "write_report",
]
