"""Auto mask: relevance maths, relevance on the tiny IP2P, fusion with SAM, post-processing, headless."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeSegmenter

from maskpix_desktop.core import masks
from maskpix_desktop.core.automask import (
    AutoMasker,
    AutoMaskParams,
    Detection,
    ParsedInstruction,
    RelevanceMap,
    compute_relevance,
    ddpm_scheduler,
    mask_iou,
    normalise_relevance,
    parse_instruction,
    relevance_from_eps,
)
from maskpix_desktop.core.errors import Cancelled
from maskpix_desktop.core.segmenter import SegmentResult

LAT = 8  # latent cells per side in the synthetic tests; images are 8x larger (the VAE factor)


def _square(n: int = LAT, y0: int = 2, x0: int = 3, side: int = 4) -> np.ndarray:
    sq = np.zeros((n, n), bool)
    sq[y0 : y0 + side, x0 : x0 + side] = True
    return sq


def _upsample_nearest(m: np.ndarray, f: int = 8) -> np.ndarray:
    return np.kron(m.astype(np.uint8), np.ones((f, f), np.uint8)).astype(bool)


# --------------------------------------------------------------------------------------------- maths


@pytest.mark.parametrize("side", [2, 5])  # 1/16 of the map (quartiles collapse) and 25/64 (they do not)
def test_square_of_difference_comes_back_exactly(side: int) -> None:
    rng = np.random.default_rng(0)
    # quarter steps: every difference is exact in float32
    eps_empty = (rng.integers(-8, 8, size=(1, 4, LAT, LAT)) / 4).astype(np.float32)
    sq = _square(side=side)
    eps_instr = eps_empty + np.where(sq, 0.75, 0.0)[None, None].astype(np.float32)
    raw = relevance_from_eps(eps_instr, eps_empty)
    assert np.array_equal(raw, np.where(sq, 4 * 0.75, 0.0))  # summed over the 4 channels
    rel = RelevanceMap.from_raw(raw, (8 * LAT, 8 * LAT))
    assert set(np.unique(rel.values)) == {0.0, 1.0}
    assert np.array_equal(rel.mask(0.5), _upsample_nearest(sq))  # exact, pixel for pixel
    assert rel.mask(0.5).shape == (64, 64) and rel.heatmap().dtype == np.float32


def test_relevance_from_eps_accepts_torch_and_checks_shapes() -> None:
    import torch

    a = torch.zeros(1, 4, 3, 5)
    b = torch.ones(1, 4, 3, 5)
    assert np.array_equal(relevance_from_eps(a, b), np.full((3, 5), 4.0, np.float32))
    with pytest.raises(ValueError, match="shape"):
        relevance_from_eps(np.zeros((4, 3, 5)), np.zeros((4, 3, 4)))
    with pytest.raises(ValueError, match="one image"):
        relevance_from_eps(np.zeros((2, 4, 3, 5)), np.zeros((2, 4, 3, 5)))


def test_outlier_is_clipped_at_q3_plus_1_5_iqr() -> None:
    rng = np.random.default_rng(1)
    sq = _square(side=5)
    raw = np.where(sq, 1.0, rng.uniform(0.0, 0.1, (LAT, LAT)))
    raw[0, 0] = 100.0  # one outlier outside the square
    q1, q3 = np.percentile(raw, [25, 75])
    hi = q3 + 1.5 * (q3 - q1)
    vals = normalise_relevance(raw)
    expected = (np.minimum(raw, hi) - raw.min()) / (hi - raw.min())
    np.testing.assert_allclose(vals, expected, rtol=1e-6)
    assert vals[0, 0] == 1.0
    spike = np.zeros_like(sq)
    spike[0, 0] = True
    assert np.array_equal(vals > 0.3, sq | spike)  # the square survives the outlier ...
    plain = (raw - raw.min()) / (raw.max() - raw.min())
    assert not (plain > 0.3)[sq].any()  # ... which plain min-max normalisation would have lost


def test_constant_map_gives_zeros_and_tau_is_checked() -> None:
    rel = RelevanceMap.from_raw(np.full((4, 4), 3.0), (32, 32))
    assert not rel.values.any() and not rel.mask().any()
    with pytest.raises(ValueError, match="tau"):
        rel.mask(1.0)
    assert rel.heatmap_rgb().shape == (32, 32, 3)


def test_tau_changes_reuse_the_continuous_map() -> None:
    vals = np.linspace(0, 1, LAT * LAT, dtype=np.float32).reshape(LAT, LAT)
    rel = RelevanceMap.from_raw(vals, (LAT, LAT))  # same size: no upsampling
    areas = [int(rel.mask(t).sum()) for t in (0.2, 0.5, 0.8)]
    assert areas == sorted(areas, reverse=True) and areas[0] > areas[-1] > 0
    assert rel.heatmap() is rel.heatmap()  # cached, computed once


def test_ddpm_noise_equals_the_euler_scaled_input(editor) -> None:
    """The UNet input we build (DDPM add_noise) is the pipeline's (Euler sigma-space noise, then scaled)."""
    import torch

    sched = ddpm_scheduler(editor.pipe)
    euler = editor.pipe.scheduler.__class__.from_config(editor.pipe.scheduler.config)
    euler.set_timesteps(1000)
    z0, noise = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    t = torch.tensor([800])
    ours = sched.add_noise(z0, noise, t)
    abar = sched.alphas_cumprod[800]
    sigma = ((1 - abar) / abar) ** 0.5
    theirs = (z0 + sigma * noise) / (sigma**2 + 1) ** 0.5
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------- tiny IP2P end to end


