"""Export of results: chosen items only, no silent overwrite, atomic writes, strict JSON, formats, grid."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskpix_desktop.core import export, images
from maskpix_desktop.core.errors import ImageSaveError
from maskpix_desktop.core.jobs import EditParams, EditRequest, EditResult

H, W = 48, 64


def _strict(text: str):
    """json.loads that refuses NaN / Infinity (what browsers, jq and most JSON parsers do)."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def smooth_image(seed: int) -> np.ndarray:
    """Gradients plus mild noise: distinct per seed, and lossy formats keep it close."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    phase = rng.uniform(0, 6.28, 3)
    chans = [127.5 + 100 * np.sin(xx / (7 + i) + yy / (9 + i) + phase[i]) for i in range(3)]
    noisy = np.stack(chans, -1) + rng.normal(0, 4, (H, W, 3))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def make_result(*, seed: int = 0, mask_mode: str = "pixel", metrics: dict | None = None) -> EditResult:
    orig = smooth_image(seed)
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True
    baseline = smooth_image(seed + 100)
    blended = np.where(mask[..., None], baseline, orig)
    params = EditParams("make it gold", steps=3, seed=41, mask_mode=mask_mode, feather=0.0)
    if metrics is None:
        metrics = {
            "baseline": {"leakage_mean": 12.5, "bg_psnr": 20.25, "miou": np.float32(0.5)},
            "blended": {"leakage_mean": 0.0, "bg_psnr": float("inf"), "miou": 0.75},
        }
    return EditResult(
        request=EditRequest(image=orig, mask=mask, params=params),
        baseline=baseline,
        blended=blended,
        edit=baseline,
        mask_used=mask.astype(np.float32),
        working_size=(48, 64),
        timings={"total_s": 0.5},
        model={"ip2p": "tiny", "device": "cpu"},
        metrics=metrics,
    )


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------------ items


def test_all_items_by_default(tmp_path: Path) -> None:
    res = make_result()
    paths = export.export_result(res, tmp_path)
    assert set(paths) == set(export.EXPORT_ITEMS)
    assert listing(tmp_path) == sorted(
        [
            "original.png",
            "mask.png",
            "baseline.png",
            "blended.png",
            "grid.png",
            "metrics.csv",
            "metadata.json",
        ]
    )
    assert np.array_equal(images.load_image(paths["original"]), res.request.image)
    assert np.array_equal(images.load_image(paths["baseline"]), res.baseline)
    assert np.array_equal(images.load_image(paths["blended"]), res.blended)
    assert np.array_equal(images.load_mask(paths["mask"]), res.request.mask)
    meta = _strict(paths["json"].read_text(encoding="utf-8"))
    assert meta["params"] == res.request.params.to_dict()
    assert meta["files"] == {k: v.name for k, v in paths.items()}
    assert meta["image_size"] == [H, W] and meta["model"] == {"ip2p": "tiny", "device": "cpu"}


def test_only_the_chosen_items_are_written(tmp_path: Path) -> None:
    paths = export.export_result(make_result(), tmp_path, items=["blended", "json"])
    assert set(paths) == {"blended", "json"}
    assert listing(tmp_path) == ["blended.png", "metadata.json"]
    assert _strict(paths["json"].read_text())["files"] == {"blended": "blended.png", "json": "metadata.json"}


def test_unknown_item_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export item 'thumbnail'"):
        export.export_result(make_result(), tmp_path / "out", items=["blended", "thumbnail"])
    assert not (tmp_path / "out").exists()


def test_mask_falls_back_to_mask_used_when_request_has_none(tmp_path: Path) -> None:
    res = make_result()
    res = EditResult(
        request=EditRequest(image=res.request.image, mask=None, params=res.request.params),
        baseline=res.baseline,
        blended=res.blended,
        edit=res.edit,
        mask_used=np.ones((H, W), np.float32),
        working_size=res.working_size,
    )
    paths = export.export_result(res, tmp_path, items=["mask", "grid"])
    assert images.load_mask(paths["mask"]).all()


# ------------------------------------------------------------------------------------ overwriting


@pytest.mark.parametrize("clash", ["blended.png", "metadata.json", "metrics.csv"])
def test_refuses_when_any_target_exists_and_writes_nothing(tmp_path: Path, clash: str) -> None:
    (tmp_path / clash).write_bytes(b"keep me")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=clash):
        export.export_result(make_result(), tmp_path)
    assert snapshot(tmp_path) == before  # nothing new, nothing changed, no temp files


def test_unrelated_existing_files_do_not_block(tmp_path: Path) -> None:
    (tmp_path / "original.png").write_bytes(b"other export")
    export.export_result(make_result(), tmp_path, items=["blended"])
    assert (tmp_path / "original.png").read_bytes() == b"other export"


def test_overwrite_replaces(tmp_path: Path) -> None:
    export.export_result(make_result(seed=1), tmp_path)
    second = make_result(seed=2)
    (tmp_path / "blended.png").write_bytes(b"stale")
    paths = export.export_result(second, tmp_path, overwrite=True)
    assert np.array_equal(images.load_image(paths["blended"]), second.blended)
    assert np.array_equal(images.load_image(paths["original"]), second.request.image)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


# ---------------------------------------------------------------------------------- names, formats


def test_pattern_names(tmp_path: Path) -> None:
    paths = export.export_result(make_result(), tmp_path, pattern="{stem}_{item}", stem="shot7")
    assert listing(tmp_path) == sorted(
        f"shot7_{n}"
        for n in (
            "original.png",
            "mask.png",
            "baseline.png",
            "blended.png",
            "grid.png",
            "metrics.csv",
            "metadata.json",
        )
    )
    assert paths["metrics_csv"].name == "shot7_metrics.csv" and paths["json"].name == "shot7_metadata.json"
    more = export.planned_paths(
        tmp_path, ["blended"], pattern="{stem}-{mode}-s{seed}-{item}", stem="a", seed="9", mode="crop"
    )
    assert more["blended"].name == "a-crop-s9-blended.png"


def test_pattern_seed_and_mode_come_from_the_params(tmp_path: Path) -> None:
    paths = export.export_result(
        make_result(mask_mode="latent"), tmp_path, items=["blended"], pattern="{mode}_{seed}_{item}"
    )
    assert paths["blended"].name == "latent_41_blended.png"


def test_pattern_that_merges_items_is_refused(tmp_path: Path) -> None:
    # Without {item} every picture would land in the same file, each overwriting the last.
    with pytest.raises(ValueError, match="same file name"):
        export.export_result(make_result(), tmp_path, items=["original", "blended"], pattern="{stem}")
    assert listing(tmp_path) == []
    paths = export.export_result(make_result(), tmp_path, items=["blended", "json"], pattern="{stem}")
    assert listing(tmp_path) == ["image.json", "image.png"] and set(paths) == {"blended", "json"}


def test_bad_pattern_field_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad file name pattern"):
        export.export_result(make_result(), tmp_path, pattern="{date}_{item}")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(("fmt", "ext", "pil_format"), [("jpeg", ".jpg", "JPEG"), ("webp", ".webp", "WEBP")])
def test_jpeg_and_webp(tmp_path: Path, fmt: str, ext: str, pil_format: str) -> None:
    res = make_result()
    paths = export.export_result(res, tmp_path, fmt=fmt, quality=90)
    for item in ("original", "mask", "baseline", "blended", "grid"):
        assert paths[item].suffix == ext
        with Image.open(paths[item]) as im:
            assert im.format == pil_format
    assert paths["metrics_csv"].suffix == ".csv" and paths["json"].suffix == ".json"
    loaded = images.load_image(paths["blended"]).astype(int)
    assert loaded.shape == (H, W, 3) and np.abs(loaded - res.blended.astype(int)).mean() < 8  # lossy
    text = images.read_image_text(paths["blended"])  # EXIF UserComment for JPEG / WebP
    meta = _strict(text["maskpix"])
    assert meta["params"]["instruction"] == "make it gold" and text["seed"] == "41"


def test_webp_quality_100_is_lossless(tmp_path: Path) -> None:
    res = make_result()
    paths = export.export_result(res, tmp_path, items=["blended"], fmt="webp", quality=100)
    assert np.array_equal(images.load_image(paths["blended"]), res.blended)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        export.export_result(make_result(), tmp_path, fmt="gif")
    assert listing(tmp_path) == []


# ------------------------------------------------------------------------------- metadata and JSON


def test_png_text_chunks(tmp_path: Path) -> None:
    paths = export.export_result(make_result(), tmp_path, items=["blended", "grid"])
    for path in paths.values():
        text = images.read_png_text(path)
        meta = _strict(text["maskpix"])
        assert meta["params"] == make_result().request.params.to_dict()
        assert text["instruction"] == "make it gold" and text["seed"] == "41" and text["steps"] == "3"
        assert text["mask_mode"] == "pixel" and text["Software"] == "MaskPix Desktop"


def test_infinite_and_nan_metrics_stay_strict_json(tmp_path: Path) -> None:
    metrics = {
        "baseline": {"bg_psnr": 31.5, "pie_psnr": np.float64("-inf"), "bg_ssim": np.float32("nan")},
        "blended": {"bg_psnr": float("inf"), "pie_psnr": np.float64("inf"), "bg_ssim": float("nan")},
    }
    res = make_result(metrics=metrics)
    paths = export.export_result(res, tmp_path)
    sidecar = _strict(paths["json"].read_text(encoding="utf-8"))
    in_png = _strict(images.read_png_text(paths["blended"])["maskpix"])
    for meta in (sidecar, in_png):
        assert meta["metrics"]["baseline"] == {"bg_psnr": 31.5, "pie_psnr": "-inf", "bg_ssim": "nan"}
        assert meta["metrics"]["blended"] == {"bg_psnr": "inf", "pie_psnr": "inf", "bg_ssim": "nan"}
        assert float(meta["metrics"]["blended"]["bg_psnr"]) == math.inf  # float() reads them back
    # the same spelling as the CSV
    rows = list(csv.DictReader(io.StringIO(paths["metrics_csv"].read_text())))
    assert rows[1]["bg_psnr"] == "inf" and rows[0]["pie_psnr"] == "-inf" and rows[1]["bg_ssim"] == "nan"


def test_json_helpers() -> None:
    value = {
        "a": (np.int64(3), np.float32(0.5), np.bool_(True), Path("/x/y"), None, "s"),
        1: [float("inf")],
    }
    assert export.json_safe(value) == {"a": [3, 0.5, True, "/x/y", None, "s"], "1": ["inf"]}
    assert _strict(export.to_json(value)) == export.json_safe(value)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        export.to_json({"x": object()})


def test_metrics_csv_format() -> None:
    text = export.metrics_csv(
        {
            "baseline": {"leakage_mean": 12.3456789, "bg_psnr": 20.0, "clip_score": None},
            "blended": {"leakage_mean": 0.0, "bg_psnr": float("inf"), "miou": 1},
        }
    )
    assert text.endswith("\n") and "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "variant,leakage_mean,miou,bg_psnr,clip_score"  # catalogue order
    assert lines[1] == "baseline,12.3457,,20,"
    assert lines[2] == "blended,0,1,inf,"
    assert export.metrics_csv({}) == "variant\n"


# ------------------------------------------------------------------------------- disk full, atomicity


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["publish", "image_save", "text_write"])
def test_disk_full_raises_image_save_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch, where: str
) -> None:
    out = tmp_path / "out"
    if where == "publish":  # the link/rename that publishes the first file fails
        monkeypatch.setattr(os, "link", _enospc)
        monkeypatch.setattr(os, "replace", _enospc)
    elif where == "image_save":  # the encoder writes part of the file, then the disk is full
        real_save = Image.Image.save

        def half_save(self, fp, format=None, **params):
            if format == "PNG" and "grid" not in str(fp):
                return real_save(self, fp, format=format, **params)
            Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Image.Image, "save", half_save)
    else:  # the JSON sidecar, written last
        real_open = open

        def failing_open(file, mode="r", *a, **kw):
            if "w" in mode and ".metadata.json." in str(file):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_open(file, mode, *a, **kw)

        monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(ImageSaveError, match="the disk is full"):
        export.export_result(make_result(), out)
    monkeypatch.undo()
    # No partial target, no temp file, and none of the files this export had already finished.
    assert listing(out) == []


def test_disk_full_with_overwrite_keeps_the_old_set(tmp_path: Path, monkeypatch) -> None:
    export.export_result(make_result(seed=1), tmp_path, items=["original"])
    kept = (tmp_path / "original.png").read_bytes()
    real_link, real_replace = os.link, os.replace

    def fail_on_blended(real):
        def wrapper(src, dst):
            if Path(dst) == tmp_path / "blended.png":  # the second file's final rename
                _enospc()
            return real(src, dst)

        return wrapper

    monkeypatch.setattr(os, "link", fail_on_blended(real_link))
    monkeypatch.setattr(os, "replace", fail_on_blended(real_replace))
    with pytest.raises(ImageSaveError, match="the disk is full"):
        export.export_result(make_result(seed=2), tmp_path, items=["original", "blended"], overwrite=True)
    monkeypatch.undo()
    # original.png had already been replaced when blended.png failed: it is put back, nothing else stays.
    assert listing(tmp_path) == ["original.png"] and (tmp_path / "original.png").read_bytes() == kept


def test_read_only_folder_is_an_image_save_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(ImageSaveError, match="permission denied"):
            export.export_result(make_result(), out)
        assert listing(out) == []
    finally:
        out.chmod(0o755)


# ------------------------------------------------------------------------------- grid and overlay


def test_comparison_grid_shape() -> None:
    rng = np.random.default_rng(0)
    panels = [rng.integers(0, 256, (100, 200, 3), dtype=np.uint8) for _ in range(3)]
    panels.append(np.zeros((100, 200), bool))
    grid = export.comparison_grid(panels, ["a", "b", "c", "d"], max_side=100)
    # each panel scaled to 50x100, 4 px gaps, a 22 px label bar
    assert grid.shape == (50 + 22, 4 * 100 + 3 * 4, 3) and grid.dtype == np.uint8
    unlabelled = export.comparison_grid(panels[:2])
    assert unlabelled.shape == (100, 2 * 200 + 4, 3)  # never upscaled, no label bar
    assert np.array_equal(unlabelled[:, :200], panels[0])  # same size: pixels untouched
    assert np.array_equal(unlabelled[:, 204:], panels[1])


def test_grid_in_export_has_four_panels(tmp_path: Path) -> None:
    paths = export.export_result(make_result(), tmp_path, items=["grid"])
    grid = images.load_image(paths["grid"])
    assert grid.shape == (H + 22, 4 * W + 3 * 4, 3)


def test_mask_overlay_exact_at_alpha_0_and_1() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:25] = True
    assert np.array_equal(export.mask_overlay(img, mask, alpha=0.0), img)
    full = export.mask_overlay(img, mask, color=(1, 2, 3), alpha=1.0)
    assert np.array_equal(full[~mask], img[~mask])
    assert (full[mask] == np.array([1, 2, 3], np.uint8)).all()
    half = export.mask_overlay(img, mask, color=(255, 255, 255), alpha=0.5)
    expected = np.rint(img[mask].astype(np.float64) * 0.5 + 127.5)
    assert np.abs(half[mask].astype(np.float64) - expected).max() <= 1
    soft = np.where(mask, 0.5, 0.0).astype(np.float32)  # a soft mask tints proportionally
    assert np.array_equal(export.mask_overlay(img, soft, color=(255, 255, 255), alpha=1.0), half)
