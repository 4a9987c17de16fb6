"""``maskpix-cli eval`` in one process on tiny models: readers, bad items, report, resume, and every metric
checked against an independent computation (PSNR/SSIM/MSE by hand, CLIP on a hand-made crop)."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskpix_desktop.cli import main
from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import images, masks
from maskpix_desktop.testing.eval_data import make_magicbrush_folder, make_pie_folder

FAST = ["--long-side", "64", "--steps", "2", "--threads", "1", "--device", "cpu", "--no-progress"]
# The first six PIE_PROMPTS: every edit type once (1, 6, 2, 8, 7, 9), more items than the grid shows (4).
GOOD_PIE = 6


def run_eval(dataset: Path, out: Path, models: Path, *extra: str) -> int:
    return main(["eval", str(dataset), "--out", str(out), "--models-dir", str(models), *FAST, *extra])


def keyed(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["item"], r["mode"]): r for r in rows}


def comparable(row: dict) -> tuple:
    """What must not depend on the run (process count, resume): status, error, every metric."""
    return row["status"], row.get("error"), json.dumps(ev.json_safe(row["metrics"]), sort_keys=True)


@pytest.fixture(scope="module")
def pie_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pie_folder(tmp_path_factory.mktemp("pie") / "PIE-Bench", n=GOOD_PIE)


@pytest.fixture(scope="module")
def mb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_magicbrush_folder(tmp_path_factory.mktemp("mb") / "magicbrush-test")


@pytest.fixture(scope="module")
def pie_run(pie_dir: Path, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pie_out") / "run"
    assert run_eval(pie_dir, out, tiny_models_dir) == 0
    return out


@pytest.fixture(scope="module")
def clip(tiny_models_dir: Path):
    from maskpix_desktop.core.service import ModelChoice, ModelService

    scorer = ModelService(ModelChoice(models_dir=str(tiny_models_dir), device="cpu")).clip()
    assert scorer is not None
    return scorer


# ------------------------------------------------------------------------------------ independent maths


def gauss_blur(x: np.ndarray) -> np.ndarray:
    """11-tap Gaussian (sigma 1.5) along both axes with reflect-101 borders, by sliding windows."""
    t = np.arange(11) - 5
    k = np.exp(-(t**2) / (2 * 1.5**2))
    k /= k.sum()
    for axis in (0, 1):
        pad = [(5, 5) if a == axis else (0, 0) for a in range(x.ndim)]
        win = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="reflect"), 11, axis=axis)
        x = win @ k
    return x


def ssim_by_hand(a: np.ndarray, b: np.ndarray, crop: int = 5) -> float:
    """Wang et al. SSIM (0..255 data), channel mean, averaged over the interior (torchmetrics' layout)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    ma, mb = gauss_blur(a), gauss_blur(b)
    va, vb = gauss_blur(a * a) - ma**2, gauss_blur(b * b) - mb**2
    cov = gauss_blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    s = s.mean(axis=2)
    return float(s[crop:-crop, crop:-crop].mean())


def pie_mask_by_hand(rle: list[int], border: bool) -> np.ndarray:
    flat = np.zeros(512 * 512, bool)
    for start, length in zip(rle[0::2], rle[1::2], strict=True):
        flat[start : start + length] = True
    m = flat.reshape(512, 512)
    if border:
        m[0], m[-1], m[:, 0], m[:, -1] = True, True, True, True
    return m


def region_crop_by_hand(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad = max(4, round(0.1 * max(y1 - y0, x1 - x0)))
    y0, x0 = max(0, y0 - pad), max(0, x0 - pad)
    y1, x1 = min(image.shape[0], y1 + pad), min(image.shape[1], x1 + pad)
    fill = np.round(image.reshape(-1, 3).astype(np.float64).mean(axis=0)).astype(np.uint8)
    crop = image[y0:y1, x0:x1].copy()
    crop[~mask[y0:y1, x0:x1]] = fill
    side = max(crop.shape[:2])
    square = np.empty((side, side, 3), np.uint8)
    square[:] = fill
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return square


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ---------------------------------------------------------------------------------------------- readers


def test_readers_parse_both_layouts(pie_dir: Path, mb_dir: Path, tmp_path: Path) -> None:
    fmt, items = ev.read_dataset(pie_dir)
    assert fmt == "pie" and len(items) == GOOD_PIE + 2
    cat = next(it for it in items if it.instruction == "turn the cat into a tiger")
    assert cat.prompt == "a tiger sitting on a wall" and cat.source_prompt == "a cat sitting on a wall"
    assert cat.edit_type == "1" and cat.image.is_file() and len(cat.mask_rle) % 2 == 0

    fmt, items = ev.read_dataset(mb_dir)
    assert fmt == "magicbrush"
    assert [it.id for it in items] == ["242679-1", "327726-1", "327726-2"]
    second = items[2]
    assert second.image.name == "327726-output1.png" and second.target.name == "327726-output2.png"
    assert second.prompt == "the edited part: make the hat red"  # the local description (CLIP-T)

    # The Hugging Face column layout as metadata.jsonl.
    rec = {"img_id": "9", "turn_index": 1, "source_img": "a.png", "mask_img": "m.png", "target_img": "t.png"}
    (tmp_path / "metadata.jsonl").write_text(json.dumps({**rec, "instruction": "x"}) + "\n{broken\n")
    fmt, items = ev.read_dataset(tmp_path)
    assert fmt == "magicbrush" and [it.id for it in items] == ["9-1", "line2-1"]
    assert items[0].problem is None and items[1].problem == "line 2: not valid JSON"

    (tmp_path / "empty").mkdir()
    with pytest.raises(ev.MaskPixError, match="neither"):
        ev.read_dataset(tmp_path / "empty")


def test_masks_pie_border_choice_and_magicbrush_alpha(pie_dir: Path, mb_dir: Path) -> None:
    _, items = ev.read_dataset(pie_dir)
    item = items[0]
    rle = list(item.mask_rle)
    marked = ev.load_item(item, pie_border=True)
    assert np.array_equal(marked.edit_mask, pie_mask_by_hand(rle, border=False))
    assert np.array_equal(marked.metric_mask, pie_mask_by_hand(rle, border=True))
    plain = ev.load_item(item, pie_border=False)
    assert np.array_equal(plain.metric_mask, plain.edit_mask)

    _, mb_items = ev.read_dataset(mb_dir)
    loaded = ev.load_item(mb_items[0])
    with Image.open(mb_items[0].mask_path) as im:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
    assert alpha.shape == (64, 64) and loaded.edit_mask.shape == (128, 128)
    assert np.array_equal(loaded.edit_mask, masks.resize_mask(alpha < 128, (128, 128)))
    assert loaded.target is not None and loaded.target.shape == (128, 128, 3)


def test_bad_items_raise_item_errors(pie_dir: Path, mb_dir: Path, tmp_path: Path) -> None:
    _, items = ev.read_dataset(pie_dir)
    by_id = {it.id: it for it in items}
    with pytest.raises(ev.ItemError, match="not an image"):
        ev.load_item(by_id["bad_unreadable"])
    with pytest.raises(ev.ItemError, match="wrong mask size"):
        ev.load_item(by_id["bad_size"])
    _, mb_items = ev.read_dataset(mb_dir)
    wide = tmp_path / "wide.png"
    images.save_image(wide, np.zeros((32, 64), bool))
    with pytest.raises(ev.ItemError, match="wrong mask size"):
        ev.load_item(ev.EvalItem(**{**mb_items[0].__dict__, "mask_path": wide}))


def test_lpips_without_package_is_missing_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    scorer, reason = ev.LpipsScorer.load()
    assert scorer is None and "lpips" in reason and "not installed" in reason


# ---------------------------------------------------------------------------------------------- known pairs


def test_pie_metrics_on_known_pairs() -> None:
    """Offset d on the background only: MSE = (d/255)^2 * background fraction, PSNR from it; constant
    images a, b with an empty mask: SSIM = (2ab + C1) / (a^2 + b^2 + C1)."""
    rng = np.random.default_rng(3)
    orig = rng.integers(0, 200, (64, 96, 3), dtype=np.uint8)
    m = np.zeros((64, 96), bool)
    m[10:40, 20:70] = True
    edit = orig.copy()
    edit[~m] += 10
    item = ev.EvalItem(id="k", dataset="pie", image=Path("x"), instruction="x")
    loaded = ev.LoadedItem(image=orig, edit_mask=m, metric_mask=m)
    vals, missing = ev.score_row(orig, edit, loaded, item, ev.Scorers(missing={"lpips": "no", "clip": "no"}))
    frac = (~m).mean()
    mse = (10 / 255) ** 2 * frac
    assert vals["pie_mse"] == pytest.approx(mse, rel=1e-12)
    assert vals["pie_psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
    assert vals["leakage_mean"] == pytest.approx(10.0)
    assert vals["pie_lpips"] is None and missing["pie_lpips"] == "no" and missing["clip_score"] == "no"

    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 110, np.uint8)
    none = np.zeros((32, 32), bool)
    vals, _ = ev.score_row(a, b, ev.LoadedItem(a, none, none), item, ev.Scorers())
    c1 = (0.01 * 255) ** 2
    assert vals["pie_ssim"] == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), rel=1e-9)