def test_relevance_map_on_tiny_ip2p(editor, rng_image) -> None:
    import torch

    image = rng_image(48, 64, seed=3)
    calls: list[tuple] = []

    def hook(module, args, kwargs):
        x = args[0]
        calls.append((tuple(x.shape), x.clone(), int(args[1]), kwargs["encoder_hidden_states"].clone()))

    handle = editor.pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    steps: list[tuple[int, int, str]] = []
    try:
        rel = compute_relevance(
            editor, image, "turn the cat into a dog", seed=5, draws=2, on_step=lambda *a: steps.append(a)
        )
    finally:
        handle.remove()
    assert rel.values.shape == (6, 8) and rel.image_size == (48, 64) and rel.working_size == (48, 64)
    assert rel.mask().shape == (48, 64) and rel.mask().dtype == bool
    assert 0.0 <= rel.values.min() and rel.values.max() <= 1.0
    assert rel.timestep == 800 and rel.draws == 2
    assert steps == [(1, 2, "relevance"), (2, 2, "relevance")]
    # one batched UNet call per draw: [instruction, empty], the image condition concatenated like the pipeline
    assert len(calls) == 2
    shape, x, t, emb = calls[0]
    assert shape == (2, 8, 6, 8) and t == 800
    with torch.inference_mode():
        cond = editor.encode_image(image)  # unscaled posterior mode
        expected_emb = editor.pipe._encode_prompt("turn the cat into a dog", "cpu", 1, True, None)
    torch.testing.assert_close(x[0, 4:], cond[0])
    torch.testing.assert_close(x[1, 4:], cond[0])
    torch.testing.assert_close(x[0, :4], x[1, :4])  # same noisy latent in both halves
    torch.testing.assert_close(emb, expected_emb[:2])
    assert not torch.equal(calls[0][1][:, :4], calls[1][1][:, :4])  # the second draw has new noise


def test_relevance_is_deterministic_with_a_seed(editor, rng_image) -> None:
    image = rng_image(40, 56, seed=4)
    a = compute_relevance(editor, image, "make the sky red", seed=7)
    b = compute_relevance(editor, image, "make the sky red", seed=7)
    c = compute_relevance(editor, image, "make the sky red", seed=8)
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.values, b.values)
    assert not np.array_equal(a.raw, c.raw)
    assert a.values.shape == (5, 7) and a.mask().shape == (40, 56)


