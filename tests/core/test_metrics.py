"""Metrics against hand-computed values and an independent numpy SSIM; CLIP through a tiny offline model."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskpix_desktop.core import metrics as mx
from maskpix_desktop.core.errors import MaskPixError, MissingWeightsError, WeightsError
from maskpix_desktop.testing.tiny_clip import build_tiny_clip

# ------------------------------------------------------------------------------------ pixel metrics


def test_importing_metrics_does_not_import_torch():
    code = "import sys, maskpix_desktop.core.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_change_map_known_values_without_uint8_wrap():
    orig = np.zeros((2, 2, 3), np.uint8)
    edit = np.zeros((2, 2, 3), np.uint8)
    orig[0, 0] = (10, 200, 0)
    edit[0, 0] = (0, 10, 255)  # |-10|, |-190|, |255|
    edit[1, 1] = (3, 3, 3)
    d = mx.change_map(orig, edit)
    assert d.dtype == np.float32 and d.shape == (2, 2)
    assert d[0, 0] == pytest.approx((10 + 190 + 255) / 3)
    assert d[1, 1] == pytest.approx(3.0)
    assert d[0, 1] == 0.0 and d[1, 0] == 0.0
    assert np.array_equal(mx.change_map(edit, orig), d)


def test_leakage_exact_on_known_pattern_with_float_mask():
    change = np.zeros((100, 100), np.float32)
    mask = np.zeros((100, 100), np.float32)
    mask[:50] = 0.7  # inside (>= 0.5)
    mask[50:] = 0.2  # outside
    change[:50] = 200.0  # inside changes do not count
    change[50:55] = 30.0  # 500 of the 5000 outside pixels (10%)
    mean, p99 = mx.leakage(change, mask)
    assert mean == pytest.approx(3.0)
    assert p99 == pytest.approx(30.0)


def test_leakage_p99_and_empty_outside():
    change = np.full((11, 11), 255.0, np.float32)
    mask = np.ones((11, 11), bool)
    mask[0, :] = False
    mask[1, :] = False  # 22 outside pixels
    outside_vals = np.concatenate([np.arange(101, dtype=np.float32)[::5], [100.0]])  # 0,5,...,100,100
    change[~mask] = outside_vals
    # numpy's default percentile: sorted values, position 0.99 * (n - 1), linear interpolation
    s = np.sort(outside_vals)
    pos = 0.99 * (len(s) - 1)
    lo = int(math.floor(pos))
    expected = s[lo] + (pos - lo) * (s[lo + 1] - s[lo])
    assert mx.leakage(change, mask) == (pytest.approx(float(outside_vals.mean())), pytest.approx(expected))
    assert mx.leakage(change, np.ones((11, 11), bool)) == (0.0, 0.0)


def test_spatial_miou_hand_computed():
    change = np.zeros((10, 10), np.float32)
    change[:4] = 50.0  # 40 changed pixels
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True  # 50 pixels
    # foreground: |changed & M| = 4*5 = 20, union = 40 + 50 - 20 = 70
    # background: |~changed & ~M| = 6*5 = 30, union = 60 + 50 - 30 = 80
    expected = (20 / 70 + 30 / 80) / 2
    miou, tau = mx.spatial_miou(change, mask, tau=20.0)
    assert miou == pytest.approx(expected) and tau == 20.0
    # default tau = max(10, mean) = max(10, 40 * 50 / 100) = 20
    miou, tau = mx.spatial_miou(change, mask)
    assert tau == pytest.approx(20.0) and miou == pytest.approx(expected)
    # low mean -> tau 10; a 5-level change is then "unchanged": fg IoU = 0 / 50, bg IoU = 50 / 100
    assert mx.spatial_miou(np.full((10, 10), 5.0, np.float32), mask) == (pytest.approx(0.25), 10.0)
    # nothing changed and empty mask: the foreground IoU of two empty sets counts as 1
    assert mx.spatial_miou(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool)) == (1.0, 10.0)


def _pair_with_outside_diff(step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    orig = rng.integers(20, 230, (16, 24, 3), dtype=np.uint8)
    mask = np.zeros((16, 24), bool)
    mask[4:10, 6:15] = True
    sign = np.where(rng.random((16, 24, 3)) < 0.5, -1, 1)
    edit = (orig.astype(np.int16) + sign * step).astype(np.uint8)
    edit[mask] = 255 - orig[mask]  # large changes inside do not count
    return orig, edit, mask


def test_background_psnr_known_pair():
    orig, edit, mask = _pair_with_outside_diff(5)
    assert mx.background_psnr(orig, edit, mask) == pytest.approx(10 * math.log10(255**2 / 25))
    same, _, _ = _pair_with_outside_diff(0)
    edit0 = same.copy()
    edit0[mask] = 0
    assert mx.background_psnr(same, edit0, mask) == float("inf")
    assert math.isnan(mx.background_psnr(same, edit0, np.ones_like(mask)))


def _ref_ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Straightforward SSIM: explicit 11x11 Gaussian window, reflect-101 padding, per channel, then mean."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, wd = a.shape[:2]
    out = np.zeros((h, wd))
    for c in range(a.shape[2]):
        pa = np.pad(a[..., c].astype(np.float64), 5, mode="reflect")
        pb = np.pad(b[..., c].astype(np.float64), 5, mode="reflect")
        for i in range(h):
            for j in range(wd):
                wa, wb = pa[i : i + 11, j : j + 11], pb[i : i + 11, j : j + 11]
                ma, mb = (w * wa).sum(), (w * wb).sum()
                va = (w * (wa - ma) ** 2).sum()
                vb = (w * (wb - mb) ** 2).sum()
                cov = (w * (wa - ma) * (wb - mb)).sum()
                out[i, j] += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return out / a.shape[2]


def test_ssim_identical_is_one_and_matches_reference():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)
    mask = np.zeros((18, 22), bool)
    mask[3:9, 4:12] = True
    assert mx.background_ssim(a, a.copy(), mask) == pytest.approx(1.0, abs=1e-12)
    b = np.clip(a.astype(np.int16) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    ref = _ref_ssim_map(a, b)
    assert np.allclose(mx.ssim_map(a, b), ref, atol=1e-6)
    assert mx.background_ssim(a, b, mask) == pytest.approx(ref[~mask].mean(), abs=1e-6)
    assert math.isnan(mx.background_ssim(a, b, np.ones_like(mask)))


def test_pie_variants():
    orig = np.zeros((10, 10, 3), np.uint8)
    edit = np.full((10, 10, 3), 51, np.uint8)  # 0.2 on the [0, 1] scale
    mask = np.zeros((10, 10), bool)
    mask[:4] = True  # 40 masked pixels, zeroed in both images
    edit[mask] = 255
    expected_mse = 60 * 3 * 0.2**2 / 300
    assert mx.pie_background_mse(orig, edit, mask) == pytest.approx(expected_mse)
    assert mx.pie_background_psnr(orig, edit, mask) == pytest.approx(10 * math.log10(1 / expected_mse))
    same = orig.copy()
    same[mask] = 200
    assert mx.pie_background_psnr(orig, same, mask) == float("inf")
    assert mx.pie_background_mse(orig, same, mask) == 0.0
    assert mx.pie_background_ssim(orig, same, mask) == pytest.approx(1.0, abs=1e-12)

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    m = np.zeros((16, 20), bool)
    m[5:12, 2:9] = True
    keep = (~m)[..., None]
    ref = _ref_ssim_map(a * keep, b * keep)[5:-5, 5:-5].mean()  # torchmetrics-style interior mean
    assert mx.pie_background_ssim(a, b, m) == pytest.approx(ref, abs=1e-6)


def test_compute_metrics_without_clip_and_metric_info():
    orig, edit, mask = _pair_with_outside_diff(5)
    out = mx.compute_metrics(orig, edit, mask)
    assert set(out) == {
        "leakage_mean", "leakage_p99", "miou", "miou_tau", "bg_psnr", "bg_ssim", "pie_psnr", "pie_ssim",
        "pie_mse",
    }  # fmt: skip
    assert out["leakage_mean"] == pytest.approx(5.0) and out["leakage_p99"] == pytest.approx(5.0)
    assert out["bg_psnr"] == pytest.approx(10 * math.log10(255**2 / 25))
    assert all(isinstance(v, float) for v in out.values())
    assert set(out) <= set(mx.METRIC_INFO)
    assert {"clip_score", "clip_score_region", "clip_direction"} <= set(mx.METRIC_INFO)
    assert mx.compute_metrics(orig, edit, mask, text="a cat") == out  # no CLIP model -> no CLIP keys
    assert mx.metrics_provenance(None) == {}
    with pytest.raises(ValueError):
        mx.compute_metrics(orig, edit[:-1], mask[:-1])
    with pytest.raises(ValueError):
        mx.compute_metrics(orig, edit, mask[:-1])


# -------------------------------------------------------------------------------------------- CLIP


@pytest.fixture
def offline(monkeypatch):
    """No network: HF offline mode and every socket connect refused."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tiny_kwargs(tmp_path_factory) -> dict:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def clip(tiny_kwargs, offline) -> mx.ClipScorer:
    return mx.ClipScorer.load(**tiny_kwargs)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:50] = True
    edit = img.copy()
    edit[mask] = (250, 40, 40)
    return img, edit, mask