# ---------------------------------------------------------------------------------------------- full run


def test_pie_run_writes_every_row_and_the_report(pie_run: Path) -> None:
    rows = ev.read_rows(pie_run / "results.jsonl")
    assert len(rows) == (GOOD_PIE + 2) * 4 and len(keyed(rows)) == len(rows)  # no duplicates
    ok = [r for r in rows if r["status"] == "ok"]
    errors = [r for r in rows if r["status"] == "error"]
    assert len(ok) == GOOD_PIE * 4
    assert {r["item"] for r in errors} == {"bad_unreadable", "bad_size"} and len(errors) == 8
    assert all(r["metrics"] == {} and r["error"] for r in errors)
    for r in ok:
        assert r["metrics"]["pie_lpips"] is None and "lpips" in r["missing"]["pie_lpips"]  # missing, not 0
        assert (pie_run / r["files"]["output"]).is_file()
        if r["mode"] != "baseline":  # hard composite with the annotated mask: background untouched
            assert r["metrics"]["pie_psnr"] == math.inf and r["metrics"]["leakage_mean"] == 0.0

    summary = json.loads((pie_run / "summary.json").read_text())
    assert summary["models"]["clip"].startswith("maskpix-tiny-clip")
    assert "not installed" in summary["models"]["lpips_missing"]
    assert summary["items"] == GOOD_PIE + 2 and summary["items_ok"] == GOOD_PIE
    assert set(summary["overall"]) == set(ev.DEFAULT_MODES)  # trained needs a mask checkpoint
    base = summary["overall"]["baseline"]["pie_psnr"]
    assert base["n"] == GOOD_PIE and base["mean"] == pytest.approx(
        np.mean([r["metrics"]["pie_psnr"] for r in ok if r["mode"] == "baseline"])
    )
    assert summary["overall"]["baseline"]["pie_lpips"]["n"] == 0
    assert set(summary["by_edit_type"]) == {"1", "2", "6", "7", "8", "9"}
    tp = summary["throughput"]
    assert tp["processes"] == 1 and tp["per_process"][0]["items_per_s"] > 0

    md = (pie_run / "summary.md").read_text()
    assert (
        "| Method | n | Structure ×10³ ↓ | PSNR ↑ | LPIPS ×10³ ↓ | MSE ×10⁴ ↓ | SSIM ×10² ↑ | CLIP whole ↑ | "
        "CLIP edited ↑ | CLIP crop ↑ | Leakage ↓ |" in md
    )
    assert "## Definitions" in md and "SSIM layout border-cut" in md and "## Instruction retrieval" in md
    for label in (
        f"| IP2P baseline | {GOOD_PIE} |",
        f"| pixel | {GOOD_PIE} | missing | ∞ | missing |",
        "| latent |",
        "| crop |",
    ):
        assert label in md
    assert "6 change attribute (color)" in md and "items/s" in md and "bad_size" in md

    csv_rows = ev.read_results_csv(pie_run / "results.csv")
    assert [(r["item"], r["mode"]) for r in csv_rows] == [(r["item"], r["mode"]) for r in rows]
    for c, j in zip(csv_rows, rows, strict=True):  # the CSV keeps full precision
        for k, v in j["metrics"].items():
            assert c["metrics"][k] == v
    plot = images.load_image(pie_run / "distributions.png")
    grid = images.load_image(pie_run / "grid.png")
    assert plot.shape[1] > 600 and grid.shape[0] > 4 * 150  # four items, six panels each
    assert (pie_run / "items" / ev.item_folder("100000000000") / "crop.png").is_file()


