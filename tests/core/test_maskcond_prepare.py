"""``train prepare``'s core: masks derived from (input, edited) pairs, and the Arrow dataset built from
MagicBrush folders, triplet folders / JSONL and saved ``datasets`` datasets (deterministic, resumable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import FakeSegmenter

from maskpix_desktop.core import images
from maskpix_desktop.core.errors import MaskPixError
from maskpix_desktop.core.maskcond import prepare as prep
from maskpix_desktop.core.maskcond.derive_mask import DeriveConfig, derive_mask, regions
from maskpix_desktop.core.maskcond.prepare import PrepareConfig, PreparedItems, prepare
from maskpix_desktop.core.maskcond.synthetic import SyntheticShapes
from maskpix_desktop.testing.eval_data import make_magicbrush_folder

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: OpenMP threads spin against OpenCV's on a busy 2-core machine (20x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pair(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((size, size, 3), 128, np.uint8)
    edited = image.copy()
    edited[8:18, 12:22] = (220, 40, 40)  # a 10x10 square changes
    return image, edited


def _triplets(root: Path, n: int = 5, size: int = 32) -> Path:
    for i, it in enumerate(SyntheticShapes(n, seed=3, size=size)):
        d = root / f"item{i:02d}"
        d.mkdir(parents=True)
        images.save_image(d / "input.png", it.image)
        images.save_image(d / "edited.png", it.target)
        (d / "prompt.txt").write_text(it.instruction, encoding="utf-8")
    return root


def _cfg(src: Path, out: Path, **kw) -> PrepareConfig:
    args = dict(size=32, min_quality=0.0, shard_size=2, progress=False, derive=DeriveConfig(dilate_px=2))
    args.update(kw)
    return PrepareConfig(source=str(src), out=str(out), **args)


def test_regions_give_each_changed_blob_its_box_and_innermost_point():
    changed = np.zeros((32, 32), bool)
    changed[8:18, 12:22] = True
    changed[25:28, 2:5] = True
    found = regions(changed, max_regions=8)
    assert [r["box"] for r in found] == [[12, 8, 21, 17], [2, 25, 4, 27]]  # largest first
    x, y = found[0]["point"]
    assert 14 <= x <= 19 and 10 <= y <= 15  # well inside the square
    assert regions(changed, max_regions=1) == found[:1]


def test_fake_segmenter_mask_is_dilated_and_scored_by_iou_with_the_change_map():
    image, edited = _pair()
    seg = FakeSegmenter()  # a 10x10 square around the first point
    d = derive_mask(image, edited, seg, DeriveConfig(dilate_px=3, blur=0, close_px=0), sam_name="fake")
    assert d.reason is None
    assert seg.predicted and seg.predicted[0].tolist() == [[16, 12]]  # the point SAM was given
    assert d.quality == pytest.approx(81 / 119, abs=1e-6)  # fake square rows 7-16 vs change rows 8-17
    assert d.mask[8:18, 12:22].all() and d.mask.sum() > 100 and not d.mask[30, 30]  # grown, not everywhere
    prov = d.provenance
    assert prov["method"] == "sam" and prov["sam"] == "fake" and prov["threshold"] == 0.1
    assert prov["prompts"] == [{"box": [12, 8, 21, 17], "point": [16, 12]}]


def test_unchanged_pair_gives_no_mask_and_says_why():
    image, _ = _pair()
    d = derive_mask(image, image.copy(), FakeSegmenter())
    assert not d.mask.any() and d.quality == 0.0 and "no change above threshold" in d.reason


def test_otsu_threshold_is_recorded_when_no_threshold_is_given():
    image, edited = _pair()
    d = derive_mask(image, edited, None, DeriveConfig(threshold=None))
    assert d.provenance["threshold_mode"] == "otsu" and 0.02 <= d.provenance["threshold"] < 0.9
    assert d.provenance["method"] == "change-map" and d.quality == 1.0


def _mask_bytes(folder: Path) -> list[bytes]:
    ds = datasets.load_from_disk(str(folder)).cast_column("mask", datasets.Image(decode=False))
    return [m["bytes"] for m in ds["mask"]]


def test_triplets_with_tiny_sam_give_the_same_mask_bytes_twice_and_keep_provenance(tmp_path):
    from maskpix_desktop.core.service import ModelChoice, ModelService
    from maskpix_desktop.testing.tiny_sam import save_tiny_sam

    src = _triplets(tmp_path / "trip")
    sam = str(save_tiny_sam(tmp_path / "tiny-sam.pth"))
    runs = []
    for name in ("a", "b"):
        service = ModelService(ModelChoice(sam=sam, device="cpu"))
        runs.append(prepare(_cfg(src, tmp_path / name, sam=sam), service.segmenter))
    assert runs[0].kept == 5 and not runs[0].dropped
    assert _mask_bytes(runs[0].dataset_dir) == _mask_bytes(runs[1].dataset_dir)
    ds = datasets.load_from_disk(str(runs[0].dataset_dir))
    assert ds["id"] == [f"item{i:02d}" for i in range(5)]
    prov = json.loads(ds[0]["provenance"])
    assert prov["sam"] == sam and prov["source"] == "triplets" and prov["prompts"]
    assert prov["origin"].endswith("item00") and ds[0]["mask_origin"] == "sam"
    assert 0.0 <= ds[0]["quality"] <= 1.0
    item = PreparedItems(tmp_path / "a")[0]  # the OUT folder resolves to OUT/dataset
    assert item.image.shape == (32, 32, 3) and item.mask.dtype == bool and item.instruction


def test_restart_skips_finished_shards_and_refuses_other_options(tmp_path, monkeypatch):
    src = _triplets(tmp_path / "trip")
    cfg = _cfg(src, tmp_path / "out")
    first = prepare(cfg)
    assert first.kept == 5 and len(list((tmp_path / "out" / "shards").iterdir())) == 3
    # A kill while writing the last shard: its folder is gone (only .tmp ever half-exists).
    import shutil

    shutil.rmtree(tmp_path / "out" / "shards" / "shard-00002")
    seen: list[str] = []
    real = prep._row
    monkeypatch.setattr(prep, "_row", lambda item, *a: seen.append(item.id) or real(item, *a))
    again = prepare(cfg)
    assert seen == ["item04"] and again.shards_skipped == 2 and again.kept == 5
    assert _mask_bytes(again.dataset_dir) == _mask_bytes(first.dataset_dir)
    with pytest.raises(MaskPixError, match=r"prepare.json.*other options \(min_quality\)"):
        prepare(_cfg(src, tmp_path / "out", min_quality=0.9))
    assert prepare(_cfg(src, tmp_path / "out", min_quality=0.9), overwrite=True).kept <= 5


def test_min_quality_drops_poor_masks_and_reports_each_with_its_reason(tmp_path):
    src = _triplets(tmp_path / "trip", n=3)

    class Wide(FakeSegmenter):  # a mask far larger than the change: low IoU
        def predict(self, *a, **kw):
            res = super().predict(*a, **kw)
            m = np.ones_like(res.masks)
            return type(res)(m, res.scores, res.logits)

    res = prepare(_cfg(src, tmp_path / "out", sam="wide", min_quality=0.5), lambda: Wide())
    assert res.kept == 0 and len(res.dropped) == 3 and not res.dataset_dir.exists()
    assert all("mask quality" in d["reason"] and "--min-quality 0.5" in d["reason"] for d in res.dropped)
    report = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert report["complete"] and report["dropped"] == res.dropped


def test_magicbrush_folder_keeps_its_given_masks(tmp_path):
    root = make_magicbrush_folder(tmp_path / "mb", size=64)
    calls: list[int] = []
    res = prepare(_cfg(root, tmp_path / "out", size=32), lambda: calls.append(1))
    assert res.kept == 3 and not calls  # SAM never loaded: masks are given
    ds = datasets.load_from_disk(str(res.dataset_dir))
    assert set(ds["mask_origin"]) == {"given"} and set(ds["source"]) == {"magicbrush"}
    assert ds["instruction"][0] == "turn the sky pink"
    item = PreparedItems(res.dataset_dir)[0]
    assert item.mask.shape == (32, 32) and 0 < item.mask.sum() < 32 * 32


def test_saved_hf_dataset_with_instructpix2pix_columns_is_read(tmp_path):
    rows = {"input_image": [], "edit_prompt": [], "edited_image": []}
    for it in SyntheticShapes(3, seed=1, size=48):  # 48 px: resized to 32
        rows["input_image"].append(images.to_pil(it.image))
        rows["edited_image"].append(images.to_pil(it.target))
        rows["edit_prompt"].append(it.instruction)
    feats = datasets.Features(
        {
            "input_image": datasets.Image(),
            "edit_prompt": datasets.Value("string"),
            "edited_image": datasets.Image(),
        }
    )
    datasets.Dataset.from_dict(rows, features=feats).save_to_disk(str(tmp_path / "hf"))
    res = prepare(_cfg(tmp_path / "hf", tmp_path / "out"))
    ds = datasets.load_from_disk(str(res.dataset_dir))
    assert res.kept == 3 and ds["id"] == ["00000000", "00000001", "00000002"]
    assert ds["instruction"] == rows["edit_prompt"] and set(ds["mask_origin"]) == {"change-map"}
    assert PreparedItems(res.dataset_dir)[2].target.shape == (32, 32, 3)
    datasets.Dataset.from_dict({"edit_prompt": ["x"]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(MaskPixError, match="lacks the column.*input_image, edited_image"):
        prepare(_cfg(tmp_path / "bad", tmp_path / "out2"))


def test_bad_items_are_dropped_naming_the_file_and_field(tmp_path):
    src = _triplets(tmp_path / "trip", n=2)
    (src / "item01" / "edited.png").write_bytes(b"not a png")
    res = prepare(_cfg(src, tmp_path / "out"))
    assert res.kept == 1 and res.dropped[0]["id"] == "item01"
    assert "edited" in res.dropped[0]["reason"] and "edited.png" in res.dropped[0]["reason"]
    jl = tmp_path / "jl"
    jl.mkdir()
    images.save_image(jl / "a.png", SyntheticShapes(1, size=32)[0].image)
    images.save_image(jl / "b.png", SyntheticShapes(1, size=32)[0].target)
    lines = [
        {"id": "ok", "input_image": "a.png", "edit_prompt": "make it so", "edited_image": "b.png"},
        {"id": "no-prompt", "input_image": "a.png", "edited_image": "b.png"},
    ]
    (jl / "triplets.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    res = prepare(_cfg(jl, tmp_path / "out-jl"))
    assert res.kept == 1
    assert res.dropped == [
        {
            "id": "no-prompt",
            "reason": f"{jl / 'triplets.jsonl'}: line 2: field 'edit_prompt' missing or not text",
        }
    ]


def test_without_the_datasets_package_the_error_says_install_datasets(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MaskPixError, match="install datasets"):
        prepare(_cfg(tmp_path, tmp_path / "out"))
