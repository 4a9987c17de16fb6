"""A fake evaluation folder (the layout ``maskpix-cli eval`` writes, no model run) and simulated raters for
the human-study tests and demos."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from maskpix_desktop.core import images
from maskpix_desktop.core.evaluation.datasets import item_folder
from maskpix_desktop.core.evaluation.store import ITEMS_DIR, RESULTS_JSONL, row_to_json
from maskpix_desktop.core.study.manifest import (
    QUESTION_IDS,
    Answers,
    Study,
    load_study,
    read_json,
    save_answers,
)
from maskpix_desktop.testing.eval_data import PIE_PROMPTS, ellipse_mask, synthetic_image

#: rate(rater, item, method, question) -> 1..5
RateFn = Callable[[str, str, str, str], int]


def make_fake_eval(
    root: str | Path, n_items: int = 6, modes: Sequence[str] = ("baseline", "pixel", "latent"), size: int = 48
) -> Path:
    """``results.jsonl`` plus ``items/<slug>/`` images for ``n_items`` items and ``modes``; each mode's
    output is the original with a distinct tint, so the images differ by method."""
    root = Path(root)
    lines = []
    for i in range(n_items):
        item = f"{i + 1}{i:05d}"
        slug = item_folder(item)
        folder = root / ITEMS_DIR / slug
        folder.mkdir(parents=True, exist_ok=True)
        original = synthetic_image(size, size, i)
        mask = ellipse_mask(size, size, i)
        images.save_image(folder / "original.png", original)
        images.save_image(folder / "mask.png", mask)
        files = {"original": f"{ITEMS_DIR}/{slug}/original.png", "mask": f"{ITEMS_DIR}/{slug}/mask.png"}
        for k, mode in enumerate(modes):
            out = original.astype(np.int16)
            out[..., k % 3] += 40 + 20 * k
            images.save_image(folder / f"{mode}.png", np.clip(out, 0, 255).astype(np.uint8))
            lines.append(
                row_to_json(
                    {
                        "item": item,
                        "mode": mode,
                        "status": "ok",
                        "error": None,
                        "dataset": "fake",
                        "edit_type": "1",
                        "instruction": PIE_PROMPTS[i % len(PIE_PROMPTS)][2],
                        "metrics": {},
                        "missing": {},
                        "files": {**files, "output": f"{ITEMS_DIR}/{slug}/{mode}.png"},
                        "finished_at": 1.0 + i,
                    }
                )
            )
    (root / RESULTS_JSONL).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def study_key(study_dir: str | Path) -> dict[str, str]:
    """``"item/code" -> method`` from the study's ``key.json``."""
    key = read_json(Path(study_dir) / "key.json", "key")
    return {f"{i}/{c}": m for i, e in key["items"].items() for c, m in e["codes"].items()}


def simulate_raters(study_dir: str | Path, rate: RateFn, raters: Sequence[str] | None = None) -> Study:
    """Write every rater's answers file with ``rate``'s ratings, as if they had used the dialog."""
    study = load_study(study_dir)
    methods = study_key(study_dir)
    for rater in raters or list(study.orders):
        answers = Answers(study_id=study.study_id, rater=rater)
        for item, code in study.orders[rater]:
            for q in QUESTION_IDS:
                answers.set(item, code, q, int(rate(rater, item, methods[f"{item}/{code}"], q)))
        save_answers(study, answers)
    return study


__all__ = ["make_fake_eval", "simulate_raters", "study_key"]