def test_pie_metrics_match_independent_computation(pie_run: Path, pie_dir: Path, clip) -> None:
    mapping = json.loads((pie_dir / "mapping_file.json").read_text())
    rows = keyed(ev.read_rows(pie_run / "results.jsonl"))
    for item, mode in [("100000000000", "baseline"), ("600000000001", "latent"), ("200000000002", "crop")]:
        row, rec = rows[(item, mode)], mapping[item]
        orig = rgb(pie_dir / "annotation_images" / rec["image_path"])
        out = rgb(pie_run / row["files"]["output"])
        m = pie_mask_by_hand(rec["mask"], border=True)
        keep = (~m)[..., None]
        a, b = orig / 255.0 * keep, out / 255.0 * keep
        mse = float(((a - b) ** 2).mean())
        got = row["metrics"]
        assert got["pie_mse"] == pytest.approx(mse, rel=1e-12, abs=1e-15)
        assert got["pie_psnr"] == (
            math.inf if mse == 0 else pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
        )
        assert got["pie_ssim"] == pytest.approx(ssim_by_hand(a * 255, b * 255), rel=1e-9)
        prompt = rec["editing_prompt"].replace("[", "").replace("]", "")
        assert got["clip_score"] == pytest.approx(clip.score(out, prompt), rel=1e-6)
        crop = region_crop_by_hand(out, pie_mask_by_hand(rec["mask"], border=False))
        assert got["clip_edited_crop"] == pytest.approx(clip.score(crop, prompt), rel=1e-6)
        frame = (out * m[..., None]).astype(np.uint8)  # PIE-Bench: the frame times its (bordered) mask
        assert got["clip_edited_pie"] == pytest.approx(clip.score(frame, prompt), rel=1e-6)
        assert got["pie_structure"] is None and "dino_vitb8" in row["missing"]["pie_structure"]
        d = np.abs(out.astype(np.int16) - orig.astype(np.int16)).mean(axis=2)
        assert got["leakage_mean"] == pytest.approx(float(d[~m].mean()), rel=1e-9)