def test_tiny_clip_scores_deterministic_offline(clip, tiny_kwargs, tmp_path):
    img, _, _ = _scene()
    assert clip.name == "maskpix-tiny-clip/maskpix-tiny-clip.safetensors"
    s = clip.score(img, "a red square")
    assert 0.0 <= s <= 100.0
    again = mx.ClipScorer.load(**tiny_kwargs)
    assert again.score(img, "a red square") == s
    rebuilt = build_tiny_clip(tmp_path)  # same seed -> same bytes
    assert Path(rebuilt["pretrained"]).read_bytes() == Path(tiny_kwargs["pretrained"]).read_bytes()
    feats = clip.image_features([img, img])
    assert feats.shape == (2, 32)
    assert np.allclose(feats.norm(dim=-1).numpy(), 1.0, atol=1e-5)


def test_region_score_equals_score_of_manual_crop(clip):
    img, edit, mask = _scene()
    # mask box rows 10..29, cols 20..49 (20 x 30); pad = max(4, round(0.1 * 30)) = 4
    crop = edit[6:34, 16:54].copy()  # 28 x 38
    fill = np.round(edit.reshape(-1, 3).astype(np.float64).mean(axis=0)).astype(np.uint8)
    inner = np.zeros((28, 38), bool)
    inner[4:24, 4:34] = True
    crop[~inner] = fill
    square = np.empty((38, 38, 3), np.uint8)
    square[:] = fill
    square[5:33] = crop  # centred: (38 - 28) // 2 = 5 rows above
    texts = ["a red square", "a photo of a dog", "snow", "a house", "red", "a cat"]
    positive = [t for t in texts if clip.score(square, t) > 0]
    assert positive, "tiny model gives no positive score; pick other texts"
    for t in positive:
        # Same single-image batch on both sides, but another preprocessing path: float32 rounding only.
        assert clip.region_score(edit, mask, t) == pytest.approx(clip.score(square, t), rel=1e-5, abs=1e-6)
    assert math.isnan(clip.region_score(edit, np.zeros_like(mask), "x"))


