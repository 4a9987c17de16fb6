"""Running: :func:`evaluate_item` (one item, every mode, through the app's edit pipeline) and
:func:`run_eval` (a dataset under ``accelerate.PartialState``: sharded, resumable, locked, reported).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from maskpix_desktop.core import images
from maskpix_desktop.core.editor import NO_MASK_INPUT
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation.config import EvalConfig, RunOptions, check_config
from maskpix_desktop.core.evaluation.datasets import MODES, EvalItem, ItemError, load_item, read_dataset
from maskpix_desktop.core.evaluation.lpips import LpipsScorer
from maskpix_desktop.core.evaluation.report import merge_rows, write_report
from maskpix_desktop.core.evaluation.retrieval import retrieval_summary
from maskpix_desktop.core.evaluation.scoring import Scorers, load_dino, score_row
from maskpix_desktop.core.evaluation.store import (
    CONFIG_JSON,
    ITEMS_DIR,
    SUMMARY_MD,
    JsonlAppender,
    OutputLock,
    all_rows,
    done_in,
    repair_tail,
    shard_path,
)
from maskpix_desktop.core.jobs import EditRequest
from maskpix_desktop.core.pipeline import run_edit

log = logging.getLogger(__name__)


def _base_row(item: EvalItem, mode: str, cfg: EvalConfig) -> dict[str, Any]:
    return {
        "item": item.id,
        "mode": mode,
        "dataset": item.dataset,
        "edit_type": item.edit_type,
        "instruction": item.instruction,
        "prompt": item.prompt,
        "source_prompt": item.source_prompt,
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
    if item.chain:
        yield from _evaluate_chain(item, loaded, todo, editor, scorers, cfg, folder, files, model_info)
        return
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
            app = result.metrics.get("baseline" if mode == "baseline" else "blended", {})
            yield _scored_row(item, mode, cfg, loaded, arr, scorers, folder, files, seconds, result, app)


def _scored_row(
    item: EvalItem,
    mode: str,
    cfg: EvalConfig,
    loaded: Any,
    output: Any,
    scorers: Scorers,
    folder: Path | None,
    files: dict[str, str],
    seconds: float,
    result: Any,
    edit_metrics: dict[str, Any],
) -> dict[str, Any]:
    """The row of one mode's output: benchmark metrics, its image saved under the item's folder."""
    row = _base_row(item, mode, cfg)
    vals, missing = score_row(loaded.image, output, loaded, item, scorers)
    row_files = dict(files)
    if folder is not None:
        images.save_image(folder / f"{mode}.png", output)
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
        edit_metrics=edit_metrics,
    )
    return row


def _evaluate_chain(
    item: EvalItem,
    loaded: Any,
    todo: Sequence[str],
    editor: Any,
    scorers: Scorers,
    cfg: EvalConfig,
    folder: Path | None,
    files: dict[str, str],
    model_info: Callable[[], dict[str, str]] | None,
) -> Iterator[dict[str, Any]]:
    """MagicBrush multi-turn: per mode, turn k edits that mode's own output of turn k - 1 (the baseline
    chain its unmasked outputs) with turn k's mask and instruction; the last output is scored against the
    last ground truth, the background metrics against turn 1's input outside the union of the masks."""
    for mode in todo:
        t0 = time.perf_counter()
        current, result = loaded.image, None
        for turn, mask in zip(item.chain, loaded.chain_masks, strict=True):
            params = cfg.run_params(turn.instruction, "pixel" if mode == "baseline" else mode)
            request = EditRequest(image=current, mask=mask, params=params)
            result = run_edit(editor, request, metrics=False, model_info=model_info)
            current = result.baseline if mode == "baseline" else result.blended
        assert result is not None
        seconds = time.perf_counter() - t0
        # no edit metrics: per-turn app metrics compare with each turn's input, not turn 1's
        row = _scored_row(item, mode, cfg, loaded, current, scorers, folder, files, seconds, result, {})
        row["turns"] = len(item.chain)
        yield row


# ============================================================================================ JSONL


def _device_string(dev: Any) -> str:
    dev = str(dev)
    if dev.startswith("cpu"):
        return "cpu"
    return dev


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

    fmt, items = read_dataset(opts.dataset, opts.fmt, opts.mb_setting)
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


def _load_dinos(scorers: Scorers, opts: RunOptions, fmt: str, models_dir: Any, device: str) -> None:
    """The DINO model of the format's protocol: ViT-B/8 (PIE-Bench structure), ViT-S/16 (MagicBrush)."""
    key, name, attr = ("pie_structure", "dino_vitb8", "dino_structure")
    if fmt == "magicbrush":
        key, name, attr = ("dino", "dino_vits16", "dino_mb")
    if not opts.dino:
        scorers.missing[key] = "disabled (--no-dino)"
        return
    scorer, reason = load_dino(name, models_dir, device)
    setattr(scorers, attr, scorer)
    if reason:
        scorers.missing[key] = reason


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
    check_config(out, record, previous)
    if state.is_main_process and not (out / CONFIG_JSON).is_file():
        images.atomic_write_text(out / CONFIG_JSON, json.dumps(record, indent=2, sort_keys=True))

    done = done_in(previous, opts.retry_errors)
    own = shard_path(out, rank)
    repair_tail(own)
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
        _load_dinos(scorers, opts, fmt, service.choice.models_dir, device)
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
    retrieval = None
    if opts.retrieval:
        retrieval = retrieval_summary(out, rows, modes, scorers.clip, scorers.missing.get("clip"))
    meta = {
        "dataset": str(Path(opts.dataset).resolve()),
        "dataset_name": Path(opts.dataset).resolve().name,
        "format": fmt,
        "config": opts.config.to_dict(),
        "ssim_variant": opts.ssim_variant,
        "models": {
            "ip2p": model_info.get("ip2p") or str(service.choice.ip2p or "registry"),
            "clip": clip_name,
            "clip_missing": scorers.missing.get("clip"),
            "lpips": scorers.lpips.name if scorers.lpips is not None else None,
            "lpips_missing": scorers.missing.get("lpips"),
            "dino": getattr(scorers.dino_structure or scorers.dino_mb, "name", None),
            "dino_missing": scorers.missing.get("dino" if fmt == "magicbrush" else "pie_structure"),
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
        retrieval=retrieval,
    )
    log_fn(
        f"eval: wrote {out / SUMMARY_MD} ({summary['items_ok']}/{summary['items']} items ok, "
        f"{len(summary['errors'])} error rows)"
    )
    return summary
