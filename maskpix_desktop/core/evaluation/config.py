"""Run settings: :class:`EvalConfig` (what determines a row's numbers), :class:`RunOptions`, and the
check that refuses to mix settings in one output folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.evaluation.datasets import DEFAULT_MODES
from maskpix_desktop.core.evaluation.store import CONFIG_JSON, json_kind
from maskpix_desktop.core.jobs import EditParams

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
    #: The summary's SSIM column: "border-cut" (torchmetrics <= 1.4) or "full-map" (>= 1.5); rows have both.
    ssim_variant: str = "border-cut"
    #: DINO metrics (PIE-Bench structure distance, MagicBrush DINO) when their weights are present.
    dino: bool = True
    #: Instruction retrieval accuracy over the run's outputs (needs CLIP and the saved images).
    retrieval: bool = True
    #: MagicBrush items: "single" (every turn from its ground-truth input), "multi" (chained sessions,
    #: scored on the final turn) or "both".
    mb_setting: str = "single"


def check_config(out: Path, record: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
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