def test_direction_and_compute_metrics_with_clip(clip):
    img, edit, mask = _scene()
    d = clip.direction(img, edit, "a photo", "a photo with a red box")
    assert math.isfinite(d) and -1.0 <= d <= 1.0
    assert clip.direction(img, img, "a photo", "a photo with a red box") == 0.0
    out = mx.compute_metrics(img, edit, mask, text="a red box", clip=clip)
    assert {"clip_score", "clip_score_region"} <= set(out) and "clip_direction" not in out
    # compute_metrics encodes the images as one batch, score() one at a time: float32 GEMMs reduce in
    # another order per batch size and CPU kernel set, so ~1e-7 relative (x100 scale) is rounding, not a bug.
    assert out["clip_score"] == pytest.approx(clip.score(edit, "a red box"), rel=1e-5)
    out = mx.compute_metrics(
        img,
        edit,
        mask,
        text="a red box",
        clip=clip,
        src_caption="a photo",
        tgt_caption="a photo with a red box",
    )
    assert out["clip_direction"] == pytest.approx(d, rel=1e-5, abs=1e-5)
    both = mx.compare(
        img,
        edit,
        edit,
        mask,
        text="a red box",
        clip=clip,
        src_caption="a photo",
        tgt_caption="a photo, red box",
    )
    assert set(both) == {"baseline", "blended"} and both["baseline"] == both["blended"]
    assert mx.metrics_provenance(clip) == {"clip_model": clip.name}


def test_missing_tag_weights_raise_without_network(offline, tmp_path):
    with pytest.raises(MissingWeightsError) as ei:
        mx.ClipScorer.load("ViT-B-32", "openai", cache_dir=tmp_path)
    msg = str(ei.value)
    assert "ViT-B-32/openai" in msg and "open_clip_model.safetensors" in msg
    assert str(tmp_path) in msg and mx.CLIP_FETCH_COMMAND in msg


def test_tag_is_resolved_from_local_cache_only(offline, tmp_path):
    import open_clip

    # Hugging Face hub cache layout, as hf_hub_download leaves it.
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (snap / "open_clip_model.safetensors").write_bytes(b"not weights")
    path, cfg = mx._resolve_tag(open_clip, "ViT-B-32", "openai", tmp_path)
    assert path == snap / "open_clip_model.safetensors" and cfg["quick_gelu"] is True


