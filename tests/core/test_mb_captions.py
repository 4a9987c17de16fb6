"""MagicBrush's CLIP-T caption: the local descriptions, as MagicBrush's ``evaluation/image_eval.py`` is run
(``--caption_path ./test/local_captions.json``, read as ``caption_dict[img_id][output file]``); the global
descriptions only when the folder has no local file; a malformed caption file is a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import metrics as mx
from maskpix_desktop.core.evaluation.datasets import (
    MB_LOCAL_CAPTIONS,
    magicbrush_caption_file,
    magicbrush_caption_source,
)
from maskpix_desktop.testing.eval_data import magicbrush_hf_record, make_magicbrush_folder
from maskpix_desktop.testing.tiny_clip import build_tiny_clip

INSTRUCTIONS = {
    "242679-1": "turn the sky pink",
    "327726-1": "put a hat on the man",
    "327726-2": "make the hat red",
}
LOCAL = {k: f"the edited part: {v}" for k, v in INSTRUCTIONS.items()}
GLOBAL = {k: f"a picture after: {v}" for k, v in INSTRUCTIONS.items()}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> mx.ClipScorer:
    return mx.ClipScorer.load(**build_tiny_clip(tmp_path_factory.mktemp("clip")))


@pytest.fixture()
def mb(tmp_path: Path) -> Path:
    return make_magicbrush_folder(tmp_path / "mb", size=64)


def _prompts(root: Path, setting: str = "single") -> dict[str, str | None]:
    _, items = ev.read_dataset(root, "magicbrush", setting)
    return {it.id: it.prompt for it in items}


def test_the_fixture_has_different_local_and_global_captions(mb: Path) -> None:
    local = json.loads((mb / "local_descriptions.json").read_text(encoding="utf-8"))
    glob = json.loads((mb / "global_descriptions.json").read_text(encoding="utf-8"))
    assert local.keys() == glob.keys() == {"242679", "327726"}
    assert local["327726"] == {
        "327726-output1.png": "the edited part: put a hat on the man",
        "327726-output2.png": "the edited part: make the hat red",
    }
    assert glob["327726"]["327726-output2.png"] == "a picture after: make the hat red"


def test_items_take_the_local_description(mb: Path) -> None:
    assert magicbrush_caption_file(mb) == mb / "local_descriptions.json"
    assert _prompts(mb) == LOCAL
    # multi-turn: the session's final output's local caption (image_eval.py's final_turn pairs)
    assert _prompts(mb, "multi") == {
        "242679-multi": LOCAL["242679-1"],
        "327726-multi": LOCAL["327726-2"],
    }
    source = magicbrush_caption_source(mb)
    assert "local descriptions, local_descriptions.json" in source


def test_global_descriptions_only_without_a_local_file(mb: Path) -> None:
    (mb / "local_descriptions.json").unlink()
    assert magicbrush_caption_file(mb) == mb / "global_descriptions.json"
    assert _prompts(mb) == GLOBAL
    source = magicbrush_caption_source(mb)
    assert "global descriptions, global_descriptions.json" in source and "not comparable" in source
    (mb / "global_descriptions.json").unlink()
    assert magicbrush_caption_file(mb) is None
    assert _prompts(mb) == dict.fromkeys(INSTRUCTIONS)
    assert magicbrush_caption_source(mb).startswith("none")


def test_local_captions_json_is_accepted_and_the_release_name_wins(mb: Path) -> None:
    assert MB_LOCAL_CAPTIONS == ("local_descriptions.json", "local_captions.json")
    (mb / "local_descriptions.json").rename(mb / "local_captions.json")
    assert _prompts(mb) == LOCAL  # the evaluation README's name
    assert "local_captions.json" in magicbrush_caption_source(mb)
    other = {"327726": {"327726-output2.png": "from local_descriptions"}}
    (mb / "local_descriptions.json").write_text(json.dumps(other), encoding="utf-8")
    got = _prompts(mb)
    assert got["327726-2"] == "from local_descriptions"
    assert got["327726-1"] is None and got["242679-1"] is None  # no per-item fallback to another file


def test_an_item_missing_from_the_local_file_gets_no_global_caption(mb: Path) -> None:
    local = json.loads((mb / "local_descriptions.json").read_text(encoding="utf-8"))
    del local["242679"]
    local["327726"]["327726-output1.png"] = 7  # a caption of the wrong type: that item has none
    (mb / "local_descriptions.json").write_text(json.dumps(local), encoding="utf-8")
    assert _prompts(mb) == {"242679-1": None, "327726-1": None, "327726-2": LOCAL["327726-2"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"cannot read .*local_descriptions\.json: JSONDecodeError"),
        (b"\xff\xfe{}", r"cannot read .*local_descriptions\.json: UnicodeDecodeError"),
        (
            '[{"327726": {}}]',
            r"local_descriptions\.json must map image ids to \{output file: caption\} "
            r"objects, not a list",
        ),
        ('"a caption"', r"local_descriptions\.json must map image ids .* not a str"),
    ],
)
def test_a_malformed_local_file_is_a_clear_error(mb: Path, text: str | bytes, message: str) -> None:
    path = mb / "local_descriptions.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(ev.MaskPixError, match=message):
        ev.read_dataset(mb, "magicbrush")


def test_a_malformed_global_file_is_a_clear_error_when_it_is_used(mb: Path) -> None:
    (mb / "global_descriptions.json").write_text("[1, 2]", encoding="utf-8")
    assert _prompts(mb) == LOCAL  # not read while a local file exists
    (mb / "local_descriptions.json").unlink()
    with pytest.raises(ev.MaskPixError, match=r"global_descriptions\.json must map image ids .* not a list"):
        ev.read_dataset(mb, "magicbrush")


def test_clip_t_is_scored_against_the_local_caption(mb: Path, clip: mx.ClipScorer) -> None:
    _, items = ev.read_dataset(mb, "magicbrush")
    item = next(it for it in items if it.id == "327726-2")
    loaded = ev.load_item(item)
    edit = loaded.target  # any image: the ground truth itself (the "oracle" CLIP-T)
    out, missing = ev.score_row(loaded.image, edit, loaded, item, ev.Scorers(clip=clip))
    f = clip.image_features([edit])[0]
    local_t, global_t = (
        float((f * clip.text_features([c])[0]).sum()) for c in (LOCAL[item.id], GLOBAL[item.id])
    )
    assert abs(local_t - global_t) > 1e-4  # the two captions give different scores
    assert out["clip_t"] == pytest.approx(local_t, abs=1e-6)
    assert out["clip_score"] == pytest.approx(100 * max(local_t, 0.0), abs=1e-4)  # same text (x100, clamped)
    assert "clip_t" not in missing


def _row(item: str) -> dict:
    return {
        "item": item,
        "mode": "baseline",
        "status": "ok",
        "dataset": "magicbrush",
        "edit_type": "turn 1",
        "metrics": {"l1": 0.1, "clip_t": 0.25},
        "missing": {},
    }


@pytest.mark.parametrize("local", [True, False])
def test_the_report_states_the_caption_source(mb: Path, tmp_path: Path, local: bool) -> None:
    if not local:
        (mb / "local_descriptions.json").unlink()
    out = tmp_path / f"report-{local}"
    out.mkdir()
    meta = {"format": "magicbrush", "dataset": str(mb), "dataset_name": "mb"}
    summary = ev.write_report(out, [_row("327726-1")], modes=("baseline",), meta=meta, grid_items=0)
    caption = summary["definitions"]["clip_t_caption"]
    assert caption == magicbrush_caption_source(mb)
    name = "local_descriptions.json" if local else "global_descriptions.json"
    assert name in caption
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert f"- CLIP-T caption (also the CLIP score's text): {caption}." in md
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["definitions"]["clip_t_caption"] == caption


def test_the_report_names_no_caption_source_for_pie_or_without_a_folder(tmp_path: Path) -> None:
    for meta in ({"format": "pie"}, {"format": "magicbrush"}):
        out = tmp_path / meta["format"]
        out.mkdir()
        summary = ev.write_report(out, [_row("1-1")], modes=("baseline",), meta=meta, grid_items=0)
        assert "clip_t_caption" not in summary["definitions"]
        assert "CLIP-T caption" not in (out / "summary.md").read_text(encoding="utf-8")


def test_the_jsonl_layout_reports_its_caption_column(mb: Path, tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    shutil.copytree(mb / "images", hf / "images")
    rec = magicbrush_hf_record("327726", "put a hat on the man", caption="a hat")
    (hf / "metadata.jsonl").write_text(json.dumps(rec) + "\n", encoding="utf-8")
    assert _prompts(hf) == {"327726-1": "a hat"}
    assert "caption` column of metadata.jsonl" in magicbrush_caption_source(hf)
