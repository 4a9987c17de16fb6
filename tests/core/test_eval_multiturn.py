"""MagicBrush's two settings (its evaluation/image_eval.py): single-turn ("all turn": every turn edited from
its ground-truth input) and multi-turn ("final turn": each session edited turn after turn from the model's
own outputs, the last output scored against the last ground truth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskpix_desktop.cli import main
from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import images
from maskpix_desktop.core.jobs import EditParams, EditRequest
from maskpix_desktop.core.pipeline import run_edit
from maskpix_desktop.testing.eval_data import make_magicbrush_folder

FAST = ["--long-side", "64", "--steps", "2", "--threads", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def mb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_magicbrush_folder(tmp_path_factory.mktemp("mb") / "magicbrush-test")


def test_multi_turn_items_chain_a_session(mb_dir: Path) -> None:
    _, multi = ev.read_dataset(mb_dir, "magicbrush", "multi")
    assert [it.id for it in multi] == ["242679-multi", "327726-multi"]
    two = multi[1]
    assert [t.id for t in two.chain] == ["327726-1", "327726-2"] and two.edit_type == ev.MULTI_TURN
    assert two.image.name == "327726-input.png" and two.target.name == "327726-output2.png"
    assert two.prompt == "the edited part: make the hat red"  # the final output's local caption (CLIP-T)
    _, both = ev.read_dataset(mb_dir, "magicbrush", "both")
    assert len(both) == 5 and {it.id for it in both} >= {"327726-1", "327726-2", "242679-1"}
    loaded = ev.load_item(two)
    assert len(loaded.chain_masks) == 2
    assert np.array_equal(loaded.metric_mask, loaded.chain_masks[0] | loaded.chain_masks[1])
    with pytest.raises(ev.MaskPixError, match="unknown MagicBrush setting"):
        ev.read_dataset(mb_dir, "magicbrush", "triple")


def test_multi_turn_run_edits_from_its_own_outputs(
    mb_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    from maskpix_desktop.core.service import ModelChoice, ModelService

    out = tmp_path / "mb"
    args = ["eval", str(mb_dir), "--out", str(out), "--models-dir", str(tiny_models_dir), *FAST]
    assert main([*args, "--modes", "baseline,pixel", "--magicbrush-setting", "both"]) == 0
    rows = {(r["item"], r["mode"]): r for r in ev.read_rows(out / "results.jsonl")}
    assert len(rows) == 10 and all(r["status"] == "ok" for r in rows.values())

    # a one-turn session: the multi-turn output is the single-turn output of its turn 1
    for mode in ("baseline", "pixel"):
        single = images.load_image(out / rows[("242679-1", mode)]["files"]["output"])
        multi = images.load_image(out / rows[("242679-multi", mode)]["files"]["output"])
        assert np.array_equal(single, multi), mode

    # the two-turn session by hand: turn 2 edits the pixel output of turn 1, with turn 2's mask
    service = ModelService(ModelChoice(models_dir=str(tiny_models_dir), device="cpu"))
    editor = service.editor()
    cfg = ev.EvalConfig(params=EditParams(instruction="", seed=1234, steps=2, long_side=64))  # the FAST run
    item = next(it for it in ev.read_dataset(mb_dir, "magicbrush", "multi")[1] if it.id == "327726-multi")
    loaded = ev.load_item(item)
    current = loaded.image
    for turn, mask in zip(item.chain, loaded.chain_masks, strict=True):
        req = EditRequest(image=current, mask=mask, params=cfg.run_params(turn.instruction, "pixel"))
        current = run_edit(editor, req, metrics=False).blended
    row = rows[("327726-multi", "pixel")]
    assert np.array_equal(images.load_image(out / row["files"]["output"]), current)
    target = images.load_image(mb_dir / "images" / "327726" / "327726-output2.png")
    assert row["metrics"]["l1"] == pytest.approx(ev.magicbrush_l1(current, target), rel=1e-12)
    assert row["turns"] == 2 and row["edit_type"] == ev.MULTI_TURN

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["overall"]["pixel"]["items"] == 3 and summary["multi_turn"]["pixel"]["items"] == 2
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Mean over items (single-turn" in md and "## Multi-turn" in md
    assert all(e["n"] == 3 for e in summary["retrieval"]["modes"].values())  # chains are left out