def test_missing_file_unknown_tag_and_bad_config(offline, tiny_kwargs, tmp_path):
    with pytest.raises(MissingWeightsError, match="nothing.safetensors"):
        mx.ClipScorer.load(**{**tiny_kwargs, "pretrained": str(tmp_path / "nothing.safetensors")})
    with pytest.raises(MaskPixError, match="not-a-tag"):
        mx.ClipScorer.load("ViT-B-32", "not-a-tag", cache_dir=tmp_path)
    bad = tmp_path / "maskpix-broken-clip.json"
    bad.write_text("{nope")
    with pytest.raises(WeightsError):
        mx.ClipScorer.load("maskpix-broken-clip", tiny_kwargs["pretrained"], config_path=bad)


def test_corrupt_or_unsafe_weights_raise_weights_error(offline, tiny_kwargs, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 definitely not safetensors" * 10)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(Path(tiny_kwargs["pretrained"]).read_bytes()[:5000])
    state = load_file(tiny_kwargs["pretrained"])
    state.pop("text_projection")
    incomplete = tmp_path / "incomplete.safetensors"
    save_file(state, str(incomplete))
    marker = tmp_path / "pwned"
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"x": _Exploit(str(marker))}, unsafe)
    for path in (garbage, truncated, incomplete, unsafe):
        with pytest.raises(WeightsError, match=path.name):
            mx.ClipScorer.load(**{**tiny_kwargs, "pretrained": str(path)})
    assert not marker.exists()  # weights_only loading never ran the pickled code


class _Exploit:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# ---------------------------------------------------------------------------------- edit-loop fast path

# compute_metrics's SSIM runs in float32: blurred second moments of values up to 128^2 (the fast path centres
# at 128) carry ~1e-7 relative error, i.e. ~1e-3 absolute against C2 = 58.5 in the denominator, so a pixel's
# SSIM moves by ~1e-5 relative at worst; 1e-4 relative on the means leaves a margin. The pixel statistics
# are exact integer histograms / sums: only the float64 summation order differs (1e-12).
SSIM_REL = 1e-4
PIXEL_REL = 1e-12
SSIM_KEYS = ("bg_ssim", "pie_ssim")


