"""Instruction retrieval accuracy: does an edit look like *its* instruction more than the others of the set?

For the edits of one mask mode, every distinct instruction of the set is a candidate; each edited image
ranks all candidates by CLIP similarity ``cos(E(edit_i), E(instruction_j))`` and counts a hit when its own
instruction is among the first k (top-1, top-5). Identical instruction texts are one candidate; a tie with
the true candidate counts against it. The directional variant ranks by
``cos(E(edit_i) - E(original_i), E(target caption_j) - E(source caption_j))`` over the items that have
both captions (PIE-Bench's ``original_prompt`` / ``editing_prompt``; MagicBrush has no source caption).
Chance level is ``k / candidates``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TOPK = (1, 5)
DEFINITION = (
    "each edit ranks every distinct instruction of its mode's set by cos(CLIP(edit), CLIP(instruction)); "
    "top-k = share of edits whose own instruction is among the first k (ties count against it). "
    "Directional: cos(CLIP(edit) - CLIP(original), CLIP(target caption) - CLIP(source caption))."
)


def candidates(texts: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    """The distinct entries of ``texts`` (first-seen order) and each entry's index among them."""
    index: dict[Any, int] = {}
    for t in texts:
        index.setdefault(t, len(index))
    return list(index), np.array([index[t] for t in texts], dtype=np.int64)


def true_ranks(sim: np.ndarray, true_idx: np.ndarray) -> np.ndarray:
    """1-based rank of each row's true column in ``sim`` (rows: queries); ties rank the true one last."""
    sim = np.asarray(sim, dtype=np.float64)
    true = sim[np.arange(sim.shape[0]), true_idx]
    return (sim >= true[:, None]).sum(axis=1)


def topk_accuracy(sim: np.ndarray, true_idx: np.ndarray, ks: Sequence[int] = TOPK) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}``: the share of rows whose true column ranks within k."""
    ranks = true_ranks(sim, true_idx)
    return {f"top{k}": float(np.mean(ranks <= k)) if len(ranks) else float("nan") for k in ks}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clip_retrieval(edit_emb: np.ndarray, text_emb: np.ndarray, true_idx: np.ndarray) -> dict[str, float]:
    """Top-k accuracy of ranking the candidate texts by cosine to each edit's embedding."""
    return topk_accuracy(_unit(edit_emb) @ _unit(text_emb).T, true_idx)


def directional_retrieval(
    edit_emb: np.ndarray,
    orig_emb: np.ndarray,
    src_emb: np.ndarray,
    tgt_emb: np.ndarray,
    true_idx: np.ndarray,
) -> dict[str, float]:
    """Top-k accuracy of ranking caption directions ``tgt_j - src_j`` by cosine to each image change
    ``edit_i - orig_i`` (unit embeddings, as CLIP's directional similarity)."""
    d_img = _unit(_unit(edit_emb) - _unit(orig_emb))
    d_txt = _unit(_unit(tgt_emb) - _unit(src_emb))
    return topk_accuracy(d_img @ d_txt.T, true_idx)


def _embed_images(clip: Any, paths: Sequence[Path], batch: int = 32) -> np.ndarray:
    from maskpix_desktop.core import images

    out = []
    for i in range(0, len(paths), batch):
        arrs = [images.load_image(p) for p in paths[i : i + batch]]
        out.append(np.asarray(clip.image_features(arrs).cpu().numpy(), dtype=np.float64))
    return np.concatenate(out) if out else np.zeros((0, 0))


def _embed_texts(clip: Any, texts: Sequence[str], cache: dict[str, np.ndarray]) -> np.ndarray:
    todo = [t for t in dict.fromkeys(texts) if t not in cache]
    if todo:
        feats = np.asarray(clip.text_features(todo).cpu().numpy(), dtype=np.float64)
        cache.update(zip(todo, feats, strict=True))
    return np.stack([cache[t] for t in texts])


def retrieval_summary(
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    modes: Sequence[str],
    clip: Any,
    clip_missing: str | None = None,
) -> dict[str, Any]:
    """Retrieval accuracy per mode from the saved outputs of ``rows`` (ok rows with an output image).

    Returns ``{"definition", "k", "modes": {mode: {"n", "candidates", "chance_top1", "clip": {top1,
    top5}, "directional": {...} | None, "directional_n"}}}``, or ``{"missing": reason}`` without CLIP.
    """
    if clip is None:
        return {"missing": clip_missing or "CLIP unavailable"}
    out_dir = Path(out_dir)
    cache: dict[str, np.ndarray] = {}
    orig_cache: dict[str, np.ndarray] = {}
    result: dict[str, Any] = {"definition": DEFINITION, "k": list(TOPK), "modes": {}}
    for mode in modes:
        use = [
            r
            for r in rows
            if r["mode"] == mode
            and r.get("status") == "ok"
            and r.get("edit_type") != "multi-turn"  # a chain has several instructions
            and r.get("instruction")
            and (out_dir / str((r.get("files") or {}).get("output", ""))).is_file()
            and (r.get("files") or {}).get("output")
        ]
        if len(use) < 2:
            continue
        try:
            edits = _embed_images(clip, [out_dir / r["files"]["output"] for r in use])
        except Exception as exc:  # an unreadable output leaves the mode out, with the reason logged
            log.warning("retrieval: mode %s skipped: %s", mode, exc)
            continue
        texts, true_idx = candidates([r["instruction"] for r in use])
        entry: dict[str, Any] = {
            "n": len(use),
            "candidates": len(texts),
            "chance_top1": 1.0 / len(texts),
            "clip": clip_retrieval(edits, _embed_texts(clip, texts, cache), true_idx),
            "directional": None,
            "directional_n": 0,
        }
        both = [i for i, r in enumerate(use) if r.get("source_prompt") and r.get("prompt")]
        origs = [(use[i].get("files") or {}).get("original") for i in both]
        if len(both) >= 2 and all(o and (out_dir / o).is_file() for o in origs):
            missing_origs = [o for o in dict.fromkeys(origs) if o not in orig_cache]
            if missing_origs:
                feats = _embed_images(clip, [out_dir / o for o in missing_origs])
                orig_cache.update(zip(missing_origs, feats, strict=True))
            pairs, pair_idx = candidates([(use[i]["source_prompt"], use[i]["prompt"]) for i in both])
            entry["directional"] = directional_retrieval(
                edits[both],
                np.stack([orig_cache[o] for o in origs]),
                _embed_texts(clip, [p[0] for p in pairs], cache),
                _embed_texts(clip, [p[1] for p in pairs], cache),
                pair_idx,
            )
            entry["directional_n"] = len(both)
        result["modes"][mode] = entry
    return result