def test_magicbrush_run_l1_and_clip_i(mb_dir: Path, tiny_models_dir: Path, tmp_path: Path, clip) -> None:
    out = tmp_path / "mb"
    assert run_eval(mb_dir, out, tiny_models_dir, "--modes", "baseline,pixel") == 0
    rows = ev.read_rows(out / "results.jsonl")
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        edit, target = rgb(out / r["files"]["output"]), rgb(out / r["files"]["target"])
        l1 = np.abs(edit / 255.0 - target / 255.0).mean()
        assert r["metrics"]["l1"] == pytest.approx(l1, rel=1e-9)
        f = clip.image_features([edit, target])
        assert r["metrics"]["clip_i"] == pytest.approx(float((f[0] * f[1]).sum()), rel=1e-6)
        assert r["metrics"]["l2"] == pytest.approx(((edit / 255.0 - target / 255.0) ** 2).mean(), rel=1e-9)
        if r["prompt"]:  # CLIP-T: raw cosine with the target's caption
            ft = clip.text_features([r["prompt"]])[0]
            assert r["metrics"]["clip_t"] == pytest.approx(float((f[0] * ft).sum()), rel=1e-6)
        assert r["metrics"]["dino"] is None and "dino_vits16" in r["missing"]["dino"]
    md = (out / "summary.md").read_text()
    assert "| Method | n | L1 ↓ | L2 ↓ | CLIP-I ↑ | DINO ↑ | CLIP-T ↑ | PSNR ↑" in md
    assert "| pixel | 3 |" in md and "latent" not in md


# ---------------------------------------------------------------------------------------------- resume


def test_rerun_skips_done_rows_and_repairs_a_torn_line(
    pie_run: Path, tiny_models_dir: Path, pie_dir, tmp_path
):
    out = tmp_path / "copy"
    shutil.copytree(pie_run, out)
    reference = keyed(ev.read_rows(pie_run / "results.jsonl"))
    (out / "results.jsonl").unlink()
    shard = out / "shard-0.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    ok_lines = [ln for ln in lines if '"status": "ok"' in ln]
    dropped = {(json.loads(ln)["item"], json.loads(ln)["mode"]) for ln in ok_lines[-3:]}
    kept = [ln for ln in lines if ln not in ok_lines[-3:]]
    shard.write_text("".join(kept) + ok_lines[-1][: len(ok_lines[-1]) // 2])  # a kill mid-write

    assert run_eval(pie_dir, out, tiny_models_dir) == 0
    shard_rows = ev.read_rows(shard)
    assert len(shard_rows) == len(lines) and len(keyed(shard_rows)) == len(lines)  # redone once each
    assert {(r["item"], r["mode"]) for r in shard_rows[-3:]} == dropped
    again = keyed(ev.read_rows(out / "results.jsonl"))
    assert again.keys() == reference.keys()
    assert all(comparable(again[k]) == comparable(reference[k]) for k in reference)


def test_rerun_with_other_settings_is_refused(
    pie_run: Path, pie_dir: Path, tiny_models_dir: Path, capsys
) -> None:
    before = (pie_run / "shard-0.jsonl").read_bytes()
    assert run_eval(pie_dir, pie_run, tiny_models_dir, "--seed", "7") == 1
    assert "other settings" in capsys.readouterr().err
    assert (pie_run / "shard-0.jsonl").read_bytes() == before


def test_eval_parser_rejects_unknown_modes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "x", "--out", "y", "--modes", "pixel,blur"])
    assert "modes must be" in capsys.readouterr().err