def _edit_pair(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    orig = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    orig = np.clip(orig + rng.normal(0, 8, orig.shape), 0, 255).astype(np.uint8)
    edit = np.clip(orig.astype(np.int16) + rng.integers(-12, 13, orig.shape), 0, 255).astype(np.uint8)
    return orig, edit


def _assert_close(fast: dict, ref: dict) -> None:
    assert set(fast) == set(ref)
    for k, v in ref.items():
        if math.isnan(v) or math.isinf(v):
            assert fast[k] == v or (math.isnan(fast[k]) and math.isnan(v)), k
        else:
            assert fast[k] == pytest.approx(v, rel=SSIM_REL if k in SSIM_KEYS else PIXEL_REL, abs=1e-12), k


@pytest.mark.parametrize("kind", ["ellipse", "soft", "speckle", "empty", "full", "corner"])
def test_fast_metrics_match_the_definitions(kind):
    h, w = 90, 130
    orig, edit = _edit_pair(h, w, seed=5)
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(6)
    mask = {
        "ellipse": ((yy - 45) / 25.0) ** 2 + ((xx - 60) / 40.0) ** 2 <= 1,
        "soft": np.clip(1.2 - np.hypot(yy - 40, xx - 70) / 30.0, 0, 1).astype(np.float32),
        "speckle": rng.random((h, w)) < 0.3,
        "empty": np.zeros((h, w), bool),
        "full": np.ones((h, w), bool),
        "corner": (yy < 8) & (xx < 12),
    }[kind]
    edit[masks_as_bool(mask)] = 255 - orig[masks_as_bool(mask)]
    _assert_close(mx.compute_metrics(orig, edit, mask), mx.compute_metrics(orig, edit, mask, reference=True))
    _assert_close(mx.compute_metrics(orig, orig, mask), mx.compute_metrics(orig, orig, mask, reference=True))


def masks_as_bool(mask: np.ndarray) -> np.ndarray:
    return mask if mask.dtype == bool else mask >= 0.5


def test_pie_ssim_band_tiles_and_whole_map_paths_both_match():
    """A small mask on a large image takes the band tiles; a speckled one the whole-map fallback."""
    orig, edit = _edit_pair(300, 420, seed=7)
    small = np.zeros((300, 420), bool)
    small[140:170, 200:260] = True
    speckle = np.random.default_rng(8).random((300, 420)) < 0.2
    inside = np.ascontiguousarray(small)
    assert mx._SsimShared(orig, inside, (~inside).view(np.uint8), None).tiles  # the band path
    inside = np.ascontiguousarray(speckle)
    assert mx._SsimShared(orig, inside, (~inside).view(np.uint8), None).tiles is None  # the fallback
    for m in (small, speckle):
        _assert_close(mx.compute_metrics(orig, edit, m), mx.compute_metrics(orig, edit, m, reference=True))


def test_compare_shares_the_original_and_equals_separate_calls():
    orig, edit = _edit_pair(64, 80, seed=9)
    other = np.roll(edit, 3, axis=1)
    m = np.zeros((64, 80), bool)
    m[10:40, 20:60] = True
    both = mx.compare(orig, edit, other, m)
    assert both["baseline"] == mx.compute_metrics(orig, edit, m)
    assert both["blended"] == mx.compute_metrics(orig, other, m)
    ref = mx.compare(orig, edit, other, m, reference=True)
    _assert_close(both["blended"], ref["blended"])


def test_ssim_factor_bounds_the_working_size():
    assert mx.ssim_factor(768, 1024) == 1 and mx.ssim_factor(1080, 1920) == 1
    assert mx.ssim_factor(3000, 4000) == 3  # 1000 x 1333
    assert mx.ssim_factor(4000, 6000) == 4  # 1000 x 1500
    for h, w in ((3000, 4000), (4000, 6000), (2000, 2001), (10, 10**6)):
        f = mx.ssim_factor(h, w)
        assert (h // f) * (w // f) <= mx.SSIM_MAX_PIXELS
        assert f == 1 or (h // (f - 1)) * (w // (f - 1)) > mx.SSIM_MAX_PIXELS
    assert mx.ssim_factor(100, 100, max_pixels=2500) == 2


def test_large_image_ssim_is_the_ssim_of_block_means_and_pixel_metrics_stay_exact(monkeypatch):
    """Over SSIM_MAX_PIXELS: SSIM of the f x f block means (cv2.INTER_AREA), the background map weighted
    by each block's fraction outside M; PIE-Bench zeroes M at full size first. The rest stays full size."""
    monkeypatch.setattr(mx.ssim, "SSIM_MAX_PIXELS", 41 * 60)
    h, w = 123, 182  # f = 3: 41 x 60 blocks, one partial row and two partial columns dropped
    orig, edit = _edit_pair(h, w, seed=11)
    m = np.zeros((h, w), bool)
    m[30:71, 50:101] = True  # not aligned to the blocks: partial blocks on every side
    edit[m] = 255 - orig[m]
    f = mx.ssim_factor(h, w)
    assert f == 3
    fast = mx.compute_metrics(orig, edit, m)
    ref = mx.compute_metrics(orig, edit, m, reference=True)
    for k in set(ref) - set(SSIM_KEYS):  # leakage, mIoU, PSNRs, MSE: full resolution
        assert fast[k] == pytest.approx(ref[k], rel=PIXEL_REL), k

    hs, ws = h // f, w // f

    def shrink(img):
        return cv2.resize(img[: hs * f, : ws * f], (ws, hs), interpolation=cv2.INTER_AREA)

    outside = 1.0 - m[: hs * f, : ws * f].reshape(hs, f, ws, f).mean(axis=(1, 3))
    bg = (mx.ssim_map(shrink(orig), shrink(edit)) * outside).sum() / outside.sum()
    keep = (~m)[..., None]
    pie = mx.ssim_map(shrink(orig * keep), shrink(edit * keep))[5:-5, 5:-5].mean()
    assert fast["bg_ssim"] == pytest.approx(bg, rel=SSIM_REL)
    assert fast["pie_ssim"] == pytest.approx(pie, rel=SSIM_REL)
    assert abs(fast["bg_ssim"] - ref["bg_ssim"]) > 1e-4  # the working size really changed


def test_reference_flag_runs_the_single_metric_functions():
    orig, edit, mask = _pair_with_outside_diff(5)
    ref = mx.compute_metrics(orig, edit, mask, reference=True)
    assert ref["bg_ssim"] == mx.background_ssim(orig, edit, mask)
    assert ref["pie_ssim"] == mx.pie_background_ssim(orig, edit, mask)
    assert ref["pie_mse"] == mx.pie_background_mse(orig, edit, mask)