def test_relevance_cancel(editor, rng_image) -> None:
    image = rng_image(32, 32, seed=1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        compute_relevance(editor, image, "make it red", cancel=cancel)
    cancel.clear()
    seen: list[int] = []

    def on_step(done: int, total: int, stage: str) -> None:
        seen.append(done)
        cancel.set()  # cancel during the first draw

    with pytest.raises(Cancelled):
        compute_relevance(editor, image, "make it red", draws=3, on_step=on_step, cancel=cancel)
    assert seen == [1]


def test_default_draws_follow_the_device() -> None:
    from maskpix_desktop.core.automask import default_draws

    assert default_draws("cpu") == 1 and default_draws("cuda:0") == 4 and default_draws("mps") == 1


# ------------------------------------------------------------------------------------------ fusion


def _rect(shape: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def _relevance_of(mask: np.ndarray) -> RelevanceMap:
    return RelevanceMap(values=mask.astype(np.float32), raw=mask.astype(np.float32), image_size=mask.shape)


def test_fusion_picks_the_candidate_with_the_best_iou() -> None:
    shape = (64, 64)
    rel_mask = _rect(shape, 10, 10, 40, 40)
    good = _rect(shape, 12, 12, 40, 40)  # IoU 0.87 with the relevance mask
    small = _rect(shape, 20, 20, 30, 30)
    whole = np.ones(shape, bool)
    # SAM prefers the wrong ones
    seg = FakeSegmenter(candidates=[small, whole, good], scores=[0.99, 0.95, 0.5])
    masker = AutoMasker(segmenter=seg)
    p = AutoMaskParams(change_dilate=0, change_feather=0)
    image = np.zeros((*shape, 3), np.uint8)
    res = masker.fuse(image, ParsedInstruction(("cat",), "change", "dog"), _relevance_of(rel_mask), [], p)
    assert np.array_equal(res.raw_mask, good) and np.array_equal(res.mask, good)
    assert res.source == "relevance"
    assert res.confidence == pytest.approx(mask_iou(good, rel_mask))
    (call,) = seg.calls
    assert call["multimask"] is True
    assert np.array_equal(call["box"], [10, 10, 40, 40])  # the relevance box ...
    assert np.allclose(call["points"], [[24.5, 24.5]]) and call["labels"].tolist() == [1]  # ... and centroid
    assert np.array_equal(res.boxes, [[10, 10, 40, 40]]) and np.allclose(res.points, [[24.5, 24.5]])
    assert res.sam_logits is not None and res.sam_logits.shape == (1, 16, 16) and res.sam_logits[0, 0, 0] == 2


def test_fusion_with_boxes_uses_box_prompts_and_reports_both() -> None:
    shape = (64, 64)
    rel_mask = _rect(shape, 10, 10, 40, 40)
    obj = _rect(shape, 8, 8, 36, 36)
    candidates = [np.ones(shape, bool), obj, _rect(shape, 0, 0, 4, 4)]
    seg = FakeSegmenter(candidates=candidates, scores=[0.9, 0.1, 0.8])
    masker = AutoMasker(segmenter=seg)
    dets = [Detection((5.0, 5.0, 38.0, 38.0), 0.8, "cat"), Detection((50.0, 50.0, 60.0, 60.0), 0.9, "cat")]
    p = AutoMaskParams(change_dilate=0, change_feather=0)
    res = masker.fuse(
        np.zeros((*shape, 3), np.uint8),
        parse_instruction("make the cat red"),
        _relevance_of(rel_mask),
        dets,
        p,
    )
    # singular target: the box overlapping the relevance mask wins over the higher-scored one
    assert [c["box"].tolist() for c in seg.calls] == [[5.0, 5.0, 38.0, 38.0]]
    assert seg.calls[0]["points"] is None and seg.calls[0]["multimask"] is True
    assert np.array_equal(res.mask, obj) and res.source == "both"
    assert res.confidence == pytest.approx(mask_iou(obj, rel_mask))
    assert res.detections == (dets[0],) and np.array_equal(res.boxes, [[5, 5, 38, 38]])


def test_plural_targets_keep_every_box() -> None:
    shape = (64, 64)
    a, b = _rect(shape, 0, 0, 10, 10), _rect(shape, 30, 30, 50, 50)
    outputs = iter([a, b])

    class PerBox(FakeSegmenter):
        def predict(self, **kw):
            m = next(outputs)
            self.calls.append(kw)
            return SegmentResult(
                np.stack([m, m, m]), np.array([0.5, 0.4, 0.3], np.float32), np.zeros((3, 16, 16), np.float32)
            )

    seg = PerBox(candidates=[a], scores=[1.0])
    dets = [Detection((0, 0, 10, 10), 0.5, "cats"), Detection((30, 30, 50, 50), 0.6, "cats")]
    res = AutoMasker(segmenter=seg).fuse(
        np.zeros((*shape, 3), np.uint8),
        parse_instruction("remove the cats"),
        None,
        dets,
        AutoMaskParams(remove_dilate=0),
    )
    assert len(seg.calls) == 2 and np.array_equal(res.raw_mask, a | b)
    assert res.source == "grounding" and res.confidence is None and res.sam_logits is None


def test_post_processing_per_action() -> None:
    shape = (100, 100)
    obj = _rect(shape, 40, 40, 60, 60)
    rel_mask = _rect(shape, 70, 70, 90, 90)
    image = np.zeros((*shape, 3), np.uint8)
    dets = [Detection((40.0, 40.0, 60.0, 60.0), 0.9, "x")]
    p = AutoMaskParams()
    out = {}
    for action in ("change", "remove", "add"):
        seg = FakeSegmenter(candidates=[obj, obj, obj], scores=[0.3, 0.2, 0.1])
        out[action] = AutoMasker(segmenter=seg).fuse(
            image, ParsedInstruction(("x",), action, "y"), _relevance_of(rel_mask), dets, p
        )
    assert np.array_equal(out["change"].mask, masks.dilate(obj, 1))  # 1% of the long side
    assert np.array_equal(out["remove"].mask, masks.dilate(obj, 3))  # 3%
    assert np.array_equal(out["add"].mask, masks.dilate(obj, 5) | rel_mask)  # relevance + dilated anchor
    ch = out["change"]
    assert ch.soft_mask.dtype == np.float32 and 0 < ch.soft_mask[39, 50] < 1  # feathered edge
    assert np.array_equal(ch.soft_mask > 0.5, ch.soft_mask > 0.5)
    glob = AutoMasker().run(image, "make it winter")
    assert glob.source == "global" and glob.mask.all() and glob.soft_mask.min() == 1.0
    assert glob.relevance is None and "whole image" in glob.notes[0]


def test_nothing_found_gives_an_empty_mask_and_a_note() -> None:
    shape = (32, 32)
    res = AutoMasker().fuse(
        np.zeros((*shape, 3), np.uint8),
        parse_instruction("make the cat red"),
        RelevanceMap.from_raw(np.zeros((4, 4)), shape),
        [],
        AutoMaskParams(),
    )
    assert not res.mask.any() and res.confidence is None
    assert any("nothing above tau" in n for n in res.notes) and any("empty" in n for n in res.notes)


# -------------------------------------------------------------------------------- AutoMasker end to end


@pytest.fixture(scope="module")
def tiny_segmenter():
    from maskpix_desktop.core.segmenter import Segmenter
    from maskpix_desktop.testing.tiny_sam import build_tiny_sam

    return Segmenter(build_tiny_sam(seed=0), "custom")


def test_automasker_runs_end_to_end_and_rethresholds_without_the_unet(
    editor, tiny_segmenter, rng_image, monkeypatch
) -> None:
    image = rng_image(48, 64, seed=9)
    steps: list[tuple[int, int, str]] = []
    masker = AutoMasker(editor=editor, segmenter=tiny_segmenter)
    res = masker.run(
        image,
        "turn the cat into a dog",
        AutoMaskParams(seed=2, min_component=0.0),
        on_step=lambda *a: steps.append(a),
    )
    assert res.mask.shape == (48, 64) and res.mask.dtype == bool and res.soft_mask.shape == (48, 64)
    assert res.relevance is not None and res.parsed.targets == ("cat",)
    assert res.source == "relevance" and res.confidence is not None
    assert steps[0] == (1, 2, "relevance") and steps[-1] == (2, 2, "sam")
    assert any("GroundingDINO" in n for n in res.notes)
    assert {"parse_s", "relevance_s", "sam_s", "total_s"} <= set(res.timings)
    assert res.points.shape[1] == 2 and len(res.labels) == len(res.points) and res.boxes.shape == (1, 4)
    # a new tau re-runs SAM only
    import maskpix_desktop.core.automask.masker as am

    monkeypatch.setattr(am, "compute_relevance", lambda *a, **k: pytest.fail("UNet re-run"))
    again = masker.rethreshold(image, res, 0.5)
    assert np.array_equal(again.mask, res.mask)
    looser = masker.rethreshold(image, res, 0.1)
    assert looser.params.tau == 0.1 and looser.relevance is res.relevance
    assert looser.relevance.mask(0.1).sum() >= res.relevance.mask(0.5).sum()


def test_automasker_cancel(editor, tiny_segmenter, rng_image) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        AutoMasker(editor=editor, segmenter=tiny_segmenter).run(
            rng_image(32, 32), "make the cat red", cancel=cancel
        )


def test_core_modules_import_without_torch_or_qt() -> None:
    code = (
        "import sys, maskpix_desktop.core.automask, maskpix_desktop.core.grounding, "
        "maskpix_desktop.cli.eval_automask\n"
        "from maskpix_desktop.cli import build_parser; build_parser()\n"
        "bad = [m for m in ('torch', 'PySide6', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------------------- headless


def _pie_folder(root: Path, rng_image) -> dict:
    """A synthetic PIE-Bench folder: three 512x512 images in annotation_images/, RLE masks, two edit types."""
    from maskpix_desktop.core import images

    entries = {}
    specs = [
        ("000000000001", "1", "Change the cat to a dog", "cat dog", (100, 120, 300, 360)),
        ("000000000002", "1", "turn the car into a boat", "car boat", (0, 0, 256, 512)),
        ("000000000003", "3", "remove the lamp", "lamp", (400, 30, 500, 90)),
    ]
    for i, (key, type_id, instruction, blended, (x0, y0, x1, y1)) in enumerate(specs):
        rel = f"{type_id}_type/{key}.jpg"
        (root / "annotation_images" / rel).parent.mkdir(parents=True, exist_ok=True)
        images.save_image(root / "annotation_images" / rel, rng_image(512, 512, seed=i))
        gt = np.zeros((512, 512), bool)
        gt[y0:y1, x0:x1] = True
        entries[key] = {
            "image_path": rel,
            "original_prompt": "a photo",
            "editing_prompt": "a photo",
            "editing_instruction": instruction,
            "editing_type_id": type_id,
            "blended_word": blended,
            "mask": masks.pie_rle_encode(gt),
        }
    (root / "mapping_file.json").write_text(json.dumps(entries), encoding="utf-8")
    return entries


@pytest.fixture(scope="module")
def tiny_sam_path(tmp_path_factory) -> Path:
    from maskpix_desktop.testing.tiny_sam import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny-sam.pth")


def test_eval_automask_reports_the_iou_of_the_written_masks(
    tmp_path, tiny_ip2p_dir, tiny_sam_path, rng_image, capsys
) -> None:
    from maskpix_desktop.cli import main
    from maskpix_desktop.core import images

    data = tmp_path / "pie"
    entries = _pie_folder(data, rng_image)
    out = tmp_path / "out"
    args = [
        "eval-automask",
        str(data),
        "--out",
        str(out),
        "--ip2p",
        str(tiny_ip2p_dir),
        "--sam",
        str(tiny_sam_path),
        "--models-dir",
        str(tmp_path / "no-models"),
        "--device",
        "cpu",
        "--long-side",
        "64",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "mean IoU" in capsys.readouterr().out
    with open(out / "automask.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["key"] for r in rows] == sorted(entries)
    for row in rows:
        gt = masks.pie_rle_decode(entries[row["key"]]["mask"], (512, 512))
        pred = images.load_mask(out / row["mask_png"])
        assert pred.shape == (512, 512)
        inter, union = np.count_nonzero(pred & gt), np.count_nonzero(pred | gt)
        assert float(row["iou"]) == pytest.approx(inter / union if union else 1.0, abs=1e-6)
        p_area, g_area = np.count_nonzero(pred), np.count_nonzero(gt)
        assert float(row["recall"]) == pytest.approx(inter / g_area, abs=1e-6)
        assert float(row["precision"]) == pytest.approx(inter / p_area if p_area else 0.0, abs=1e-6)
        assert int(row["pred_area"]) == p_area and int(row["gt_area"]) == g_area
        assert row["parser_hit"] == "1" and float(row["seconds"]) > 0
        assert "GroundingDINO" in row["notes"]  # no grounding weights in this models folder: skipped, noted
    assert [r["action"] for r in rows] == ["change", "change", "remove"]
    with open(out / "automask_summary.csv", encoding="utf-8", newline="") as fh:
        summary = {r["editing_type_id"]: r for r in csv.DictReader(fh)}
    assert set(summary) == {"1", "3", "all"} and summary["1"]["n"] == "2" and summary["all"]["n"] == "3"
    assert float(summary["1"]["iou"]) == pytest.approx(np.mean([float(r["iou"]) for r in rows[:2]]), abs=1e-5)
    assert summary["3"]["editing_type"] == "delete object"
    run = json.loads((out / "automask_run.json").read_text(encoding="utf-8"))
    assert run["items"] == 3 and run["params"]["tau"] == 0.5
    assert main(args) == 1  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_eval_automask_refuses_a_broken_folder(tmp_path, capsys) -> None:
    from maskpix_desktop.cli import main

    assert main(["eval-automask", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "mapping_file.json" in capsys.readouterr().err
    (tmp_path / "mapping_file.json").write_text(
        json.dumps({"1": {"image_path": "x.jpg", "editing_instruction": "remove it", "mask": []}}), "utf-8"
    )
    assert main(["eval-automask", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "image not found" in capsys.readouterr().err


def test_case_mask_auto(tmp_path) -> None:
    from maskpix_desktop.core.cases import CaseError, parse_case

    case = parse_case(
        {"image": "a.png", "instruction": "turn the cat into a dog", "mask": "auto"}, tmp_path, 0
    )
    assert case.auto_mask and case.mask is None and case.uses_sam
    plain = parse_case({"image": "a.png", "instruction": "x", "mask": "m.png"}, tmp_path, 0)
    assert not plain.auto_mask and plain.mask == (tmp_path / "m.png").resolve()
    with pytest.raises(CaseError, match="auto"):
        parse_case({"image": "a.png", "instruction": "x", "mask": "auto", "box": [0, 0, 5, 5]}, tmp_path, 0)


def test_run_with_an_auto_mask_case(tmp_path, tiny_models_dir, capsys) -> None:
    from maskpix_desktop.cli import main
    from maskpix_desktop.core import images

    samples = Path(__file__).resolve().parents[2] / "resources" / "samples"
    cases = tmp_path / "cases.toml"
    cases.write_text(
        f'[[case]]\nname = "auto"\nimage = "{(samples / "dog.jpg").as_posix()}"\nmask = "auto"\n'
        'instruction = "turn the dog into a cat"\nsteps = 1\nlong_side = 64\n',
        encoding="utf-8",
    )
    code = main(
        [
            "run",
            str(cases),
            "--out",
            str(tmp_path / "o"),
            "--models-dir",
            str(tiny_models_dir),
            "--device",
            "cpu",
            "--no-clip",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "auto mask: change [dog] from relevance" in err and "No GroundingDINO model" in err
    mask = images.load_mask(tmp_path / "o" / "auto" / "mask.png")
    assert mask.any()
