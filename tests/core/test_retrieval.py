"""Instruction retrieval accuracy (core/evaluation/retrieval.py) on fixed embeddings and a written run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import images
from maskpix_desktop.core.evaluation import retrieval as rt


def test_ranks_count_ties_against_the_true_candidate() -> None:
    sim = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.8, 0.2]])
    # row 0: its own is best (rank 1); row 1: a tie with 0 (rank 2); row 2: 0.8 > 0.3 > 0.2 (rank 3)
    assert rt.true_ranks(sim, np.array([0, 1, 2])).tolist() == [1, 2, 3]
    acc = rt.topk_accuracy(sim, np.array([0, 1, 2]), ks=(1, 2))
    assert acc == {"top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3)}


def test_identical_instructions_are_one_candidate() -> None:
    texts, idx = rt.candidates(["make it red", "add a hat", "make it red"])
    assert texts == ["make it red", "add a hat"] and idx.tolist() == [0, 1, 0]


def test_clip_retrieval_on_fixed_embeddings() -> None:
    """Three edits, three instructions on orthogonal axes; edit 2 looks like instruction 0."""
    text = np.eye(3) * 2.0  # unnormalised on purpose: cosine, not dot product
    edits = np.array([[1.0, 0.1, 0.0], [0.0, 3.0, 0.2], [0.9, 0.0, 0.5]])
    acc = rt.clip_retrieval(edits, text, np.array([0, 1, 2]))
    assert acc == {"top1": pytest.approx(2 / 3), "top5": 1.0}


def test_directional_retrieval_uses_the_change_not_the_image() -> None:
    orig = np.array([[1.0, 0.0, 0.0, 0.0]] * 2)
    # both edits end near axis 0 (plain CLIP could not tell them apart); their changes point to 1 and 2
    edits = np.array([[1.0, 0.3, 0.0, 0.0], [1.0, 0.0, 0.3, 0.0]])
    src = np.array([[0.0, 0.0, 0.0, 1.0]] * 2)
    tgt = np.array([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert rt.directional_retrieval(edits, orig, src, tgt, np.array([0, 1]))["top1"] == 1.0
    swapped = rt.directional_retrieval(edits, orig, src, tgt[::-1], np.array([0, 1]))
    assert swapped["top1"] == 0.0


class _ColourClip:
    """A fake CLIP: an image's embedding is its mean colour; a text's is the colour its words name."""

    COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "grey": (1, 1, 1)}

    class _T(np.ndarray):
        def cpu(self):
            return self

        def numpy(self):
            return np.asarray(self)

    def image_features(self, imgs):
        return np.array([im.reshape(-1, 3).mean(axis=0) / 255.0 + 1e-3 for im in imgs]).view(self._T)

    def text_features(self, texts):
        out = [np.sum([self.COLOURS[w] for w in t.split() if w in self.COLOURS], axis=0) for t in texts]
        return np.array(out, dtype=np.float64).view(self._T)


def _run_folder(tmp_path: Path) -> tuple[Path, list[dict]]:
    """A written run: three items, baseline outputs all grey, pixel outputs the asked colour."""
    rows = []
    for i, colour in enumerate(["red", "green", "blue"]):
        folder = tmp_path / "items" / f"i{i}"
        folder.mkdir(parents=True)
        images.save_image(folder / "original.png", np.full((8, 8, 3), 128, np.uint8))
        rgb = np.array(_ColourClip.COLOURS[colour]) * 255
        images.save_image(folder / "pixel.png", np.tile(rgb.astype(np.uint8), (8, 8, 1)))
        images.save_image(folder / "baseline.png", np.full((8, 8, 3), 128, np.uint8))
        for mode in ("baseline", "pixel"):
            rows.append(
                {
                    "item": f"i{i}",
                    "mode": mode,
                    "status": "ok",
                    "instruction": f"make it {colour}",
                    "prompt": f"a {colour} square",
                    "source_prompt": "a grey square",
                    "files": {"output": f"items/i{i}/{mode}.png", "original": f"items/i{i}/original.png"},
                    "metrics": {},
                    "missing": {},
                }
            )
    return tmp_path, rows


def test_retrieval_summary_separates_a_compliant_mode_from_a_blind_one(tmp_path: Path) -> None:
    out, rows = _run_folder(tmp_path)
    res = rt.retrieval_summary(out, rows, ("baseline", "pixel"), _ColourClip())
    pixel, base = res["modes"]["pixel"], res["modes"]["baseline"]
    assert pixel["n"] == 3 and pixel["candidates"] == 3 and pixel["chance_top1"] == pytest.approx(1 / 3)
    assert pixel["clip"]["top1"] == 1.0 and pixel["directional"]["top1"] == 1.0
    assert base["clip"]["top1"] == pytest.approx(0.0)  # grey ties every colour: ties count against it
    assert base["clip"]["top5"] == 1.0 and pixel["directional_n"] == 3
    assert rt.retrieval_summary(out, rows, ("pixel",), None, "disabled (--no-clip)") == {
        "missing": "disabled (--no-clip)"
    }


def test_report_writes_the_retrieval_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from maskpix_desktop.core.evaluation import plots

    monkeypatch.setattr(plots, "plot_distributions", lambda *a, **k: None)
    out, rows = _run_folder(tmp_path)
    res = rt.retrieval_summary(out, rows, ("baseline", "pixel"), _ColourClip())
    ev.write_report(
        out, rows, modes=("baseline", "pixel"), meta={"format": "pie"}, grid_items=0, retrieval=res
    )
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Instruction retrieval" in md and "| pixel | 3 | 3 | 100.0% | 100.0% | 100.0% | 100.0% |" in md
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["retrieval"]["modes"]["pixel"]["clip"]["top1"] == 1.0
    assert summary["definitions"]["ssim_layout"].startswith("border-cut")
