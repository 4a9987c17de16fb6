"""Dataset evaluation: every mask mode against the IP2P baseline on PIE-Bench- and MagicBrush-style folders.

Qt-free and importable without torch (torch, accelerate and matplotlib are imported where they are used).
This package re-exports the names of its modules, so ``evaluation.X`` keeps working:

- ``datasets``: readers turn a dataset folder into :class:`EvalItem` records (:func:`read_dataset`);
  :func:`load_item` reads an item's images and masks; a bad item raises :class:`ItemError`.
- ``lpips`` and ``scoring``: :class:`LpipsScorer` and :func:`score_row`, every metric of one output.
- ``config``: :class:`EvalConfig` (what determines a row's numbers), :class:`RunOptions`.
- ``runner``: :func:`evaluate_item` runs the editor once per needed mask mode and yields one row per
  (item, mode); the baseline comes from the first run, it is not recomputed for its own row.
  :func:`run_eval` ties it together under ``accelerate.PartialState`` (plain, ``torchrun`` or
  ``accelerate launch``): items are split with ``split_between_processes`` and rank 0 merges.
- ``store``: :class:`JsonlAppender` appends each row at once (flush + fsync); :func:`done_keys` and
  :func:`merge_rows` make runs resumable and shard-aware (one ``shard-{rank}.jsonl`` per process);
  :class:`OutputLock` keeps a second run out of the folder.
- ``retrieval``: instruction retrieval accuracy (top-1 / top-5, CLIP and directional) per mode.
- ``report`` and ``plots``: :func:`write_report` writes ``results.jsonl``/``results.csv``/
  ``summary.json``/``summary.md``, a distribution plot and a grid image.

Row schema (one JSON object per line): ``item``, ``mode``, ``status`` ("ok" or "error"), ``error``,
``dataset``, ``edit_type``, ``instruction``, ``prompt``, ``seed``, ``metrics`` (name -> number, "inf"
strings for infinities, null when missing), ``missing`` (name -> reason), ``files`` (relative paths of
the saved images), ``run_s``, ``rank``, ``finished_at``, ``config``, ``model`` (provenance) and
``edit_metrics`` (the app's metrics of the row's output, as the app and ``maskpix-cli run`` report them).
"""

from __future__ import annotations

from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation.config import (
    LEGACY_CONFIG_DEFAULTS,
    PER_RUN_FIELDS,
    EvalConfig,
    RunOptions,
    check_config,
    upgrade_config,
)
from maskpix_desktop.core.evaluation.datasets import (
    DEFAULT_MODES,
    FORMATS,
    MB_CAPTIONS,
    MB_HF_KEYS,
    MB_JSONL,
    MB_SESSIONS,
    MB_SETTINGS,
    MB_TURN_KEYS,
    MODE_LABELS,
    MODES,
    MULTI_TURN,
    PIE_EDIT_TYPES,
    PIE_MAPPING,
    PIE_SIZE,
    EvalItem,
    ItemError,
    LoadedItem,
    detect_format,
    item_folder,
    load_item,
    read_dataset,
    read_magicbrush,
    read_pie,
)
from maskpix_desktop.core.evaluation.lpips import LpipsScorer
from maskpix_desktop.core.evaluation.plots import make_grid, plot_distributions
from maskpix_desktop.core.evaluation.report import (
    load_results,
    merge_rows,
    read_results_csv,
    results_csv,
    write_report,
)
from maskpix_desktop.core.evaluation.retrieval import retrieval_summary
from maskpix_desktop.core.evaluation.runner import error_rows, evaluate_item, run_eval
from maskpix_desktop.core.evaluation.scoring import (
    BACKGROUND_KEYS,
    MB_KEYS,
    METRIC_BY_KEY,
    METRICS,
    PIE_KEYS,
    SSIM_KEYS,
    WHOLE_MASK,
    Scorers,
    load_dino,
    magicbrush_l1,
    magicbrush_l2,
    score_row,
)
from maskpix_desktop.core.evaluation.store import (
    CONFIG_JSON,
    GRID_PNG,
    ITEMS_DIR,
    LOCK_NAME,
    PLOT_PNG,
    RESULTS_CSV,
    RESULTS_JSONL,
    SHARD_GLOB,
    SUMMARY_JSON,
    SUMMARY_MD,
    JsonlAppender,
    OutputLock,
    all_rows,
    done_in,
    done_keys,
    json_kind,
    read_rows,
    repair_tail,
    row_from_json,
    row_to_json,
    shard_path,
)
from maskpix_desktop.core.export import json_safe

__all__ = [
    "BACKGROUND_KEYS",
    "CONFIG_JSON",
    "DEFAULT_MODES",
    "FORMATS",
    "GRID_PNG",
    "ITEMS_DIR",
    "LEGACY_CONFIG_DEFAULTS",
    "LOCK_NAME",
    "MB_CAPTIONS",
    "MB_HF_KEYS",
    "MB_JSONL",
    "MB_KEYS",
    "MB_SESSIONS",
    "MB_SETTINGS",
    "MB_TURN_KEYS",
    "METRICS",
    "METRIC_BY_KEY",
    "MODES",
    "MODE_LABELS",
    "MULTI_TURN",
    "PER_RUN_FIELDS",
    "PIE_EDIT_TYPES",
    "PIE_KEYS",
    "PIE_MAPPING",
    "PIE_SIZE",
    "PLOT_PNG",
    "RESULTS_CSV",
    "RESULTS_JSONL",
    "SHARD_GLOB",
    "SSIM_KEYS",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "WHOLE_MASK",
    "EvalConfig",
    "EvalItem",
    "ItemError",
    "JsonlAppender",
    "LoadedItem",
    "LpipsScorer",
    "MaskPixError",
    "OutputLock",
    "RunOptions",
    "Scorers",
    "all_rows",
    "check_config",
    "detect_format",
    "done_in",
    "done_keys",
    "error_rows",
    "evaluate_item",
    "item_folder",
    "json_kind",
    "json_safe",
    "load_item",
    "load_results",
    "load_dino",
    "magicbrush_l1",
    "magicbrush_l2",
    "make_grid",
    "merge_rows",
    "plot_distributions",
    "read_dataset",
    "read_magicbrush",
    "read_pie",
    "read_results_csv",
    "read_rows",
    "repair_tail",
    "results_csv",
    "retrieval_summary",
    "row_from_json",
    "row_to_json",
    "run_eval",
    "score_row",
    "shard_path",
    "upgrade_config",
    "write_report",
]
